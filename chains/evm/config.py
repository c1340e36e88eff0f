"""The EVM plugin's keys of a ``[[chains]]`` table (everything but name, type, domain, finality
and committee, which ``relayer.config.ChainConfig`` decodes for every chain family)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationInfo, field_validator

from relayer.config import EthAddress, HttpEndpoint, WsEndpoint
from relayer.keys import KeyRef

__all__ = ["Confirmations", "EvmChainConfig"]

_GWEI = Decimal(10**9)


def _confirmations(value: object) -> int | Literal["finalized"]:
    if value == "finalized":
        return "finalized"
    if isinstance(value, str) and value.isdigit():  # a number that arrived through ${VAR}
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError('must be a number of blocks (0 or more) or "finalized"')


#: blocks to wait below the head, or ``"finalized"`` for the node's finalized block tag
Confirmations = Annotated[int | Literal["finalized"], PlainValidator(_confirmations)]


class EvmChainConfig(BaseModel):
    """An EVM chain: its endpoints, its Gateway, how deep to wait, and how to pay for delivery."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    chain_id: int = Field(gt=0, lt=2**64)
    rpc: HttpEndpoint
    #: websocket for new-head subscriptions; the watcher polls ``rpc`` without it
    ws: WsEndpoint | None = None
    gateway: EthAddress
    confirmations: Confirmations = 2
    #: first block the watcher scans when the ledger holds no cursor for this chain yet
    start_block: int = Field(default=0, ge=0)
    poll_interval: float = Field(default=1.0, gt=0)
    #: EIP-1559 fee cap in gwei; never exceeded, also when bumping a stuck transaction
    max_fee_gwei: float = Field(default=200.0, gt=0)
    priority_fee_gwei: float = Field(default=1.0, ge=0)
    #: seconds before a pending transaction is replaced with fees raised by 12.5%
    submit_timeout: float = Field(default=30.0, gt=0)
    #: gas cap per recipient call in a batched delivery
    recipient_gas_limit: int = Field(default=1_000_000, gt=0)
    #: messages per deliverBatch transaction
    batch_size: int = Field(default=100, gt=0, le=500)
    #: delivery transactions in flight at once (consecutive nonces)
    max_in_flight: int = Field(default=6, gt=0, le=64)
    #: the key that signs deliveries to this chain; without it the chain is never a destination
    submitter_key: KeyRef | None = None

    @field_validator("priority_fee_gwei")
    @classmethod
    def _below_cap(cls, value: float, info: ValidationInfo) -> float:
        cap = info.data.get("max_fee_gwei")
        if cap is not None and value > cap:
            raise ValueError(f"priority fee {value} gwei is above max_fee_gwei ({cap} gwei)")
        return value

    @property
    def max_fee_wei(self) -> int:
        return int(Decimal(str(self.max_fee_gwei)) * _GWEI)

    @property
    def priority_fee_wei(self) -> int:
        return int(Decimal(str(self.priority_fee_gwei)) * _GWEI)
