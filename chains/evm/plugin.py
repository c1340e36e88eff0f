"""The ``evm`` chain plugin: what the relayer core knows of EVM chains, and nothing more."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from chains.evm.beacon_api import BeaconApi
from chains.evm.config import EvmChainConfig
from chains.evm.evidence import verify_evidence
from chains.evm.reader import EvmReader
from chains.evm.reconcile import EvmMessageLister
from chains.evm.rpc import EvmRpc
from chains.evm.submitter import EvmSubmitter, SignedBatch
from chains.evm.sync_committee import MODE as SYNC_COMMITTEE
from chains.evm.sync_committee import SyncCommitteeFinality
from chains.evm.sync_committee import status_of as sync_committee_status
from proofs.committee import attestation_digest
from relayer.ecdsa_key import EcdsaKey, V3KeystoreFormat, load_ecdsa_key
from relayer.errors import ConfigError, EvidenceRejectedError
from relayer.plugin import (
    ChainReader,
    DeliverySettings,
    LightClientState,
    MessageLister,
    Observation,
    Signer,
    VerifiedMessage,
)

if TYPE_CHECKING:
    from relayer.config import ChainConfig
    from relayer.keys import KeyRef

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


_NO_SYNC_COMMITTEE = (
    'chain {chain!r}: finality = "sync-committee" needs a sync_committee table '
    "(beacon_api and trusted_block_root) among the chain's keys"
)


class EvmPlugin:
    kind = "evm"
    config_model = EvmChainConfig
    # finality = "sync-committee": proofs.ethereum_lc follows the beacon chain's sync committee
    light_client_modes: frozenset[str] = frozenset({SYNC_COMMITTEE})
    # `relayer keys --type evm`: V3 keystores, the files load_signer reads
    key_format = V3KeystoreFormat()

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

    def reader(
        self,
        chain: ChainConfig,
        *,
        rpc_url: str | None,
        log: Any,
        prepared: Callable[[Sequence[Observation]], None] | None = None,
        light_client: LightClientState | None = None,
    ) -> EvmReader:
        config = _evm(chain)
        if rpc_url is not None and urlsplit(rpc_url).scheme not in ("http", "https"):
            raise ConfigError(
                f"chain {chain.name!r}: the evm plugin reads over an http(s) JSON-RPC endpoint, "
                f"and {urlsplit(rpc_url).scheme}:// is not one"
            )
        gateway, domain = bytes.fromhex(config.gateway[2:]), chain.domain

        def warm(observations: Sequence[Observation]) -> None:
            self._verdicts.compute(observations, gateway=gateway, domain=domain)
            if prepared is not None:
                prepared(observations)

        finality = None
        if chain.light_client_mode == SYNC_COMMITTEE:
            settings = config.sync_committee
            if settings is None:
                raise ConfigError(_NO_SYNC_COMMITTEE.format(chain=chain.name))
            dev = settings.trusted_block_root == "dev"
            finality = SyncCommitteeFinality(
                chain=chain.name,
                api=BeaconApi(str(settings.beacon_api), chain=chain.name),
                network=None if dev else settings.network,
                trusted_block_root=None if dev else bytes.fromhex(settings.trusted_block_root[2:]),
                state=light_client,
                log=log,
            )
        return EvmReader(
            chain_name=chain.name,
            config=config,
            rpc=EvmRpc(rpc_url or config.rpc),
            log=log,
            warm=warm,
            finality=finality,
        )

    def message_lister(self, reader: ChainReader) -> MessageLister | None:
        """``relayer.plugin.ListsMessages``: the Gateway's Dispatch logs, unproven."""
        return EvmMessageLister(reader) if isinstance(reader, EvmReader) else None

    def finality_problems(self, chain: ChainConfig) -> list[str]:
        if chain.light_client_mode == SYNC_COMMITTEE and _evm(chain).sync_committee is None:
            return [_NO_SYNC_COMMITTEE.format(chain=chain.name)]
        return []

    def light_client_status(self, chain: ChainConfig, state: bytes) -> Mapping[str, str]:
        return sync_committee_status(state)

    def warnings(self, chain: ChainConfig) -> list[str]:
        settings = _evm(chain).sync_committee
        dev = settings is not None and settings.trusted_block_root == "dev"
        if chain.light_client_mode == SYNC_COMMITTEE and dev:
            return [
                'sync_committee.trusted_block_root = "dev" takes the network and the first '
                "trusted block from the beacon server itself: development only"
            ]
        return []

    def default_rpc(self, chain: ChainConfig) -> str:
        return _evm(chain).rpc

    def submitter_key(self, chain: ChainConfig) -> KeyRef | None:
        return _evm(chain).submitter_key

    def load_signer(
        self,
        chain: ChainConfig,
        ref: KeyRef,
        *,
        base_dir: Path | None,
        env: Mapping[str, str] = os.environ,
    ) -> EcdsaKey:
        # An Ethereum account is a secp256k1 key in the same forms the committee uses.
        return load_ecdsa_key(ref, base_dir, env=env)

    def delivery_settings(self, chain: ChainConfig) -> DeliverySettings:
        config = _evm(chain)
        depth = config.confirmations
        return DeliverySettings(
            batch_size=config.batch_size,
            max_in_flight=config.max_in_flight,
            submit_timeout=config.submit_timeout,
            # The chain's own depth, or 64 blocks (two Ethereum epochs) where it waits for
            # the node's finalized tag.
            reorg_depth=depth + 1 if isinstance(depth, int) else 64,
        )

    def submitter(self, chain: ChainConfig, *, signer: Signer, log: Any) -> _Submitter:
        if not isinstance(signer, EcdsaKey):
            raise ConfigError(
                f"chain {chain.name!r}: the evm plugin signs with a secp256k1 key, "
                f"not {type(signer).__name__}"
            )
        config = _evm(chain)
        return _Submitter(
            chain_name=chain.name, config=config, rpc=EvmRpc(config.rpc), key=signer, log=log
        )


PLUGIN = EvmPlugin()
