"""Ethereum Merkle-Patricia trie: proof verification.

A proof is the list of RLP-encoded nodes on the path from the root to the key, root first, as
``eth_getProof`` returns them. The walk trusts nothing in it: every hashed node must hash to the
reference its parent holds, every embedded node must be short enough to have been embedded, and
every node handed in must be used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from proofs import rlpcodec
from proofs.errors import (
    HashMismatchError,
    IncompleteProofError,
    MalformedEncodingError,
    ProofError,
    UnusedProofNodesError,
)
from proofs.hashing import keccak256

__all__ = ["EMPTY_TRIE_ROOT", "decode_node", "nibbles", "verify_proof"]

# keccak256(rlp(b"")): the root of a trie with no keys.
EMPTY_TRIE_ROOT = bytes.fromhex("56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421")

# A decoded node: bytes, or a list of decoded items (a branch has 17, a leaf or extension 2).
Node: TypeAlias = "bytes | list[Node]"

_BRANCH_WIDTH = 17
_HASH_LEN = 32


def nibbles(key: bytes) -> bytes:
    """The key as one nibble per byte, high nibble first."""
    out = bytearray(len(key) * 2)
    out[0::2] = bytes(b >> 4 for b in key)
    out[1::2] = bytes(b & 0x0F for b in key)
    return bytes(out)


def _decode_path(encoded: bytes) -> tuple[bytes, bool]:
    """Hex-prefix decoding: (path nibbles, is_leaf). Rejects every non-canonical prefix."""
    if not encoded:
        raise MalformedEncodingError("leaf/extension node with an empty hex-prefix path")
    flag = encoded[0] >> 4
    if flag > 3:
        raise MalformedEncodingError(f"hex-prefix flag {flag} is not one of 0..3")
    is_leaf = flag >= 2
    path = nibbles(encoded)
    if flag & 1:
        return path[1:], is_leaf
    if path[1] != 0:
        raise MalformedEncodingError("even-length hex-prefix path with a non-zero padding nibble")
    return path[2:], is_leaf


def decode_node(encoded: bytes) -> list[Node]:
    """Strict RLP decoding of one trie node into a branch (17 items) or a leaf/extension (2)."""
    try:
        node = rlpcodec.decode(encoded)
    except MalformedEncodingError as exc:
        raise MalformedEncodingError(f"trie node is not canonical RLP: {exc}") from None
    if not isinstance(node, list) or len(node) not in (2, _BRANCH_WIDTH):
        raise MalformedEncodingError("trie node is neither a 17-item branch nor a 2-item leaf")
    return node


def _embedded(node: Node) -> list[Node]:
    """An inline child: legal only when its encoding is shorter than a hash."""
    if not isinstance(node, list) or len(node) not in (2, _BRANCH_WIDTH):
        raise MalformedEncodingError("inline child is neither a branch nor a leaf/extension")
    if len(rlpcodec.encode(node)) >= _HASH_LEN:
        raise MalformedEncodingError("inline child of 32 bytes or more should have been hashed")
    return node


def verify_proof(root: bytes, key: bytes, proof: Sequence[bytes]) -> bytes | None:
    """Walk ``proof`` from ``root`` along ``key``.

    Returns the value stored under ``key``, or ``None`` when the proof shows that no value is
    stored there. Raises ``ProofError`` (a subclass naming the failure) in every other case.
    """
    if len(root) != _HASH_LEN:
        raise MalformedEncodingError(f"trie root must be 32 bytes, got {len(root)}")
    if not proof:
        if root == EMPTY_TRIE_ROOT:
            return None
        raise IncompleteProofError("empty proof for a non-empty trie")
    try:
        return _walk(root, nibbles(key), proof)
    except ProofError:
        raise
    except (TypeError, ValueError, IndexError) as exc:
        # Belt and braces: a shape the checks above missed must still surface as a ProofError,
        # because callers treat any other exception as a bug rather than as a forged proof.
        raise MalformedEncodingError(f"malformed proof: {exc!r}") from None


def _walk(root: bytes, path: bytes, proof: Sequence[bytes]) -> bytes | None:
    ref: Node = root
    used = 0
    pos = 0
    while True:
        node: list[Node]
        if isinstance(ref, bytes):
            if used == len(proof):
                # Incomplete proofs must raise, not return None: "absent" is itself a claim that
                # needs proof, and reading a truncated proof as absence is how exclusion proofs
                # get forged.
                raise IncompleteProofError(
                    f"proof ends after {used} node(s) but the walk needs the node {ref.hex()}"
                )
            encoded = proof[used]
            if keccak256(encoded) != ref:
                what = "the trie root" if used == 0 else f"its reference in node {used - 1}"
                raise HashMismatchError(f"proof node {used} does not hash to {what}")
            if used > 0 and len(encoded) < _HASH_LEN:
                raise MalformedEncodingError(
                    f"proof node {used} is shorter than 32 bytes and should have been inlined"
                )
            used += 1
            node = decode_node(encoded)
        else:
            node = _embedded(ref)

        if len(node) == _BRANCH_WIDTH:
            if pos == len(path):
                value = node[16]
                if not isinstance(value, bytes):
                    raise MalformedEncodingError("branch value slot holds a list")
                return _finish(value or None, used, proof)
            child = node[path[pos]]
            pos += 1
            if child == b"":
                return _finish(None, used, proof)
            if isinstance(child, bytes) and len(child) != _HASH_LEN:
                raise MalformedEncodingError(f"branch child reference of {len(child)} bytes")
            ref = child
            continue

        encoded_path, child = node
        if not isinstance(encoded_path, bytes):
            raise MalformedEncodingError("leaf/extension path is a list")
        segment, is_leaf = _decode_path(encoded_path)
        if is_leaf:
            if not isinstance(child, bytes):
                raise MalformedEncodingError("leaf value is a list")
            if not child:
                raise MalformedEncodingError("leaf with an empty value")
            found = child if path[pos:] == segment else None
            return _finish(found, used, proof)
        if not segment:
            raise MalformedEncodingError("extension node with an empty path")
        if path[pos : pos + len(segment)] != segment:
            return _finish(None, used, proof)
        pos += len(segment)
        if isinstance(child, bytes) and len(child) != _HASH_LEN:
            raise MalformedEncodingError(f"extension child reference of {len(child)} bytes")
        ref = child


def _finish(value: bytes | None, used: int, proof: Sequence[bytes]) -> bytes | None:
    if used != len(proof):
        raise UnusedProofNodesError(
            f"proof has {len(proof)} nodes but the walk used only {used}; extra nodes are refused"
        )
    return value
