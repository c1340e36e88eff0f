"""The ProofError tree: every way a piece of evidence can fail to convince us.

Callers catch ``ProofError``; the subclasses exist so that logs, metrics and tests can tell a
forged hash from a malformed encoding without parsing messages.
"""

from __future__ import annotations


class ProofError(Exception):
    """Evidence did not prove what it claimed. The message says which check failed and why."""


class MalformedEncodingError(ProofError):
    """Bytes that do not decode strictly: non-canonical RLP or SCALE, bad lengths, extra bytes."""


class HashMismatchError(ProofError):
    """A node, header or root hashes to something other than what references it."""


class IncompleteProofError(ProofError):
    """The proof stops before it can decide; never to be read as a proof of absence."""


class UnusedProofNodesError(ProofError):
    """The proof carries nodes the walk never used; a verifier accepts exactly what it needs."""


class SignatureError(ProofError):
    """A signature is malformed, does not verify, or comes from a signer outside the known set."""


class QuorumError(ProofError):
    """Valid signatures exist, but not enough of them (or the threshold itself is unsafe)."""
