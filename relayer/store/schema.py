"""The ledger's SQLite schema, versioned with ``PRAGMA user_version``.

Each migration is frozen once released: a ledger on an operator's disk was created by exactly
that text, so a change is a new migration appended to ``MIGRATIONS``, never an edit of an old one.
That is also why the state names are spelled out here rather than taken from ``State``.
"""

from __future__ import annotations

import sqlite3

from relayer.errors import StoreError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

_V1 = (
    """
    CREATE TABLE messages (
        id                BLOB    PRIMARY KEY CHECK (length(id) = 32),
        origin_chain      TEXT    NOT NULL,
        destination_chain TEXT    NOT NULL,
        route             TEXT    NOT NULL,
        nonce             INTEGER NOT NULL,
        message           BLOB    NOT NULL,
        block_number      INTEGER NOT NULL,
        block_hash        BLOB    NOT NULL,
        evidence          BLOB    NOT NULL,
        state             TEXT    NOT NULL CHECK (state IN (
            'observed', 'verified', 'attested', 'submitted', 'delivered', 'rejected', 'failed')),
        attempts          INTEGER NOT NULL DEFAULT 0,
        last_error        TEXT,
        next_attempt_at   REAL    NOT NULL,
        -- the committee signatures, 65 bytes each, concatenated in order
        signatures        BLOB    NOT NULL DEFAULT x'' CHECK (length(signatures) % 65 = 0),
        tx_hash           BLOB,
        tx_nonce          INTEGER,
        raw_tx            BLOB,
        created_at        REAL    NOT NULL,
        updated_at        REAL    NOT NULL
    )
    """,
    # The hot query: due(state) ordered by next_attempt_at then (origin_chain, nonce); the index
    # order matches the ORDER BY so SQLite walks it and stops at LIMIT without sorting.
    "CREATE INDEX messages_due ON messages (state, next_attempt_at, origin_chain, nonce)",
    # The same per destination: each submitter asks only for its own chain's work.
    """CREATE INDEX messages_due_by_destination
       ON messages (destination_chain, state, next_attempt_at, origin_chain, nonce)""",
    "CREATE INDEX messages_by_route_state ON messages (route, state)",
    """
    CREATE TABLE history (
        seq        INTEGER PRIMARY KEY,
        message_id BLOB    NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        at         REAL    NOT NULL,
        from_state TEXT,
        to_state   TEXT    NOT NULL,
        detail     TEXT,
        error      TEXT
    )
    """,
    "CREATE INDEX history_by_message ON history (message_id, seq)",
    """
    CREATE TABLE cursors (
        chain        TEXT    NOT NULL,
        owner        TEXT    NOT NULL,
        block_number INTEGER NOT NULL,
        block_hash   BLOB    NOT NULL,
        updated_at   REAL    NOT NULL,
        PRIMARY KEY (chain, owner)
    )
    """,
    """
    CREATE TABLE blocks (
        chain        TEXT    NOT NULL,
        owner        TEXT    NOT NULL,
        block_number INTEGER NOT NULL,
        block_hash   BLOB    NOT NULL,
        PRIMARY KEY (chain, owner, block_number)
    )
    """,
    """
    CREATE TABLE nonces (
        chain      TEXT    NOT NULL,
        address    BLOB    NOT NULL,
        nonce      INTEGER NOT NULL CHECK (nonce >= 0),
        updated_at REAL    NOT NULL,
        PRIMARY KEY (chain, address)
    )
    """,
)

