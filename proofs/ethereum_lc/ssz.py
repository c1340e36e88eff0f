"""The part of SSZ the light client needs to check what it is given: SHA-256 merkleization of
fixed-shape containers, and Merkle branches by generalized index.

Only hash-tree-roots are computed here (serialization is decoding only, in ``ssz_decode``): the
sync protocol never re-encodes anything, it only compares roots.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256

__all__ = [
    "ZERO_HASHES",
    "hash_pair",
    "is_valid_merkle_branch",
    "is_valid_normalized_merkle_branch",
    "merkleize",
    "mix_in_length",
    "pack_bytes",
    "uint64_root",
]

_CHUNK = 32
_MAX_DEPTH = 64


def hash_pair(left: bytes, right: bytes) -> bytes:
    return sha256(left + right).digest()


def _zero_hashes() -> tuple[bytes, ...]:
    hashes = [bytes(_CHUNK)]
    for _ in range(_MAX_DEPTH):
        hashes.append(hash_pair(hashes[-1], hashes[-1]))
    return tuple(hashes)


# ZERO_HASHES[d] is the root of a depth-d subtree of zero chunks: padding to a power of two
# costs one lookup instead of hashing zeros.
ZERO_HASHES = _zero_hashes()


def merkleize(chunks: Sequence[bytes], limit: int | None = None) -> bytes:
    """Root of ``chunks`` (each 32 bytes) padded with zero chunks to the next power of two of
    ``limit`` (or of ``len(chunks)``). Raises ValueError when there are more chunks than
    ``limit`` allows: a caller bug, never reachable from decoded input."""
    count = len(chunks)
    width = count if limit is None else limit
    if count > width:
        raise ValueError(f"{count} chunks exceed the limit of {width}")
    depth = max(width - 1, 0).bit_length()
    if count == 0:
        return ZERO_HASHES[depth]
    layer = list(chunks)
    for level in range(depth):
        if len(layer) % 2:
            layer.append(ZERO_HASHES[level])
        layer = [hash_pair(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]


def mix_in_length(root: bytes, length: int) -> bytes:
    return hash_pair(root, length.to_bytes(_CHUNK, "little"))


def pack_bytes(data: bytes) -> list[bytes]:
    """``data`` right-padded with zeros and cut into 32-byte chunks (at least none)."""
    padded = data + bytes(-len(data) % _CHUNK)
    return [padded[i : i + _CHUNK] for i in range(0, len(padded), _CHUNK)]


def uint64_root(value: int) -> bytes:
    return value.to_bytes(8, "little") + bytes(24)


def is_valid_merkle_branch(
    leaf: bytes, branch: Sequence[bytes], depth: int, index: int, root: bytes
) -> bool:
    """Whether ``leaf`` at ``index`` of a depth-``depth`` tree hashes up to ``root``."""
    if len(branch) != depth:
        return False
    value = leaf
    for level, sibling in enumerate(branch):
        value = hash_pair(sibling, value) if index >> level & 1 else hash_pair(value, sibling)
    return value == root


def is_valid_normalized_merkle_branch(
    leaf: bytes, branch: Sequence[bytes], gindex: int, root: bytes
) -> bool:
    """The consensus specs' check for a branch that may be longer than ``gindex`` is deep:
    Electra-shaped data carrying a pre-Electra branch pads it with leading zero hashes, which
    must be exactly zero; a branch shorter than the depth never verifies."""
    depth = gindex.bit_length() - 1
    extra = len(branch) - depth
    if extra < 0 or any(node != bytes(_CHUNK) for node in branch[:extra]):
        return False
    return is_valid_merkle_branch(leaf, branch[extra:], depth, gindex - (1 << depth), root)
