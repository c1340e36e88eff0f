"""The fake chain's transaction commitment: an RFC 9162 (Certificate Transparency) Merkle tree
over SHA-256, with its inclusion proofs.

Leaves and inner nodes hash under different prefixes (0x00, 0x01), so an inner node can never
pass for a transaction; an odd node is carried up unchanged rather than paired with a copy of
itself, so no two different lists share a root (Bitcoin's duplicated-leaf flaw).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from proofs.errors import HashMismatchError, IncompleteProofError, MalformedEncodingError

__all__ = ["inclusion_path", "leaf_hash", "root_from_path", "tree_root"]


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(item: bytes) -> bytes:
    return _sha256(b"\x00" + item)


def _node(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right)


def _split(size: int) -> int:
    """The largest power of two below ``size`` (``size`` > 1): where RFC 9162 splits a tree."""
    return 1 << ((size - 1).bit_length() - 1)


def _root(leaves: Sequence[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(_root(leaves[:k]), _root(leaves[k:]))


def tree_root(items: Sequence[bytes]) -> bytes:
    """The root over ``items`` (the hash of nothing for an empty list)."""
    if not items:
        return _sha256(b"")
    return _root([leaf_hash(item) for item in items])


def _path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*_path(index, leaves[:k]), _root(leaves[k:])]
    return [*_path(index - k, leaves[k:]), _root(leaves[:k])]


def inclusion_path(items: Sequence[bytes], index: int) -> tuple[bytes, ...]:
    """The sibling hashes from leaf ``index`` up to the root, lowest first."""
    if not 0 <= index < len(items):
        raise IndexError(f"leaf {index} of a tree of {len(items)}")
    return tuple(_path(index, [leaf_hash(item) for item in items]))


def root_from_path(item: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """The root that ``path`` proves ``item`` to sit under at ``index`` of ``size`` leaves
    (RFC 9162 2.1.3.2). Raises ``ProofError`` for a path of the wrong length for that position:
    a path that stops early is incomplete, never a proof of anything."""
    if not 0 <= index < size:
        raise MalformedEncodingError(f"leaf {index} cannot be in a tree of {size}")
    for sibling in path:
        if len(sibling) != 32:
            raise MalformedEncodingError(f"a path hash of {len(sibling)} bytes, not 32")
    fn, sn = index, size - 1
    root = leaf_hash(item)
    for sibling in path:
        if sn == 0:
            raise HashMismatchError("the inclusion path is longer than the tree is deep")
        if fn & 1 or fn == sn:
            root = _node(sibling, root)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            root = _node(root, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise IncompleteProofError("the inclusion path stops below the root")
    return root
