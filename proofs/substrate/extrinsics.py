"""A block body against its header's ``extrinsics_root`` (sp-trie ``ordered_trie_root``).

The root is the trie of ``Compact<u32>(index) -> extrinsic`` for the extrinsics in block order.
The values are the opaque extrinsic bytes exactly as ``chain_getBlock`` serves them (with their
own length prefix); re-encoding them here would let two byte strings stand for one extrinsic.
Relay chains build this trie with layout V0; the layout is the runtime's choice (its
``state_version``), so the caller passes it from the chain's configuration.
"""

from __future__ import annotations

from collections.abc import Sequence

from proofs.errors import HashMismatchError, MalformedEncodingError
from proofs.substrate.scale import U32_MAX, encode_compact
from proofs.substrate.trie import trie_root

__all__ = ["extrinsics_root", "verify_extrinsics"]


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
