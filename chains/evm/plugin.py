"""The ``evm`` chain plugin: what the relayer core knows of EVM chains, and nothing more."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chains.evm.config import EvmChainConfig
from chains.evm.evidence import verify_evidence
from chains.evm.rpc import EvmRpc
from chains.evm.submitter import EvmSubmitter, SignedBatch
from chains.evm.watcher import EvmWatcher
from proofs.committee import attestation_digest
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


class EvmPlugin:
    kind = "evm"
    config_model = EvmChainConfig

    def verify(self, chain: ChainConfig, observation: Observation) -> VerifiedMessage:
        config = _evm(chain)
        return verify_evidence(
            observation, gateway=bytes.fromhex(config.gateway[2:]), domain=chain.domain
        )

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
        self, chain: ChainConfig, *, ledger: Ledger, owner: str, rpc_url: str | None, log: Any
    ) -> EvmWatcher:
        config = _evm(chain)
        return EvmWatcher(
            chain_name=chain.name,
            config=config,
            rpc=EvmRpc(rpc_url or config.rpc),
            ledger=ledger,
            owner=owner,
            log=log,
        )

    def submitter(self, chain: ChainConfig, *, key: LocalKey, log: Any) -> _Submitter:
        config = _evm(chain)
        return _Submitter(
            chain_name=chain.name, config=config, rpc=EvmRpc(config.rpc), key=key, log=log
        )


PLUGIN = EvmPlugin()