# A signed transaction carries a whole batch (~30 KB for 100 messages), and V1 wrote it into every
# message row of the batch: 100 copies written and synced per batch, again at each fee bump. V2
# keeps it once, for as long as a submitted message may need it re-broadcast after a restart.
# messages.raw_tx stays (dropping a column means rebuilding the table) but is unused since V2.
_V2 = (
    """
    CREATE TABLE pending_txs (
        destination_chain TEXT    NOT NULL,
        -- any length, as in messages.tx_hash: what a hash is belongs to the destination plugin
        tx_hash           BLOB    NOT NULL,
        tx_nonce          INTEGER NOT NULL,
        raw_tx            BLOB    NOT NULL,
        created_at        REAL    NOT NULL,
        PRIMARY KEY (destination_chain, tx_hash)
    )
    """,
    "CREATE INDEX pending_txs_by_nonce ON pending_txs (destination_chain, tx_nonce)",
    # Whether any submitted message still needs a transaction, asked whenever messages leave it;
    # without this index the answer reads every in-flight row, evidence overflow pages included.
    """CREATE INDEX messages_submitted_by_tx ON messages (destination_chain, tx_hash)
       WHERE state = 'submitted'""",
    # Only a submitted message's transaction can be broadcast again; the others' raw bytes were
    # kept only because V1 never cleared them, and copying them would keep dead weight forever.
    # A submitted row without a hash or nonce cannot be matched to its transaction any more.
    """
    INSERT OR IGNORE INTO pending_txs (destination_chain, tx_hash, tx_nonce, raw_tx, created_at)
    SELECT destination_chain, tx_hash, tx_nonce, raw_tx, updated_at FROM messages
    WHERE state = 'submitted' AND raw_tx IS NOT NULL AND tx_hash IS NOT NULL
      AND tx_nonce IS NOT NULL
    ORDER BY updated_at
    """,
    "UPDATE messages SET raw_tx = NULL WHERE raw_tx IS NOT NULL",
)

# The evidence moves to a table of its own, written once per (message, origin block). In the
# messages row it was rewritten by every state change (SQLite rewrites the whole row, its 2-3 kB
# of proof included): that was most of the ledger's cost per transition. messages.evidence stays
# in the schema, always x'' from now on.
_V3 = (
    """
    CREATE TABLE evidence (
        message_id BLOB PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
        evidence   BLOB NOT NULL
    )
    """,
    "INSERT INTO evidence (message_id, evidence) SELECT id, evidence FROM messages",
    "UPDATE messages SET evidence = x'' WHERE evidence != x''",
)

# V4. Evidence that every message of a block shares (a Substrate block body, say) is stored once,
# content-addressed by its SHA-256: a block of a thousand messages would otherwise store its
# body a thousand times. A message's row names its block evidence, if any, by that digest.
_V4 = (
    """
    CREATE TABLE block_evidence (
        digest   BLOB PRIMARY KEY,
        evidence BLOB NOT NULL
    )
    """,
    "ALTER TABLE evidence ADD COLUMN block_digest BLOB REFERENCES block_evidence (digest)",
    # Which finality mode of the origin chain made the message's block final ("committee",
    # "grandpa", ...): what `relayer explain` shows. Older rows say "".
    "ALTER TABLE messages ADD COLUMN finality TEXT NOT NULL DEFAULT ''",
    # A light client's state per chain and owner ("relayer", "attester:<name>": each process
    # follows the chain with a client of its own), so a restart continues from it instead of
    # bootstrapping from the configured checkpoint again.
    """
    CREATE TABLE light_clients (
        owner      TEXT NOT NULL,
        chain      TEXT NOT NULL,
        mode       TEXT NOT NULL,
        state      BLOB NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (owner, chain)
    )
    """,
)

# V5. Retention (``Ledger.prune``): the indexes that keep pruning from reading every row.
_V5 = (
    # The final messages by age, where prune starts. Partial: the index is written when a
    # message becomes final, not at each of its earlier transitions.
    """CREATE INDEX messages_final_by_age ON messages (updated_at)
       WHERE state IN ('delivered', 'rejected')""",
    # Whether the ledger still keeps a message of an origin block: what decides if the block's
    # attestation files may go. The messages of a block share the key, so intake adds to one
    # place in the index.
    "CREATE INDEX messages_by_block ON messages (origin_chain, block_hash)",
    # Whether any message still references a block evidence row. SQLite asks it too, for the
    # foreign key, whenever a block_evidence row is deleted: without this index, by reading the
    # whole evidence table each time.
    """CREATE INDEX evidence_by_block_digest ON evidence (block_digest)
       WHERE block_digest IS NOT NULL""",
    # Block evidence that a reobservation replaced stayed behind before V5 (it goes with the
    # replacement since): no message can reach it.
    """DELETE FROM block_evidence WHERE NOT EXISTS
       (SELECT 1 FROM evidence WHERE evidence.block_digest = block_evidence.digest)""",
)

