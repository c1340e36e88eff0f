"""A tiny strict SCALE reader: only what headers, trie nodes and justifications need.

Strict means one byte string decodes to one value and one value has one encoding: compact
integers must use their shortest mode, nothing may be truncated, and a top-level decode must
consume every byte. Two encodings of the same header would hash differently, and a decoder that
quietly accepts the second one lets an attacker choose which hash we believe.
"""

from __future__ import annotations

from proofs.errors import MalformedEncodingError

__all__ = ["U32_MAX", "U64_MAX", "ScaleReader", "encode_compact"]

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1

# Compact's big-integer mode stores 4 + (first byte >> 2) bytes: at most 67.
_MAX_BIG_COMPACT_BYTES = 4 + 63


def encode_compact(value: int) -> bytes:
    """The canonical SCALE compact encoding of a non-negative integer."""
    if value < 0:
        raise ValueError(f"compact integers are unsigned, got {value}")
    if value < 1 << 6:
        return bytes([value << 2])
    if value < 1 << 14:
        return ((value << 2) | 0b01).to_bytes(2, "little")
    if value < 1 << 30:
        return ((value << 2) | 0b10).to_bytes(4, "little")
    size = max(4, (value.bit_length() + 7) // 8)
    if size > _MAX_BIG_COMPACT_BYTES:
        raise ValueError(f"{value} does not fit a SCALE compact integer")
    return bytes([((size - 4) << 2) | 0b11]) + value.to_bytes(size, "little")


class ScaleReader:
    """A cursor over SCALE bytes; a read past the end raises MalformedEncodingError."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def offset(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def span(self, start: int, end: int) -> bytes:
        """Bytes already read, e.g. a whole header to hash exactly as it was encoded."""
        if not 0 <= start <= end <= self._pos:
            raise ValueError(f"span {start}..{end} is not within the bytes read so far")
        return self._data[start:end]

    def fixed(self, size: int, what: str = "field") -> bytes:
        end = self._pos + size
        if end > len(self._data):
            raise MalformedEncodingError(
                f"{what}: needs {size} bytes at offset {self._pos}, only {self.remaining} left"
            )
        out = self._data[self._pos : end]
        self._pos = end
        return out

    def u8(self, what: str = "u8") -> int:
        return self.fixed(1, what)[0]

    def u16(self, what: str = "u16") -> int:
        return int.from_bytes(self.fixed(2, what), "little")

    def u32(self, what: str = "u32") -> int:
        return int.from_bytes(self.fixed(4, what), "little")

    def u64(self, what: str = "u64") -> int:
        return int.from_bytes(self.fixed(8, what), "little")

    def compact(self, what: str = "compact integer", max_value: int = U64_MAX) -> int:
        """A compact integer in its shortest mode, and no larger than the target type allows."""
        first = self.u8(what)
        mode = first & 0b11
        if mode == 0b00:
            value = first >> 2
        elif mode == 0b01:
            value = int.from_bytes(bytes([first]) + self.fixed(1, what), "little") >> 2
            if value < 1 << 6:
                raise MalformedEncodingError(f"{what}: {value} in two-byte compact mode")
        elif mode == 0b10:
            value = int.from_bytes(bytes([first]) + self.fixed(3, what), "little") >> 2
            if value < 1 << 14:
                raise MalformedEncodingError(f"{what}: {value} in four-byte compact mode")
        else:
            size = (first >> 2) + 4
            raw = self.fixed(size, what)
            value = int.from_bytes(raw, "little")
            # The top byte must be used, and the four-byte form only starts where the
            # four-byte mode (30 bits) ends.
            if raw[-1] == 0 or value < 1 << 30:
                raise MalformedEncodingError(f"{what}: {value} in big-integer compact mode")
        if value > max_value:
            raise MalformedEncodingError(f"{what}: {value} exceeds the maximum {max_value}")
        return value

    def vec_len(self, item_size: int, what: str = "vector") -> int:
        """A Vec length prefix, checked against the bytes left before anything is allocated."""
        count = self.compact(f"{what} length", U32_MAX)
        if count * max(item_size, 1) > self.remaining:
            raise MalformedEncodingError(
                f"{what}: claims {count} items of at least {item_size} bytes, "
                f"only {self.remaining} bytes left"
            )
        return count

    def byte_vec(self, what: str = "byte vector") -> bytes:
        """A Vec<u8>: compact length, then that many bytes."""
        return self.fixed(self.vec_len(1, what), what)

    def finish(self, what: str = "value") -> None:
        """End of a top-level decode: trailing bytes are data nobody checked."""
        if self._pos != len(self._data):
            raise MalformedEncodingError(
                f"{what}: {self.remaining} trailing bytes after offset {self._pos}"
            )
