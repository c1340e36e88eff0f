"""The two hash functions the supported chains commit with."""

from __future__ import annotations

import hashlib

from sha3 import keccak_256  # type: ignore[import-untyped]


def keccak256(data: bytes) -> bytes:
    """Ethereum's keccak-256 (not NIST SHA3-256: the padding differs).

    pysha3's C object directly: verifying a block's proofs hashes thousands of nodes, and
    eth-hash's pycryptodome backend costs 12 us a call in Python overhead where this costs 2.5.
    """
    digest: bytes = keccak_256(data).digest()
    return digest


def blake2_256(data: bytes) -> bytes:
    """Substrate's default hasher: BLAKE2b with a 32-byte digest."""
    return hashlib.blake2b(data, digest_size=32).digest()
