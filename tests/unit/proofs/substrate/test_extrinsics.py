"""proofs.substrate.extrinsics and .header: real Polkadot blocks, and every way to swap a body."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofs import HashMismatchError, MalformedEncodingError
from proofs.hashing import blake2_256
from proofs.substrate import (
    EMPTY_TRIE_ROOT,
    decode_header,
    extrinsics_root,
    header_hash,
    verify_extrinsics,
)
from proofs.substrate.scale import encode_compact
from tests.unit.proofs.substrate.grandpa_builders import (
    encode_header,
    hx,
    load_substrate_vector,
    pre_runtime_item,
)
from tests.unit.proofs.substrate.reference_trie import ReferenceTrie

_BLOCKS = ["polkadot-21157800.json", "polkadot-18468942.json"]
_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _block(name: str) -> dict[str, Any]:
    block: dict[str, Any] = load_substrate_vector(f"extrinsics_root_sidecar/{name}")
    return block


def _body(block: dict[str, Any]) -> list[bytes]:
    return [hx(ext) for ext in block["extrinsics"]]


@pytest.mark.parametrize("name", _BLOCKS)
def test_polkadot_header_hashes_to_its_block_hash(name: str) -> None:
    block = _block(name)
    assert header_hash(hx(block["header_scale"])) == hx(block["hash"])


@pytest.mark.parametrize("name", _BLOCKS)
def test_polkadot_header_decodes_to_its_rpc_fields(name: str) -> None:
    block = _block(name)
    header = decode_header(hx(block["header_scale"]))
    assert header.parent_hash == hx(block["header"]["parentHash"])
    assert header.number == block["number"] == block["header"]["number"]
    assert header.state_root == hx(block["header"]["stateRoot"])
    assert header.extrinsics_root == hx(block["header"]["extrinsicsRoot"])
    logs = block["header"]["digest"]["logs"]
    assert header.digest == encode_compact(len(logs)) + b"".join(hx(log) for log in logs)


@pytest.mark.parametrize("name", _BLOCKS)
def test_polkadot_body_matches_the_v0_extrinsics_root(name: str) -> None:
    block = _block(name)
    root = decode_header(hx(block["header_scale"])).extrinsics_root
    assert extrinsics_root(_body(block), 0) == root
    verify_extrinsics(root, _body(block), 0)


@pytest.mark.parametrize("name", _BLOCKS)
def test_polkadot_body_under_the_v1_layout_is_refused(name: str) -> None:
    block = _block(name)
    root = decode_header(hx(block["header_scale"])).extrinsics_root
    assert extrinsics_root(_body(block), 1) != root
    with pytest.raises(HashMismatchError):
        verify_extrinsics(root, _body(block), 1)


def test_body_of_another_block_is_refused() -> None:
    first, second = (_block(name) for name in _BLOCKS)
    with pytest.raises(HashMismatchError):
        verify_extrinsics(hx(first["header"]["extrinsicsRoot"]), _body(second), 0)


@pytest.mark.parametrize("name", _BLOCKS)
@pytest.mark.parametrize("change", ["drop_first", "drop_last", "add", "swap", "alter", "dup"])
def test_changed_polkadot_body_is_refused(name: str, change: str) -> None:
    block = _block(name)
    body = _body(block)
    if change == "drop_first":
        body = body[1:]
    elif change == "drop_last":
        body = body[:-1]
    elif change == "add":
        body = [*body, body[0]]
    elif change == "swap":
        body[0], body[1] = body[1], body[0]
    elif change == "alter":
        body[-1] = body[-1][:-1] + bytes([body[-1][-1] ^ 1])
    else:
        body = [body[0], *body]
    with pytest.raises(HashMismatchError):
        verify_extrinsics(hx(block["header"]["extrinsicsRoot"]), body, 0)


def test_empty_body_has_the_empty_trie_root() -> None:
    assert extrinsics_root([]) == EMPTY_TRIE_ROOT == blake2_256(b"\x00")
    assert extrinsics_root([], 1) == EMPTY_TRIE_ROOT


@pytest.mark.parametrize("count", [1, 2, 16, 17, 64, 65, 300])
def test_bodies_of_any_size_match_the_reference_trie(count: int) -> None:
    # Past 16 extrinsics branches nest; past 64 the compact index keys grow to two bytes.
    body = [encode_compact(i % 50) + bytes([i % 256]) * (i % 50) for i in range(count)]
    for version in (0, 1):
        expected = ReferenceTrie({encode_compact(i): e for i, e in enumerate(body)}, version)
        assert extrinsics_root(body, version) == expected.root


@_SETTINGS
@given(st.lists(st.binary(max_size=48), max_size=40), st.sampled_from([0, 1]), st.data())
def test_reordered_dropped_or_altered_extrinsic_changes_the_root(
    body: list[bytes], version: int, data: st.DataObject
) -> None:
    root = extrinsics_root(body, version)
    assert root == ReferenceTrie({encode_compact(i): e for i, e in enumerate(body)}, version).root
    changed = list(body)
    action = data.draw(st.sampled_from(["drop", "swap", "alter", "add"]))
    if action == "add" or not body:
        changed.insert(data.draw(st.integers(0, len(body))), data.draw(st.binary(max_size=48)))
    elif action == "drop":
        del changed[data.draw(st.integers(0, len(body) - 1))]
    elif action == "swap":
        i, j = data.draw(st.integers(0, len(body) - 1)), data.draw(st.integers(0, len(body) - 1))
        changed[i], changed[j] = changed[j], changed[i]
    else:
        i = data.draw(st.integers(0, len(body) - 1))
        changed[i] = data.draw(st.binary(max_size=48))
    if changed == body:
        return
    with pytest.raises(HashMismatchError):
        verify_extrinsics(root, changed, version)


def test_header_with_trailing_bytes_is_refused() -> None:
    header = encode_header(b"\x01" * 32, 5)
    assert decode_header(header).number == 5
    with pytest.raises(MalformedEncodingError):
        decode_header(header + b"\x00")


def test_header_with_a_non_canonical_number_is_refused() -> None:
    canonical = encode_header(b"\x01" * 32, 5)
    padded = b"\x01" * 32 + bytes([(5 << 2) | 1, 0]) + canonical[33:]
    with pytest.raises(MalformedEncodingError):
        decode_header(padded)


def test_header_with_an_unknown_digest_item_is_refused() -> None:
    with pytest.raises(MalformedEncodingError):
        decode_header(encode_header(b"\x01" * 32, 5, digest_items=(b"\x02",)))


def test_header_with_every_digest_item_kind_decodes() -> None:
    items = (
        pre_runtime_item(b"BABE", b"pre"),
        b"\x04FRNK" + encode_compact(1) + b"c",
        b"\x05BABE" + encode_compact(2) + b"se",
        b"\x00" + encode_compact(3) + b"oth",
        b"\x08",
    )
    header = decode_header(encode_header(b"\x01" * 32, 2**32 - 1, digest_items=items))
    assert header.number == 2**32 - 1
    assert header.digest == encode_compact(len(items)) + b"".join(items)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_as_a_header_or_raise_malformed_encoding(data: bytes) -> None:
    with contextlib.suppress(MalformedEncodingError):
        decode_header(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_polkadot_header_decodes_strictly_or_is_refused(data: st.DataObject) -> None:
    block = _block(data.draw(st.sampled_from(_BLOCKS)))
    raw = bytearray(hx(block["header_scale"]))
    cut = data.draw(st.integers(0, len(raw) - 1))
    if data.draw(st.booleans()):
        raw[cut] ^= data.draw(st.integers(1, 255))
    else:
        raw = raw[:cut]
    try:
        decode_header(bytes(raw))
    except MalformedEncodingError:
        return
    assert header_hash(bytes(raw)) != hx(block["hash"])


def test_dev_concat_refuses_a_body_split_differently_into_the_same_bytes() -> None:
    from proofs.substrate import dev_concat_root, verify_dev_concat  # noqa: PLC0415

    first = encode_compact(3) + b"abc"
    second = encode_compact(2) + b"de"
    root = dev_concat_root([first, second])
    verify_dev_concat(root, [first, second])
    # The same bytes cut elsewhere: the root alone cannot tell, the length prefixes can.
    with pytest.raises(MalformedEncodingError):
        verify_dev_concat(root, [first[:-1], first[-1:] + second])
    with pytest.raises(HashMismatchError):
        verify_dev_concat(root, [second, first])