# V6. The account that signed each pending transaction: several workers, each with a key of its
# own, may deliver to one chain (on a shared ledger), and a restarted worker must broadcast
# again, and count nonces from, only its own transactions. Rows from before stay NULL: they were
# signed by the chain's only worker (one process owns a SQLite ledger), which is what the
# delivery worker takes NULL to mean; recovering the signer from the raw bytes would take the
# chain plugin's decoding, which the ledger does not know.
_V6 = ("ALTER TABLE pending_txs ADD COLUMN signer BLOB",)

# V7. A message whose origin block a reorg deeper than finality made non-canonical, and that the
# canonical chain does not hold, ends 'orphaned' (``Ledger.orphan_above``). SQLite cannot alter
# the CHECK on messages.state, so the table is rebuilt as sqlite.org prescribes ("Making Other
# Kinds Of Table Schema Changes"): a new table, the rows copied, the old one dropped, the new
# one renamed, every index made again. ``migrate`` runs this step with foreign keys off (history
# and evidence reference messages ON DELETE CASCADE: dropping the old table with them on would
# delete every message's history and evidence) and checks them before it commits. The columns
# are V6's, in V6's order (raw_tx, unused since V2, included: the copy is what it was).
_V7 = (
    """
    CREATE TABLE messages_v7 (
        id                BLOB    PRIMARY KEY CHECK (length(id) = 32),
        origin_chain      TEXT    NOT NULL,
        destination_chain TEXT    NOT NULL,
        route             TEXT    NOT NULL,
        nonce             INTEGER NOT NULL,
        message           BLOB    NOT NULL,
        block_number      INTEGER NOT NULL,
        block_hash        BLOB    NOT NULL,
        evidence          BLOB    NOT NULL,
        state             TEXT    NOT NULL CHECK (state IN (
            'observed', 'verified', 'attested', 'submitted', 'delivered', 'rejected', 'failed',
            'orphaned')),
        attempts          INTEGER NOT NULL DEFAULT 0,
        last_error        TEXT,
        next_attempt_at   REAL    NOT NULL,
        -- the committee signatures, 65 bytes each, concatenated in order
        signatures        BLOB    NOT NULL DEFAULT x'' CHECK (length(signatures) % 65 = 0),
        tx_hash           BLOB,
        tx_nonce          INTEGER,
        raw_tx            BLOB,
        created_at        REAL    NOT NULL,
        updated_at        REAL    NOT NULL,
        finality          TEXT    NOT NULL DEFAULT ''
    )
    """,
    """
    INSERT INTO messages_v7 (id, origin_chain, destination_chain, route, nonce, message,
        block_number, block_hash, evidence, state, attempts, last_error, next_attempt_at,
        signatures, tx_hash, tx_nonce, raw_tx, created_at, updated_at, finality)
    SELECT id, origin_chain, destination_chain, route, nonce, message, block_number,
        block_hash, evidence, state, attempts, last_error, next_attempt_at, signatures,
        tx_hash, tx_nonce, raw_tx, created_at, updated_at, finality
    FROM messages
    """,
    # The old table's indexes go with it.
    "DROP TABLE messages",
    "ALTER TABLE messages_v7 RENAME TO messages",
    # The indexes again, each as its migration made it (the same text) ...
    _V1[1],  # messages_due
    _V1[2],  # messages_due_by_destination
    _V1[3],  # messages_by_route_state
    _V2[2],  # messages_submitted_by_tx
    _V5[1],  # messages_by_block
    # ... but for this one: an orphaned message is final, and retention prunes it as it does a
    # rejected one (``Ledger.prune`` spells the same list).
    """CREATE INDEX messages_final_by_age ON messages (updated_at)
       WHERE state IN ('delivered', 'rejected', 'orphaned')""",
    # Routes on which nothing is delivered until an operator resumes them (``pause_route``):
    # in the ledger, so that every process sharing it sees a pause.
    """
    CREATE TABLE route_pauses (
        route     TEXT PRIMARY KEY,
        reason    TEXT NOT NULL,
        paused_at REAL NOT NULL,
        paused_by TEXT NOT NULL
    )
    """,
)

