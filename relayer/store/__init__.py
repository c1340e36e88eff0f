"""The relayer's durable state: the message ledger, cursors, block hashes and nonces.

``Ledger.open(path)`` keeps it in a SQLite file (the embedded default); ``Ledger.open(url)`` with
a ``postgresql://`` URL in a PostgreSQL database that several processes share
(``relayer.store.postgres.PostgresLedger``, imported only then: it loads psycopg)."""

from __future__ import annotations

from relayer.store.ledger import (
    ALLOWED_TRANSITIONS,
    FEE_KEEP,
    PRUNE_BATCH,
    REOBSERVABLE,
    Cursor,
    HistoryEntry,
    LeaseLostError,
    Ledger,
    LedgerUnavailableError,
    LightClientRow,
    MessageRecord,
    ObservedRow,
    PruneReport,
    RoutePause,
    SignedTx,
    SignerHold,
    SignerTakenError,
    State,
    SubmittedTx,
    from_loop,
    new_owner,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "FEE_KEEP",
    "PRUNE_BATCH",
    "REOBSERVABLE",
    "Cursor",
    "HistoryEntry",
    "LeaseLostError",
    "Ledger",
    "LedgerUnavailableError",
    "LightClientRow",
    "MessageRecord",
    "ObservedRow",
    "PruneReport",
    "RoutePause",
    "SignedTx",
    "SignerHold",
    "SignerTakenError",
    "State",
    "SubmittedTx",
    "from_loop",
    "new_owner",
]
