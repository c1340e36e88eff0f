"""The fake plugin's keys of a ``[[chains]]`` table (everything but name, type, domain,
finality and committee, which ``relayer.config.ChainConfig`` decodes for every family). Every
default of the family lives here and nowhere else."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from relayer.config import HttpEndpoint
from relayer.keys import KeyRef

__all__ = ["FakeChainConfig"]


class FakeChainConfig(BaseModel):
    """A fake chain: its node, how deep to wait, and how to pay for delivery."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: the node's HTTP endpoint (``tests.conformance.fake.node``)
    rpc: HttpEndpoint
    #: what the node must answer as its network name; a destination's attestation digest
    #: binds it, so operators who name the chain differently still sign the same digest
    network: str = Field(min_length=1)
    #: blocks below the head before one is read (0: the head itself)
    confirmations: int = Field(default=1, ge=0)
    #: first block the watcher scans when the ledger holds no cursor for this chain yet
    start_block: int = Field(default=0, ge=0)
    poll_interval: float = Field(default=1.0, gt=0)
    #: most blocks read in one request
    max_span: int = Field(default=128, gt=0, le=1024)
    #: seconds any one request to the node may take
    request_timeout: float = Field(default=10.0, gt=0)
    #: seconds a delivery may stay unincluded before it is replaced with a higher fee
    submit_timeout: float = Field(default=10.0, gt=0)
    #: messages per delivery transaction
    batch_size: int = Field(default=50, gt=0, le=1000)
    #: delivery transactions in flight at once (consecutive nonces)
    max_in_flight: int = Field(default=4, gt=0, le=64)
    #: the fee a delivery offers first, and the most a replacement may offer
    fee: int = Field(default=1, ge=0)
    max_fee: int = Field(default=1000, ge=0)
    #: the key that signs deliveries to this chain; without it the chain is never a destination
    submitter_key: KeyRef | None = None
