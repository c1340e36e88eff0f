"""The light-client containers written with remerkleable, the consensus specs' own SSZ library:
an SSZ encoder and a merkleizer that share no code with ``proofs.ethereum_lc``, to cross-check
its roots, feed its decoder, and build Electra states and branches independently."""

# No "from __future__ import annotations": remerkleable reads the field annotations as types.

from functools import cache
from typing import Any

from remerkleable.basic import uint64, uint256
from remerkleable.bitfields import Bitvector
from remerkleable.byte_arrays import ByteList, Bytes4, Bytes32, Bytes48, Bytes96, ByteVector
from remerkleable.complex import Container, Vector
from remerkleable.core import View

ELECTRA_FORKS = ("electra", "fulu")


class BeaconBlockHeader(Container):
    slot: uint64
    proposer_index: uint64
    parent_root: Bytes32
    state_root: Bytes32
    body_root: Bytes32


class ExecutionPayloadHeaderCapella(Container):
    parent_hash: Bytes32
    fee_recipient: ByteVector[20]
    state_root: Bytes32
    receipts_root: Bytes32
    logs_bloom: ByteVector[256]
    prev_randao: Bytes32
    block_number: uint64
    gas_limit: uint64
    gas_used: uint64
    timestamp: uint64
    extra_data: ByteList[32]
    base_fee_per_gas: uint256
    block_hash: Bytes32
    transactions_root: Bytes32
    withdrawals_root: Bytes32


class ExecutionPayloadHeaderDeneb(Container):
    parent_hash: Bytes32
    fee_recipient: ByteVector[20]
    state_root: Bytes32
    receipts_root: Bytes32
    logs_bloom: ByteVector[256]
    prev_randao: Bytes32
    block_number: uint64
    gas_limit: uint64
    gas_used: uint64
    timestamp: uint64
    extra_data: ByteList[32]
    base_fee_per_gas: uint256
    block_hash: Bytes32
    transactions_root: Bytes32
    withdrawals_root: Bytes32
    blob_gas_used: uint64
    excess_blob_gas: uint64


class Checkpoint(Container):
    epoch: uint64
    root: Bytes32


class ForkData(Container):
    current_version: Bytes4
    genesis_validators_root: Bytes32


class SigningData(Container):
    object_root: Bytes32
    domain: Bytes32


def _container(name: str, fields: dict[str, Any]) -> Any:
    return type(name, (Container,), {"__annotations__": fields})


@cache
def sync_committee_type(size: int) -> Any:
    return _container(
        "SyncCommittee", {"pubkeys": Vector[Bytes48, size], "aggregate_pubkey": Bytes48}
    )


@cache
def light_client_types(fork: str, size: int) -> dict[str, Any]:
    """The four containers of ``fork`` for committees of ``size``, keyed by kind."""
    if fork in ("altair", "bellatrix"):
        header = _container("LightClientHeader", {"beacon": BeaconBlockHeader})
    else:
        execution = (
            ExecutionPayloadHeaderCapella if fork == "capella" else ExecutionPayloadHeaderDeneb
        )
        header = _container(
            "LightClientHeader",
            {
                "beacon": BeaconBlockHeader,
                "execution": execution,
                "execution_branch": Vector[Bytes32, 4],
            },
        )
    deep = fork in ELECTRA_FORKS
    current_depth, next_depth, finality_depth = (6, 6, 7) if deep else (5, 5, 6)
    committee = sync_committee_type(size)
    aggregate = _container(
        "SyncAggregate",
        {"sync_committee_bits": Bitvector[size], "sync_committee_signature": Bytes96},
    )
    return {
        "LightClientBootstrap": _container(
            "LightClientBootstrap",
            {
                "header": header,
                "current_sync_committee": committee,
                "current_sync_committee_branch": Vector[Bytes32, current_depth],
            },
        ),
        "LightClientUpdate": _container(
            "LightClientUpdate",
            {
                "attested_header": header,
                "next_sync_committee": committee,
                "next_sync_committee_branch": Vector[Bytes32, next_depth],
                "finalized_header": header,
                "finality_branch": Vector[Bytes32, finality_depth],
                "sync_aggregate": aggregate,
                "signature_slot": uint64,
            },
        ),
        "LightClientFinalityUpdate": _container(
            "LightClientFinalityUpdate",
            {
                "attested_header": header,
                "finalized_header": header,
                "finality_branch": Vector[Bytes32, finality_depth],
                "sync_aggregate": aggregate,
                "signature_slot": uint64,
            },
        ),
        "LightClientOptimisticUpdate": _container(
            "LightClientOptimisticUpdate",
            {"attested_header": header, "sync_aggregate": aggregate, "signature_slot": uint64},
        ),
        "LightClientHeader": header,
    }


