"""The fake chain's blocks and transactions, byte for byte: what the node hashes and signs,
and what the plugin's verifier decodes. Pure; shared by ``node`` and the plugin so both sides
agree on one encoding.

A header is ``number u64 | parent hash 32 | tx count u32 | tx root 32`` (big-endian), and a
block's hash is the SHA-256 of its header. The tx root is ``merkle.tree_root`` of the block's
transactions, so a header commits to its body and a Merkle path proves one transaction.

A transaction is ``kind u8 | sender 32 | nonce u64 | fee u64 | payload length u32 | payload |
ed25519 signature 64``, signed by ``sender`` (an ed25519 public key) over everything before the
signature, prefixed with ``SIGNING_TAG``. Its hash is the SHA-256 of all of it. A dispatch's
payload is one wire-format message; a delivery's is ``count u16`` then ``(id 32 | length u32 |
message)`` per message. Decoders are strict: a wrong length or a trailing byte is an error.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from proofs.errors import MalformedEncodingError

__all__ = [
    "HEADER_LEN",
    "SIGNING_TAG",
    "Header",
    "Tx",
    "TxKind",
    "decode_deliveries",
    "decode_tx",
    "encode_deliveries",
    "sha256",
]

#: what a transaction signature covers first, so that no other protocol's signed bytes (and
#: no header) can be replayed as a fake-chain transaction
SIGNING_TAG = b"fake-chain tx v1\x00"

_HEADER = struct.Struct(">Q32sI32s")
HEADER_LEN = _HEADER.size
_TX_HEAD = struct.Struct(">B32sQQI")
_SIGNATURE_LEN = 64
_ENTRY_HEAD = struct.Struct(">32sI")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class TxKind(IntEnum):
    """Stored in every transaction's first byte: values must not change."""

    DISPATCH = 1
    DELIVERY = 2


@dataclass(frozen=True, slots=True)
class Header:
    number: int
    parent: bytes
    tx_count: int
    tx_root: bytes

    def encode(self) -> bytes:
        return _HEADER.pack(self.number, self.parent, self.tx_count, self.tx_root)

    @property
    def hash(self) -> bytes:
        return sha256(self.encode())

    @classmethod
    def decode(cls, raw: bytes) -> Header:
        if len(raw) != HEADER_LEN:
            raise MalformedEncodingError(f"a header of {len(raw)} bytes, not {HEADER_LEN}")
        number, parent, tx_count, tx_root = _HEADER.unpack(raw)
        return cls(number=number, parent=parent, tx_count=tx_count, tx_root=tx_root)


@dataclass(frozen=True, slots=True)
class Tx:
    kind: TxKind
    sender: bytes
    nonce: int
    fee: int
    payload: bytes
    signature: bytes

    @staticmethod
    def signed_part(kind: TxKind, sender: bytes, nonce: int, fee: int, payload: bytes) -> bytes:
        return _TX_HEAD.pack(kind, sender, nonce, fee, len(payload)) + payload

    def encode(self) -> bytes:
        body = self.signed_part(self.kind, self.sender, self.nonce, self.fee, self.payload)
        return body + self.signature

    @property
    def hash(self) -> bytes:
        return sha256(self.encode())


def decode_tx(raw: bytes) -> Tx:
    """Raises ``MalformedEncodingError`` for anything but exactly one transaction."""
    if len(raw) < _TX_HEAD.size + _SIGNATURE_LEN:
        raise MalformedEncodingError(f"a transaction of {len(raw)} bytes is too short")
    kind, sender, nonce, fee, length = _TX_HEAD.unpack_from(raw)
    if len(raw) != _TX_HEAD.size + length + _SIGNATURE_LEN:
        raise MalformedEncodingError(
            f"a transaction of {len(raw)} bytes announces a payload of {length}"
        )
    try:
        kind = TxKind(kind)
    except ValueError:
        raise MalformedEncodingError(f"unknown transaction kind {kind}") from None
    payload = raw[_TX_HEAD.size : _TX_HEAD.size + length]
    return Tx(
        kind=kind,
        sender=sender,
        nonce=nonce,
        fee=fee,
        payload=payload,
        signature=raw[_TX_HEAD.size + length :],
    )


def encode_deliveries(entries: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A delivery payload of ``(message id, message bytes)`` pairs."""
    if not 0 < len(entries) < 1 << 16:
        raise ValueError(f"a delivery carries 1 to 65535 messages, not {len(entries)}")
    out = [struct.pack(">H", len(entries))]
    for message_id, message in entries:
        if len(message_id) != 32:
            raise ValueError("a message id is 32 bytes")
        out.append(_ENTRY_HEAD.pack(message_id, len(message)) + message)
    return b"".join(out)


def decode_deliveries(payload: bytes) -> list[tuple[bytes, bytes]]:
    if len(payload) < 2:
        raise MalformedEncodingError("a delivery payload without its count")
    (count,) = struct.unpack_from(">H", payload)
    offset, entries = 2, []
    for _ in range(count):
        if len(payload) < offset + _ENTRY_HEAD.size:
            raise MalformedEncodingError("a delivery payload ends inside an entry")
        message_id, length = _ENTRY_HEAD.unpack_from(payload, offset)
        offset += _ENTRY_HEAD.size
        if len(payload) < offset + length:
            raise MalformedEncodingError("a delivery payload ends inside a message")
        entries.append((message_id, payload[offset : offset + length]))
        offset += length
    if offset != len(payload) or not entries:
        raise MalformedEncodingError("a delivery payload with trailing bytes or no message")
    return entries
