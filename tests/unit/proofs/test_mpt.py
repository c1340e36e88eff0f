"""proofs.mpt and proofs.mpt_build: the official trie vectors, random tries, forged proofs."""

from __future__ import annotations

import contextlib
from typing import Any

import rlp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trie import HexaryTrie

from proofs import (
    HashMismatchError,
    IncompleteProofError,
    MalformedEncodingError,
    ProofError,
    UnusedProofNodesError,
)
from proofs.hashing import keccak256
from proofs.mpt import EMPTY_TRIE_ROOT, verify_proof
from proofs.mpt_build import TrieBuild, trie_root
from tests.unit.proofs.eth_vectors import hx, load, receipt_vector


def _key_or_value(text: str) -> bytes:
    return hx(text) if text.startswith("0x") else text.encode()


def _final_items(case: dict[str, Any]) -> dict[bytes, bytes]:
    """The key/value set a trietest case leaves after its inserts and deletes (null values)."""
    items: dict[bytes, bytes] = {}
    for key, value in case["in"]:
        if value is None:
            items.pop(_key_or_value(key), None)
        else:
            items[_key_or_value(key)] = _key_or_value(value)
    return items


def test_official_trie_vectors_give_their_roots() -> None:
    cases = load("ethereum_tests_trie/trietest.json")
    assert cases
    for name, case in cases.items():
        items = _final_items(case)
        assert "0x" + trie_root(items).hex() == case["root"], name


def test_official_trie_vectors_prove_every_key_and_absence() -> None:
    for case in load("ethereum_tests_trie/trietest.json").values():
        items = _final_items(case)
        built = TrieBuild(items)
        for key, value in items.items():
            if value:
                assert verify_proof(built.root, key, built.proof(key)) == value
        assert verify_proof(built.root, b"absent-key", built.proof(b"absent-key")) is None


def test_real_receipt_proof_yields_the_typed_receipt() -> None:
    vec = receipt_vector()
    value = verify_proof(vec.receipts_root, rlp.encode(vec.tx_index), vec.proof)
    assert value is not None
    assert value[0] == 2  # EIP-1559 receipt envelope


def test_truncated_proof_is_not_reported_as_absent() -> None:
    vec = receipt_vector()
    for cut in range(len(vec.proof)):
        try:
            verify_proof(vec.receipts_root, rlp.encode(vec.tx_index), vec.proof[:cut])
        except IncompleteProofError:
            continue
        raise AssertionError(f"a proof cut to {cut} nodes was accepted")


def test_extra_trailing_node_is_refused() -> None:
    vec = receipt_vector()
    try:
        verify_proof(vec.receipts_root, rlp.encode(vec.tx_index), (*vec.proof, vec.proof[-1]))
    except UnusedProofNodesError:
        return
    raise AssertionError("an appended node was accepted")


def test_wrong_root_is_a_hash_mismatch() -> None:
    vec = receipt_vector()
    other_root = hx(vec.block["transactionsRoot"])
    try:
        verify_proof(other_root, rlp.encode(vec.tx_index), vec.proof)
    except HashMismatchError:
        return
    raise AssertionError("a proof was accepted under another root")


def test_empty_trie_proves_absence_with_no_nodes() -> None:
    assert verify_proof(EMPTY_TRIE_ROOT, b"anything", []) is None


def test_non_canonical_rlp_node_is_malformed() -> None:
    # A one-byte string below 0x80 must be encoded as itself; 0x8101 is the non-canonical form.
    leaf = rlp.encode([b"\x20", b"x" * 40])
    bad = leaf.replace(b"\x20", b"\x81\x20", 1)
    bad = bytes([bad[0] + 1]) + bad[1:]  # fix the list length for the extra byte
    try:
        verify_proof(keccak256(bad), b"", [bad])
    except MalformedEncodingError:
        return
    raise AssertionError("non-canonical RLP was accepted")


