"""Substrate's base-16 Patricia trie (blake2-256): node codec, read-proof walk, root builder.

One codec covers both trie layouts. V0 stores every value inline; V1 (``state_version`` 1) stores
a value of 33 bytes or more as its blake2-256 hash, under its own node headers (``0b001`` leaf,
``0b0001`` branch), and keeps the value itself as a separate entry of the proof. A verifier can
tell the layouts apart from the headers alone, so ``verify_read_proof`` takes no layout; a
builder has to be told which one the chain uses.

Node layout (sp-trie ``NodeCodec``): a header carrying the kind and the partial key's nibble
count, the partial key packed two nibbles a byte (an odd count pads the first byte's high
nibble with zero), then for a branch a 16-bit little-endian child bitmap, then the value
(compact length and bytes, or a bare 32-byte hash), then each present child as compact length
and bytes: 32 bytes is a hash, fewer is the child node itself, inlined.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from proofs.errors import (
    HashMismatchError,
    IncompleteProofError,
    MalformedEncodingError,
    UnusedProofNodesError,
)
from proofs.hashing import blake2_256
from proofs.substrate.scale import U32_MAX, ScaleReader, encode_compact

__all__ = [
    "EMPTY_TRIE_ROOT",
    "TrieNode",
    "decode_node",
    "encode_nibbles",
    "trie_root",
    "verify_read_proof",
]

_HASH_LEN = 32
_EMPTY_NODE = b"\x00"
EMPTY_TRIE_ROOT = blake2_256(_EMPTY_NODE)

# Header kinds, with how many high bits the kind takes (the rest count nibbles).
_LEAF = 0b01 << 6
_BRANCH_NO_VALUE = 0b10 << 6
_BRANCH_WITH_VALUE = 0b11 << 6
_HASHED_VALUE_LEAF = 0b001 << 5
_HASHED_VALUE_BRANCH = 0b0001 << 4
# sp-trie refuses partial keys longer than this; a key of 32 KiB exists on no chain.
_NIBBLE_SIZE_BOUND = 65535
# V1 hashes values of this many bytes or more (sp-core TRIE_VALUE_NODE_THRESHOLD).
_V1_VALUE_THRESHOLD = 33


@dataclass(frozen=True, slots=True)
class TrieNode:
    """A decoded non-empty node.

    ``partial`` holds one nibble per byte. ``children`` is None for a leaf and 16 entries for a
    branch; a present child is either a 32-byte hash or (shorter) the inlined child node.
    ``value_hashed`` says ``value`` is the blake2-256 of the real value (V1 layout).
    """

    partial: bytes
    value: bytes | None
    value_hashed: bool
    children: tuple[bytes | None, ...] | None


def encode_nibbles(key: bytes) -> bytes:
    """The key as one nibble per byte, high nibble first."""
    out = bytearray(len(key) * 2)
    out[0::2] = bytes(b >> 4 for b in key)
    out[1::2] = bytes(b & 0x0F for b in key)
    return bytes(out)


def _decode_size(first: int, reader: ScaleReader, kind_bits: int) -> int:
    # Every nibble count has exactly one encoding in this scheme, so no canonicality check
    # is needed beyond the bound.
    max_value = 0xFF >> kind_bits
    size = first & max_value
    if size < max_value:
        return size
    size -= 1
    while True:
        step = reader.u8("partial key length")
        if step < 0xFF:
            size += step + 1
            break
        size += 0xFF
        if size > _NIBBLE_SIZE_BOUND:
            break
    if size > _NIBBLE_SIZE_BOUND:
        raise MalformedEncodingError(f"partial key of {size} nibbles exceeds the sp-trie bound")
    return size


def _decode_header(reader: ScaleReader) -> tuple[int, int] | None:
    """(kind, nibble count), or None for the empty node."""
    first = reader.u8("node header")
    if first == 0:
        return None
    top = first & 0b1100_0000
    if top == _LEAF:
        return _LEAF, _decode_size(first, reader, 2)
    if top in (_BRANCH_NO_VALUE, _BRANCH_WITH_VALUE):
        return top, _decode_size(first, reader, 2)
    if first & 0b1110_0000 == _HASHED_VALUE_LEAF:
        return _HASHED_VALUE_LEAF, _decode_size(first, reader, 3)
    if first & 0b1111_0000 == _HASHED_VALUE_BRANCH:
        return _HASHED_VALUE_BRANCH, _decode_size(first, reader, 4)
    raise MalformedEncodingError(f"node header byte {first:#04x} is not a known node kind")


def _decode_partial(reader: ScaleReader, count: int) -> bytes:
    packed = reader.fixed((count + 1) // 2, "partial key")
    nibbles = encode_nibbles(packed)
    if count % 2:
        if nibbles[0] != 0:
            raise MalformedEncodingError("odd-length partial key with a non-zero padding nibble")
        return nibbles[1:]
    return nibbles


def decode_node(encoded: bytes) -> TrieNode | None:
    """Strictly decode one node; None is the empty node (the root of an empty trie)."""
    reader = ScaleReader(encoded)
    header = _decode_header(reader)
    if header is None:
        reader.finish("empty trie node")
        return None
    kind, count = header
    partial = _decode_partial(reader, count)
    children: tuple[bytes | None, ...] | None = None
    bitmap = 0
    if kind not in (_LEAF, _HASHED_VALUE_LEAF):
        bitmap = reader.u16("branch child bitmap")
        if bitmap == 0:
            raise MalformedEncodingError("branch node without a child")
    value: bytes | None = None
    hashed = kind in (_HASHED_VALUE_LEAF, _HASHED_VALUE_BRANCH)
    if hashed:
        value = reader.fixed(_HASH_LEN, "hashed value")
    elif kind != _BRANCH_NO_VALUE:
        value = reader.fixed(reader.compact("value length", U32_MAX), "value")
    if kind not in (_LEAF, _HASHED_VALUE_LEAF):
        slots: list[bytes | None] = [None] * 16
        for index in range(16):
            if bitmap >> index & 1:
                size = reader.compact("child reference length", U32_MAX)
                if not 0 < size <= _HASH_LEN:
                    raise MalformedEncodingError(
                        f"child reference of {size} bytes: a hash is 32, an inline node 1..31"
                    )
                slots[index] = reader.fixed(size, "child reference")
        children = tuple(slots)
    reader.finish("trie node")
    return TrieNode(partial=partial, value=value, value_hashed=hashed, children=children)


class _ProofNodes:
    """The proof as a set keyed by hash, remembering which entries the walk asked for."""

    __slots__ = ("_by_hash", "_used")

    def __init__(self, proof: Sequence[bytes]) -> None:
        self._by_hash: dict[bytes, bytes] = {}
        for node in proof:
            digest = blake2_256(node)
            if digest in self._by_hash:
                raise UnusedProofNodesError(
                    f"proof lists node {digest.hex()} twice; a storage proof is a set"
                )
            self._by_hash[digest] = node
        self._used: set[bytes] = set()

    def get(self, digest: bytes, what: str) -> bytes:
        node = self._by_hash.get(digest)
        if node is None:
            raise IncompleteProofError(
                f"proof lacks the {what} with hash {digest.hex()}; the lookup cannot decide"
            )
        self._used.add(digest)
        return node

    def has(self, digest: bytes) -> bool:
        return digest in self._by_hash

    def check_all_used(self) -> None:
        unused = self._by_hash.keys() - self._used
        if unused:
            listed = ", ".join(sorted(d.hex() for d in unused))
            raise UnusedProofNodesError(f"proof carries {len(unused)} unused node(s): {listed}")


def verify_read_proof(state_root: bytes, key: bytes, proof: Sequence[bytes]) -> bytes | None:
    """The value stored under ``key`` in the trie with root ``state_root``, or None if absent.

    ``proof`` is the unordered node set of a single-key read proof (``state_getReadProof`` for
    one key). Every entry must be used by this lookup: an honest recorder records exactly the
    nodes the read touches, so a spare entry means the proof was built for something else.
    Proofs covering several keys must be split by the caller or checked by another verifier.

    Raises HashMismatchError when no node hashes to ``state_root``, IncompleteProofError when a
    node or hashed value the walk needs is missing, MalformedEncodingError for a node that does
    not decode strictly, UnusedProofNodesError for spare or repeated entries.
    """
    if len(state_root) != _HASH_LEN:
        raise MalformedEncodingError(f"state root must be 32 bytes, got {len(state_root)}")
    nodes = _ProofNodes(proof)
    if state_root == EMPTY_TRIE_ROOT and not nodes.has(state_root):
        # The empty trie's root is a known hash; its single node needs no proof.
        encoded = _EMPTY_NODE
    elif nodes.has(state_root):
        encoded = nodes.get(state_root, "root node")
    else:
        raise HashMismatchError(f"no proof node hashes to the state root {state_root.hex()}")
    value = _lookup(nodes, encoded, encode_nibbles(key))
    nodes.check_all_used()
    return value


def _lookup(nodes: _ProofNodes, encoded: bytes, path: bytes) -> bytes | None:
    # Incomplete proofs must raise, not return None: "absent" is itself a claim that needs
    # proof, and treating a truncated proof as absence is how exclusion proofs get forged.
    # Every return of None below is backed by a decoded node that leaves no room for the key.
    pos = 0
    at_root = True
    while True:
        node = decode_node(encoded)
        if node is None:
            if not at_root:
                raise MalformedEncodingError("empty node referenced as a child")
            return None
        at_root = False
        end = pos + len(node.partial)
        if path[pos:end] != node.partial:
            return None
        if node.children is None:
            return _value(nodes, node) if end == len(path) else None
        if end == len(path):
            return _value(nodes, node)
        child = node.children[path[end]]
        if child is None:
            return None
        pos = end + 1
        encoded = child if len(child) < _HASH_LEN else nodes.get(child, "trie node")


def _value(nodes: _ProofNodes, node: TrieNode) -> bytes | None:
    if node.value is None:
        return None
    if node.value_hashed:
        return nodes.get(node.value, "hashed value")
    return node.value


def _encode_size(kind: int, kind_bits: int, count: int) -> bytes:
    max_value = 0xFF >> kind_bits
    if count < max_value:
        return bytes([kind | count])
    out = bytearray([kind | max_value])
    rest = count - max_value + 1
    while rest >= 0x100:
        out.append(0xFF)
        rest -= 0xFF
    out.append(rest - 1)
    return bytes(out)


def _encode_partial(partial: bytes) -> bytes:
    odd = len(partial) % 2
    head = bytes([partial[0]]) if odd else b""
    body = partial[odd:]
    return head + bytes((body[i] << 4) | body[i + 1] for i in range(0, len(body), 2))


def _encode_node(
    partial: bytes, value: bytes | None, children: Sequence[bytes | None] | None, v1: bool
) -> bytes:
    hashed = v1 and value is not None and len(value) >= _V1_VALUE_THRESHOLD
    if children is None:
        kind, bits = (_HASHED_VALUE_LEAF, 3) if hashed else (_LEAF, 2)
    elif value is None:
        kind, bits = _BRANCH_NO_VALUE, 2
    else:
        kind, bits = (_HASHED_VALUE_BRANCH, 4) if hashed else (_BRANCH_WITH_VALUE, 2)
    out = bytearray(_encode_size(kind, bits, len(partial)))
    out += _encode_partial(partial)
    if children is not None:
        bitmap = sum(1 << i for i, child in enumerate(children) if child is not None)
        out += bitmap.to_bytes(2, "little")
    if value is not None:
        out += blake2_256(value) if hashed else encode_compact(len(value)) + value
    for child in children or ():
        if child is not None:
            out += encode_compact(len(child)) + child
    return bytes(out)


def _build(entries: list[tuple[bytes, bytes]], depth: int, v1: bool) -> bytes:
    """The encoded node for sorted (nibble path, value) entries that agree on ``depth`` nibbles."""
    if len(entries) == 1:
        path, leaf_value = entries[0]
        return _encode_node(path[depth:], leaf_value, None, v1)
    # Entries are sorted, so what the first and last share, all share.
    first, last = entries[0][0], entries[-1][0]
    end = depth
    limit = min(len(first), len(last))
    while end < limit and first[end] == last[end]:
        end += 1
    value: bytes | None = None
    start = 0
    if len(first) == end:
        value = entries[0][1]
        start = 1
    children: list[bytes | None] = [None] * 16
    while start < len(entries):
        nibble = entries[start][0][end]
        stop = start
        while stop < len(entries) and entries[stop][0][end] == nibble:
            stop += 1
        child = _build(entries[start:stop], end + 1, v1)
        children[nibble] = child if len(child) < _HASH_LEN else blake2_256(child)
        start = stop
    return _encode_node(first[depth:end], value, children, v1)


def trie_root(items: Mapping[bytes, bytes], state_version: int = 0) -> bytes:
    """The blake2-256 root of the trie holding ``items``, in layout V0 or V1.

    Raises ValueError for a state version other than 0 or 1: that is a caller's bug, not bad
    evidence.
    """
    if state_version not in (0, 1):
        raise ValueError(f"state_version must be 0 or 1, got {state_version}")
    if not items:
        return EMPTY_TRIE_ROOT
    entries = sorted((encode_nibbles(key), value) for key, value in items.items())
    # The root is hashed whatever its size; only children are ever inlined.
    return blake2_256(_build(entries, 0, state_version == 1))
