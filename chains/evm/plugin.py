"""The ``evm`` chain plugin: what the relayer core knows of EVM chains, and nothing more."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from chains.evm.config import EvmChainConfig
from chains.evm.evidence import verify_evidence
from chains.evm.rpc import EvmRpc
from chains.evm.submitter import EvmSubmitter, SignedBatch
from chains.evm.watcher import EvmWatcher
from proofs.committee import attestation_digest
from relayer.errors import EvidenceRejectedError
from relayer.plugin import Observation, VerifiedMessage

if TYPE_CHECKING:
    from relayer.config import ChainConfig
    from relayer.keys import LocalKey
    from relayer.store import Ledger

__all__ = ["PLUGIN", "EvmPlugin"]


def _evm(chain: ChainConfig) -> EvmChainConfig:
    config = chain.plugin
    assert isinstance(config, EvmChainConfig)
    return config


class _Submitter(EvmSubmitter):
    def decode_pending(self, raw: bytes) -> SignedBatch:
        return SignedBatch.decode(raw)


# Verdicts computed ahead (by a watcher's read-ahead) and not asked for yet, at most: a
# block of a few thousand messages fits; the oldest go first when nobody asks for them.
_VERDICTS_KEPT = 8192


class _Verdicts:
    """``verify_evidence`` is a pure function of the observation, the gateway and the domain:
    a verdict computed while the block was young is the verdict at confirmation. Each is
    handed out once (the core and an attester each verify an observation once), so this
    holds only the blocks in between."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # filled from the read-ahead's worker thread
        self._kept: dict[tuple[Observation, bytes, int], VerifiedMessage | str] = {}

    def compute(self, observations: Sequence[Observation], *, gateway: bytes, domain: int) -> None:
        for observation in observations:
            verdict: VerifiedMessage | str
            try:
                verdict = verify_evidence(observation, gateway=gateway, domain=domain)
            except EvidenceRejectedError as exc:
                verdict = str(exc)
            with self._lock:
                self._kept[(observation, gateway, domain)] = verdict
                while len(self._kept) > _VERDICTS_KEPT:
                    del self._kept[next(iter(self._kept))]

    def take(self, observation: Observation, gateway: bytes, domain: int) -> VerifiedMessage:
        with self._lock:
            verdict = self._kept.pop((observation, gateway, domain), None)
        if verdict is None:
            return verify_evidence(observation, gateway=gateway, domain=domain)
        if isinstance(verdict, str):
            raise EvidenceRejectedError(verdict)
        return verdict


class EvmPlugin:
    kind = "evm"
    config_model = EvmChainConfig

    def __init__(self) -> None:
        self._verdicts = _Verdicts()

    def verify(self, chain: ChainConfig, observation: Observation) -> VerifiedMessage:
        config = _evm(chain)
        return self._verdicts.take(observation, bytes.fromhex(config.gateway[2:]), chain.domain)

    def attestation_digest(
        self, destination: ChainConfig, origin_domain: int, message_id: bytes, block_hash: bytes
    ) -> bytes:
        config = _evm(destination)
        return attestation_digest(
            config.chain_id,
            bytes.fromhex(config.gateway[2:]),
            origin_domain,
            message_id,
            block_hash,
        )

    def watcher(
        self,
        chain: ChainConfig,
        *,
        ledger: Ledger,
        owner: str,
        rpc_url: str | None,
        log: Any,
        prepared: Callable[[Sequence[Observation]], None] | None = None,
    ) -> EvmWatcher:
        config = _evm(chain)
        gateway, domain = bytes.fromhex(config.gateway[2:]), chain.domain

        def warm(observations: Sequence[Observation]) -> None:
            self._verdicts.compute(observations, gateway=gateway, domain=domain)
            if prepared is not None:
                prepared(observations)

        return EvmWatcher(
            chain_name=chain.name,
            config=config,
            rpc=EvmRpc(rpc_url or config.rpc),
            ledger=ledger,
            owner=owner,
            log=log,
            warm=warm,
        )

    def submitter(self, chain: ChainConfig, *, key: LocalKey, log: Any) -> _Submitter:
        config = _evm(chain)
        return _Submitter(
            chain_name=chain.name, config=config, rpc=EvmRpc(config.rpc), key=key, log=log
        )


PLUGIN = EvmPlugin()
