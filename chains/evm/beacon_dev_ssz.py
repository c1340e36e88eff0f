"""The SSZ containers the dev beacon server builds, on ``remerkleable`` (minimal preset, Electra),
and their beacon-API JSON form.

Written for the dev server alone: it must not share SSZ, Merkle or BLS code with
``proofs.ethereum_lc``, so that a bug in one cannot hide the same bug in the other (issue 10).

``DevBeaconState`` and ``DevBeaconBlockBody`` have the Electra field counts, so every field sits at
its Electra generalized index (state: 37 fields in 64 leaves, finalized checkpoint root 169,
current sync committee 86, next sync committee 87; body: 13 fields in 16 leaves, execution
payload 25), but only the fields a light client can see through a branch carry content; the rest
are zero ``Bytes32`` leaves standing in for validators, balances, attestations and the like. The
execution payload in the body is its header: an ``ExecutionPayload`` and its header have the same
hash tree root by construction, and the header is all a light client is shown.
"""

# No `from __future__ import annotations`: remerkleable reads the field types from the class
# annotations at class creation, and postponed (string) annotations would break it.

from typing import Any

from remerkleable.basic import uint64, uint256
from remerkleable.bitfields import Bitvector
from remerkleable.byte_arrays import ByteList, Bytes4, Bytes32, Bytes48, Bytes96, ByteVector
from remerkleable.complex import Container, List, Vector

__all__ = [
    "BYTES_PER_LOGS_BLOOM",
    "CURRENT_SYNC_COMMITTEE_GINDEX",
    "EXECUTION_PAYLOAD_GINDEX",
    "FINALIZED_ROOT_GINDEX",
    "NEXT_SYNC_COMMITTEE_GINDEX",
    "SYNC_COMMITTEE_SIZE",
    "BeaconBlockHeader",
    "Bytes20",
    "Checkpoint",
    "DevBeaconBlockBody",
    "DevBeaconState",
    "ExecutionPayloadHeader",
    "Fork",
    "LightClientBootstrap",
    "LightClientFinalityUpdate",
    "LightClientHeader",
    "LightClientOptimisticUpdate",
    "LightClientUpdate",
    "SyncAggregate",
    "SyncCommittee",
    "Transactions",
    "Withdrawal",
    "Withdrawals",
    "branch",
    "to_json",
]

SYNC_COMMITTEE_SIZE = 32  # minimal preset
BYTES_PER_LOGS_BLOOM = 256
_MAX_EXTRA_DATA_BYTES = 32
_MAX_BYTES_PER_TRANSACTION = 2**30
_MAX_TRANSACTIONS_PER_PAYLOAD = 2**20
_MAX_WITHDRAWALS_PER_PAYLOAD = 4  # minimal preset (mainnet: 16)

EXECUTION_PAYLOAD_GINDEX = 25  # from the block body
FINALIZED_ROOT_GINDEX = 169  # Electra, from the state
CURRENT_SYNC_COMMITTEE_GINDEX = 86  # Electra
NEXT_SYNC_COMMITTEE_GINDEX = 87  # Electra


def _depth(gindex: int) -> int:
    return gindex.bit_length() - 1


class Bytes20(ByteVector[20]):  # type: ignore[misc]
    pass


class BeaconBlockHeader(Container):  # type: ignore[misc]
    slot: uint64
    proposer_index: uint64
    parent_root: Bytes32
    state_root: Bytes32
    body_root: Bytes32


class ExecutionPayloadHeader(Container):  # type: ignore[misc]
    """Deneb's, unchanged in Electra."""

    parent_hash: Bytes32
    fee_recipient: Bytes20
    state_root: Bytes32
    receipts_root: Bytes32
    logs_bloom: ByteVector[BYTES_PER_LOGS_BLOOM]
    prev_randao: Bytes32
    block_number: uint64
    gas_limit: uint64
    gas_used: uint64
    timestamp: uint64
    extra_data: ByteList[_MAX_EXTRA_DATA_BYTES]
    base_fee_per_gas: uint256
    block_hash: Bytes32
    transactions_root: Bytes32
    withdrawals_root: Bytes32
    blob_gas_used: uint64
    excess_blob_gas: uint64


class Withdrawal(Container):  # type: ignore[misc]
    index: uint64
    validator_index: uint64
    address: Bytes20
    amount: uint64


class Transactions(List[ByteList[_MAX_BYTES_PER_TRANSACTION], _MAX_TRANSACTIONS_PER_PAYLOAD]):  # type: ignore[misc]
    pass


class Withdrawals(List[Withdrawal, _MAX_WITHDRAWALS_PER_PAYLOAD]):  # type: ignore[misc]
    pass


class SyncCommittee(Container):  # type: ignore[misc]
    pubkeys: Vector[Bytes48, SYNC_COMMITTEE_SIZE]
    aggregate_pubkey: Bytes48


class SyncAggregate(Container):  # type: ignore[misc]
    sync_committee_bits: Bitvector[SYNC_COMMITTEE_SIZE]
    sync_committee_signature: Bytes96


