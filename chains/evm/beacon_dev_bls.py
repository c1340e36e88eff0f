"""BLS12-381 for the dev beacon server's sync committee: keys derived from a seed, signatures
(``sk * H(m)`` on G2, the proof-of-possession ciphersuite Ethereum uses) and their aggregation,
on ``pyblst``'s group operations.

The keys are public by design, like anvil's: anyone who knows the seed can sign as the dev
committee. They exist so that a local chain has a real sync committee, not to protect anything.
Separate from ``proofs.ethereum_lc``'s BLS code on purpose (issue 10: the server and the client
must not be able to share a bug).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pyblst

__all__ = ["DevSecretKey", "aggregate_pubkeys", "aggregate_signatures", "derive_keys"]

# The order of the BLS12-381 groups.
_CURVE_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
_G1_GENERATOR = bytes.fromhex(
    "97f1d3a73197d7942695638c4fa9ac0fc3688c4f9774b905a14e3a3f171bac586c55e83ff97a1aeffb3af00adb22c6bb"
)
# Ethereum's signature ciphersuite (consensus specs, "BLS signatures").
_DST = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"


@dataclass(frozen=True, slots=True)
class DevSecretKey:
    """A dev validator's secret scalar and its compressed public key (48 bytes)."""

    scalar: int = field(repr=False)
    pubkey: bytes

    def sign(self, message: bytes) -> bytes:
        """The 96-byte compressed signature ``scalar * hash_to_G2(message)``."""
        point = pyblst.BlstP2Element.hash_to_group(message, _DST)
        return bytes(point.scalar_mul(self.scalar).compress())


def derive_keys(seed: bytes, count: int) -> tuple[DevSecretKey, ...]:
    """``count`` keys, the i-th from sha256(seed || "validator" || i) reduced into the group."""
    generator = pyblst.BlstP1Element.uncompress(_G1_GENERATOR)
    keys = []
    for index in range(count):
        digest = hashlib.sha256(seed + b"validator" + index.to_bytes(8, "little")).digest()
        # Zero is not a valid secret key; a seed that hits it gets the next scalar instead.
        scalar = int.from_bytes(digest, "big") % (_CURVE_ORDER - 1) + 1
        keys.append(
            DevSecretKey(scalar=scalar, pubkey=bytes(generator.scalar_mul(scalar).compress()))
        )
    return tuple(keys)


def aggregate_pubkeys(pubkeys: Sequence[bytes]) -> bytes:
    """The sum of the keys on G1, compressed (a sync committee's ``aggregate_pubkey``)."""
    total = pyblst.BlstP1Element()
    for key in pubkeys:
        total = total + pyblst.BlstP1Element.uncompress(key)
    return bytes(total.compress())


def aggregate_signatures(signatures: Iterable[bytes]) -> bytes:
    """The sum of the signatures on G2, compressed; the point at infinity for none."""
    total = pyblst.BlstP2Element()
    for signature in signatures:
        total = total + pyblst.BlstP2Element.uncompress(signature)
    return bytes(total.compress())
