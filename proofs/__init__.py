"""Pure verification of cross-chain evidence.

No I/O, no asyncio, nothing else of this project is imported here: the relay core and the
attesters call in with bytes they fetched and get back either a verified value or a ``ProofError``.
"""

from proofs.errors import (
    HashMismatchError,
    IncompleteProofError,
    MalformedEncodingError,
    ProofError,
    QuorumError,
    SignatureError,
    UnusedProofNodesError,
)

__all__ = [
    "HashMismatchError",
    "IncompleteProofError",
    "MalformedEncodingError",
    "ProofError",
    "QuorumError",
    "SignatureError",
    "UnusedProofNodesError",
]
