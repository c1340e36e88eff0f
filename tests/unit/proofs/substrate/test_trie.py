"""proofs.substrate.trie: the Polkadot genesis read proof, random tries in both layouts, and
every way to tamper with a proof."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from proofs import (
    HashMismatchError,
    IncompleteProofError,
    MalformedEncodingError,
    ProofError,
    UnusedProofNodesError,
)
from proofs.hashing import blake2_256
from proofs.substrate import EMPTY_TRIE_ROOT, decode_node, trie_root, verify_read_proof
from tests.unit.proofs.substrate.grandpa_builders import hx, load_substrate_vector
from tests.unit.proofs.substrate.reference_trie import ReferenceTrie

_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Keys from a tiny alphabet share prefixes (branches, partial keys, values on branches);
# arbitrary keys add long partial keys; values up to 40 bytes cross both the inline-child
# (32) and the V1 hashed-value (33) thresholds.
_keys = st.one_of(
    st.lists(st.sampled_from([0x00, 0x01, 0x10, 0x11, 0xF0]), max_size=4).map(bytes),
    st.binary(max_size=40),
)
_values = st.binary(max_size=40)
_items = st.dictionaries(_keys, _values, max_size=24)
_versions = st.sampled_from([0, 1])


def _genesis() -> tuple[bytes, list[bytes], list[dict[str, str]]]:
    vector = load_substrate_vector("storage_proof_smoldot/polkadot_genesis_read_proof.json")
    return hx(vector["state_root"]), [hx(n) for n in vector["proof_nodes"]], vector["cases"]


def test_polkadot_genesis_read_proof_yields_the_stored_value() -> None:
    root, nodes, cases = _genesis()
    assert verify_read_proof(root, hx(cases[0]["key"]), nodes) == hx(cases[0]["value"])


def test_polkadot_genesis_proof_proves_a_longer_key_absent() -> None:
    root, nodes, cases = _genesis()
    assert cases[1]["expected"].startswith("absent")
    assert verify_read_proof(root, hx(cases[1]["key"]), nodes) is None


def test_truncated_proof_is_not_reported_as_absent() -> None:
    root, nodes, cases = _genesis()
    assert cases[2]["expected"].startswith("incomplete")
    with pytest.raises(IncompleteProofError):
        verify_read_proof(root, hx(cases[2]["key"]), nodes)


def test_root_not_among_the_proof_nodes_is_a_hash_mismatch() -> None:
    _, nodes, cases = _genesis()
    with pytest.raises(HashMismatchError):
        verify_read_proof(hx(cases[3]["state_root_override"]), hx(cases[3]["key"]), nodes)


def test_proof_nodes_are_read_as_an_unordered_set() -> None:
    root, nodes, cases = _genesis()
    shuffled = list(nodes)
    random.Random(5).shuffle(shuffled)
    assert verify_read_proof(root, hx(cases[0]["key"]), shuffled[::-1]) == hx(cases[0]["value"])


def test_genesis_proof_with_a_spare_node_is_refused() -> None:
    root, nodes, cases = _genesis()
    with pytest.raises(UnusedProofNodesError):
        verify_read_proof(root, hx(cases[0]["key"]), [*nodes, b"\x40\x00"])


def test_genesis_proof_with_a_repeated_node_is_refused() -> None:
    root, nodes, cases = _genesis()
    with pytest.raises(UnusedProofNodesError):
        verify_read_proof(root, hx(cases[0]["key"]), [*nodes, nodes[0]])


@pytest.mark.parametrize("dropped", range(6))
def test_genesis_proof_missing_any_node_neither_reads_nor_proves_absence(dropped: int) -> None:
    root, nodes, cases = _genesis()
    rest = nodes[:dropped] + nodes[dropped + 1 :]
    for case in cases[:2]:
        with pytest.raises((IncompleteProofError, HashMismatchError)):
            verify_read_proof(root, hx(case["key"]), rest)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_genesis_proof_with_any_flipped_byte_is_refused(data: st.DataObject) -> None:
    root, nodes, cases = _genesis()
    index = data.draw(st.integers(0, len(nodes) - 1))
    position = data.draw(st.integers(0, len(nodes[index]) - 1))
    mask = data.draw(st.integers(1, 255))
    forged = bytearray(nodes[index])
    forged[position] ^= mask
    nodes[index] = bytes(forged)
    with pytest.raises(ProofError):
        verify_read_proof(root, hx(cases[0]["key"]), nodes)


def test_empty_trie_proves_every_key_absent() -> None:
    assert trie_root({}) == EMPTY_TRIE_ROOT == blake2_256(b"\x00")
    assert verify_read_proof(EMPTY_TRIE_ROOT, b"any", []) is None
    assert verify_read_proof(EMPTY_TRIE_ROOT, b"any", [b"\x00"]) is None


def test_small_children_are_inlined_and_walked() -> None:
    items = {b"\x01": b"a", b"\x02": b"b", b"\x01\x05": b"c"}
    trie = ReferenceTrie(items, 0)
    assert any(len(node) < 32 for node in trie.all_nodes())
    assert trie_root(items) == trie.root
    for key, value in items.items():
        proof = trie.proof(key)
        assert len(proof) == 1  # everything is inside the root
        assert verify_read_proof(trie.root, key, proof) == value
    assert verify_read_proof(trie.root, b"\x03", trie.proof(b"\x03")) is None


def test_v1_value_stored_apart_must_be_in_the_proof() -> None:
    items = {b"key": b"v" * 33, b"kez": b"w" * 32}
    trie = ReferenceTrie(items, 1)
    proof = trie.proof(b"key")
    assert b"v" * 33 in proof
    assert verify_read_proof(trie.root, b"key", proof) == b"v" * 33
    with pytest.raises(IncompleteProofError):
        verify_read_proof(trie.root, b"key", [n for n in proof if n != b"v" * 33])
    # The 32-byte value stays inline even in V1.
    assert verify_read_proof(trie.root, b"kez", trie.proof(b"kez")) == b"w" * 32


@pytest.mark.parametrize("key_len", [31, 32, 33, 130, 200])
def test_long_partial_keys_use_the_extended_size_header(key_len: int) -> None:
    items = {b"\x07" * key_len: b"long", b"\x07" * key_len + b"\x01": b"longer"}
    for version in (0, 1):
        trie = ReferenceTrie(items, version)
        assert trie_root(items, version) == trie.root
        for key, value in items.items():
            assert verify_read_proof(trie.root, key, trie.proof(key)) == value


def test_layouts_differ_only_when_a_value_reaches_33_bytes() -> None:
    short = {b"a": b"x" * 32}
    long = {b"a": b"x" * 33}
    assert trie_root(short, 0) == trie_root(short, 1)
    assert trie_root(long, 0) != trie_root(long, 1)


def test_unknown_state_version_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="state_version"):
        trie_root({b"a": b"b"}, 2)


@_SETTINGS
@given(_items, _versions)
def test_builder_agrees_with_the_reference_trie(items: dict[bytes, bytes], version: int) -> None:
    assert trie_root(items, version) == ReferenceTrie(items, version).root


@_SETTINGS
@given(_items, _versions)
def test_every_present_key_reads_back_its_value(items: dict[bytes, bytes], version: int) -> None:
    trie = ReferenceTrie(items, version)
    for key, value in items.items():
        assert verify_read_proof(trie.root, key, trie.proof(key)) == value


@_SETTINGS
@given(_items, _versions, _keys)
def test_absent_keys_are_proven_absent(items: dict[bytes, bytes], version: int, key: bytes) -> None:
    assume(key not in items)
    trie = ReferenceTrie(items, version)
    assert verify_read_proof(trie.root, key, trie.proof(key)) is None


@_SETTINGS
@given(_items, _versions, _keys, st.data())
def test_flipped_byte_in_any_proof_node_is_refused(
    items: dict[bytes, bytes], version: int, key: bytes, data: st.DataObject
) -> None:
    trie = ReferenceTrie(items, version)
    proof = trie.proof(key)
    index = data.draw(st.integers(0, len(proof) - 1))
    assume(proof[index])
    position = data.draw(st.integers(0, len(proof[index]) - 1))
    forged = bytearray(proof[index])
    forged[position] ^= data.draw(st.integers(1, 255))
    proof[index] = bytes(forged)
    with pytest.raises(ProofError):
        verify_read_proof(trie.root, key, proof)


@_SETTINGS
@given(_items, _versions, _keys, st.data())
def test_dropped_proof_node_is_never_read_as_absence(
    items: dict[bytes, bytes], version: int, key: bytes, data: st.DataObject
) -> None:
    assume(items)
    trie = ReferenceTrie(items, version)
    proof = trie.proof(key)
    del proof[data.draw(st.integers(0, len(proof) - 1))]
    with pytest.raises((IncompleteProofError, HashMismatchError)):
        verify_read_proof(trie.root, key, proof)


@_SETTINGS
@given(_items, _versions, _keys, st.binary(max_size=40))
def test_added_node_is_refused(
    items: dict[bytes, bytes], version: int, key: bytes, extra: bytes
) -> None:
    trie = ReferenceTrie(items, version)
    proof = trie.proof(key)
    assume(extra not in proof)
    with pytest.raises(UnusedProofNodesError):
        verify_read_proof(trie.root, key, [*proof, extra])


@_SETTINGS
@given(_items, _items, _versions, _keys)
def test_proof_against_another_tries_root_is_refused(
    items: dict[bytes, bytes], other: dict[bytes, bytes], version: int, key: bytes
) -> None:
    trie, other_trie = ReferenceTrie(items, version), ReferenceTrie(other, version)
    assume(trie.root != other_trie.root)
    assume(other_trie.root != EMPTY_TRIE_ROOT)
    proof = trie.proof(key)
    # A subtree of one trie can be, byte for byte, the whole of another.
    assume(other_trie.root not in {blake2_256(node) for node in proof})
    with pytest.raises(HashMismatchError):
        verify_read_proof(other_trie.root, key, proof)


@_SETTINGS
@given(_items, _versions, _keys, _keys)
def test_proof_for_another_key_never_yields_a_wrong_answer(
    items: dict[bytes, bytes], version: int, proven: bytes, asked: bytes
) -> None:
    trie = ReferenceTrie(items, version)
    try:
        answer = verify_read_proof(trie.root, asked, trie.proof(proven))
    except ProofError:
        return
    assert answer == items.get(asked)


@_SETTINGS
@given(_items, _versions)
def test_every_built_node_decodes(items: dict[bytes, bytes], version: int) -> None:
    for node in ReferenceTrie(items, version).all_nodes():
        decoded = decode_node(node)
        assert (decoded is None) == (node == b"\x00")


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_decode_as_a_node_or_raise_malformed_encoding(data: bytes) -> None:
    with contextlib.suppress(MalformedEncodingError):
        decode_node(data)


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        (b"\x80\x00\x00", "branch without children"),
        (b"\x41\x1a\x00", "odd partial key with a non-zero padding nibble"),
        (b"\x08", "reserved header"),
        (b"\x40\x00\x00", "trailing byte"),
        (b"\x80\x01\x00\x00", "zero-length child"),
        (b"\x80\x01\x00\x84" + b"\x00" * 33, "child of 33 bytes"),
        (b"\x40\x04", "truncated value"),
    ],
)
def test_malformed_nodes_are_refused(encoded: bytes, reason: str) -> None:
    with pytest.raises(MalformedEncodingError):
        decode_node(encoded)
