"""Ethereum Merkle-Patricia trie: building roots and proofs from a complete key/value set.

Verifiers use this to recompute a committed root (a block's ``receiptsRoot`` from all of its
receipts), and watchers to cut the inclusion proof of one receipt out of the trie they rebuilt.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from proofs import rlpcodec
from proofs.hashing import keccak256
from proofs.mpt import EMPTY_TRIE_ROOT, Node, nibbles

__all__ = ["TrieBuild", "trie_proof", "trie_root"]

_HASH_LEN = 32


def _hex_prefix(path: bytes, is_leaf: bool) -> bytes:
    flag = 2 if is_leaf else 0
    path = bytes([flag + 1]) + path if len(path) % 2 else bytes([flag, 0]) + path
    return bytes((path[i] << 4) | path[i + 1] for i in range(0, len(path), 2))


class TrieBuild:
    """A trie built once from all of its items; answers its root and a proof per key."""

    __slots__ = ("_db", "_nodes", "_root_node", "root")

    def __init__(self, items: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]) -> None:
        # Later pairs win, as later inserts do; an empty value is a deletion in Ethereum's tries.
        latest = dict(items)
        entries = sorted((nibbles(k), v) for k, v in latest.items() if v)
        self._db: dict[bytes, bytes] = {}
        # The nodes themselves as well as their encodings: cutting a proof walks them without
        # decoding what was just encoded (a block's worth of proofs is thousands of nodes).
        self._nodes: dict[bytes, Node] = {}
        if not entries:
            self._root_node: Node = b""
            self.root = EMPTY_TRIE_ROOT
            return
        self._root_node = self._build(entries, 0)
        encoded = rlpcodec.encode(self._root_node)
        self.root = keccak256(encoded)
        self._db[self.root] = encoded

    def _ref(self, node: Node) -> Node:
        encoded = rlpcodec.encode(node)
        if len(encoded) < _HASH_LEN:
            return node
        digest = keccak256(encoded)
        self._db[digest] = encoded
        self._nodes[digest] = node
        return digest

    def _build(self, entries: list[tuple[bytes, bytes]], depth: int) -> Node:
        if len(entries) == 1:
            path, value = entries[0]
            return [_hex_prefix(path[depth:], is_leaf=True), value]
        # Entries are sorted, so the common prefix of all of them is that of the first and last.
        first, last = entries[0][0], entries[-1][0]
        shared = depth
        limit = min(len(first), len(last))
        while shared < limit and first[shared] == last[shared]:
            shared += 1
        if shared > depth:
            child = self._build(entries, shared)
            return [_hex_prefix(first[depth:shared], is_leaf=False), self._ref(child)]
        branch: list[Node] = [b""] * 17
        start = 0
        if len(entries[0][0]) == depth:
            branch[16] = entries[0][1]
            start = 1
        while start < len(entries):
            nibble = entries[start][0][depth]
            end = start
            while end < len(entries) and entries[end][0][depth] == nibble:
                end += 1
            branch[nibble] = self._ref(self._build(entries[start:end], depth + 1))
            start = end
        return branch

    def proof(self, key: bytes) -> list[bytes]:
        """The hashed nodes on the path to ``key``, root first (also for an absent key)."""
        if not self._db:
            return []
        path = nibbles(key)
        pos = 0
        out = [self._db[self.root]]
        node = self._root_node
        while True:
            if not isinstance(node, list):
                return out
            if len(node) == 17:
                if pos == len(path):
                    return out
                ref = node[path[pos]]
                pos += 1
            else:
                encoded_path, ref = node
                assert isinstance(encoded_path, bytes)
                if encoded_path[0] >> 4 >= 2:
                    return out
                segment = nibbles(encoded_path)[1 if encoded_path[0] >> 4 & 1 else 2 :]
                if path[pos : pos + len(segment)] != segment:
                    return out
                pos += len(segment)
            if isinstance(ref, bytes):
                if len(ref) != _HASH_LEN:
                    return out
                out.append(self._db[ref])
                node = self._nodes[ref]
            else:
                node = ref


def trie_root(items: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]) -> bytes:
    """The root of the trie holding exactly ``items`` (empty values mean absent, as in Ethereum)."""
    return TrieBuild(items).root


def trie_proof(
    items: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]], key: bytes
) -> list[bytes]:
    """An inclusion (or exclusion) proof for ``key`` in the trie holding exactly ``items``."""
    return TrieBuild(items).proof(key)
