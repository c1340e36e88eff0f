"""proofs.substrate.scale: one value, one encoding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs import MalformedEncodingError
from proofs.substrate.scale import U32_MAX, ScaleReader, encode_compact


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=2**128))
def test_compact_round_trips_and_consumes_exactly_its_bytes(value: int) -> None:
    encoded = encode_compact(value)
    reader = ScaleReader(encoded + b"\xaa")
    assert reader.compact(max_value=2**128) == value
    assert reader.remaining == 1


@pytest.mark.parametrize(
    "encoded",
    [
        bytes([0b01, 0x00]),  # 0 in two-byte mode
        ((63 << 2) | 0b01).to_bytes(2, "little"),  # 63 fits one byte
        ((2**14 - 1) << 2 | 0b10).to_bytes(4, "little"),  # fits two bytes
        b"\x03" + (2**30 - 1).to_bytes(4, "little"),  # fits four-byte mode
        b"\x07" + (2**30).to_bytes(5, "little"),  # five bytes where four suffice
    ],
)
def test_non_canonical_compact_is_refused(encoded: bytes) -> None:
    with pytest.raises(MalformedEncodingError):
        ScaleReader(encoded).compact(max_value=2**64)


def test_compact_beyond_the_target_type_is_refused() -> None:
    with pytest.raises(MalformedEncodingError):
        ScaleReader(encode_compact(U32_MAX + 1)).compact(max_value=U32_MAX)


def test_vector_length_larger_than_the_input_is_refused_before_allocating() -> None:
    reader = ScaleReader(encode_compact(2**30) + b"\x00" * 8)
    with pytest.raises(MalformedEncodingError):
        reader.vec_len(1)


def test_truncated_fixed_field_and_trailing_bytes_are_refused() -> None:
    with pytest.raises(MalformedEncodingError):
        ScaleReader(b"\x00" * 3).u32()
    reader = ScaleReader(b"\x00" * 5)
    reader.u32()
    with pytest.raises(MalformedEncodingError):
        reader.finish()


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_random_bytes_give_a_value_or_malformed_encoding(data: bytes) -> None:
    reader = ScaleReader(data)
    try:
        while reader.remaining:
            reader.byte_vec()
    except MalformedEncodingError:
        pass
