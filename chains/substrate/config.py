"""The substrate plugin's keys of a ``[[chains]]`` table (everything but name, type, domain,
finality and committee, which ``relayer.config.ChainConfig`` decodes for every chain family)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)

from chains.endpoints import as_config, endpoints_parser, urls_of
from relayer.config import WsEndpoint
from relayer.keys import KeyRef

__all__ = ["ExtraFieldName", "ExtrinsicsCommitment", "GrandpaSettings", "SubstrateChainConfig"]

#: how a header commits to its body: the real ordered-trie root in layout V0 (relay chains)
#: or V1, or chopsticks' dev-only stand-in (blake2-256 of the concatenated extrinsics)
ExtrinsicsCommitment = Literal["ordered-trie-v0", "ordered-trie-v1", "dev-concat"]
#: one field of a signed extrinsic's extra data, in the runtime's order (``era``: 1 or 2
#: bytes, ``compact``: a SCALE compact such as the nonce or the tip, ``byte``: a u8 such as
#: CheckMetadataHash's mode)
ExtraFieldName = Literal["era", "compact", "byte"]


#: one websocket JSON-RPC endpoint or a list of them (a ``chains.endpoints.Endpoints``:
#: its ``str`` is the first URL, ``urls_of`` gives all)
WsEndpoints = Annotated[
    str,
    PlainValidator(
        endpoints_parser(WsEndpoint), json_schema_input_type=WsEndpoint | list[WsEndpoint]
    ),
    PlainSerializer(as_config),
]


class GrandpaSettings(BaseModel):
    """Where ``finality = "grandpa"`` gets its justifications, and what it trusts first."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        use_attribute_docstrings=True,
    )

    prover: WsEndpoint
    """Websocket endpoint answering grandpa_proveFinality (a node, or the devnet's voters).
    Not trusted: every justification is verified against the light client's authority set."""
    checkpoint: str
    """A checkpoint JSON file (header, authorities, set id, pending change; a path relative to
    the config file), or "dev": the dev voters' own (dev = true only; warned at every start)."""

    @field_validator("checkpoint")
    @classmethod
    def _beside_the_config(cls, value: str, info: ValidationInfo) -> str:
        # Like every other path of the config: the daemon's working directory is the service
        # manager's choice, not the operator's.
        base = info.context.get("base_dir") if isinstance(info.context, dict) else None
        if value == "dev" or base is None or Path(value).is_absolute():
            return value
        return str(Path(base) / value)


class SubstrateChainConfig(BaseModel):
    """A Substrate chain: its endpoint and name, how its headers commit to their bodies, the
    runtime facts the evidence verifier trusts, and how to pay for delivery."""

    # Strict, as every config table (load_config reads a ${VAR}'s value as a number itself).
    # The attribute docstrings are the keys' descriptions in `relayer config default | schema`.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        strict=True,
        use_attribute_docstrings=True,
    )

    rpc: WsEndpoints
    """Websocket JSON-RPC endpoint, or a list of them: reads go to the first healthy one and
    fail over to the next; with quorum > 1, best and finalized heights and block hashes must be
    agreed on by that many of them. Deliveries are sent through the first."""
    quorum: int = Field(default=1, ge=1)
    """How many of the rpc endpoints must agree on a block's hash at a height and on the best
    (or finalized) height before it counts (the quorum-th highest height is taken: what that
    many endpoints have reached); an endpoint that disagrees is marked unhealthy. At most the
    number of endpoints."""
    max_lag: int = Field(default=16, ge=0)
    """Blocks an endpoint's head may trail the head that quorum endpoints have reached before
    it is marked unhealthy (with quorum > 1)."""
    system_chain: str = Field(min_length=1)
    """What the node must answer to system_chain; a Substrate destination's attestation digest
    binds it (chopsticks chains all share one genesis hash)."""
    dev: bool = False
    """A development chain: dev URIs (//Alice) as keys and the dev-concat commitment allowed."""
    extrinsics_commitment: ExtrinsicsCommitment = "ordered-trie-v0"
    """How headers commit to their bodies: "ordered-trie-v0" (relay chains), "ordered-trie-v1",
    or "dev-concat" (chopsticks' stand-in, with dev = true only)."""
    # The runtime facts below are what the verifier decodes extrinsics with, never an endpoint's
    # word; the watcher checks them against the node's metadata at start.
    remark_with_event_call: tuple[int, int] = (0, 7)
    """(pallet index, call index) of System.remark_with_event in the runtime."""
    batch_all_call: tuple[int, int] | None = (24, 2)
    """(pallet index, call index) of Utility.batch_all in the runtime."""
    signed_extra: tuple[ExtraFieldName, ...] = ("era", "compact", "compact")
    """The runtime's signed extra, field by field in order: "era" (1 or 2 bytes), "compact" (a
    SCALE compact such as the nonce or the tip), "byte" (a u8 such as CheckMetadataHash's
    mode)."""
    start_block: int = Field(default=0, ge=0)
    """First block to scan when the ledger has no cursor for this chain yet."""
    poll_interval: float = Field(default=1.0, gt=0)
    """Seconds between finalized-head polls (the fallback when the subscription is quiet or
    down)."""
    submit_timeout: float = Field(default=60.0, gt=0)
    """Seconds a delivery extrinsic may stay out of a finalized block before it is sent again."""
    batch_size: int = Field(default=100, gt=0, le=1000)
    """Messages per delivery extrinsic (a Utility.batch_all of remarks)."""
    max_in_flight: int = Field(default=4, gt=0, le=64)
    """Delivery extrinsics in flight at once, with consecutive nonces."""
    tip: int = Field(default=0, ge=0)
    """The tip offered with each delivery, in the chain's smallest unit."""
    max_tip: int = Field(default=10**10, ge=0)
    """The highest tip a replacement may offer (each raises it 25%); never exceeded."""
    submitter_key: KeyRef | None = None
    """The key that signs deliveries to this chain: an encrypted keypair JSON ({ keystore = ...,
    password_env = ... }) or, on a dev chain only, { env = ... } holding a dev URI such as
    //Alice. Without it this chain is never a destination."""
    grandpa: GrandpaSettings | None = None
    """[chains.grandpa]: required with finality = "grandpa"."""

    @model_validator(mode="after")
    def _dev_checkpoint(self) -> SubstrateChainConfig:
        if self.grandpa is not None and self.grandpa.checkpoint == "dev" and not self.dev:
            raise ValueError(
                'grandpa.checkpoint = "dev" trusts the dev voters\' own word for the first '
                "authority set: allowed only with dev = true"
            )
        return self

    @model_validator(mode="after")
    def _quorum_within_endpoints(self) -> SubstrateChainConfig:
        if self.quorum > len(urls_of(self.rpc)):
            raise ValueError(
                f"quorum = {self.quorum} needs at least {self.quorum} rpc endpoints, and "
                f"{len(urls_of(self.rpc))} are listed: add endpoints or lower quorum"
            )
        return self

    @model_validator(mode="after")
    def _tip_below_cap(self) -> SubstrateChainConfig:
        if self.tip > self.max_tip:
            raise ValueError(f"tip {self.tip} is above max_tip ({self.max_tip})")
        return self

    @model_validator(mode="after")
    def _dev_only(self) -> SubstrateChainConfig:
        if self.extrinsics_commitment == "dev-concat" and not self.dev:
            raise ValueError(
                'extrinsics_commitment = "dev-concat" is chopsticks\' stand-in, not a real '
                "chain's commitment: allowed only with dev = true"
            )
        return self
