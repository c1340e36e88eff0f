"""Recursive Length Prefix, the encoding of Ethereum's headers, receipts and trie nodes.

Ours rather than pyrlp's general, sedes-driven codec because every proof checked walks it: a
block of a thousand messages means tens of thousands of trie nodes and receipts decoded, and
pyrlp spent most of that time in type dispatch. This codec knows two shapes only (byte strings
and lists of items) and decodes strictly: exactly one item, no trailing bytes, canonical
lengths (no leading zero bytes, no long form under 56, no one-byte string below 0x80 wrapped in
a prefix), a bounded nesting depth. Differentially tested against pyrlp (tests/unit/proofs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from proofs.errors import MalformedEncodingError

__all__ = ["Item", "decode", "encode"]

Item = Union[bytes, list["Item"]]  # noqa: UP007  (a recursive alias needs the string form)
Encodable = Union[bytes, bytearray, int, Sequence["Encodable"]]  # noqa: UP007

# Nothing Ethereum commits to nests deeper than a handful of levels; a deep forgery must not
# exhaust the interpreter's stack.
_MAX_DEPTH = 64


def encode(item: Encodable) -> bytes:
    """RLP of bytes, non-negative ints (big-endian, minimal) and (nested) lists of those."""
    if isinstance(item, (bytes, bytearray)):
        if len(item) == 1 and item[0] < 0x80:
            return bytes(item)
        return _prefix(len(item), 0x80) + bytes(item)
    if isinstance(item, int):
        if item < 0:
            raise ValueError("RLP has no negative integers")
        return encode(item.to_bytes((item.bit_length() + 7) // 8, "big"))
    payload = b"".join([encode(x) for x in item])
    return _prefix(len(payload), 0xC0) + payload


def _prefix(length: int, offset: int) -> bytes:
    if length < 56:
        return bytes([offset + length])
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(size)]) + size


def decode(data: bytes) -> Item:
    """Exactly one canonical RLP item. Raises ``MalformedEncodingError``."""
    if not data:
        raise MalformedEncodingError("empty input is not an RLP item")
    item, end = _item(data, 0, len(data), 0)
    if end != len(data):
        raise MalformedEncodingError(f"{len(data) - end} trailing bytes after the RLP item")
    return item


def _length(data: bytes, pos: int, size: int, limit: int) -> int:
    """The long-form length of ``size`` bytes at ``pos``."""
    if pos + size > limit:
        raise MalformedEncodingError("RLP length runs past the end of its input")
    if data[pos] == 0:
        raise MalformedEncodingError("RLP length with a leading zero byte")
    length = int.from_bytes(data[pos : pos + size], "big")
    if length < 56:
        raise MalformedEncodingError("RLP long form used for a length under 56")
    return length


def _item(data: bytes, pos: int, limit: int, depth: int) -> tuple[Item, int]:
    """The item starting at ``pos`` (which must end by ``limit``) and the position after it."""
    if pos >= limit:
        raise MalformedEncodingError("RLP item runs past the end of its input")
    lead = data[pos]
    if lead < 0x80:
        return data[pos : pos + 1], pos + 1
    if lead < 0xB8:
        start, end = pos + 1, pos + 1 + lead - 0x80
        if end > limit:
            raise MalformedEncodingError("RLP string runs past the end of its input")
        if end - start == 1 and data[start] < 0x80:
            raise MalformedEncodingError("single byte below 0x80 must not carry a prefix")
        return data[start:end], end
    if lead < 0xC0:
        size = lead - 0xB7
        start = pos + 1 + size
        end = start + _length(data, pos + 1, size, limit)
        if end > limit:
            raise MalformedEncodingError("RLP string runs past the end of its input")
        return data[start:end], end
    if lead < 0xF8:
        start, end = pos + 1, pos + 1 + lead - 0xC0
    else:
        size = lead - 0xF7
        start = pos + 1 + size
        end = start + _length(data, pos + 1, size, limit)
    if end > limit:
        raise MalformedEncodingError("RLP list runs past the end of its input")
    if depth >= _MAX_DEPTH:
        raise MalformedEncodingError(f"RLP nested deeper than {_MAX_DEPTH} lists")
    items: list[Item] = []
    while start < end:
        item, start = _item(data, start, end, depth + 1)
        items.append(item)
    return items, end
