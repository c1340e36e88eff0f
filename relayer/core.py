"""The relay core: verify observations, persist them, gather attestation quorums.

Watchers hand observations to ``Core.accept``; nothing is believed until the origin plugin has
re-verified its evidence with ``proofs/``. ``Core.collect_attestations`` turns verified messages
into attested ones once a quorum of the origin's committee signed the exact digest the
destination gateway will check.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Protocol, TypeVar

from proofs import QuorumError
from proofs.committee import select_quorum
from relayer.checkpoints import CheckpointStore
from relayer.config import ChainConfig, Config
from relayer.errors import EvidenceRejectedError, UnknownChainError
from relayer.message import Message, MessageFormatError
from relayer.metrics import RelayerMetrics
from relayer.plugin import ChainPlugin, Observation, load_plugin
from relayer.safety import Safety
from relayer.store import Ledger, MessageRecord, ObservedRow, State, from_loop, new_owner

__all__ = ["Core"]

# Messages checked and persisted at a time by the collector (see ``collect_attestations``).
_CHUNK = 200

# (message id, origin block hash, destination domain): what one attestation digest binds.
_Attesting = tuple[bytes, bytes, int]
# Quorums found early (see ``Core._precheck``) and not yet used, at most.
_EARLY_KEPT = 20_000
# The collector reads the VERIFIED messages due first, at most this many per pass. Those still
# short of a quorum this long after they were verified are looked at again only every
# _STALLED_RECHECK seconds, so that any number of them never hides newer messages.
_DUE_PER_PASS = 2000
_STALLED_AFTER = 30.0
_STALLED_RECHECK = 10.0
# Seconds a collector's claim on verified messages lasts (shared ledgers): one whose process
# died leaves them to another collector after this. Short of a quorum, a message stays with its
# collector, which claims it again (and so renews it) at each pass.
_COLLECT_LEASE = 30.0


class _Attestable(Protocol):
    """What a quorum is looked up by: a ledger record, or a row about to become one."""

    @property
    def id(self) -> bytes: ...
    @property
    def origin_chain(self) -> str: ...
    @property
    def destination_chain(self) -> str: ...
    @property
    def block_hash(self) -> bytes: ...


_R = TypeVar("_R", bound=_Attestable)


class Core:
    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        checkpoints: CheckpointStore,
        log: Any,
        *,
        metrics: RelayerMetrics | None = None,
        safety: Safety | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or RelayerMetrics()
        # Allowlists and the circuit breaker (None: neither, as in tools and tests).
        self.safety = safety
        self.ledger = ledger
        self.checkpoints = checkpoints
        self.log = log
        self.plugins: dict[str, ChainPlugin] = {c.name: load_plugin(c.type) for c in config.chains}
        self.verified_event = asyncio.Event()
        self._attested_listeners: list[asyncio.Event] = []
        self._early: dict[_Attesting, tuple[bytes, ...]] = {}
        self._prechecks: set[asyncio.Task[None]] = set()
        # Where several processes share the ledger, their collectors split the verified
        # messages by claiming them (``Ledger.claim``); mark_attested ends the lease.
        self._collector = new_owner("collector")

    def listen_attested(self) -> asyncio.Event:
        """An event of the caller's own, set whenever messages become ATTESTED (a delivery
        worker waits on it instead of polling the ledger)."""
        event = asyncio.Event()
        self._attested_listeners.append(event)
        return event

    def _start_precheck(self, rows: Sequence[ObservedRow]) -> None:
        """Look for the quorums of a block's messages in a worker thread while the event loop
        writes them to the ledger: attesters usually publish before the relayer is done, and
        recovering signatures (libsecp256k1, GIL released) then overlaps the ledger writes."""
        if rows and any(self.config.chain(r.origin_chain).committee for r in rows):
            task = asyncio.create_task(self._precheck(rows))
            self._prechecks.add(task)
            task.add_done_callback(self._prechecks.discard)

    async def _precheck(self, rows: Sequence[ObservedRow]) -> None:
        try:
            found = await asyncio.to_thread(self._quorums, rows)
        except Exception as exc:  # noqa: BLE001  (an optimisation: the collector checks anyway)
            self.log.debug("attestations.precheck_failed", error=f"{type(exc).__name__}: {exc}")
            return
        for row, signatures in found:
            self._early[self._attesting(row)] = signatures
        while len(self._early) > _EARLY_KEPT:
            del self._early[next(iter(self._early))]

    def _attesting(self, record: _Attestable) -> _Attesting:
        destination = self.config.chain(record.destination_chain)
        return (record.id, record.block_hash, destination.domain)

    # --- intake --------------------------------------------------------------------------------

    async def accept(self, observations: Sequence[Observation]) -> None:
        """Verify and persist a batch of observations (one block range of one chain)."""
        rows: list[ObservedRow] = []
        verdicts: list[tuple[bytes, str | None]] = []
        # Refused by a route's allowlist, with the rule: not a verification failure, so it
        # neither counts towards the breaker nor shows as one.
        refused: dict[bytes, str] = {}
        # Failed verification: what the breaker counts.
        failed: set[bytes] = set()
        for obs in observations:
            origin = self.config.chain(obs.origin_chain)
            try:
                message = Message.decode(obs.message)
            except MessageFormatError as exc:
                self.log.error("proof.rejected", chain=origin.name, reason=str(exc))
                self.metrics.proof_rejected(origin.name, "verify", "message does not decode")
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
                failed.add(message_id)
            if reason is None and destination is None:
                reason = f"destination domain {message.destination} is not configured"
            dest_name = destination.name if destination else f"domain-{message.destination}"
            route = f"{origin.name}->{dest_name}"
            if reason is None and self.safety is not None:
                refusal = self.safety.refusal(route, message)
                if refusal is not None:
                    refused[message_id], reason = refusal
            rows.append(
                ObservedRow(
                    id=message_id,
                    origin_chain=origin.name,
                    destination_chain=dest_name,
                    route=route,
                    nonce=message.nonce,
                    message=obs.message,
                    block_number=obs.block_number,
                    block_hash=obs.block_hash,
                    evidence=obs.evidence,
                    block_evidence=obs.block_evidence,
                    finality=origin.finality,
                )
            )
            verdicts.append((message_id, reason))
        if not rows:
            return
        verified_ok = {mid for mid, reason in verdicts if reason is None}
        self._start_precheck([row for row in rows if row.id in verified_ok])
        # One transaction: the rows go in with their verdicts (VERIFIED or REJECTED) at once. A
        # refused observation of a message the ledger already holds is only logged: evidence
        # that fails to verify must never overwrite evidence that did (a forged "reorg").
        # Off the loop on a database server, so that the other chains' watchers and the bus
        # keep running meanwhile.
        changed = await from_loop(
            self.ledger,
            self.ledger.record_observed_many,
            rows,
            [reason for _, reason in verdicts],
        )
        if changed and verified_ok:
            self.verified_event.set()
        await self._verdicts(rows, verdicts, refused, failed)

    async def _verdicts(
        self,
        rows: Sequence[ObservedRow],
        verdicts: Sequence[tuple[bytes, str | None]],
        refused: Mapping[bytes, str],
        failed: set[bytes],
    ) -> None:
        """Log, count and tell the breaker what became of each recorded observation."""
        for row, (mid, reason) in zip(rows, verdicts, strict=True):
            if mid in refused:
                assert reason is not None
                self.log.warning(
                    "message.refused",
                    route=row.route,
                    message_id="0x" + mid.hex(),
                    rule=refused[mid],
                    reason=reason,
                )
                self.metrics.policy_refused.labels(row.route, refused[mid]).inc()
                continue
            if reason is not None:
                self.log.error("proof.rejected", message_id="0x" + mid.hex(), reason=reason)
                self.metrics.proof_rejected(row.origin_chain, "verify", reason)
                if self.safety is not None and mid in failed:
                    await self.safety.rejected(row.route, reason)
                continue
            if self.safety is not None:
                self.safety.verified(row.route)
            self.log.info(
                "message.verified",
                chain=row.origin_chain,
                route=row.route,
                message_id="0x" + row.id.hex(),
                nonce=row.nonce,
                block=row.block_number,
            )

    # --- attestations --------------------------------------------------------------------------

    async def collect_attestations(
        self, *, interval: float = 0.25, waiting_interval: float = 0.05
    ) -> None:
        """Attest VERIFIED messages as their quorums appear in the store. Signatures arrive from
        other processes with no signal but the files themselves, so the store is polled: every
        ``waiting_interval`` seconds while messages wait for signatures, every ``interval``
        when none is due (see ``_poll_wait``)."""
        # Kept across passes, so that a short poll does not recover the same signatures again.
        short: dict[_Attesting, tuple[bytes, ...]] = {}
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            if self.ledger.shared:
                # A network round trip each: off the loop.
                due = await asyncio.to_thread(
                    self.ledger.claim,
                    State.VERIFIED,
                    owner=self._collector,
                    lease=_COLLECT_LEASE,
                    limit=_DUE_PER_PASS,
                )
            else:
                due = self.ledger.due(State.VERIFIED, limit=_DUE_PER_PASS)
            attested = 0
            fell_short: dict[_Attesting, tuple[bytes, ...]] = {}
            # In chunks, each persisted (and handed to the delivery workers) as soon as it is
            # checked: the first transactions of a large block go out while the rest of its
            # signatures are still being recovered. Reading and recovering is file I/O and
            # CPU: off the event loop, so that watchers and submitters keep running meanwhile.
            if due and self._prechecks:
                # They are doing this very work for the newest block: wait rather than repeat.
                await asyncio.wait(set(self._prechecks), timeout=2.0)
            for start in range(0, len(due), _CHUNK):
                chunk = due[start : start + _CHUNK]
                ready = []
                rest = []
                for record in chunk:
                    early = self._early.pop(self._attesting(record), None)
                    if early is None:
                        rest.append(record)
                    else:
                        ready.append((record, early))
                if rest:
                    ready += await asyncio.to_thread(self._quorums, rest, short, into=fell_short)
                if self.ledger.shared and ready:
                    await asyncio.to_thread(self._record_attested, ready)
                    attested += self._announce_attested(ready)
                else:
                    attested += self._persist_attested(ready)
            short.clear()
            short.update(fell_short)
            await self._postpone_stalled(due, fell_short)
            if not due or attested == 0:
                self.verified_event.clear()
                wait = _poll_wait(
                    waiting=bool(due),
                    spent=loop.time() - started,
                    interval=interval,
                    waiting_interval=waiting_interval,
                )
                try:
                    async with asyncio.timeout(wait):
                        await self.verified_event.wait()
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)

    async def _postpone_stalled(
        self, due: Sequence[MessageRecord], fell_short: Mapping[_Attesting, object]
    ) -> None:
        """Postpone the messages still short of a quorum ``_STALLED_AFTER`` seconds after they
        were verified (an attester down, or a committee that disagrees with the config)."""
        # A first sort by the records read before this pass; the ledger checks again, by its
        # own clock and the rows as they are now.
        overdue = time.time() - _STALLED_AFTER
        candidates = [
            record
            for record in due
            if record.updated_at <= overdue and self._attesting(record) in fell_short
        ]
        if not candidates:
            return
        postponed = await from_loop(
            self.ledger,
            self.ledger.postpone,
            [record.id for record in candidates],
            delay=_STALLED_RECHECK,
            state=State.VERIFIED,
            unchanged_for=_STALLED_AFTER,
        )
        if postponed:
            self.log.warning(
                "attestations.stalled",
                messages=postponed,
                oldest_waiting_s=round(time.time() - min(r.updated_at for r in candidates), 1),
                recheck_s=_STALLED_RECHECK,
                hint="is a quorum of the committee's attesters running and publishing?",
            )

    def _try_attest(self, record: MessageRecord) -> bool:
        """Attest one message now if its quorum is in the store (tests and tools)."""
        return self._persist_attested(self._quorums([record])) == 1

    def _persist_attested(self, ready: Sequence[tuple[MessageRecord, tuple[bytes, ...]]]) -> int:
        if not ready:
            return 0
        self._record_attested(ready)
        return self._announce_attested(ready)

    def _record_attested(self, ready: Sequence[tuple[MessageRecord, tuple[bytes, ...]]]) -> None:
        """The ledger's part of ``_persist_attested`` (safe in a worker thread)."""
        self.ledger.mark_attested(
            [
                (r.id, sigs, f"{len(sigs)} attester signatures" if sigs else "no committee")
                for r, sigs in ready
            ]
        )

    def _announce_attested(self, ready: Sequence[tuple[MessageRecord, tuple[bytes, ...]]]) -> int:
        """Wake the delivery workers and log (on the event loop: asyncio events are not
        thread-safe)."""
        for event in self._attested_listeners:
            event.set()
        for record, sigs in ready:
            self.log.info(
                "message.attested",
                route=record.route,
                message_id="0x" + record.id.hex(),
                signers=len(sigs),
            )
        return len(ready)

    def _quorums(
        self,
        records: Sequence[_R],
        short: dict[_Attesting, tuple[bytes, ...]] | None = None,
        *,
        into: dict[_Attesting, tuple[bytes, ...]] | None = None,
    ) -> list[tuple[_R, tuple[bytes, ...]]]:
        """The records whose quorum is in the store, with its signatures. ``short`` remembers
        the candidate sets that fell short; it is replaced by this pass's (or, with ``into``,
        this pass's are added to ``into`` for the caller to swap in), so it only ever holds
        messages still waiting."""
        # Attesters publish one file per block: read each block once for all of its messages.
        blocks: dict[tuple[int, bytes], dict[tuple[bytes, int], list[bytes]]] = {}
        fell_short: dict[_Attesting, tuple[bytes, ...]] = {}
        out = []
        for record in records:
            origin = self.config.chain(record.origin_chain)
            destination = self.config.chain(record.destination_chain)
            block = (origin.domain, record.block_hash)
            if block not in blocks:
                blocks[block] = self._block_candidates(*block)
            candidates = tuple(blocks[block].get((record.id, destination.domain), ()))
            key = (record.id, record.block_hash, destination.domain)
            # select_quorum depends on nothing but the candidates once the message, block and
            # destination are fixed (the committee is fixed for the process): the same set
            # falls short again, and recovering it on every poll would only burn CPU.
            if short is not None and short.get(key) == candidates:
                fell_short[key] = candidates
                continue
            signatures = self._quorum(record, candidates)
            if signatures is None:
                fell_short[key] = candidates
            else:
                out.append((record, signatures))
        if into is not None:
            into.update(fell_short)
        elif short is not None:
            short.clear()
            short.update(fell_short)
        return out

    def _quorum(self, record: _Attestable, candidates: Sequence[bytes]) -> tuple[bytes, ...] | None:
        """The committee signatures among ``candidates`` that make ``record`` deliverable, in
        the order the Gateway checks them (ascending signer), or None while there are too few.
        """
        origin = self.config.chain(record.origin_chain)
        destination = self.config.chain(record.destination_chain)
        committee = origin.committee
        if committee is None:
            # finality = "confirmations": no committee to wait for (development only).
            return ()
        if len(candidates) < committee.threshold:
            return None
        digest = self.plugins[destination.name].attestation_digest(
            destination, origin.domain, record.id, record.block_hash
        )
        try:
            chosen = select_quorum(
                digest, candidates, self._members(committee.attesters), committee.threshold
            )
        except QuorumError:
            return None
        return tuple(signature for _, signature in chosen)

    def _block_candidates(
        self, origin_domain: int, block_hash: bytes
    ) -> dict[tuple[bytes, int], list[bytes]]:
        """The signatures published for one origin block, by (message id, destination)."""
        out: dict[tuple[bytes, int], list[bytes]] = {}
        for att in self.checkpoints.get_block(origin_domain, block_hash):
            # The store is untrusted: a file filed under this block may claim another one, and
            # only signatures over this very block and destination are candidates (the digest
            # binds both; proofs.committee recovers and counts each signature itself).
            if att.origin_domain != origin_domain or att.origin_block_hash != block_hash:
                continue
            out.setdefault((att.message_id, att.destination_domain), []).append(att.signature)
        return out

    @staticmethod
    @cache
    def _members(attesters: tuple[str, ...]) -> tuple[bytes, ...]:
        return tuple(bytes.fromhex(a[2:]) for a in attesters)


def _poll_wait(*, waiting: bool, spent: float, interval: float, waiting_interval: float) -> float:
    """How long the collector sleeps after a pass that attested nothing and took ``spent``."""
    if not waiting:
        return interval
    # A pass over a large backlog costs tens of milliseconds, most of it the ledger query on
    # the event loop (whose lock a worker thread would hold just the same): poll at most a fifth
    # of the time, so that a backlog waiting for signatures never starves the watchers and
    # submitters, and never less often than when nothing is due.
    return min(max(waiting_interval, 4 * spent), interval)
