"""SSZ ``LightClientBootstrap`` / ``LightClientUpdate`` / ``LightClientFinalityUpdate`` /
``LightClientOptimisticUpdate`` bytes to the beacon-API JSON form, so that spec-test files and
beacon nodes' ``application/octet-stream`` answers go through the same parser as their JSON.

Decoding is strict: fixed parts must be exactly as long as the type says, the first offset must
point just past the fixed part, offsets must not decrease or run past the end, and nothing may
trail. Raises ``LightClientDecodeError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from proofs.ethereum_lc.codec import EXECUTION_BRANCH_DEPTH
from proofs.ethereum_lc.errors import LightClientDecodeError
from proofs.ethereum_lc.spec import LIGHT_CLIENT_FORKS, ChainSpec, branch_depths, header_shape
from proofs.ethereum_lc.types import MAX_EXTRA_DATA_BYTES

__all__ = ["KINDS", "decode_ssz"]

KINDS = (
    "LightClientBootstrap",
    "LightClientUpdate",
    "LightClientFinalityUpdate",
    "LightClientOptimisticUpdate",
)
_OFFSET = 4


class _Type:
    """An SSZ type: ``size`` is its fixed length, or ``None`` when it is variable-size."""

    __slots__ = ("size",)

    def __init__(self, size: int | None) -> None:
        self.size = size

    def decode(self, data: bytes, where: str) -> Any:
        raise NotImplementedError


class _Uint(_Type):
    __slots__ = ()

    def decode(self, data: bytes, where: str) -> Any:
        del where
        return str(int.from_bytes(data, "little"))


class _Bytes(_Type):
    __slots__ = ()

    def decode(self, data: bytes, where: str) -> Any:
        del where
        return "0x" + data.hex()


class _ByteList(_Type):
    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__(None)
        self.limit = limit

    def decode(self, data: bytes, where: str) -> Any:
        if len(data) > self.limit:
            raise LightClientDecodeError(
                f"{where} is {len(data)} bytes; the type allows {self.limit}"
            )
        return "0x" + data.hex()


class _Vector(_Type):
    """A vector of a fixed-size element (all this protocol has)."""

    __slots__ = ("element", "length", "step")

    def __init__(self, element: _Type, length: int) -> None:
        if element.size is None:
            raise TypeError("vectors of variable-size elements are not needed here")
        super().__init__(element.size * length)
        self.element = element
        self.length = length
        self.step = element.size

    def decode(self, data: bytes, where: str) -> Any:
        step = self.step
        return [
            self.element.decode(data[i * step : (i + 1) * step], f"{where}[{i}]")
            for i in range(self.length)
        ]


class _Container(_Type):
    __slots__ = ("fields", "fixed_length")

    def __init__(self, fields: tuple[tuple[str, _Type], ...]) -> None:
        sizes = [kind.size for _, kind in fields]
        super().__init__(None if None in sizes else sum(s or 0 for s in sizes))
        self.fields = fields
        self.fixed_length = sum(_OFFSET if s is None else s for s in sizes)

    def decode(self, data: bytes, where: str) -> Any:
        fixed_length = self.fixed_length
        if len(data) < fixed_length:
            raise LightClientDecodeError(
                f"{where} is {len(data)} bytes, shorter than its {fixed_length}-byte fixed part"
            )
        out: dict[str, Any] = {}
        variable: list[tuple[str, _Type, int]] = []
        position = 0
        for name, kind in self.fields:
            if kind.size is None:
                offset = int.from_bytes(data[position : position + _OFFSET], "little")
                variable.append((name, kind, offset))
                position += _OFFSET
            else:
                out[name] = kind.decode(data[position : position + kind.size], f"{where}.{name}")
                position += kind.size
        if not variable:
            if len(data) != fixed_length:
                raise LightClientDecodeError(
                    f"{where} is {len(data)} bytes; the type is exactly {fixed_length}"
                )
            return out
        if variable[0][2] != fixed_length:
            raise LightClientDecodeError(
                f"{where}: first offset {variable[0][2]} must equal the fixed part's length "
                f"{fixed_length}"
            )
        ends = [offset for _, _, offset in variable[1:]] + [len(data)]
        for (name, kind, start), end in zip(variable, ends, strict=True):
            if not start <= end <= len(data):
                raise LightClientDecodeError(
                    f"{where}.{name}: offsets {start}..{end} are out of order or past the "
                    f"{len(data)}-byte end"
                )
            out[name] = kind.decode(data[start:end], f"{where}.{name}")
        return out


_U64 = _Uint(8)
_ROOT = _Bytes(32)

_BEACON = _Container(
    (
        ("slot", _U64),
        ("proposer_index", _U64),
        ("parent_root", _ROOT),
        ("state_root", _ROOT),
        ("body_root", _ROOT),
    )
)
_CAPELLA_EXECUTION_FIELDS: tuple[tuple[str, _Type], ...] = (
    ("parent_hash", _ROOT),
    ("fee_recipient", _Bytes(20)),
    ("state_root", _ROOT),
    ("receipts_root", _ROOT),
    ("logs_bloom", _Bytes(256)),
    ("prev_randao", _ROOT),
    ("block_number", _U64),
    ("gas_limit", _U64),
    ("gas_used", _U64),
    ("timestamp", _U64),
    ("extra_data", _ByteList(MAX_EXTRA_DATA_BYTES)),
    ("base_fee_per_gas", _Uint(32)),
    ("block_hash", _ROOT),
    ("transactions_root", _ROOT),
    ("withdrawals_root", _ROOT),
)
_DENEB_EXECUTION_FIELDS = (
    *_CAPELLA_EXECUTION_FIELDS,
    ("blob_gas_used", _U64),
    ("excess_blob_gas", _U64),
)


def _header(shape: str) -> _Container:
    if shape == "altair":
        return _Container((("beacon", _BEACON),))
    fields = _DENEB_EXECUTION_FIELDS if shape == "deneb" else _CAPELLA_EXECUTION_FIELDS
    return _Container(
        (
            ("beacon", _BEACON),
            ("execution", _Container(fields)),
            ("execution_branch", _Vector(_ROOT, EXECUTION_BRANCH_DEPTH)),
        )
    )


@lru_cache(maxsize=64)
def _schema(kind: str, fork: str, committee_size: int) -> _Container:
    header = _header(header_shape(fork))
    current_depth, next_depth, finality_depth = branch_depths(fork)
    committee = _Container(
        (("pubkeys", _Vector(_Bytes(48), committee_size)), ("aggregate_pubkey", _Bytes(48)))
    )
    aggregate = _Container(
        (
            ("sync_committee_bits", _Bytes(committee_size // 8)),
            ("sync_committee_signature", _Bytes(96)),
        )
    )
    if kind == "LightClientBootstrap":
        return _Container(
            (
                ("header", header),
                ("current_sync_committee", committee),
                ("current_sync_committee_branch", _Vector(_ROOT, current_depth)),
            )
        )
    attested = (("attested_header", header),)
    finality = (("finalized_header", header), ("finality_branch", _Vector(_ROOT, finality_depth)))
    tail = (("sync_aggregate", aggregate), ("signature_slot", _U64))
    if kind == "LightClientUpdate":
        return _Container(
            (
                *attested,
                ("next_sync_committee", committee),
                ("next_sync_committee_branch", _Vector(_ROOT, next_depth)),
                *finality,
                *tail,
            )
        )
    if kind == "LightClientFinalityUpdate":
        return _Container((*attested, *finality, *tail))
    return _Container((*attested, *tail))


def decode_ssz(kind: str, fork: str, data: bytes, spec: ChainSpec) -> Mapping[str, Any]:
    """Uncompressed SSZ of ``kind`` (one of ``KINDS``) in ``fork``'s shape, as beacon-API JSON
    ``{"version": fork, "data": {...}}``. Raises LightClientDecodeError (and ValueError for a
    ``kind`` or ``fork`` the caller got wrong)."""
    if kind not in KINDS:
        raise ValueError(f"unknown light-client container {kind!r}; known: {', '.join(KINDS)}")
    if fork not in LIGHT_CLIENT_FORKS:
        raise ValueError(
            f"no light-client data for fork {fork!r}; known: {', '.join(LIGHT_CLIENT_FORKS)}"
        )
    schema = _schema(kind, fork, spec.sync_committee_size)
    return {"version": fork, "data": schema.decode(bytes(data), kind)}
