"""The light-client containers as frozen values, with the hash-tree-roots the protocol compares.

Hashes, keys and signatures are ``bytes``; integers are ``int``. A ``LightClientHeader`` carries
its two roots (``beacon_root``, ``execution_root``) computed once when it is built, because the
execution root depends on the fork at the header's slot, which only the ``ChainSpec`` knows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from proofs.ethereum_lc.spec import ChainSpec
from proofs.ethereum_lc.ssz import (
    hash_pair,
    merkleize,
    mix_in_length,
    pack_bytes,
    uint64_root,
)

__all__ = [
    "DEFAULT_EXECUTION",
    "MAX_EXTRA_DATA_BYTES",
    "BeaconBlockHeader",
    "ExecutionPayloadHeader",
    "LightClientBootstrap",
    "LightClientHeader",
    "LightClientUpdate",
    "SyncCommittee",
    "default_committee_root",
    "light_client_header",
    "sync_committee",
]

_ZERO32 = bytes(32)
_PUBKEY_PAD = bytes(16)
MAX_EXTRA_DATA_BYTES = 32


@dataclass(frozen=True, slots=True)
class BeaconBlockHeader:
    slot: int
    proposer_index: int
    parent_root: bytes
    state_root: bytes
    body_root: bytes

    def hash_tree_root(self) -> bytes:
        return merkleize(
            [
                uint64_root(self.slot),
                uint64_root(self.proposer_index),
                self.parent_root,
                self.state_root,
                self.body_root,
            ]
        )

    def is_default(self) -> bool:
        return self == _DEFAULT_BEACON


_DEFAULT_BEACON = BeaconBlockHeader(
    slot=0, proposer_index=0, parent_root=_ZERO32, state_root=_ZERO32, body_root=_ZERO32
)


@dataclass(frozen=True, slots=True)
class ExecutionPayloadHeader:
    """Deneb's ``ExecutionPayloadHeader`` (Electra's is the same); Capella's is this without
    the two blob fields, which are then zero."""

    parent_hash: bytes
    fee_recipient: bytes
    state_root: bytes
    receipts_root: bytes
    logs_bloom: bytes
    prev_randao: bytes
    block_number: int
    gas_limit: int
    gas_used: int
    timestamp: int
    extra_data: bytes
    base_fee_per_gas: int
    block_hash: bytes
    transactions_root: bytes
    withdrawals_root: bytes
    blob_gas_used: int = 0
    excess_blob_gas: int = 0

    def hash_tree_root(self, *, deneb: bool) -> bytes:
        """Root in Deneb's 17-field layout, or Capella's 15 (``deneb=False``)."""
        leaves = [
            self.parent_hash,
            self.fee_recipient + bytes(12),
            self.state_root,
            self.receipts_root,
            merkleize(pack_bytes(self.logs_bloom)),
            self.prev_randao,
            uint64_root(self.block_number),
            uint64_root(self.gas_limit),
            uint64_root(self.gas_used),
            uint64_root(self.timestamp),
            mix_in_length(
                merkleize(pack_bytes(self.extra_data), limit=MAX_EXTRA_DATA_BYTES // 32),
                len(self.extra_data),
            ),
            self.base_fee_per_gas.to_bytes(32, "little"),
            self.block_hash,
            self.transactions_root,
            self.withdrawals_root,
        ]
        if deneb:
            leaves += [uint64_root(self.blob_gas_used), uint64_root(self.excess_blob_gas)]
        return merkleize(leaves)

    def is_default(self) -> bool:
        return self == DEFAULT_EXECUTION


DEFAULT_EXECUTION = ExecutionPayloadHeader(
    parent_hash=_ZERO32,
    fee_recipient=bytes(20),
    state_root=_ZERO32,
    receipts_root=_ZERO32,
    logs_bloom=bytes(256),
    prev_randao=_ZERO32,
    block_number=0,
    gas_limit=0,
    gas_used=0,
    timestamp=0,
    extra_data=b"",
    base_fee_per_gas=0,
    block_hash=_ZERO32,
    transactions_root=_ZERO32,
    withdrawals_root=_ZERO32,
)


@dataclass(frozen=True, slots=True)
class LightClientHeader:
    """A beacon block header and, from Capella on, its execution payload header with the
    branch that proves it under ``beacon.body_root``.

    ``execution`` is ``None`` before Capella (whatever the data's form). ``beacon_root``
    is the block root; ``execution_root`` is the execution header's root in the layout of the
    fork at ``beacon.slot`` (zero before Capella), as the spec's ``get_lc_execution_root``.
    """

    beacon: BeaconBlockHeader
    execution: ExecutionPayloadHeader | None
    execution_branch: tuple[bytes, ...]
    beacon_root: bytes
    execution_root: bytes

    @property
    def slot(self) -> int:
        return self.beacon.slot

    def is_default(self) -> bool:
        return (
            self.beacon.is_default()
            and (self.execution is None or self.execution.is_default())
            and all(node == _ZERO32 for node in self.execution_branch)
        )


def light_client_header(
    beacon: BeaconBlockHeader,
    execution: ExecutionPayloadHeader | None,
    execution_branch: Sequence[bytes],
    spec: ChainSpec,
) -> LightClientHeader:
    branch = tuple(execution_branch)
    if spec.has_execution_at(beacon.slot):
        execution_root = (
            _ZERO32
            if execution is None
            else execution.hash_tree_root(deneb=spec.has_blob_fields_at(beacon.slot))
        )
    else:
        execution_root = _ZERO32
        # Capella-form data carries a zero execution part for pre-Capella blocks; there is no
        # execution header to expose, so say so rather than show a zero block hash. A nonzero
        # one is kept for validation to refuse.
        if (execution is None or execution.is_default()) and not any(
            node != _ZERO32 for node in branch
        ):
            execution, branch = None, ()
    return LightClientHeader(
        beacon=beacon,
        execution=execution,
        execution_branch=branch,
        beacon_root=beacon.hash_tree_root(),
        execution_root=execution_root,
    )


@dataclass(frozen=True, slots=True)
class SyncCommittee:
    """A period's sync committee; ``root`` is its hash-tree-root, which is what branches and
    comparisons use."""

    pubkeys: tuple[bytes, ...] = field(repr=False)
    aggregate_pubkey: bytes
    root: bytes

    def is_default(self) -> bool:
        return self.aggregate_pubkey == bytes(48) and all(pk == bytes(48) for pk in self.pubkeys)


def _pubkey_root(pubkey: bytes) -> bytes:
    return hash_pair(pubkey[:32], pubkey[32:] + _PUBKEY_PAD)


def sync_committee(pubkeys: Sequence[bytes], aggregate_pubkey: bytes) -> SyncCommittee:
    keys = tuple(pubkeys)
    root = hash_pair(
        merkleize([_pubkey_root(pk) for pk in keys]),
        _pubkey_root(aggregate_pubkey),
    )
    return SyncCommittee(pubkeys=keys, aggregate_pubkey=aggregate_pubkey, root=root)


def default_committee_root(size: int) -> bytes:
    """Root of ``SyncCommittee()`` (all keys zero) for a committee of ``size``."""
    zero_key = _pubkey_root(bytes(48))
    return hash_pair(merkleize([zero_key] * size), zero_key)


@dataclass(frozen=True, slots=True)
class LightClientBootstrap:
    version: str
    header: LightClientHeader
    current_sync_committee: SyncCommittee
    current_sync_committee_branch: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class LightClientUpdate:
    """A ``LightClientUpdate``; finality and optimistic updates become one with the parts they
    lack at their default (``None`` for the committee and the finalized header, zero branches),
    exactly as the spec's ``process_light_client_{finality,optimistic}_update`` build them."""

    version: str
    attested_header: LightClientHeader
    next_sync_committee: SyncCommittee | None
    next_sync_committee_branch: tuple[bytes, ...]
    finalized_header: LightClientHeader | None
    finality_branch: tuple[bytes, ...]
    sync_committee_bits: tuple[bool, ...]
    sync_committee_signature: bytes
    signature_slot: int

    @property
    def participants(self) -> int:
        return sum(self.sync_committee_bits)

    @property
    def finalized_slot(self) -> int:
        return 0 if self.finalized_header is None else self.finalized_header.beacon.slot

    def is_sync_committee_update(self) -> bool:
        return any(node != _ZERO32 for node in self.next_sync_committee_branch)

    def is_finality_update(self) -> bool:
        return any(node != _ZERO32 for node in self.finality_branch)
