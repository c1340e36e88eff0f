"""The ``fake`` chain plugin: a third family, for tests only, that fits the plugin boundary
the way a real one does (registered by ``tests.conformance.fake.register``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from proofs.committee import named_attestation_digest
from relayer.errors import ConfigError
from relayer.plugin import (
    DeliverySettings,
    LightClientState,
    Observation,
    Signer,
    VerifiedMessage,
)
from tests.conformance.fake.config import FakeChainConfig
from tests.conformance.fake.evidence import verify_observation
from tests.conformance.fake.keys import FakeSigner, load_fake_signer
from tests.conformance.fake.reader import FakeReader
from tests.conformance.fake.submitter import FakeSubmitter

if TYPE_CHECKING:
    from relayer.config import ChainConfig
    from relayer.keys import KeyRef

__all__ = ["PLUGIN", "FakePlugin"]


def _fake(chain: ChainConfig) -> FakeChainConfig:
    return chain.plugin_config(FakeChainConfig)


class FakePlugin:
    kind = "fake"
    # Annotated as the protocol's type: a class attribute is invariant, so the narrower
    # type[FakeChainConfig] would not satisfy ChainPlugin for mypy.
    config_model: type[BaseModel] = FakeChainConfig
    # No light client yet: "committee" (or "confirmations") decides finality.
    light_client_modes: frozenset[str] = frozenset()

    def verify(self, chain: ChainConfig, observation: Observation) -> VerifiedMessage:
        return verify_observation(observation, domain=chain.domain)

    def attestation_digest(
        self, destination: ChainConfig, origin_domain: int, message_id: bytes, block_hash: bytes
    ) -> bytes:
        # The node's network name, not the operator's label for the chain: every operator's
        # attesters must sign the same digest for the same destination.
        return named_attestation_digest(
            destination.domain, _fake(destination).network, origin_domain, message_id, block_hash
        )

    def reader(
        self,
        chain: ChainConfig,
        *,
        rpc_url: str | None,
        log: Any,
        prepared: Callable[[Sequence[Observation]], None] | None = None,
        light_client: LightClientState | None = None,
    ) -> FakeReader:
        return FakeReader(
            chain_name=chain.name,
            domain=chain.domain,
            config=_fake(chain),
            url=rpc_url or _fake(chain).rpc,
            log=log,
            prepared=prepared,
        )

    def finality_problems(self, chain: ChainConfig) -> list[str]:
        return []

    def light_client_status(self, chain: ChainConfig, state: bytes) -> Mapping[str, str]:
        raise ValueError(f"{self.kind} chains have no light client")

    def warnings(self, chain: ChainConfig) -> list[str]:
        return []

    def default_rpc(self, chain: ChainConfig) -> str:
        return _fake(chain).rpc

    def submitter_key(self, chain: ChainConfig) -> KeyRef | None:
        return _fake(chain).submitter_key

    def load_signer(
        self,
        chain: ChainConfig,
        ref: KeyRef,
        *,
        base_dir: Path | None,
        env: Mapping[str, str] = os.environ,
    ) -> FakeSigner:
        return load_fake_signer(ref, base_dir, env=env)

    def delivery_settings(self, chain: ChainConfig) -> DeliverySettings:
        config = _fake(chain)
        return DeliverySettings(
            batch_size=config.batch_size,
            max_in_flight=config.max_in_flight,
            submit_timeout=config.submit_timeout,
            reorg_depth=config.confirmations + 1,
        )

    def submitter(self, chain: ChainConfig, *, signer: Signer, log: Any) -> FakeSubmitter:
        if not isinstance(signer, FakeSigner):
            raise ConfigError(
                f"chain {chain.name!r}: the fake plugin signs with an ed25519 key, "
                f"not {type(signer).__name__}"
            )
        return FakeSubmitter(
            chain_name=chain.name,
            domain=chain.domain,
            config=_fake(chain),
            signer=signer,
            log=log,
        )


PLUGIN = FakePlugin()
