"""Substrate evidence: storage read proofs, block bodies, headers and GRANDPA finality.

Every function here is pure and raises a ``proofs.ProofError`` subclass when the evidence does
not prove its claim.
"""

from proofs.substrate.extrinsics import (
    dev_concat_root,
    extrinsics_root,
    verify_dev_concat,
    verify_extrinsics,
)
from proofs.substrate.grandpa import (
    AncestryHeader,
    FinalizedBlock,
    GrandpaJustification,
    SignedPrecommit,
    decode_justification,
    precommit_message,
    verify_grandpa_justification,
    verify_precommit_signature,
)
from proofs.substrate.header import SubstrateHeader, decode_header, header_hash
from proofs.substrate.trie import (
    EMPTY_TRIE_ROOT,
    TrieNode,
    decode_node,
    trie_root,
    verify_read_proof,
)

__all__ = [
    "EMPTY_TRIE_ROOT",
    "AncestryHeader",
    "FinalizedBlock",
    "GrandpaJustification",
    "SignedPrecommit",
    "SubstrateHeader",
    "TrieNode",
    "decode_header",
    "decode_justification",
    "decode_node",
    "dev_concat_root",
    "extrinsics_root",
    "header_hash",
    "precommit_message",
    "trie_root",
    "verify_dev_concat",
    "verify_extrinsics",
    "verify_grandpa_justification",
    "verify_precommit_signature",
    "verify_read_proof",
]
