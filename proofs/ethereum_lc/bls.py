"""BLS12-381 for sync-committee signatures, behind the two calls the store makes.

``BlsBackend`` is the whole boundary: decompress and validate a committee once per period
(``prepare_committee``), then check ``FastAggregateVerify`` for a subset of it
(``fast_aggregate_verify``). ``PyblstBackend`` implements it on ``pyblst`` (blst, the library the
main consensus clients use); another binding (py-arkworks-bls12381) fits by implementing the
same two methods.

The bindings accept the identity point as a key, and an empty aggregate, without complaint; the
proof-of-possession scheme Ethereum uses forbids both (``KeyValidate``), so both are refused here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import pyblst

from proofs.ethereum_lc.errors import InvalidSignature

__all__ = ["DST", "BlsBackend", "PyblstBackend", "default_backend"]

# The ciphersuite of Ethereum's BLS signatures (proof-of-possession, hash to G2).
DST = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
_G1_GENERATOR = bytes.fromhex(
    "97f1d3a73197d7942695638c4fa9ac0fc3688c4f9774b905a14e3a3f171bac58"
    "6c55e83ff97a1aeffb3af00adb22c6bb"
)
_PUBKEY_LEN = 48
_SIGNATURE_LEN = 96


class BlsBackend(Protocol):
    """What the light client needs of a BLS library."""

    name: str

    def prepare_committee(self, pubkeys: Sequence[bytes]) -> object:
        """Decompress and validate every key of a sync committee (on the curve, in G1, not the
        identity) and return an opaque value for ``fast_aggregate_verify``; this is the slow
        part, done once per committee. Raises InvalidSignature naming the first bad key."""
        ...

    def fast_aggregate_verify(
        self,
        committee: object,
        participation: Sequence[bool],
        message: bytes,
        signature: bytes,
    ) -> bool:
        """Whether ``signature`` is the aggregate of the participating members' signatures
        over ``message``. Raises InvalidSignature when the signature does not decode or is not
        in G2, is the identity, or nobody participates; returns False when it merely does not
        verify (including an aggregate key that is the identity)."""
        ...


@dataclass(frozen=True, slots=True)
class _BlstCommittee:
    keys: tuple[Any, ...]
    total: Any


class PyblstBackend:
    """``BlsBackend`` on pyblst's group operations and pairing.

    The aggregate key is built from whichever side is smaller: the sum of the participants, or
    the whole committee's sum (computed once) minus the absentees, which with the usual 95%+
    participation is a handful of additions instead of hundreds.
    """

    name = "pyblst"

    def __init__(self) -> None:
        self._g1 = pyblst.BlstP1Element.uncompress(_G1_GENERATOR)
        self._identity_g1 = pyblst.BlstP1Element()
        self._identity_g2 = pyblst.BlstP2Element()

    def prepare_committee(self, pubkeys: Sequence[bytes]) -> object:
        keys = []
        total = self._identity_g1
        for index, pubkey in enumerate(pubkeys):
            if len(pubkey) != _PUBKEY_LEN:
                raise InvalidSignature(
                    f"sync committee key {index} is {len(pubkey)} bytes, not {_PUBKEY_LEN}"
                )
            try:
                key = pyblst.BlstP1Element.uncompress(pubkey)
            except (ValueError, TypeError) as exc:
                raise InvalidSignature(
                    f"sync committee key {index} 0x{pubkey.hex()} is not a G1 point: {exc}"
                ) from None
            if key == self._identity_g1:
                raise InvalidSignature(
                    f"sync committee key {index} is the point at infinity, which no "
                    "validator can hold"
                )
            keys.append(key)
            total = total + key
        return _BlstCommittee(keys=tuple(keys), total=total)

    def fast_aggregate_verify(
        self,
        committee: object,
        participation: Sequence[bool],
        message: bytes,
        signature: bytes,
    ) -> bool:
        if not isinstance(committee, _BlstCommittee):
            raise TypeError("committee must come from PyblstBackend.prepare_committee")
        keys = committee.keys
        if len(participation) != len(keys):
            raise ValueError(f"{len(participation)} participation bits for {len(keys)} keys")
        count = sum(participation)
        if count == 0:
            raise InvalidSignature("no sync committee member participates in the signature")
        if len(signature) != _SIGNATURE_LEN:
            raise InvalidSignature(f"signature is {len(signature)} bytes, not {_SIGNATURE_LEN}")
        try:
            point = pyblst.BlstP2Element.uncompress(signature)
        except (ValueError, TypeError) as exc:
            raise InvalidSignature(
                f"signature 0x{signature.hex()} is not a G2 point: {exc}"
            ) from None
        if point == self._identity_g2:
            raise InvalidSignature("signature is the point at infinity")

        if count * 2 > len(keys):
            aggregate = committee.total
            for key, bit in zip(keys, participation, strict=True):
                if not bit:
                    aggregate = aggregate + (-key)
        else:
            aggregate = self._identity_g1
            for key, bit in zip(keys, participation, strict=True):
                if bit:
                    aggregate = aggregate + key
        if aggregate == self._identity_g1:
            return False
        # pyblst 0.3.15 takes (message, dst); a test pins the order against py_ecc's hash.
        hashed = pyblst.BlstP2Element.hash_to_group(message, DST)
        # e(aggregate, H(m)) == e(g1, signature)
        verified: bool = pyblst.final_verify(
            pyblst.miller_loop(aggregate, hashed), pyblst.miller_loop(self._g1, point)
        )
        return verified


@lru_cache(maxsize=1)
def default_backend() -> BlsBackend:
    return PyblstBackend()
