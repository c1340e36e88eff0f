"""Substrate evidence: storage read proofs, block bodies, headers and GRANDPA finality.

Every function here is pure and raises a ``proofs.ProofError`` subclass when the evidence does
not prove its claim.
"""

from proofs.substrate.digest import (
    GRANDPA_ENGINE_ID,
    DigestItem,
    DigestItemKind,
    ForcedChange,
    GrandpaLog,
    ScheduledChange,
    decode_digest,
    decode_grandpa_log,
    grandpa_logs,
)
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
from proofs.substrate.grandpa_store import (
    AuthoritySetChangeError,
    ForcedChangeError,
    GrandpaImport,
    GrandpaLightClient,
    GrandpaStatus,
    PendingAuthorityChange,
    StaleFinalityError,
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
    "GRANDPA_ENGINE_ID",
    "AncestryHeader",
    "AuthoritySetChangeError",
    "DigestItem",
    "DigestItemKind",
    "FinalizedBlock",
    "ForcedChange",
    "ForcedChangeError",
    "GrandpaImport",
    "GrandpaJustification",
    "GrandpaLightClient",
    "GrandpaLog",
    "GrandpaStatus",
    "PendingAuthorityChange",
    "ScheduledChange",
    "SignedPrecommit",
    "StaleFinalityError",
    "SubstrateHeader",
    "TrieNode",
    "decode_digest",
    "decode_grandpa_log",
    "decode_header",
    "decode_justification",
    "decode_node",
    "dev_concat_root",
    "extrinsics_root",
    "grandpa_logs",
    "header_hash",
    "precommit_message",
    "trie_root",
    "verify_dev_concat",
    "verify_extrinsics",
    "verify_grandpa_justification",
    "verify_precommit_signature",
    "verify_read_proof",
]
