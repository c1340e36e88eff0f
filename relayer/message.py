"""The cross-chain message in Hyperlane's wire format (DESIGN.md, "The message")."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from proofs.hashing import keccak256
from relayer.errors import RelayerError

__all__ = ["HEADER_LEN", "VERSION", "Message", "MessageFormatError"]

VERSION = 3
# version u8 | nonce u32 | origin u32 | sender bytes32 | destination u32 | recipient bytes32
HEADER_LEN = 1 + 4 + 4 + 32 + 4 + 32
_HEADER = struct.Struct(">BII32sI32s")


class MessageFormatError(RelayerError):
    """Bytes that are not a version-3 message."""


@dataclass(frozen=True, slots=True)
class Message:
    nonce: int
    origin: int
    sender: bytes
    destination: int
    recipient: bytes
    body: bytes

    @classmethod
    def decode(cls, raw: bytes) -> Message:
        if len(raw) < HEADER_LEN:
            raise MessageFormatError(f"message of {len(raw)} bytes is shorter than its header")
        version, nonce, origin, sender, destination, recipient = _HEADER.unpack_from(raw)
        if version != VERSION:
            raise MessageFormatError(f"message version {version}, expected {VERSION}")
        return cls(nonce, origin, sender, destination, recipient, raw[HEADER_LEN:])

    def encode(self) -> bytes:
        return (
            _HEADER.pack(
                VERSION, self.nonce, self.origin, self.sender, self.destination, self.recipient
            )
            + self.body
        )

    @property
    def id(self) -> bytes:
        return keccak256(self.encode())
