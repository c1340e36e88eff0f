"""Relayer messages carried in a ``System.remark_with_event`` remark (pure: no I/O).

    magic b"xrly" | version u8 (=1) | kind u8 | [message_id 32, delivery only]
                  | message_len u32 BE | message (Hyperlane v3 wire format)

The runtime only stores blake2-256 of a remark (in ``System.Remarked``), so the bytes themselves
are all a watcher has to tell our remarks from everyone else's: the magic says "ours", the
version says which layout follows. The explicit length makes every truncation detectable: a v3
message's body is open-ended, so without it a remark cut short would still decode, to a
different message with a different id.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from relayer.errors import RelayerError
from relayer.message import Message, MessageFormatError

__all__ = [
    "MAGIC",
    "VERSION",
    "Delivery",
    "Dispatch",
    "MalformedRemarkError",
    "NotOurRemarkError",
    "RemarkError",
    "RemarkKind",
    "TruncatedRemarkError",
    "UnknownRemarkKindError",
    "UnknownRemarkVersionError",
    "decode_remark",
    "encode_delivery",
    "encode_dispatch",
    "is_ours",
]

MAGIC = b"xrly"
VERSION = 1
_PREFIX_LEN = len(MAGIC) + 2
_ID_LEN = 32
_LEN = struct.Struct(">I")


class RemarkKind(IntEnum):
    """The kind byte. Written on chain: never renumber a member, only add new ones."""

    DISPATCH = 1
    DELIVERY = 2


class RemarkError(RelayerError):
    """A remark that is not a relayer message this version can read."""


class NotOurRemarkError(RemarkError):
    """The remark does not start with the relayer's magic: someone else's remark, skip it."""


class UnknownRemarkVersionError(RemarkError):
    """Ours, but written by a newer relayer: upgrade this one before it can relay it."""


class UnknownRemarkKindError(RemarkError):
    """Ours and this version, but a kind byte this relayer does not know."""


class TruncatedRemarkError(RemarkError):
    """Ours, but shorter than its own lengths say: the sender's encoder or the chain cut it."""


class MalformedRemarkError(RemarkError):
    """Ours and complete, but inconsistent: a bad message, an id mismatch, extra bytes."""


@dataclass(frozen=True, slots=True)
class Dispatch:
    """A message sent from this chain."""

    message: Message


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message delivered to this chain; ``message_id`` is checked against the message."""

    message_id: bytes
    message: Message


def is_ours(remark: bytes) -> bool:
    """Cheap filter for a watcher scanning every remark in a block."""
    return remark.startswith(MAGIC)


def encode_dispatch(message: Message) -> bytes:
    return _header(RemarkKind.DISPATCH) + _with_length(message.encode())


def encode_delivery(message: Message) -> bytes:
    return _header(RemarkKind.DELIVERY) + message.id + _with_length(message.encode())


def _header(kind: RemarkKind) -> bytes:
    return MAGIC + bytes([VERSION, kind])


def _with_length(raw: bytes) -> bytes:
    return _LEN.pack(len(raw)) + raw


def decode_remark(remark: bytes) -> Dispatch | Delivery:
    """Decode one of our remarks; raises a ``RemarkError`` subclass saying why it cannot."""
    if not is_ours(remark):
        raise NotOurRemarkError(
            f"remark starts with {remark[: len(MAGIC)].hex() or 'nothing'}, not the relayer "
            f"magic {MAGIC.hex()}; it is not a relayer message"
        )
    if len(remark) < _PREFIX_LEN:
        raise TruncatedRemarkError(
            f"relayer remark of {len(remark)} bytes ends before its version and kind bytes"
        )
    version, kind = remark[len(MAGIC)], remark[len(MAGIC) + 1]
    if version != VERSION:
        raise UnknownRemarkVersionError(
            f"relayer remark version {version}, this relayer reads version {VERSION}: upgrade "
            "the relayer (or check which relayer build the sender runs)"
        )
    rest = remark[_PREFIX_LEN:]
    if kind == RemarkKind.DISPATCH:
        return Dispatch(message=_read_message(rest, "dispatch"))
    if kind == RemarkKind.DELIVERY:
        if len(rest) < _ID_LEN:
            raise TruncatedRemarkError(
                f"delivery remark ends after {len(rest)} of the {_ID_LEN} message id bytes"
            )
        message_id, message = rest[:_ID_LEN], _read_message(rest[_ID_LEN:], "delivery")
        if message.id != message_id:
            raise MalformedRemarkError(
                f"delivery remark names message 0x{message_id.hex()} but carries message "
                f"0x{message.id.hex()}; the submitter that wrote it is broken, do not trust it"
            )
        return Delivery(message_id=message_id, message=message)
    raise UnknownRemarkKindError(
        f"relayer remark kind {kind} is not one of "
        f"{', '.join(f'{k.value} ({k.name.lower()})' for k in RemarkKind)}: upgrade the relayer"
    )


def _read_message(data: bytes, kind: str) -> Message:
    if len(data) < _LEN.size:
        raise TruncatedRemarkError(f"{kind} remark ends inside its message length")
    (length,) = _LEN.unpack_from(data)
    raw = data[_LEN.size :]
    if len(raw) < length:
        raise TruncatedRemarkError(
            f"{kind} remark announces a {length}-byte message but carries {len(raw)} bytes"
        )
    if len(raw) > length:
        raise MalformedRemarkError(
            f"{kind} remark carries {len(raw) - length} bytes after its {length}-byte message"
        )
    try:
        return Message.decode(raw)
    except MessageFormatError as exc:
        raise MalformedRemarkError(f"{kind} remark carries an invalid message: {exc}") from exc