def test_hashed_node_shorter_than_32_bytes_is_refused() -> None:
    short_leaf = rlp.encode([b"\x35", b"v"])  # key nibble 5, value "v": 4 bytes
    branch: list[object] = [b""] * 17
    branch[1] = keccak256(short_leaf)
    encoded_branch = rlp.encode(branch)
    try:
        verify_proof(keccak256(encoded_branch), b"\x15", [encoded_branch, short_leaf])
    except MalformedEncodingError:
        return
    raise AssertionError("a short node referenced by hash was accepted")


_values = st.binary(min_size=1, max_size=31)
_keys = st.binary(min_size=1, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.dictionaries(_keys, _values, min_size=1, max_size=256), probe=_keys)
def test_random_tries_with_inline_nodes_match_the_reference(
    items: dict[bytes, bytes], probe: bytes
) -> None:
    reference = HexaryTrie({})
    for key, value in items.items():
        reference[key] = value
    built = TrieBuild(items)
    assert built.root == reference.root_hash
    for key in [*list(items)[:8], probe]:
        assert verify_proof(built.root, key, built.proof(key)) == items.get(key)


_mutation = st.tuples(
    st.sampled_from(["flip", "drop", "append", "duplicate", "swap", "truncate"]),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.binary(min_size=0, max_size=600),
)
Mutation = tuple[str, int, int, bytes]


def mutate(proof: tuple[bytes, ...], mutation: Mutation) -> list[bytes] | None:
    """Apply one mutation; None when it would not change the proof (a no-op swap or flip)."""
    kind, a, b, blob = mutation
    nodes = list(proof)
    i = a % len(nodes)
    if kind == "flip":
        node = bytearray(nodes[i])
        node[b % len(node)] ^= (blob[0] if blob else 0) or 0x01
        nodes[i] = bytes(node)
    elif kind == "drop":
        del nodes[i]
    elif kind == "append":
        nodes.append(blob)
    elif kind == "duplicate":
        nodes.insert(i, nodes[i])
    elif kind == "swap":
        j = b % len(nodes)
        if nodes[i] == nodes[j]:
            return None
        nodes[i], nodes[j] = nodes[j], nodes[i]
    else:
        nodes[i] = nodes[i][: b % len(nodes[i])]
    return nodes


@settings(max_examples=1500, deadline=None)
@given(mutation=_mutation)
def test_every_mutation_of_the_real_receipt_proof_raises_proof_error(
    mutation: Mutation,
) -> None:
    vec = receipt_vector()
    nodes = mutate(vec.proof, mutation)
    if nodes is None:
        return
    try:
        verify_proof(vec.receipts_root, rlp.encode(vec.tx_index), nodes)
    except ProofError:
        return
    raise AssertionError(f"mutated proof accepted: {mutation}")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.dictionaries(st.binary(min_size=32, max_size=32), _values, min_size=2, max_size=64),
    mutation=_mutation,
    pick=st.integers(0, 10**6),
)
def test_mutated_proofs_of_random_tries_never_yield_a_wrong_value(
    items: dict[bytes, bytes], mutation: Mutation, pick: int
) -> None:
    key = sorted(items)[pick % len(items)]
    built = TrieBuild(items)
    nodes = mutate(tuple(built.proof(key)), mutation)
    if nodes is None:
        return
    try:
        value = verify_proof(built.root, key, nodes)
    except ProofError:
        return
    # A mutation that lands in an inline node of an unrelated branch arm can leave the proof
    # valid only if the nodes are unchanged, which the mutation rules out.
    raise AssertionError(f"mutated proof accepted with value {value!r}")


@settings(max_examples=500, deadline=None)
@given(
    root=st.binary(min_size=32, max_size=32),
    key=st.binary(max_size=40),
    proof=st.lists(st.binary(max_size=200), max_size=4),
)
def test_garbage_proofs_raise_only_proof_error(root: bytes, key: bytes, proof: list[bytes]) -> None:
    # Rooting the garbage at its own first node gets the walk past the root check.
    for candidate in (root, keccak256(proof[0]) if proof else root):
        with contextlib.suppress(ProofError):
            verify_proof(candidate, key, proof)
