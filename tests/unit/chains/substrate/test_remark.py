from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chains.substrate.remark import (
    MAGIC,
    Delivery,
    Dispatch,
    MalformedRemarkError,
    NotOurRemarkError,
    RemarkError,
    TruncatedRemarkError,
    UnknownRemarkKindError,
    UnknownRemarkVersionError,
    decode_remark,
    encode_delivery,
    encode_dispatch,
    is_ours,
)
from relayer.message import Message

messages = st.builds(
    Message,
    nonce=st.integers(0, 2**32 - 1),
    origin=st.integers(0, 2**32 - 1),
    sender=st.binary(min_size=32, max_size=32),
    destination=st.integers(0, 2**32 - 1),
    recipient=st.binary(min_size=32, max_size=32),
    body=st.binary(max_size=300),
)
remarks = st.one_of(messages.map(encode_dispatch), messages.map(encode_delivery))


@given(messages)
def test_dispatch_round_trips(message: Message) -> None:
    assert decode_remark(encode_dispatch(message)) == Dispatch(message=message)


@given(messages)
def test_delivery_round_trips_with_its_message_id(message: Message) -> None:
    assert decode_remark(encode_delivery(message)) == Delivery(
        message_id=message.id, message=message
    )


@given(remarks, st.data())
def test_every_truncation_is_rejected(remark: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(remark) - 1))
    with pytest.raises(RemarkError):
        decode_remark(remark[:cut])


@given(remarks)
def test_truncation_after_the_magic_says_truncated(remark: bytes) -> None:
    with pytest.raises(TruncatedRemarkError):
        decode_remark(remark[:-1])


@given(st.binary(max_size=200).filter(lambda raw: not raw.startswith(MAGIC)))
def test_someone_elses_remark_is_not_ours(remark: bytes) -> None:
    assert not is_ours(remark)
    with pytest.raises(NotOurRemarkError):
        decode_remark(remark)


@given(remarks, st.integers(0, 255).filter(lambda version: version != 1))
def test_unknown_version_names_the_upgrade(remark: bytes, version: int) -> None:
    with pytest.raises(UnknownRemarkVersionError, match="upgrade"):
        decode_remark(remark[:4] + bytes([version]) + remark[5:])


@given(remarks, st.integers(3, 255))
def test_unknown_kind_is_rejected(remark: bytes, kind: int) -> None:
    with pytest.raises(UnknownRemarkKindError):
        decode_remark(remark[:5] + bytes([kind]) + remark[6:])


@given(remarks, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_rejected(remark: bytes, extra: bytes) -> None:
    with pytest.raises(MalformedRemarkError):
        decode_remark(remark + extra)


@given(messages, st.binary(min_size=32, max_size=32))
def test_delivery_with_a_wrong_message_id_is_rejected(message: Message, other: bytes) -> None:
    remark = encode_delivery(message)
    forged = remark[:6] + other + remark[38:]
    if other == message.id:
        return
    with pytest.raises(MalformedRemarkError, match="names message"):
        decode_remark(forged)


def test_message_with_a_wrong_wire_version_is_malformed() -> None:
    remark = bytearray(encode_dispatch(Message(1, 2, b"\x01" * 32, 3, b"\x02" * 32, b"")))
    remark[10] = 2  # the message's own version byte, after magic, version, kind and length
    with pytest.raises(MalformedRemarkError, match="invalid message"):
        decode_remark(bytes(remark))
