"""Ethereum's consensus light client: the Altair sync-committee protocol from Altair to Electra
(and Fulu, which changes only the fork version), pure and synchronous like the rest of
``proofs``.

A store starts from a trusted block root and a ``LightClientBootstrap``, then accepts
``LightClientUpdate`` / finality / optimistic updates in beacon-API JSON form (``decode_ssz``
turns SSZ into it) and exposes the finalized and optimistic headers, execution headers included,
each proven by the sync committee's BLS signature and SSZ branches.
"""

from proofs.ethereum_lc.bls import BlsBackend, PyblstBackend, default_backend
from proofs.ethereum_lc.errors import (
    InvalidBootstrap,
    InvalidFinalityProof,
    InvalidNextSyncCommitteeProof,
    InvalidSignature,
    InvalidUpdate,
    LightClientDecodeError,
    LightClientError,
)
from proofs.ethereum_lc.signing import compute_domain, compute_fork_digest, compute_signing_root
from proofs.ethereum_lc.spec import DOMAIN_SYNC_COMMITTEE, LIGHT_CLIENT_FORKS, ChainSpec, Fork
from proofs.ethereum_lc.ssz_decode import KINDS, decode_ssz
from proofs.ethereum_lc.store import STORE_FORMAT, LightClientStore
from proofs.ethereum_lc.types import (
    BeaconBlockHeader,
    ExecutionPayloadHeader,
    LightClientHeader,
    SyncCommittee,
)

__all__ = [
    "DOMAIN_SYNC_COMMITTEE",
    "KINDS",
    "LIGHT_CLIENT_FORKS",
    "STORE_FORMAT",
    "BeaconBlockHeader",
    "BlsBackend",
    "ChainSpec",
    "ExecutionPayloadHeader",
    "Fork",
    "InvalidBootstrap",
    "InvalidFinalityProof",
    "InvalidNextSyncCommitteeProof",
    "InvalidSignature",
    "InvalidUpdate",
    "LightClientDecodeError",
    "LightClientError",
    "LightClientHeader",
    "LightClientStore",
    "PyblstBackend",
    "SyncCommittee",
    "compute_domain",
    "compute_fork_digest",
    "compute_signing_root",
    "decode_ssz",
    "default_backend",
]