class Checkpoint(Container):  # type: ignore[misc]
    epoch: uint64
    root: Bytes32


class Fork(Container):  # type: ignore[misc]
    previous_version: Bytes4
    current_version: Bytes4
    epoch: uint64


class DevBeaconBlockBody(Container):  # type: ignore[misc]
    """Electra's 13 body fields; only ``execution_payload`` (index 9, gindex 25) has content."""

    randao_reveal: Bytes32
    eth1_data: Bytes32
    graffiti: Bytes32
    proposer_slashings: Bytes32
    attester_slashings: Bytes32
    attestations: Bytes32
    deposits: Bytes32
    voluntary_exits: Bytes32
    sync_aggregate: Bytes32
    execution_payload: ExecutionPayloadHeader
    bls_to_execution_changes: Bytes32
    blob_kzg_commitments: Bytes32
    execution_requests: Bytes32


class DevBeaconState(Container):  # type: ignore[misc]
    """Electra's 37 state fields; the ones a light client reaches, and the state's identity
    (genesis time, genesis validators root, slot, fork), carry content; the rest are zero."""

    genesis_time: uint64
    genesis_validators_root: Bytes32
    slot: uint64
    fork: Fork
    latest_block_header: Bytes32
    block_roots: Bytes32
    state_roots: Bytes32
    historical_roots: Bytes32
    eth1_data: Bytes32
    eth1_data_votes: Bytes32
    eth1_deposit_index: Bytes32
    validators: Bytes32
    balances: Bytes32
    randao_mixes: Bytes32
    slashings: Bytes32
    previous_epoch_participation: Bytes32
    current_epoch_participation: Bytes32
    justification_bits: Bytes32
    previous_justified_checkpoint: Bytes32
    current_justified_checkpoint: Bytes32
    finalized_checkpoint: Checkpoint  # index 20: root at gindex 169
    inactivity_scores: Bytes32
    current_sync_committee: SyncCommittee  # index 22: gindex 86
    next_sync_committee: SyncCommittee  # index 23: gindex 87
    latest_execution_payload_header: Bytes32
    next_withdrawal_index: Bytes32
    next_withdrawal_validator_index: Bytes32
    historical_summaries: Bytes32
    deposit_requests_start_index: Bytes32
    deposit_balance_to_consume: Bytes32
    exit_balance_to_consume: Bytes32
    earliest_exit_epoch: Bytes32
    consolidation_balance_to_consume: Bytes32
    earliest_consolidation_epoch: Bytes32
    pending_deposits: Bytes32
    pending_partial_withdrawals: Bytes32
    pending_consolidations: Bytes32


class LightClientHeader(Container):  # type: ignore[misc]
    beacon: BeaconBlockHeader
    execution: ExecutionPayloadHeader
    execution_branch: Vector[Bytes32, _depth(EXECUTION_PAYLOAD_GINDEX)]


class LightClientBootstrap(Container):  # type: ignore[misc]
    header: LightClientHeader
    current_sync_committee: SyncCommittee
    current_sync_committee_branch: Vector[Bytes32, _depth(CURRENT_SYNC_COMMITTEE_GINDEX)]


class LightClientUpdate(Container):  # type: ignore[misc]
    attested_header: LightClientHeader
    next_sync_committee: SyncCommittee
    next_sync_committee_branch: Vector[Bytes32, _depth(NEXT_SYNC_COMMITTEE_GINDEX)]
    finalized_header: LightClientHeader
    finality_branch: Vector[Bytes32, _depth(FINALIZED_ROOT_GINDEX)]
    sync_aggregate: SyncAggregate
    signature_slot: uint64


class LightClientFinalityUpdate(Container):  # type: ignore[misc]
    attested_header: LightClientHeader
    finalized_header: LightClientHeader
    finality_branch: Vector[Bytes32, _depth(FINALIZED_ROOT_GINDEX)]
    sync_aggregate: SyncAggregate
    signature_slot: uint64


class LightClientOptimisticUpdate(Container):  # type: ignore[misc]
    attested_header: LightClientHeader
    sync_aggregate: SyncAggregate
    signature_slot: uint64


def branch(value: Any, gindex: int) -> list[bytes]:
    """The Merkle branch of the node at ``gindex`` under ``value``'s root, leaf side first (the
    order of the consensus specs' ``is_valid_merkle_branch``), read off the value's own tree."""
    backing = value.get_backing()
    out: list[bytes] = []
    while gindex > 1:
        out.append(bytes(backing.getter(gindex ^ 1).merkle_root()))
        gindex >>= 1
    return out


def to_json(value: Any) -> Any:
    """The beacon-API JSON form: integers as decimal strings, bytes and bitfields as 0x-hex of
    their SSZ bytes, containers as objects with the spec's field names, vectors as arrays."""
    if isinstance(value, Container):
        return {name: to_json(getattr(value, name)) for name in type(value).fields()}
    if isinstance(value, Bitvector):
        return "0x" + bytes(value.encode_bytes()).hex()
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, (Vector, List)):
        return [to_json(item) for item in value]
    raise TypeError(f"no beacon-API JSON form for {type(value).__name__}")