@cache
def beacon_state_standin(fork: str, size: int) -> Any:
    """A container shaped like ``BeaconState`` where the light client looks into it: as many
    fields (28 through Deneb, 37 from Electra, so the tree is 32 or 64 leaves wide), the
    finalized checkpoint at field 20 and the two committees at 22 and 23. The other fields are
    opaque roots; only the tree's shape decides the generalized indices."""
    count = 37 if fork in ELECTRA_FORKS else 28
    committee = sync_committee_type(size)
    fields: dict[str, Any] = {}
    for index in range(count):
        if index == 20:
            fields["finalized_checkpoint"] = Checkpoint
        elif index == 22:
            fields["current_sync_committee"] = committee
        elif index == 23:
            fields["next_sync_committee"] = committee
        else:
            fields[f"field_{index}"] = Bytes32
    return _container("BeaconStateStandin", fields)


@cache
def block_body_standin(fork: str) -> Any:
    """``BeaconBlockBody``'s shape: 13 fields from Electra (12 in Deneb), the execution
    payload at field 9 (generalized index 25). Its root equals the payload header's."""
    count = 13 if fork in ELECTRA_FORKS else 12
    execution = ExecutionPayloadHeaderCapella if fork == "capella" else ExecutionPayloadHeaderDeneb
    fields: dict[str, Any] = {}
    for index in range(count):
        fields["execution_payload" if index == 9 else f"field_{index}"] = (
            execution if index == 9 else Bytes32
        )
    return _container("BeaconBlockBodyStandin", fields)


def branch(view: View, gindex: int) -> list[bytes]:
    """The Merkle branch of the node at ``gindex`` in ``view``'s tree, leaf level first."""
    backing = view.get_backing()
    nodes = []
    while gindex > 1:
        nodes.append(bytes(backing.getter(gindex ^ 1).merkle_root()))
        gindex >>= 1
    return nodes


# ------------------------------------------------------------------------- JSON <-> views


def from_json(kind: Any, value: Any) -> Any:
    """A remerkleable value of type ``kind`` from its beacon-API JSON form."""
    if issubclass(kind, Container):
        return kind(**{name: from_json(t, value[name]) for name, t in kind.fields().items()})
    if issubclass(kind, Bitvector):
        raw = bytes.fromhex(value[2:])
        return kind.decode_bytes(raw)
    if issubclass(kind, ByteVector | ByteList):
        return kind(bytes.fromhex(value[2:]))
    if issubclass(kind, Vector):
        return kind(*[from_json(kind.element_cls(), item) for item in value])
    return kind(int(value))


def to_json(view: Any) -> Any:
    """The beacon-API JSON form of a remerkleable value."""
    if isinstance(view, Container):
        return {name: to_json(getattr(view, name)) for name in view.__class__.fields()}
    if isinstance(view, Bitvector):
        return "0x" + view.encode_bytes().hex()
    if isinstance(view, ByteVector | ByteList):
        return "0x" + bytes(view).hex()
    if isinstance(view, Vector):
        return [to_json(item) for item in view]
    return str(int(view))
