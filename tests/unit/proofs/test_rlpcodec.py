"""Our RLP codec against pyrlp, the reference: same bytes out, same items in, same refusals."""

from __future__ import annotations

from typing import Any

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st
from rlp.exceptions import DecodingError

from proofs import MalformedEncodingError, rlpcodec

items: st.SearchStrategy[Any] = st.recursive(
    st.binary(max_size=70),
    lambda children: st.lists(children, max_size=6),
    max_leaves=30,
)


def _pyrlp(data: bytes) -> object:
    try:
        return rlp.decode(data, strict=True)
    except DecodingError:
        return DecodingError


def _ours(data: bytes) -> object:
    try:
        return rlpcodec.decode(data)
    except MalformedEncodingError:
        return DecodingError


@given(items)
def test_encoding_equals_pyrlp_and_decodes_back(item: Any) -> None:
    encoded = rlpcodec.encode(item)
    assert encoded == rlp.encode(item)
    assert rlpcodec.decode(encoded) == item


@given(st.integers(min_value=0, max_value=2**300))
def test_integers_encode_as_pyrlp_does(value: int) -> None:
    assert rlpcodec.encode(value) == rlp.encode(value)


@settings(max_examples=400)
@given(st.binary(max_size=80))
def test_arbitrary_bytes_are_accepted_exactly_when_pyrlp_accepts(data: bytes) -> None:
    assert _ours(data) == _pyrlp(data)


@settings(max_examples=400)
@given(items, st.data())
def test_mutated_encodings_are_judged_as_pyrlp_judges_them(item: Any, data: st.DataObject) -> None:
    encoded = bytearray(rlpcodec.encode(item))
    action = data.draw(st.sampled_from(["flip", "insert", "delete", "append"]))
    position = data.draw(st.integers(min_value=0, max_value=len(encoded)))
    byte = data.draw(st.integers(min_value=0, max_value=255))
    if action == "flip" and position < len(encoded):
        encoded[position] = byte
    elif action == "insert":
        encoded.insert(position, byte)
    elif action == "delete" and position < len(encoded):
        del encoded[position]
    else:
        encoded.append(byte)
    assert _ours(bytes(encoded)) == _pyrlp(bytes(encoded))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\x81\x05", "single byte below 0x80 must not carry a prefix"),
        (b"\xb8\x05hello", "long form used for a length under 56"),
        (b"\xb9\x00\x40" + bytes(64), "leading zero"),
        (b"\x83ab", "past the end"),
        (b"\xc2\x01", "past the end"),
        (b"\x01\x02", "trailing"),
    ],
)
def test_non_canonical_inputs_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(MalformedEncodingError):
        rlpcodec.decode(data)
    assert _pyrlp(data) is DecodingError, why


def test_deep_nesting_is_refused_without_exhausting_the_stack() -> None:
    item: list[Any] = []
    for _ in range(70):
        item = [item]
    nested = rlpcodec.encode(item)
    with pytest.raises(MalformedEncodingError, match="deeper"):
        rlpcodec.decode(nested)
    assert isinstance(rlp.decode(nested), list)  # legal RLP: the depth bound is ours alone


def test_negative_integers_do_not_encode() -> None:
    with pytest.raises(ValueError, match="negative"):
        rlpcodec.encode(-1)
