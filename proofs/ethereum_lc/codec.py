"""Beacon-API JSON (``{"version": fork, "data": {...}}``, hex strings, decimal-string integers)
to the typed light-client values, and back.

The ``version`` names the data's shape: which header form (Altair's beacon-only, Capella's
15-field or Deneb's 17-field execution header) and how long each branch is (Electra's state is
a level deeper). Every field is checked for presence, type and exact length; a field the shape
does not have is not read. Raises ``LightClientDecodeError`` with the field's path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from proofs.ethereum_lc.errors import LightClientDecodeError
from proofs.ethereum_lc.spec import LIGHT_CLIENT_FORKS, ChainSpec, branch_depths, header_shape
from proofs.ethereum_lc.types import (
    DEFAULT_EXECUTION,
    MAX_EXTRA_DATA_BYTES,
    BeaconBlockHeader,
    ExecutionPayloadHeader,
    LightClientBootstrap,
    LightClientHeader,
    LightClientUpdate,
    SyncCommittee,
    light_client_header,
    sync_committee,
)

__all__ = [
    "EXECUTION_BRANCH_DEPTH",
    "committee_to_json",
    "header_to_json",
    "parse_bootstrap",
    "parse_committee",
    "parse_header",
    "parse_update",
    "update_kind",
    "update_to_json",
]

EXECUTION_BRANCH_DEPTH = 4
_U64 = 2**64
_U256 = 2**256
# "any": the store's own serialized headers, which carry whatever execution part they had.
_SHAPES = ("altair", "capella", "deneb", "any")


def _field(obj: Mapping[str, Any], name: str, path: str) -> Any:
    if not isinstance(obj, Mapping):
        raise LightClientDecodeError(f"{path} must be a JSON object, got {type(obj).__name__}")
    if name not in obj:
        raise LightClientDecodeError(f"{path}.{name} is missing")
    return obj[name]


def _hex(obj: Mapping[str, Any], name: str, path: str, length: int | None = None) -> bytes:
    value = _field(obj, name, path)
    return _hex_value(value, f"{path}.{name}", length)


def _hex_value(value: Any, where: str, length: int | None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise LightClientDecodeError(f"{where} must be a 0x-prefixed hex string: {value!r}")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise LightClientDecodeError(f"{where} is not valid hex: {value[:80]!r}") from None
    if length is not None and len(raw) != length:
        raise LightClientDecodeError(f"{where} must be {length} bytes, got {len(raw)}")
    return raw


def _uint(obj: Mapping[str, Any], name: str, path: str, bound: int = _U64) -> int:
    value = _field(obj, name, path)
    where = f"{path}.{name}"
    # Beacon nodes serve integers as decimal strings; plain JSON integers are taken too.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise LightClientDecodeError(f"{where} must be a decimal integer string: {value!r}")
    if not 0 <= number < bound:
        raise LightClientDecodeError(f"{where} = {number} is out of range")
    return number


def _branch(obj: Mapping[str, Any], name: str, path: str, depth: int) -> tuple[bytes, ...]:
    value = _field(obj, name, path)
    where = f"{path}.{name}"
    if not isinstance(value, list) or len(value) != depth:
        raise LightClientDecodeError(
            f"{where} must be a list of {depth} hashes, "
            f"got {len(value) if isinstance(value, list) else type(value).__name__}"
        )
    return tuple(_hex_value(node, f"{where}[{i}]", 32) for i, node in enumerate(value))


def _envelope(obj: Mapping[str, Any], what: str) -> tuple[str, Mapping[str, Any]]:
    if not isinstance(obj, Mapping):
        raise LightClientDecodeError(f"{what} must be a JSON object with version and data")
    version = _field(obj, "version", what)
    if version not in LIGHT_CLIENT_FORKS:
        raise LightClientDecodeError(
            f"{what}.version {version!r} is not a light-client fork "
            f"({', '.join(LIGHT_CLIENT_FORKS)})"
        )
    data = _field(obj, "data", what)
    if not isinstance(data, Mapping):
        raise LightClientDecodeError(f"{what}.data must be a JSON object")
    return version, data


# ------------------------------------------------------------------------------------ parsing


def _parse_beacon(obj: Any, path: str) -> BeaconBlockHeader:
    return BeaconBlockHeader(
        slot=_uint(obj, "slot", path),
        proposer_index=_uint(obj, "proposer_index", path),
        parent_root=_hex(obj, "parent_root", path, 32),
        state_root=_hex(obj, "state_root", path, 32),
        body_root=_hex(obj, "body_root", path, 32),
    )


def _parse_execution(obj: Any, path: str, *, blobs: bool | None) -> ExecutionPayloadHeader:
    extra = _hex(obj, "extra_data", path)
    if len(extra) > MAX_EXTRA_DATA_BYTES:
        raise LightClientDecodeError(
            f"{path}.extra_data is {len(extra)} bytes; at most {MAX_EXTRA_DATA_BYTES}"
        )
    has_blobs = blobs if blobs is not None else "blob_gas_used" in obj
    return ExecutionPayloadHeader(
        parent_hash=_hex(obj, "parent_hash", path, 32),
        fee_recipient=_hex(obj, "fee_recipient", path, 20),
        state_root=_hex(obj, "state_root", path, 32),
        receipts_root=_hex(obj, "receipts_root", path, 32),
        logs_bloom=_hex(obj, "logs_bloom", path, 256),
        prev_randao=_hex(obj, "prev_randao", path, 32),
        block_number=_uint(obj, "block_number", path),
        gas_limit=_uint(obj, "gas_limit", path),
        gas_used=_uint(obj, "gas_used", path),
        timestamp=_uint(obj, "timestamp", path),
        extra_data=extra,
        base_fee_per_gas=_uint(obj, "base_fee_per_gas", path, _U256),
        block_hash=_hex(obj, "block_hash", path, 32),
        transactions_root=_hex(obj, "transactions_root", path, 32),
        withdrawals_root=_hex(obj, "withdrawals_root", path, 32),
        blob_gas_used=_uint(obj, "blob_gas_used", path) if has_blobs else 0,
        excess_blob_gas=_uint(obj, "excess_blob_gas", path) if has_blobs else 0,
    )


def parse_header(obj: Any, shape: str, spec: ChainSpec, path: str = "header") -> LightClientHeader:
    """A ``LightClientHeader`` of ``shape`` (``altair``, ``capella``, ``deneb`` or ``any``)."""
    if shape not in _SHAPES:
        raise ValueError(f"unknown header shape {shape!r}")
    beacon = _parse_beacon(_field(obj, "beacon", path), f"{path}.beacon")
    execution = None
    branch: tuple[bytes, ...] = ()
    if shape != "altair" and (shape != "any" or "execution" in obj):
        blobs = None if shape == "any" else shape == "deneb"
        execution = _parse_execution(
            _field(obj, "execution", path), f"{path}.execution", blobs=blobs
        )
        branch = _branch(obj, "execution_branch", path, EXECUTION_BRANCH_DEPTH)
    return light_client_header(beacon, execution, branch, spec)


def parse_committee(obj: Any, spec: ChainSpec, path: str) -> SyncCommittee:
    pubkeys = _field(obj, "pubkeys", path)
    size = spec.sync_committee_size
    if not isinstance(pubkeys, list) or len(pubkeys) != size:
        raise LightClientDecodeError(
            f"{path}.pubkeys must list {size} keys, "
            f"got {len(pubkeys) if isinstance(pubkeys, list) else type(pubkeys).__name__}"
        )
    keys = [_hex_value(pk, f"{path}.pubkeys[{i}]", 48) for i, pk in enumerate(pubkeys)]
    return sync_committee(keys, _hex(obj, "aggregate_pubkey", path, 48))


def _parse_bits(obj: Any, spec: ChainSpec, path: str) -> tuple[bool, ...]:
    raw = _hex(obj, "sync_committee_bits", path, spec.sync_committee_size // 8)
    value = int.from_bytes(raw, "little")
    return tuple(bool(value >> i & 1) for i in range(spec.sync_committee_size))


def parse_bootstrap(obj: Mapping[str, Any], spec: ChainSpec) -> LightClientBootstrap:
    """A beacon-API ``light_client/bootstrap`` answer."""
    version, data = _envelope(obj, "bootstrap")
    current_depth, _, _ = branch_depths(version)
    return LightClientBootstrap(
        version=version,
        header=parse_header(_field(data, "header", "data"), header_shape(version), spec),
        current_sync_committee=parse_committee(
            _field(data, "current_sync_committee", "data"), spec, "data.current_sync_committee"
        ),
        current_sync_committee_branch=_branch(
            data, "current_sync_committee_branch", "data", current_depth
        ),
    )


def update_kind(obj: Mapping[str, Any]) -> str:
    """Which of the three update containers ``obj`` holds, by the fields it has."""
    _, data = _envelope(obj, "update")
    if "next_sync_committee" in data:
        return "LightClientUpdate"
    if "finalized_header" in data:
        return "LightClientFinalityUpdate"
    return "LightClientOptimisticUpdate"


def parse_update(obj: Mapping[str, Any], spec: ChainSpec) -> LightClientUpdate:
    """A ``LightClientUpdate``, ``LightClientFinalityUpdate`` or ``LightClientOptimisticUpdate``
    (told apart by their fields), as the one ``LightClientUpdate`` the protocol processes."""
    version, data = _envelope(obj, "update")
    _, next_depth, finality_depth = branch_depths(version)
    shape = header_shape(version)
    attested = parse_header(_field(data, "attested_header", "data"), shape, spec, "attested_header")

    committee: SyncCommittee | None = None
    committee_branch = (bytes(32),) * next_depth
    if "next_sync_committee" in data:
        committee = parse_committee(data["next_sync_committee"], spec, "data.next_sync_committee")
        committee_branch = _branch(data, "next_sync_committee_branch", "data", next_depth)
        if committee.is_default():
            committee = None

    finalized: LightClientHeader | None = None
    finality_branch = (bytes(32),) * finality_depth
    if "finalized_header" in data:
        finalized = parse_header(data["finalized_header"], shape, spec, "finalized_header")
        finality_branch = _branch(data, "finality_branch", "data", finality_depth)
        if finalized.is_default():
            finalized = None
    elif committee is not None:
        raise LightClientDecodeError("data.finalized_header is missing")

    aggregate = _field(data, "sync_aggregate", "data")
    return LightClientUpdate(
        version=version,
        attested_header=attested,
        next_sync_committee=committee,
        next_sync_committee_branch=committee_branch,
        finalized_header=finalized,
        finality_branch=finality_branch,
        sync_committee_bits=_parse_bits(aggregate, spec, "data.sync_aggregate"),
        sync_committee_signature=_hex(
            aggregate, "sync_committee_signature", "data.sync_aggregate", 96
        ),
        signature_slot=_uint(data, "signature_slot", "data"),
    )


# ------------------------------------------------------------------------------ serializing


def _hx(value: bytes) -> str:
    return "0x" + value.hex()


def header_to_json(header: LightClientHeader | None, shape: str) -> dict[str, Any]:
    """``header`` (``None``: the default header) in ``shape``; ``any`` keeps what it has."""
    if header is None:
        beacon = BeaconBlockHeader(0, 0, bytes(32), bytes(32), bytes(32))
        execution = None if shape in ("altair", "any") else DEFAULT_EXECUTION
        branch: tuple[bytes, ...] = (bytes(32),) * EXECUTION_BRANCH_DEPTH
    else:
        beacon, execution, branch = header.beacon, header.execution, header.execution_branch
    out: dict[str, Any] = {
        "beacon": {
            "slot": str(beacon.slot),
            "proposer_index": str(beacon.proposer_index),
            "parent_root": _hx(beacon.parent_root),
            "state_root": _hx(beacon.state_root),
            "body_root": _hx(beacon.body_root),
        }
    }
    if shape == "altair" or (shape == "any" and execution is None):
        return out
    if execution is None:
        execution = DEFAULT_EXECUTION
        branch = (bytes(32),) * EXECUTION_BRANCH_DEPTH
    fields: dict[str, Any] = {
        "parent_hash": _hx(execution.parent_hash),
        "fee_recipient": _hx(execution.fee_recipient),
        "state_root": _hx(execution.state_root),
        "receipts_root": _hx(execution.receipts_root),
        "logs_bloom": _hx(execution.logs_bloom),
        "prev_randao": _hx(execution.prev_randao),
        "block_number": str(execution.block_number),
        "gas_limit": str(execution.gas_limit),
        "gas_used": str(execution.gas_used),
        "timestamp": str(execution.timestamp),
        "extra_data": _hx(execution.extra_data),
        "base_fee_per_gas": str(execution.base_fee_per_gas),
        "block_hash": _hx(execution.block_hash),
        "transactions_root": _hx(execution.transactions_root),
        "withdrawals_root": _hx(execution.withdrawals_root),
    }
    if shape in ("deneb", "any"):
        fields["blob_gas_used"] = str(execution.blob_gas_used)
        fields["excess_blob_gas"] = str(execution.excess_blob_gas)
    out["execution"] = fields
    out["execution_branch"] = [_hx(node) for node in branch]
    return out


def committee_to_json(committee: SyncCommittee) -> dict[str, Any]:
    return {
        "pubkeys": [_hx(pk) for pk in committee.pubkeys],
        "aggregate_pubkey": _hx(committee.aggregate_pubkey),
    }


def _bits_hex(bits: Sequence[bool]) -> str:
    value = sum(1 << i for i, bit in enumerate(bits) if bit)
    return _hx(value.to_bytes(len(bits) // 8, "little"))


def update_to_json(update: LightClientUpdate, spec: ChainSpec) -> dict[str, Any]:
    """``update`` as a full beacon-API ``LightClientUpdate`` of its version, defaults written
    out (a zero committee, a zero header) so that ``parse_update`` reads back the same value."""
    shape = header_shape(update.version)
    committee = update.next_sync_committee
    zero_key = "0x" + "00" * 48
    return {
        "version": update.version,
        "data": {
            "attested_header": header_to_json(update.attested_header, shape),
            "next_sync_committee": (
                committee_to_json(committee)
                if committee is not None
                else {
                    "pubkeys": [zero_key] * spec.sync_committee_size,
                    "aggregate_pubkey": zero_key,
                }
            ),
            "next_sync_committee_branch": [_hx(n) for n in update.next_sync_committee_branch],
            "finalized_header": header_to_json(update.finalized_header, shape),
            "finality_branch": [_hx(n) for n in update.finality_branch],
            "sync_aggregate": {
                "sync_committee_bits": _bits_hex(update.sync_committee_bits),
                "sync_committee_signature": _hx(update.sync_committee_signature),
            },
            "signature_slot": str(update.signature_slot),
        },
    }
