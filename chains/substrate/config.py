"""The substrate plugin's keys of a ``[[chains]]`` table (everything but name, type, domain,
finality and committee, which ``relayer.config.ChainConfig`` decodes for every chain family)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from relayer.config import WsEndpoint
from relayer.keys import KeyRef

__all__ = ["ExtraFieldName", "ExtrinsicsCommitment", "SubstrateChainConfig"]

#: how a header commits to its body: the real ordered-trie root in layout V0 (relay chains)
#: or V1, or chopsticks' dev-only stand-in (blake2-256 of the concatenated extrinsics)
ExtrinsicsCommitment = Literal["ordered-trie-v0", "ordered-trie-v1", "dev-concat"]
#: one field of a signed extrinsic's extra data, in the runtime's order (``era``: 1 or 2
#: bytes, ``compact``: a SCALE compact such as the nonce or the tip, ``byte``: a u8 such as
#: CheckMetadataHash's mode)
ExtraFieldName = Literal["era", "compact", "byte"]


class SubstrateChainConfig(BaseModel):
    """A Substrate chain: its endpoint and name, how its headers commit to their bodies, the
    runtime facts the evidence verifier trusts, and how to pay for delivery."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: websocket JSON-RPC endpoint
    rpc: WsEndpoint
    #: what the node must answer to ``system_chain``; a Substrate destination's attestation
    #: digest binds it (chopsticks chains all share one genesis hash)
    system_chain: str = Field(min_length=1)
    #: a development chain: dev URIs (``//Alice``) and the ``dev-concat`` commitment allowed
    dev: bool = False
    extrinsics_commitment: ExtrinsicsCommitment = "ordered-trie-v0"
    #: (pallet index, call index) of System.remark_with_event and Utility.batch_all in the
    #: runtime, and its signed extra's layout. The verifier decodes extrinsics with these and
    #: no endpoint's word; the watcher checks them against the node's metadata at start.
    remark_with_event_call: tuple[int, int] = (0, 7)
    batch_all_call: tuple[int, int] | None = (24, 2)
    signed_extra: tuple[ExtraFieldName, ...] = ("era", "compact", "compact")
    #: first block the watcher scans when the ledger holds no cursor for this chain yet
    start_block: int = Field(default=0, ge=0)
    poll_interval: float = Field(default=1.0, gt=0)
    #: seconds a delivery extrinsic may stay out of a finalized block before it is sent again
    submit_timeout: float = Field(default=60.0, gt=0)
    #: messages per delivery extrinsic (a Utility.batch_all of remarks)
    batch_size: int = Field(default=100, gt=0, le=1000)
    #: delivery extrinsics in flight at once (consecutive nonces)
    max_in_flight: int = Field(default=4, gt=0, le=64)
    #: the tip offered with each delivery, in the chain's smallest unit
    tip: int = Field(default=0, ge=0)
    #: the highest tip a replacement may offer (each raises it 25%); never exceeded
    max_tip: int = Field(default=10**10, ge=0)
    #: the key that signs deliveries to this chain: an encrypted keypair JSON
    #: ({ keystore = ..., password_env = ... }) or, on a dev chain only, { env = ... } holding
    #: a dev URI such as //Alice
    submitter_key: KeyRef | None = None

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
