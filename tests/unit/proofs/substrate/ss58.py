"""SS58 address decoding, only to read the public keys the Avail vectors spell as addresses."""

from __future__ import annotations

import hashlib

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_SS58_PREFIX = b"SS58PRE"


def _base58_decode(text: str) -> bytes:
    number = 0
    for char in text:
        number = number * 58 + _ALPHABET.index(char)
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    leading_zeros = len(text) - len(text.lstrip("1"))
    return b"\x00" * leading_zeros + body


def ss58_decode(address: str) -> bytes:
    """The 32-byte public key of an SS58 address; raises ValueError on a bad checksum."""
    raw = _base58_decode(address)
    prefix_len = 1 if raw[0] < 64 else 2
    payload, checksum = raw[:-2], raw[-2:]
    if len(payload) != prefix_len + 32:
        raise ValueError(f"{address}: not a 32-byte account address")
    expected = hashlib.blake2b(_SS58_PREFIX + payload, digest_size=64).digest()[:2]
    if checksum != expected:
        raise ValueError(f"{address}: SS58 checksum mismatch")
    return payload[prefix_len:]
