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

    # Strict, as every config table (load_config reads a ${VAR}'s value as a number itself).
    # The attribute docstrings are the keys' descriptions in `relayer config default | schema`.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        strict=True,
        use_attribute_docstrings=True,
    )

    rpc: HttpEndpoint
    """The node's HTTP endpoint (``tests.conformance.fake.node``)."""
    network: str = Field(min_length=1)
    """What the node must answer as its network name; a destination's attestation digest binds
    it, so operators who name the chain differently still sign the same digest."""
    confirmations: int = Field(default=1, ge=0)
    """Blocks below the head before one is read (0: the head itself)."""
    start_block: int = Field(default=0, ge=0)
    """First block the watcher scans when the ledger holds no cursor for this chain yet."""
    poll_interval: float = Field(default=1.0, gt=0)
    """Seconds between head polls."""
    max_span: int = Field(default=128, gt=0, le=1024)
    """Most blocks read in one request."""
    request_timeout: float = Field(default=10.0, gt=0)
    """Seconds any one request to the node may take."""
    submit_timeout: float = Field(default=10.0, gt=0)
    """Seconds a delivery may stay unincluded before it is replaced with a higher fee."""
    batch_size: int = Field(default=50, gt=0, le=1000)
    """Messages per delivery transaction."""
    max_in_flight: int = Field(default=4, gt=0, le=64)
    """Delivery transactions in flight at once (consecutive nonces)."""
    fee: int = Field(default=1, ge=0)
    """The fee a delivery offers first."""
    max_fee: int = Field(default=1000, ge=0)
    """The most a replacement may offer."""
    submitter_key: KeyRef | None = None
    """The key that signs deliveries to this chain; without it the chain is never a
    destination."""
