"""The two hash functions the supported chains commit with."""

from __future__ import annotations

import hashlib

from eth_hash.auto import keccak as _keccak


def keccak256(data: bytes) -> bytes:
    """Ethereum's keccak-256 (not NIST SHA3-256: the padding differs)."""
    return _keccak(data)


def blake2_256(data: bytes) -> bytes:
    """Substrate's default hasher: BLAKE2b with a 32-byte digest."""
    return hashlib.blake2b(data, digest_size=32).digest()
