"""An attester: a separate process with its own key and its own RPC endpoints.

It follows each origin chain with its own watcher (its own cursor, its own confirmation depth),
verifies every message's evidence itself with ``proofs/``, and only then signs the digest the
destination gateway checks, publishing the signatures of each origin block together to the
checkpoint store. The relayer never sees its key; it only collects signatures and counts them
against the committee.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from proofs.committee import eth_signed_message_hash
from relayer.checkpoints import Attestation, CheckpointStore
from relayer.config import ChainConfig, Config
from relayer.ecdsa_key import EcdsaKey
from relayer.errors import ConfigError, EvidenceRejectedError, UnknownChainError
from relayer.follower import follow
from relayer.message import Message, MessageFormatError
from relayer.plugin import ChainPlugin, Observation, load_plugin
from relayer.store import Ledger

__all__ = ["Attester"]

# Signatures made ahead for blocks not final yet (see ``Attester._presign``) and not used, at
# most: a few blocks of a few thousand messages; the oldest go first.
_PRESIGNED_KEPT = 20_000
# (origin domain, message id, origin block hash, destination domain): what a digest binds.
_Signing = tuple[int, bytes, bytes, int]


class Attester:
    def __init__(
        self,
        *,
        config: Config,
        name: str,
        key: EcdsaKey,
        ledger: Ledger,
        checkpoints: CheckpointStore,
        log: Any,
    ) -> None:
        matches = [a for a in config.attesters if a.name == name]
        if not matches:
            known = ", ".join(a.name for a in config.attesters) or "none"
            raise ConfigError(f"no [[attesters]] table named {name!r} (configured: {known})")
        self.spec = matches[0]
        self.config = config
        self.name = name
        self.key = key
        self.signer = key.address
        self.ledger = ledger
        self.checkpoints = checkpoints
        self.log = log.bind(attester=name)
        self._presigned: dict[_Signing, bytes] = {}
        self._presigned_lock = threading.Lock()  # filled from the watcher's worker thread

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for origin_name in self.spec.origins:
                origin = self.config.chain(origin_name)
                committee = origin.committee
                if committee is not None and self.key.checksum_address.lower() not in {
                    a.lower() for a in committee.attesters
                }:
                    self.log.warning(
                        "attester.not_in_committee",
                        chain=origin.name,
                        signer=self.key.checksum_address,
                    )
                watcher = follow(
                    origin,
                    ledger=self.ledger,
                    owner=f"attester:{self.name}",
                    rpc_url=self.spec.rpc.get(origin.name),
                    log=self.log,
                    prepared=self._presigner(origin),
                )
                group.create_task(
                    watcher.run(self._sink(origin)), name=f"attest:{self.name}:{origin.name}"
                )
            self.log.info(
                "attester.started", signer=self.key.checksum_address, origins=self.spec.origins
            )

    def _sink(self, origin: ChainConfig) -> Any:
        plugin = load_plugin(origin.type)

        async def sink(observations: Sequence[Observation]) -> None:
            # The watcher hands over whole blocks, so each block's file is written once,
            # complete, and replacing it on a re-scan loses nothing.
            by_block: dict[bytes, list[Observation]] = {}
            for obs in observations:
                by_block.setdefault(obs.block_hash, []).append(obs)
            for block_hash, block in by_block.items():
                attestations = [
                    att for obs in block if (att := self._attest(origin, plugin, obs)) is not None
                ]
                if not attestations:
                    continue
                # Its fsyncs can take milliseconds: in a thread, so that the watchers of the
                # other origins keep running. Cancelled here, the thread still writes the whole
                # file or none (tmp + rename), and the cursor has not moved past the block.
                await asyncio.to_thread(
                    self.checkpoints.put_block,
                    origin.domain,
                    block_hash,
                    self.signer,
                    attestations,
                )
                number = block[0].block_number
                self.log.info(
                    "block.attested", chain=origin.name, block=number, messages=len(attestations)
                )
                # Debug, not info: a block of a thousand messages would be a thousand lines
                # beside the one above. Run at debug level to see which message ids an
                # attester signed (or read its file in the block's directory of the store).
                for att in attestations:
                    destination = self.config.chain_by_domain(att.destination_domain)
                    self.log.debug(
                        "message.attested",
                        chain=origin.name,
                        route=f"{origin.name}->{destination.name}",
                        message_id="0x" + att.message_id.hex(),
                        block=number,
                    )

        return sink

    def _presigner(self, origin: ChainConfig) -> Any:
        def presign(observations: Sequence[Observation]) -> None:
            """Sign the digests of a young block's messages ahead, into memory only: signing is
            most of an attester's work once a block is final, and a block of a thousand
            messages would otherwise be signed then, beside the relayer on the same cores.

            Nothing signed here is published as it is: ``_attest`` verifies the observation
            when its block is final and only then takes the signature (or signs, if none is
            here). A digest binds the block hash, so one of a block that never becomes final
            can never be used: it is never taken, and drops out of the bounded cache."""
            for obs in observations:
                try:
                    message = Message.decode(obs.message)
                    destination = self.config.chain_by_domain(message.destination)
                    key = (origin.domain, message.id, obs.block_hash, destination.domain)
                    signature = self._sign(origin, destination, message.id, obs.block_hash)
                except Exception:  # noqa: BLE001, S112  (refused, and logged, when final)
                    # Only an optimisation: whatever fails here is done (or refused) again
                    # when the block is final, and must not cost the watcher its read-ahead.
                    continue
                with self._presigned_lock:
                    self._presigned[key] = signature
                    while len(self._presigned) > _PRESIGNED_KEPT:
                        del self._presigned[next(iter(self._presigned))]

        return presign

    def _sign(
        self, origin: ChainConfig, destination: ChainConfig, message_id: bytes, block_hash: bytes
    ) -> bytes:
        digest = load_plugin(destination.type).attestation_digest(
            destination, origin.domain, message_id, block_hash
        )
        return self.key.sign_hash(eth_signed_message_hash(digest))

    def _attest(
        self, origin: ChainConfig, plugin: ChainPlugin, obs: Observation
    ) -> Attestation | None:
        """Verify ``obs`` and sign its digest, or log why not and return None."""
        try:
            plugin.verify(origin, obs)
            message = Message.decode(obs.message)
            destination = self.config.chain_by_domain(message.destination)
        except (EvidenceRejectedError, MessageFormatError, UnknownChainError) as exc:
            self.log.error("proof.rejected", chain=origin.name, reason=str(exc))
            return None
        message_id = message.id
        with self._presigned_lock:
            signature = self._presigned.pop(
                (origin.domain, message_id, obs.block_hash, destination.domain), None
            )
        if signature is None:
            signature = self._sign(origin, destination, message_id, obs.block_hash)
        return Attestation(
            signer=self.signer,
            signature=signature,
            origin_domain=origin.domain,
            message_id=message_id,
            origin_block_hash=obs.block_hash,
            destination_domain=destination.domain,
        )
