"""The relayer's durable state: the message ledger (SQLite), cursors, block hashes and nonces."""

from __future__ import annotations

from relayer.store.ledger import (
    ALLOWED_TRANSITIONS,
    PRUNE_BATCH,
    REOBSERVABLE,
    Cursor,
    HistoryEntry,
    Ledger,
    LightClientRow,
    MessageRecord,
    ObservedRow,
    PruneReport,
    SignedTx,
    State,
    SubmittedTx,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "PRUNE_BATCH",
    "REOBSERVABLE",
    "Cursor",
    "HistoryEntry",
    "Ledger",
    "LightClientRow",
    "MessageRecord",
    "ObservedRow",
    "PruneReport",
    "SignedTx",
    "State",
    "SubmittedTx",
]
