"""A block body against its header's ``extrinsics_root`` (sp-trie ``ordered_trie_root``), and
against chopsticks' development stand-in for it (``verify_dev_concat``).

The root is the trie of ``Compact<u32>(index) -> extrinsic`` for the extrinsics in block order.
The values are the opaque extrinsic bytes exactly as ``chain_getBlock`` serves them (with their
own length prefix); re-encoding them here would let two byte strings stand for one extrinsic.
Relay chains build this trie with layout V0; the layout is the runtime's choice (its
``state_version``), so the caller passes it from the chain's configuration.
"""

from __future__ import annotations

from collections.abc import Sequence

from proofs.errors import HashMismatchError, MalformedEncodingError
from proofs.hashing import blake2_256
from proofs.substrate.scale import U32_MAX, ScaleReader, encode_compact
from proofs.substrate.trie import trie_root

__all__ = ["dev_concat_root", "extrinsics_root", "verify_dev_concat", "verify_extrinsics"]


def extrinsics_root(extrinsics: Sequence[bytes], state_version: int = 0) -> bytes:
    """The ordered-trie root of ``extrinsics`` in layout V0 (0) or V1 (1).

    Raises ValueError for another state version (a configuration bug), MalformedEncodingError
    for more extrinsics than a ``Compact<u32>`` index can number.
    """
    if len(extrinsics) > U32_MAX + 1:
        raise MalformedEncodingError(f"{len(extrinsics)} extrinsics exceed the u32 index space")
    items = {encode_compact(index): bytes(ext) for index, ext in enumerate(extrinsics)}
    return trie_root(items, state_version)


# verify_extrinsics's parameter is also called extrinsics_root and shadows the function.
_root = extrinsics_root


def verify_extrinsics(
    extrinsics_root: bytes, extrinsics: Sequence[bytes], state_version: int
) -> None:
    """Check that ``extrinsics`` are exactly the body the header committed to, in order.

    Raises HashMismatchError when the computed root differs, so a dropped, added, reordered or
    altered extrinsic is refused.
    """
    computed = _root(extrinsics, state_version)
    if computed != extrinsics_root:
        raise HashMismatchError(
            f"extrinsics hash to root {computed.hex()} (layout V{state_version}) but the header "
            f"commits to {extrinsics_root.hex()}; the body is not the one this header sealed"
        )


def dev_concat_root(extrinsics: Sequence[bytes]) -> bytes:
    """What chopsticks writes as ``extrinsics_root``: blake2-256 of the concatenated extrinsics
    as served. Not a real chain's commitment (``../shared/fixtures/substrate/README.md``)."""
    return blake2_256(b"".join(extrinsics))


def verify_dev_concat(extrinsics_root: bytes, extrinsics: Sequence[bytes]) -> None:
    """Check a body against chopsticks' stand-in root. It binds the header to the body only
    because every extrinsic carries its own compact length prefix, which makes the
    concatenation prefix-free: so each prefix is checked first, or two bodies could concatenate
    to the same bytes. Raises MalformedEncodingError or HashMismatchError."""
    for index, extrinsic in enumerate(extrinsics):
        reader = ScaleReader(extrinsic)
        length = reader.compact(f"extrinsic {index} length")
        if length != reader.remaining:
            raise MalformedEncodingError(
                f"extrinsic {index} announces {length} bytes but carries {reader.remaining}"
            )
    computed = dev_concat_root(extrinsics)
    if computed != extrinsics_root:
        raise HashMismatchError(
            f"extrinsics concatenate to 0x{computed.hex()} but the header commits to "
            f"0x{extrinsics_root.hex()} (dev-concat); the body is not the one this header sealed"
        )
