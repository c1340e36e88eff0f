"""The ``substrate`` chain plugin: what the relayer core knows of Substrate chains."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from chains.substrate.config import SubstrateChainConfig
from chains.substrate.grandpa_mode import MODE as GRANDPA
from chains.substrate.grandpa_mode import GrandpaSource, load_checkpoint
from chains.substrate.grandpa_mode import status_of as grandpa_status
from chains.substrate.observation import verify_observation
from chains.substrate.reader import SubstrateReader
from proofs.committee import named_attestation_digest
from relayer.errors import ConfigError
from relayer.plugin import (
    DeliverySettings,
    LightClientState,
    Observation,
    Signer,
    VerifiedMessage,
)

if TYPE_CHECKING:
    from chains.substrate.keys import SubstrateKeyFormat
    from chains.substrate.submitter import SubstrateSubmitter
    from relayer.config import ChainConfig
    from relayer.keys import KeyRef

__all__ = ["PLUGIN", "SubstratePlugin"]


def _substrate(chain: ChainConfig) -> SubstrateChainConfig:
    config = chain.plugin
    assert isinstance(config, SubstrateChainConfig)
    return config


_NO_GRANDPA = (
    'chain {chain!r}: finality = "grandpa" needs a grandpa table (prover and checkpoint) among '
    "the chain's keys"
)


class SubstratePlugin:
    kind = "substrate"
    config_model = SubstrateChainConfig
    # finality = "grandpa": proofs.substrate's GRANDPA light client, fed by a prover
    light_client_modes: frozenset[str] = frozenset({GRANDPA})

    @property
    def key_format(self) -> SubstrateKeyFormat:
        """`relayer keys --type substrate`: polkadot-js keypair JSON, which load_signer reads."""
        from chains.substrate.keys import KEY_FORMAT  # noqa: PLC0415

        return KEY_FORMAT

    def verify(self, chain: ChainConfig, observation: Observation) -> VerifiedMessage:
        return verify_observation(observation, config=_substrate(chain), domain=chain.domain)

    def attestation_digest(
        self, destination: ChainConfig, origin_domain: int, message_id: bytes, block_hash: bytes
    ) -> bytes:
        return named_attestation_digest(
            destination.domain,
            _substrate(destination).system_chain,
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
    ) -> SubstrateReader:
        config = _substrate(chain)
        url = rpc_url or config.rpc
        if urlsplit(url).scheme not in ("ws", "wss"):
            raise ConfigError(
                f"chain {chain.name!r}: the substrate plugin reads over a websocket endpoint, "
                f"and {urlsplit(url).scheme}:// is not one"
            )
        grandpa = None
        if chain.light_client_mode == GRANDPA:
            settings = config.grandpa
            if settings is None:
                raise ConfigError(_NO_GRANDPA.format(chain=chain.name))
            checkpoint = settings.checkpoint
            grandpa = GrandpaSource(
                chain=chain.name,
                prover_url=str(settings.prover),
                checkpoint=None if checkpoint == "dev" else load_checkpoint(Path(checkpoint)),
                state=light_client,
                log=log,
            )
        return SubstrateReader(
            chain_name=chain.name,
            domain=chain.domain,
            config=config,
            url=url,
            log=log,
            warm=prepared,
            grandpa=grandpa,
        )

    def finality_problems(self, chain: ChainConfig) -> list[str]:
        if chain.light_client_mode == GRANDPA and _substrate(chain).grandpa is None:
            return [_NO_GRANDPA.format(chain=chain.name)]
        return []

    def light_client_status(self, chain: ChainConfig, state: bytes) -> Mapping[str, str]:
        return grandpa_status(state)

    def warnings(self, chain: ChainConfig) -> list[str]:
        config = _substrate(chain)
        found = []
        if config.extrinsics_commitment == "dev-concat":
            found.append(
                'extrinsics_commitment = "dev-concat" is chopsticks\' stand-in for a real '
                "extrinsics root; it binds a header to its body, but no real chain uses it: "
                "development only"
            )
        if config.dev:
            found.append(
                "dev = true: keys may be dev URIs such as //Alice, which anyone can sign for; "
                "development only"
            )
        dev_checkpoint = config.grandpa is not None and config.grandpa.checkpoint == "dev"
        if chain.light_client_mode == GRANDPA and dev_checkpoint:
            found.append(
                'grandpa.checkpoint = "dev" takes the first authority set from the dev voters '
                "themselves: development only"
            )
        return found

    def default_rpc(self, chain: ChainConfig) -> str:
        return _substrate(chain).rpc

    def submitter_key(self, chain: ChainConfig) -> KeyRef | None:
        return _substrate(chain).submitter_key

    def load_signer(
        self,
        chain: ChainConfig,
        ref: KeyRef,
        *,
        base_dir: Path | None,
        env: Mapping[str, str] = os.environ,
    ) -> Signer:
        from chains.substrate.keys import load_sr25519_signer  # noqa: PLC0415

        signer: Signer = load_sr25519_signer(ref, base_dir, env=env, dev=_substrate(chain).dev)
        return signer

    def delivery_settings(self, chain: ChainConfig) -> DeliverySettings:
        config = _substrate(chain)
        return DeliverySettings(
            batch_size=config.batch_size,
            max_in_flight=config.max_in_flight,
            submit_timeout=config.submit_timeout,
            # Deliveries are read from finalized blocks only: nothing to watch beyond one.
            reorg_depth=1,
        )

    def submitter(self, chain: ChainConfig, *, signer: Signer, log: Any) -> SubstrateSubmitter:
        from chains.substrate.keys import Sr25519Keypair  # noqa: PLC0415
        from chains.substrate.submitter import SubstrateSubmitter  # noqa: PLC0415

        if not isinstance(signer, Sr25519Keypair):
            raise ConfigError(
                f"chain {chain.name!r}: the substrate plugin signs with an sr25519 key, "
                f"not {type(signer).__name__}"
            )
        return SubstrateSubmitter(
            chain_name=chain.name, config=_substrate(chain), signer=signer, log=log
        )


PLUGIN = SubstratePlugin()