# V8. The fees each delivering key paid (``Ledger.record_fee``), so that its hourly budget
# (``fee_budget_per_hour``) counts what was paid before a restart, or by the worker that held the
# key before this one. One row per mined transaction (the key: a settle replayed after a crash
# counts it once). The fee is decimal digits as TEXT: in wei it can pass 2**63, where INTEGER
# ends and REAL rounds. Kept a day (``record_fee`` deletes older rows).
_V8 = (
    """
    CREATE TABLE fees_paid (
        chain   TEXT NOT NULL,
        tx_hash BLOB NOT NULL,
        signer  BLOB NOT NULL,
        paid_at REAL NOT NULL,
        fee     TEXT NOT NULL CHECK (fee GLOB '[1-9]*' AND fee NOT GLOB '*[^0-9]*'),
        PRIMARY KEY (chain, tx_hash)
    )
    """,
    # A key's spending since a time (``fees_since``), and the rows past keeping, oldest first.
    "CREATE INDEX fees_paid_by_signer ON fees_paid (chain, signer, paid_at)",
    "CREATE INDEX fees_paid_by_age ON fees_paid (paid_at)",
)

#: ``MIGRATIONS[n]`` takes a ledger from version ``n`` to ``n + 1``.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8)
SCHEMA_VERSION = len(MIGRATIONS)
# The versions whose migration rebuilds a table that others reference: run with foreign keys
# off (``PRAGMA foreign_keys`` is a no-op inside a transaction, so it is set around it).
_REBUILDS = frozenset({7})


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the ledger to ``SCHEMA_VERSION``; returns the version it was at.

    Each step runs in its own ``BEGIN IMMEDIATE`` transaction together with the ``user_version``
    bump (both live in the same file and commit together), so a crash mid-migration leaves the
    previous version intact. ``conn`` must be in autocommit mode (``isolation_level=None``).
    A step that rebuilds a table runs with foreign keys off, checks them before its commit and
    restores the connection's setting after it. Raises ``StoreError`` for a ledger written by a
    newer relayer, or one whose rebuilt table would break a foreign key."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise StoreError(
            f"the ledger has schema version {found} but this relayer knows only up to "
            f"{SCHEMA_VERSION}; upgrade the relayer (a downgrade cannot read a newer ledger)"
        )
    for version in range(found, SCHEMA_VERSION):
        rebuild = version + 1 in _REBUILDS
        foreign_keys = int(conn.execute("PRAGMA foreign_keys").fetchone()[0])
        if rebuild:
            conn.execute("PRAGMA foreign_keys = OFF")
        try:
            _step(conn, version, check_foreign_keys=rebuild)
        finally:
            if rebuild:
                conn.execute(f"PRAGMA foreign_keys = {foreign_keys}")
    return found


def _step(conn: sqlite3.Connection, version: int, *, check_foreign_keys: bool) -> None:
    """``MIGRATIONS[version]`` and the version bump, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated between our read and our lock.
        current = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if current == version:
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            if check_foreign_keys:
                broken = conn.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise StoreError(
                        f"migrating the ledger to schema version {version + 1} would leave"
                        f" {len(broken)} rows whose foreign keys point nowhere (the first in"
                        f" table {broken[0][0]}); nothing was changed: restore the ledger from"
                        " a backup or report it"
                    )
            conn.execute(f"PRAGMA user_version = {version + 1}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
