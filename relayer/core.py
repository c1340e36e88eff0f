"""The relay core: verify observations, persist them, gather attestation quorums.

Watchers hand observations to ``Core.accept``; nothing is believed until the origin plugin has
re-verified its evidence with ``proofs/``. ``Core.collect_attestations`` turns verified messages
into attested ones once a quorum of the origin's committee signed the exact digest the
destination gateway will check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import cache
from typing import Any

from proofs import QuorumError
from proofs.committee import select_quorum
from relayer.checkpoints import CheckpointStore
from relayer.config import ChainConfig, Config
from relayer.errors import EvidenceRejectedError, UnknownChainError
from relayer.message import Message, MessageFormatError
from relayer.plugin import ChainPlugin, Observation, load_plugin
from relayer.store import Ledger, MessageRecord, ObservedRow, State

__all__ = ["Core"]


class Core:
    def __init__(
        self, config: Config, ledger: Ledger, checkpoints: CheckpointStore, log: Any
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.checkpoints = checkpoints
        self.log = log
        self.plugins: dict[str, ChainPlugin] = {c.name: load_plugin(c.type) for c in config.chains}
        self.verified_event = asyncio.Event()

    # --- intake --------------------------------------------------------------------------------

    async def accept(self, observations: Sequence[Observation]) -> None:
        """Verify and persist a batch of observations (one block range of one chain)."""
        rows: list[ObservedRow] = []
        verdicts: list[tuple[bytes, str | None]] = []
        for obs in observations:
            origin = self.config.chain(obs.origin_chain)
            try:
                message = Message.decode(obs.message)
            except MessageFormatError as exc:
                self.log.error("proof.rejected", chain=origin.name, reason=str(exc))
                continue
            message_id = message.id
            destination: ChainConfig | None
            try:
                destination = self.config.chain_by_domain(message.destination)
            except UnknownChainError:
                destination = None
            reason: str | None = None
            try:
                self.plugins[origin.name].verify(origin, obs)
            except EvidenceRejectedError as exc:
                reason = str(exc)
            if reason is None and destination is None:
                reason = f"destination domain {message.destination} is not configured"
            dest_name = destination.name if destination else f"domain-{message.destination}"
            rows.append(
                ObservedRow(
                    id=message_id,
                    origin_chain=origin.name,
                    destination_chain=dest_name,
                    route=f"{origin.name}->{dest_name}",
                    nonce=message.nonce,
                    message=obs.message,
                    block_number=obs.block_number,
                    block_hash=obs.block_hash,
                    evidence=obs.evidence,
                )
            )
            verdicts.append((message_id, reason))
        # A rejected observation of a message the ledger already holds is only logged: evidence
        # that fails to verify must never overwrite evidence that did (a forged "reorg").
        known = {mid for mid, reason in verdicts if reason is not None and self._state(mid)}
        rows = [row for row in rows if row.id not in known]
        if not rows:
            for mid in known:
                self.log.error("proof.rejected", message_id="0x" + mid.hex(), reason="known id")
            return
        self.ledger.record_observed_many(rows)
        good = [mid for mid, reason in verdicts if reason is None]
        # Only rows still in OBSERVED move on: a message seen before keeps the state it reached.
        fresh = [mid for mid in good if self._state(mid) is State.OBSERVED]
        if fresh:
            self.ledger.transition_many(fresh, State.VERIFIED, expect=State.OBSERVED)
            self.verified_event.set()
        for mid, reason in verdicts:
            if reason is None:
                continue
            self.log.error("proof.rejected", message_id="0x" + mid.hex(), reason=reason)
            if mid not in known and self._state(mid) is State.OBSERVED:
                self.ledger.transition(mid, State.REJECTED, expect=State.OBSERVED, error=reason)
        rejected = {mid for mid, reason in verdicts if reason is not None}
        for row in rows:
            if row.id in rejected:
                continue
            self.log.info(
                "message.verified",
                chain=row.origin_chain,
                route=row.route,
                message_id="0x" + row.id.hex(),
                nonce=row.nonce,
                block=row.block_number,
            )

    def _state(self, message_id: bytes) -> State | None:
        record = self.ledger.get(message_id)
        return record.state if record else None

    # --- attestations --------------------------------------------------------------------------

    async def collect_attestations(self, *, interval: float = 0.25) -> None:
        while True:
            due = self.ledger.due(State.VERIFIED, limit=2000)
            # Reading and recovering signatures is file I/O and CPU: off the event loop, so
            # that watchers and submitters keep running while a large backlog is checked.
            ready = await asyncio.to_thread(self._quorums, due)
            attested = self._persist_attested(ready)
            if not due or attested == 0:
                self.verified_event.clear()
                try:
                    async with asyncio.timeout(interval):
                        await self.verified_event.wait()
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)

    def _try_attest(self, record: MessageRecord) -> bool:
        """Attest one message now if its quorum is in the store (tests and tools)."""
        return self._persist_attested(self._quorums([record])) == 1

    def _persist_attested(self, ready: Sequence[tuple[MessageRecord, tuple[bytes, ...]]]) -> int:
        if not ready:
            return 0
        self.ledger.mark_attested(
            [
                (r.id, sigs, f"{len(sigs)} attester signatures" if sigs else "no committee")
                for r, sigs in ready
            ]
        )
        for record, sigs in ready:
            self.log.info(
                "message.attested",
                route=record.route,
                message_id="0x" + record.id.hex(),
                signers=len(sigs),
            )
        return len(ready)

    def _quorums(
        self, records: Sequence[MessageRecord]
    ) -> list[tuple[MessageRecord, tuple[bytes, ...]]]:
        out = []
        for record in records:
            signatures = self._quorum(record)
            if signatures is not None:
                out.append((record, signatures))
        return out

    def _quorum(self, record: MessageRecord) -> tuple[bytes, ...] | None:
        """The committee signatures that make ``record`` deliverable, in the order the
        Gateway checks them (ascending signer), or None while there are too few."""
        origin = self.config.chain(record.origin_chain)
        destination = self.config.chain(record.destination_chain)
        committee = origin.committee
        if committee is None:
            # finality = "confirmations": no committee to wait for (development only).
            return ()
        digest = self.plugins[destination.name].attestation_digest(
            destination, origin.domain, record.id, record.block_hash
        )
        # The store is untrusted: only signatures over this very block and destination are
        # candidates, and proofs.committee recovers and counts each one itself.
        candidates = [
            att.signature
            for att in self.checkpoints.get(origin.domain, record.id)
            if att.origin_block_hash == record.block_hash
            and att.destination_domain == destination.domain
        ]
        if len(candidates) < committee.threshold:
            return None
        try:
            chosen = select_quorum(
                digest, candidates, self._members(committee.attesters), committee.threshold
            )
        except QuorumError:
            return None
        return tuple(signature for _, signature in chosen)

    @staticmethod
    @cache
    def _members(attesters: tuple[str, ...]) -> tuple[bytes, ...]:
        return tuple(bytes.fromhex(a[2:]) for a in attesters)
