"""Why the light client refused a bootstrap, an update or a stored state.

``InvalidSignature``, ``InvalidFinalityProof`` and ``InvalidNextSyncCommitteeProof`` are
siblings of ``InvalidUpdate`` (everything else) under one ``LightClientError``; each also sits
under the ``proofs.errors`` class naming what kind of evidence failed, so a caller that catches
``SignatureError`` or ``HashMismatchError`` for every verifier catches these too.
"""

from __future__ import annotations

from proofs.errors import HashMismatchError, MalformedEncodingError, ProofError, SignatureError

__all__ = [
    "InvalidBootstrap",
    "InvalidFinalityProof",
    "InvalidNextSyncCommitteeProof",
    "InvalidSignature",
    "InvalidUpdate",
    "LightClientDecodeError",
    "LightClientError",
]


class LightClientError(ProofError):
    """The Ethereum sync-committee light client refused its input; the store is unchanged."""


class InvalidUpdate(LightClientError):  # noqa: N818 (name fixed by the public API)
    """An update breaks a rule of the sync protocol other than its signature and its two
    branches: too few participants, slots out of order, a skipped period, nothing new."""


class InvalidSignature(LightClientError, SignatureError):  # noqa: N818 (name fixed by the public API)
    """The sync committee's aggregate signature is malformed, the point at infinity, signed by
    nobody, or does not verify over the attested header for that fork and chain."""


class InvalidFinalityProof(LightClientError, HashMismatchError):  # noqa: N818 (name fixed by the public API)
    """The finality branch does not place the finalized header's root in the attested state,
    or the finalized header itself is inconsistent (its execution branch, a genesis claim)."""


class InvalidNextSyncCommitteeProof(LightClientError, HashMismatchError):  # noqa: N818 (name fixed by the public API)
    """The next sync committee is not the one the attested state commits to, or contradicts
    the next committee the store already knows."""


class InvalidBootstrap(InvalidUpdate):
    """A bootstrap that does not match the trusted block root, whose committee branch fails, or
    (when the caller asks for the check) whose checkpoint is too old to trust."""


class LightClientDecodeError(InvalidUpdate, MalformedEncodingError):
    """Beacon-API JSON or SSZ that does not decode strictly: a missing field, a wrong length,
    a bad offset, an unknown fork name, trailing bytes."""
