"""An independent Substrate trie for tests: a plain one-nibble-per-level tree, compressed only
when encoded, that also hands out the exact read proof for any key.

It shares no code with ``proofs.substrate.trie`` on purpose: roots agreeing between the two
builders, and with the real-chain vectors, is what makes the builder and the walker credible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proofs.hashing import blake2_256
from proofs.substrate.scale import encode_compact

_V1_THRESHOLD = 33


def to_nibbles(key: bytes) -> tuple[int, ...]:
    return tuple(n for b in key for n in (b >> 4, b & 0x0F))


@dataclass
class _Level:
    value: bytes | None = None
    children: dict[int, _Level] = field(default_factory=dict)


@dataclass(frozen=True)
class _Recorded:
    start: tuple[int, ...]  # the key nibbles before this node's partial key
    full: tuple[int, ...]  # start + partial: the key of this node's value
    encoded: bytes
    hashed: bool  # referenced by hash (the root, or 32 bytes and more)
    value_node: bytes | None  # the V1 value stored apart, if any


def _size_header(kind: int, kind_bits: int, count: int) -> bytes:
    # Written from the sp-trie spec a second time: first byte saturates, then 255-steps.
    cap = (1 << (8 - kind_bits)) - 1
    if count < cap:
        return bytes([kind | count])
    out = [kind | cap]
    left = count - cap
    while left >= 255:
        out.append(255)
        left -= 255
    out.append(left)
    return bytes(out)


def _pack(partial: tuple[int, ...]) -> bytes:
    nibbles = list(partial)
    if len(nibbles) % 2:
        nibbles.insert(0, 0)
    return bytes(nibbles[i] * 16 + nibbles[i + 1] for i in range(0, len(nibbles), 2))


class ReferenceTrie:
    def __init__(self, items: dict[bytes, bytes], state_version: int) -> None:
        self._v1 = state_version == 1
        top = _Level()
        for key, value in items.items():
            level = top
            for nibble in to_nibbles(key):
                level = level.children.setdefault(nibble, _Level())
            level.value = value
        self._recorded: list[_Recorded] = []
        if not items:
            self._recorded.append(_Recorded((), (), b"\x00", True, None))
            self.root = blake2_256(b"\x00")
        else:
            self.root = blake2_256(self._encode(top, (), is_root=True))

    def _encode(self, level: _Level, start: tuple[int, ...], *, is_root: bool = False) -> bytes:
        partial: list[int] = []
        while level.value is None and len(level.children) == 1:
            ((nibble, level),) = level.children.items()
            partial.append(nibble)
        full = start + tuple(partial)
        value = level.value
        hashed_value = self._v1 and value is not None and len(value) >= _V1_THRESHOLD
        if not level.children:
            kind, bits = (0x20, 3) if hashed_value else (0x40, 2)
        elif value is None:
            kind, bits = 0x80, 2
        else:
            kind, bits = (0x10, 4) if hashed_value else (0xC0, 2)
        out = bytearray(_size_header(kind, bits, len(partial)) + _pack(tuple(partial)))
        refs = b""
        if level.children:
            bitmap = 0
            for nibble in sorted(level.children):
                bitmap |= 1 << nibble
                child = self._encode(level.children[nibble], (*full, nibble))
                ref = child if len(child) < 32 else blake2_256(child)
                refs += encode_compact(len(ref)) + ref
            out += bitmap.to_bytes(2, "little")
        if value is not None:
            out += blake2_256(value) if hashed_value else encode_compact(len(value)) + value
        encoded = bytes(out + refs)
        self._recorded.append(
            _Recorded(
                start=start,
                full=full,
                encoded=encoded,
                hashed=is_root or len(encoded) >= 32,
                value_node=value if hashed_value else None,
            )
        )
        return encoded

    def proof(self, key: bytes) -> list[bytes]:
        """Exactly the entries a single-key read of ``key`` touches, as a recorder would list."""
        path = to_nibbles(key)
        entries: set[bytes] = set()
        for node in self._recorded:
            if path[: len(node.start)] != node.start:
                continue
            if node.hashed:
                entries.add(node.encoded)
            if node.value_node is not None and node.full == path:
                entries.add(node.value_node)
        return sorted(entries)

    def hashed_nodes(self) -> list[bytes]:
        return [node.encoded for node in self._recorded if node.hashed]

    def all_nodes(self) -> list[bytes]:
        return [node.encoded for node in self._recorded]
