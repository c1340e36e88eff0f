"""An attester: a separate process with its own key and its own RPC endpoints.

It follows each origin chain with its own watcher (its own cursor, its own confirmation depth),
verifies every message's evidence itself with ``proofs/``, and only then signs the digest the
destination gateway checks, publishing the signature to the checkpoint store. The relayer
never sees its key; it only collects signatures and counts them against the committee.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from proofs.committee import eth_signed_message_hash
from relayer.checkpoints import Attestation, CheckpointStore
from relayer.config import ChainConfig, Config
from relayer.errors import ConfigError, EvidenceRejectedError, UnknownChainError
from relayer.keys import LocalKey
from relayer.message import Message, MessageFormatError
from relayer.plugin import Observation, load_plugin
from relayer.store import Ledger

__all__ = ["Attester"]


class Attester:
    def __init__(
        self,
        *,
        config: Config,
        name: str,
        key: LocalKey,
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
                watcher = load_plugin(origin.type).watcher(
                    origin,
                    ledger=self.ledger,
                    owner=f"attester:{self.name}",
                    rpc_url=self.spec.rpc.get(origin.name),
                    log=self.log,
                )
                group.create_task(
                    watcher.run(self._sink(origin)), name=f"attest:{self.name}:{origin.name}"
                )

    def _sink(self, origin: ChainConfig) -> Any:
        plugin = load_plugin(origin.type)

        async def sink(observations: Sequence[Observation]) -> None:
            for obs in observations:
                try:
                    plugin.verify(origin, obs)
                    message = Message.decode(obs.message)
                    destination = self.config.chain_by_domain(message.destination)
                except (EvidenceRejectedError, MessageFormatError, UnknownChainError) as exc:
                    self.log.error("proof.rejected", chain=origin.name, reason=str(exc))
                    continue
                digest = load_plugin(destination.type).attestation_digest(
                    destination, origin.domain, message.id, obs.block_hash
                )
                signature = self.key.sign_hash(eth_signed_message_hash(digest))
                self.checkpoints.put(
                    Attestation(
                        signer=self.signer,
                        signature=signature,
                        origin_domain=origin.domain,
                        message_id=message.id,
                        origin_block_hash=obs.block_hash,
                        destination_domain=destination.domain,
                    )
                )
                self.log.info(
                    "message.attested",
                    chain=origin.name,
                    route=f"{origin.name}->{destination.name}",
                    message_id="0x" + message.id.hex(),
                    block=obs.block_number,
                )

        return sink
