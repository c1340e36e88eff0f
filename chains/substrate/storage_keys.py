"""FRAME storage keys of plain storage values: ``twox128(pallet) ++ twox128(item)``.

twox128 is two xxHash64 digests (seeds 0 and 1) concatenated little-endian, as
``sp_crypto_hashing::twox_128`` computes it. No xxhash package is installed here and keys are
computed a handful of times per run, so xxHash64 is written out below (the reference algorithm,
checked against the well-known ``System.Events`` key in the tests).
"""

from __future__ import annotations

import hashlib

__all__ = ["account_info_key", "plain_storage_key", "twox128", "xxh64"]

_MASK = (1 << 64) - 1
_P1 = 0x9E3779B185EBCA87
_P2 = 0xC2B2AE3D27D4EB4F
_P3 = 0x165667B19E3779F9
_P4 = 0x85EBCA77C2B2AE63
_P5 = 0x27D4EB2F165667C5


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & _MASK


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * _P2) & _MASK
    return (_rotl(acc, 31) * _P1) & _MASK


def _merge(acc: int, value: int) -> int:
    acc ^= _round(0, value)
    return (acc * _P1 + _P4) & _MASK


def xxh64(data: bytes, seed: int = 0) -> int:
    """xxHash64 of ``data`` (the reference algorithm, XXH64)."""
    length = len(data)
    offset = 0
    if length >= 32:
        v1 = (seed + _P1 + _P2) & _MASK
        v2 = (seed + _P2) & _MASK
        v3 = seed & _MASK
        v4 = (seed - _P1) & _MASK
        while offset + 32 <= length:
            v1 = _round(v1, int.from_bytes(data[offset : offset + 8], "little"))
            v2 = _round(v2, int.from_bytes(data[offset + 8 : offset + 16], "little"))
            v3 = _round(v3, int.from_bytes(data[offset + 16 : offset + 24], "little"))
            v4 = _round(v4, int.from_bytes(data[offset + 24 : offset + 32], "little"))
            offset += 32
        acc = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _MASK
        for lane in (v1, v2, v3, v4):
            acc = _merge(acc, lane)
    else:
        acc = (seed + _P5) & _MASK
    acc = (acc + length) & _MASK
    while offset + 8 <= length:
        acc ^= _round(0, int.from_bytes(data[offset : offset + 8], "little"))
        acc = (_rotl(acc, 27) * _P1 + _P4) & _MASK
        offset += 8
    if offset + 4 <= length:
        acc ^= (int.from_bytes(data[offset : offset + 4], "little") * _P1) & _MASK
        acc = (_rotl(acc, 23) * _P2 + _P3) & _MASK
        offset += 4
    while offset < length:
        acc ^= (data[offset] * _P5) & _MASK
        acc = (_rotl(acc, 11) * _P1) & _MASK
        offset += 1
    acc ^= acc >> 33
    acc = (acc * _P2) & _MASK
    acc ^= acc >> 29
    acc = (acc * _P3) & _MASK
    acc ^= acc >> 32
    return acc


def twox128(data: bytes) -> bytes:
    """Substrate's ``twox_128``: xxh64 seed 0 then seed 1, each 8 bytes little-endian."""
    return xxh64(data, 0).to_bytes(8, "little") + xxh64(data, 1).to_bytes(8, "little")


def plain_storage_key(pallet: str, item: str) -> bytes:
    """The key of a ``StorageValue`` (no map hasher): ``twox128(pallet) ++ twox128(item)``."""
    return twox128(pallet.encode()) + twox128(item.encode())


def account_info_key(account_id: bytes) -> bytes:
    """The key of ``System.Account(account_id)``: a map hashed with ``Blake2_128Concat``."""
    hashed = hashlib.blake2b(account_id, digest_size=16).digest() + account_id
    return plain_storage_key("System", "Account") + hashed
