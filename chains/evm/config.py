"""The EVM plugin's keys of a ``[[chains]]`` table (everything but name, type, domain, finality
and committee, which ``relayer.config.ChainConfig`` decodes for every chain family)."""

from __future__ import annotations

from decimal import Decimal
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
from relayer.config import EthAddress, HttpEndpoint, WsEndpoint
from relayer.keys import KeyRef

__all__ = ["Confirmations", "EvmChainConfig", "SyncCommitteeSettings"]

_GWEI = Decimal(10**9)


def _confirmations(value: object) -> int | Literal["finalized"]:
    # A quoted "2" is refused like any quoted number; one from ${VAR} arrives here as 2 already.
    if value == "finalized":
        return "finalized"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError('must be a number of blocks (0 or more) or "finalized"')


#: one http(s) JSON-RPC endpoint or a list of them (a ``chains.endpoints.Endpoints``:
#: its ``str`` is the first URL, ``urls_of`` gives all)
HttpEndpoints = Annotated[
    str,
    PlainValidator(
        endpoints_parser(HttpEndpoint), json_schema_input_type=HttpEndpoint | list[HttpEndpoint]
    ),
    PlainSerializer(as_config),
]

#: blocks to wait below the head, or ``"finalized"`` for the node's finalized block tag
Confirmations = Annotated[
    int | Literal["finalized"],
    PlainValidator(_confirmations, json_schema_input_type=int | Literal["finalized"]),
]


class SyncCommitteeSettings(BaseModel):
    """Where ``finality = "sync-committee"`` learns what the beacon chain finalized."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        use_attribute_docstrings=True,
    )

    beacon_api: HttpEndpoint
    """A beacon node's REST API (the light-client endpoints). Not trusted: every answer is
    checked by the light client against the trusted root."""
    trusted_block_root: str
    """The beacon block root the light client starts from ("0x" and 64 hex digits: a recent
    finalized block you trust), or "dev": the dev beacon server's finalized root, network and
    genesis, taken from the server itself (development only; warned at every start)."""
    network: Literal["mainnet"] = "mainnet"
    """The beacon network (fork versions, genesis); ignored with trusted_block_root = "dev"."""

    @field_validator("trusted_block_root")
    @classmethod
    def _root(cls, value: str) -> str:
        if value == "dev":
            return value
        digits = value.removeprefix("0x")
        if not value.startswith("0x") or len(digits) != 64:
            raise ValueError('must be "0x" and 64 hex digits, or "dev"')
        try:
            bytes.fromhex(digits)
        except ValueError:
            raise ValueError('must be "0x" and 64 hex digits, or "dev"') from None
        return value.lower()


class EvmChainConfig(BaseModel):
    """An EVM chain: its endpoints, its Gateway, how deep to wait, and how to pay for delivery."""

    # Strict, as every config table (load_config reads a ${VAR}'s value as a number itself).
    # The attribute docstrings are the keys' descriptions in `relayer config default | schema`.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        strict=True,
        use_attribute_docstrings=True,
    )

    chain_id: int = Field(gt=0, lt=2**64)
    """The chain's EIP-155 chain id; the node must answer it, and attestations bind it."""
    rpc: HttpEndpoints
    """http(s) JSON-RPC endpoint, or a list of them: reads go to the first healthy one and fail
    over to the next; with quorum > 1, head and finalized heights and block hashes must be
    agreed on by that many of them."""
    quorum: int = Field(default=1, ge=1)
    """How many of the rpc endpoints must agree on a block's hash at a height and on the head
    (or finalized) height before it counts (the quorum-th highest height is taken: what that
    many endpoints have reached); an endpoint that disagrees is marked unhealthy. At most the
    number of endpoints."""
    max_lag: int = Field(default=16, ge=0)
    """Blocks an endpoint's head may trail the head that quorum endpoints have reached before
    it is marked unhealthy (with quorum > 1)."""
    ws: WsEndpoint | None = None
    """Websocket endpoint for new-head subscriptions (a wake-up hint: everything is still read
    over `rpc`, and polling every poll_interval continues if the subscription drops)."""
    gateway: EthAddress
    """The Gateway contract: 20-byte address, checksummed or lowercase hex."""
    confirmations: Confirmations = 2
    """Blocks to wait below the head, or "finalized" for the node's finalized block tag."""
    start_block: int = Field(default=0, ge=0)
    """First block to scan when the ledger has no cursor for this chain yet."""
    poll_interval: float = Field(default=1.0, gt=0)
    """Seconds between head polls (the fallback when a ws subscription is quiet or down)."""
    max_fee_gwei: float = Field(default=200.0, gt=0)
    """EIP-1559 fee cap in gwei; never exceeded, also when bumping a stuck transaction."""
    priority_fee_gwei: float = Field(default=1.0, ge=0)
    """EIP-1559 priority fee in gwei; at most max_fee_gwei."""
    submit_timeout: float = Field(default=30.0, gt=0)
    """Seconds before a pending transaction is replaced with fees raised by 12.5%."""
    recipient_gas_limit: int = Field(default=1_000_000, gt=0)
    """Gas cap for each recipient call in a batched delivery."""
    batch_size: int = Field(default=100, gt=0, le=500)
    """Messages per deliverBatch transaction."""
    max_in_flight: int = Field(default=6, gt=0, le=64)
    """Delivery transactions in flight at once, with consecutive nonces."""
    submitter_key: KeyRef | None = None
    """The key that signs deliveries to this chain; without it this chain is never a
    destination."""
    sync_committee: SyncCommitteeSettings | None = None
    """[chains.sync_committee]: required with finality = "sync-committee"."""

    @field_validator("priority_fee_gwei")
    @classmethod
    def _below_cap(cls, value: float, info: ValidationInfo) -> float:
        cap = info.data.get("max_fee_gwei")
        if cap is not None and value > cap:
            raise ValueError(f"priority fee {value} gwei is above max_fee_gwei ({cap} gwei)")
        return value

    @model_validator(mode="after")
    def _quorum_within_endpoints(self) -> EvmChainConfig:
        if self.quorum > len(urls_of(self.rpc)):
            raise ValueError(
                f"quorum = {self.quorum} needs at least {self.quorum} rpc endpoints, and "
                f"{len(urls_of(self.rpc))} are listed: add endpoints or lower quorum"
            )
        return self

    @property
    def max_fee_wei(self) -> int:
        return int(Decimal(str(self.max_fee_gwei)) * _GWEI)

    @property
    def priority_fee_wei(self) -> int:
        return int(Decimal(str(self.priority_fee_gwei)) * _GWEI)
