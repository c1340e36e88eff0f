"""The durable message ledger: every message's state, its history, the signed transactions in
flight, cursors, block hashes, nonces.

SQLite in WAL mode with ``synchronous=FULL`` (the embedded default), or PostgreSQL for several
processes sharing the work (``postgres.py``: the same code, its own plumbing). Each state change
is one committed transaction that also appends a history row, so a process killed at any instant
leaves every message in a state its history explains, and a restart resumes from exactly what
was committed (DESIGN.md, "The flow").

The API is synchronous. On SQLite one connection serves the whole process; a lock makes it usable
from one thread at a time, so callers may use it from the event loop or from a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, ParamSpec, Protocol, Self, TypeVar

from relayer.errors import StoreError
from relayer.store.dialect import SQLITE, Dialect, is_postgres_url
from relayer.store.schema import migrate

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
    "MessageRecord",
    "ObservedRow",
    "PruneReport",
    "RoutePause",
    "SignedTx",
    "SignerHold",
    "SignerTakenError",
    "State",
    "from_loop",
    "new_owner",
]

Clock = Callable[[], float]
SIGNATURE_LEN = 65


class LedgerUnavailableError(StoreError):
    """The ledger's database server cannot be reached (Postgres down, network, no free
    connection): waiting and trying again can help, unlike the ledger refusing an operation."""

    retryable = True


class LeaseLostError(StoreError):
    """A worker acted on messages whose lease it no longer holds: it ran out (the worker
    stalled past it) and another worker may have taken them over. Drop the work; what is still
    due comes back through ``claim``."""


class SignerTakenError(StoreError):
    """Another live worker on the shared ledger delivers to the same chain with the same key:
    two workers with one key would take each other's nonces. Not worth retrying: give each
    worker its own key."""


class SignerHold(Protocol):
    """A worker's claim on its (chain, signer) pair for its lifetime (``Ledger.hold_signer``)."""

    def release(self) -> None:
        """Let another worker use the key (at shutdown); idempotent."""
        ...


class _NoHold:
    """One process owns a SQLite ledger: there is no other worker to keep out."""

    def release(self) -> None:
        pass


_P = ParamSpec("_P")
_R = TypeVar("_R")


async def from_loop(
    ledger: Ledger, call: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs
) -> _R:
    """``call(*args, **kwargs)``, a method of ``ledger``, made from the event loop: in a worker
    thread when the ledger is a database server's (a network round trip must not stall the
    loop), directly on SQLite (a local commit, and the embedded default's speed depends on not
    paying a thread hop for each)."""
    if ledger.shared:
        return await asyncio.to_thread(call, *args, **kwargs)
    return call(*args, **kwargs)


def new_owner(role: str = "worker") -> str:
    """A lease owner id unique to this process (host, pid, random), naming ``role`` for
    operators reading ``lease_owner`` in the database."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Cursor(Protocol):
    """What the ledger reads from a statement: sqlite3's cursor, and psycopg's."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class _Conn(Protocol):
    """A connection inside one of the ledger's transactions, ``?`` placeholders: a
    ``sqlite3.Connection`` itself, or the Postgres ledger's adapter of a pool connection."""

    def execute(self, sql: str, parameters: Any = ..., /) -> _Cursor: ...

    def executemany(self, sql: str, parameters: Any, /) -> _Cursor: ...


class State(StrEnum):
    """A message's place in the pipeline.

    Stored in the ledger: the values must never be renamed (a rename strands every row written
    with the old spelling); add new members instead."""

    OBSERVED = "observed"
    VERIFIED = "verified"
    ATTESTED = "attested"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    FAILED = "failed"
    # Its origin block was made non-canonical by a reorg deeper than the chain's finality, and
    # the message was not (yet) seen in the canonical chain again (``Ledger.orphan_above``).
    ORPHANED = "orphaned"


ALLOWED_TRANSITIONS: Mapping[State, frozenset[State]] = MappingProxyType(
    {
        State.OBSERVED: frozenset({State.VERIFIED, State.REJECTED, State.ORPHANED}),
        State.VERIFIED: frozenset({State.ATTESTED, State.REJECTED, State.ORPHANED}),
        State.ATTESTED: frozenset({State.SUBMITTED, State.DELIVERED, State.FAILED, State.ORPHANED}),
        # back to attested: the transaction was dropped or reverted and must be re-submitted.
        # Never orphaned (nor is a delivered one): a transaction may be in flight or mined,
        # and the destination refuses replays; an origin reorg is only noted in its history.
        State.SUBMITTED: frozenset({State.DELIVERED, State.ATTESTED, State.FAILED}),
        # back to attested: the operator's `relayer clear`
        State.FAILED: frozenset({State.ATTESTED, State.ORPHANED}),
        # back to attested: a destination reorg dropped the delivery (rare)
        State.DELIVERED: frozenset({State.ATTESTED}),
        State.REJECTED: frozenset(),
        # Terminal, but for the reobservation of the message in a canonical block (REOBSERVABLE)
        State.ORPHANED: frozenset(),
    }
)

#: States from which an origin reorg sends a message back to OBSERVED (``Ledger.reobserve``).
#: Not SUBMITTED/DELIVERED: a transaction may be in flight or mined; the destination contract
#: refuses replays, so such a message is kept and the new block only noted.
REOBSERVABLE = frozenset(
    {State.OBSERVED, State.VERIFIED, State.ATTESTED, State.FAILED, State.ORPHANED}
)

# States from which ``Ledger.orphan_above`` orphans a message: those with nothing on the
# destination yet (as REOBSERVABLE, for the same reason).
_ORPHANABLE = frozenset({State.OBSERVED, State.VERIFIED, State.ATTESTED, State.FAILED})


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: bytes
    origin_chain: str
    destination_chain: str
    route: str
    nonce: int
    message: bytes
    block_number: int
    block_hash: bytes
    state: State
    attempts: int
    last_error: str | None
    next_attempt_at: float
    signatures: tuple[bytes, ...]
    tx_hash: bytes | None
    tx_nonce: int | None
    created_at: float
    updated_at: float
    # The origin chain's finality mode that made its block final ("" before ledger V4).
    finality: str


@dataclass(frozen=True, slots=True)
class _Brief:
    """The columns a state transition reads."""

    id: bytes
    state: State
    destination_chain: str
    tx_hash: bytes | None


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A signed destination transaction that submitted messages are waiting on: what a restart
    broadcasts again (``Ledger.pending_txs``)."""

    nonce: int
    tx_hash: bytes
    raw_tx: bytes
    # The account that signed it (``Submitter.signer_address``); None for a transaction stored
    # before the ledger recorded signers (SQLite V6, Postgres V2), when one worker per
    # destination chain was all there could be.
    signer: bytes | None = None


class _Unjudged:
    """A row recorded without a verdict on its evidence (it stays OBSERVED)."""


_UNJUDGED = _Unjudged()


@dataclass(frozen=True, slots=True)
class SubmittedTx:
    """One signed transaction and the messages it carries, as ``mark_submitted_many`` takes it."""

    ids: tuple[bytes, ...]
    tx_hash: bytes
    tx_nonce: int
    raw_tx: bytes
    signer: bytes | None = None


@dataclass(frozen=True, slots=True)
class ObservedRow:
    """One observed message as ``record_observed_many`` and ``advance`` take it."""

    id: bytes
    origin_chain: str
    destination_chain: str
    route: str
    nonce: int
    message: bytes
    block_number: int
    block_hash: bytes
    evidence: bytes
    # Shared by the messages of a block (``Observation.block_evidence``); stored once.
    block_evidence: bytes = b""
    # The origin chain's finality mode ("committee", "grandpa", ...), for ``explain``.
    finality: str = ""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    at: float
    from_state: State | None  # None for the first observation
    to_state: State
    detail: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class LightClientRow:
    """A light client's saved state; ``state`` is opaque here (its plugin encodes it)."""

    owner: str
    chain: str
    mode: str
    state: bytes
    updated_at: float


@dataclass(frozen=True, slots=True)
class RoutePause:
    """A route on which nothing is claimed for delivery until it is resumed
    (``Ledger.pause_route``): kept in the ledger, so every process sharing it sees the pause."""

    route: str
    reason: str
    paused_at: float  # the ledger clock's seconds
    paused_by: str  # who paused it: a worker's owner id, or the operator


@dataclass(frozen=True, slots=True)
class Cursor:
    block_number: int
    block_hash: bytes


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What ``Ledger.prune`` deleted, or ``Ledger.prunable`` would delete: rows per table."""

    messages: int = 0
    history: int = 0
    evidence: int = 0
    block_evidence: int = 0
    # Write transactions that deleted messages, each at most one batch of them.
    batches: int = 0
    # False when ``max_batches`` ended the prune before it ran out of messages to delete.
    complete: bool = True

    def __add__(self, later: PruneReport) -> PruneReport:
        """Both counts together; ``complete`` is the later report's."""
        return PruneReport(
            messages=self.messages + later.messages,
            history=self.history + later.history,
            evidence=self.evidence + later.evidence,
            block_evidence=self.block_evidence + later.block_evidence,
            batches=self.batches + later.batches,
            complete=later.complete,
        )


_COLUMNS = tuple(f.name for f in fields(MessageRecord))
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM messages"  # noqa: S608 -- constant column names
_ROW_FIELDS = frozenset(f.name for f in fields(ObservedRow))
# ``state = 'submitted'`` is spelled as a literal, not bound: only then can SQLite prove the query
# matches the partial index messages_submitted_by_tx.
_PENDING_TX_IS_USED = (
    "EXISTS (SELECT 1 FROM messages WHERE messages.state = 'submitted'"
    " AND messages.destination_chain = pending_txs.destination_chain"
    " AND messages.tx_hash = pending_txs.tx_hash)"
)
# SQLite's default limit on host parameters is 32766 since 3.32, 999 before: stay below both.
_CHUNK = 500
#: Seconds the ledger keeps a fee paid (``Ledger.record_fee``): a day, well past the hour a fee
#: budget counts, so that an operator can still ask what a key spent overnight.
FEE_KEEP = 86_400.0
#: Messages ``Ledger.prune`` deletes per write transaction: a few milliseconds of holding the
#: write lock, which the daemon's other writers wait out.
PRUNE_BATCH = 500
# Final, and final since before the bound time: what prune deletes. The states are literals, not
# bound, so that SQLite can prove a query matches the partial index messages_final_by_age (named
# with INDEXED BY where it must be used: without statistics the planner may prefer messages_due,
# which would walk every final message, young ones included). The list is the index's own
# (SQLite V7, Postgres V3), word for word.
_FINAL_BEFORE = "state IN ('delivered', 'rejected', 'orphaned') AND updated_at < ?"
# What prune would delete, per table, in one statement; ``{}`` takes ``Dialect.final_by_age``.
_COUNT_PRUNABLE = (
    "WITH gone (id) AS (SELECT id FROM {}"  # noqa: S608 -- constant
    f" WHERE {_FINAL_BEFORE})"
    " SELECT (SELECT count(*) FROM gone),"
    " (SELECT count(*) FROM history WHERE message_id IN (SELECT id FROM gone)),"
    " (SELECT count(*) FROM evidence WHERE message_id IN (SELECT id FROM gone)),"
    " (SELECT count(*) FROM (SELECT DISTINCT block_digest AS digest FROM evidence"
    "   WHERE block_digest IS NOT NULL AND message_id IN (SELECT id FROM gone)) AS freed"
    "  WHERE NOT EXISTS (SELECT 1 FROM evidence WHERE evidence.block_digest = freed.digest"
    "   AND evidence.message_id NOT IN (SELECT id FROM gone)))"
)
# Block evidence rows among ``{}`` (placeholders) that no evidence row references any more.
_DROP_UNREFERENCED_BLOCK_EVIDENCE = (
    "DELETE FROM block_evidence WHERE digest IN ({}) AND NOT EXISTS"
    " (SELECT 1 FROM evidence WHERE evidence.block_digest = block_evidence.digest)"
)
# With the checkpointer running, the write path checkpoints only past this many WAL pages
# (40 MB: several thousand messages), and a reset WAL file is cut back to this many bytes.
_WAL_BACKSTOP_PAGES = 10_000
_WAL_SIZE_LIMIT = 64 * 1024 * 1024


def _record(row: Sequence[Any]) -> MessageRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    raw_sigs: bytes = values["signatures"]
    values["state"] = State(values["state"])
    values["signatures"] = tuple(
        raw_sigs[i : i + SIGNATURE_LEN] for i in range(0, len(raw_sigs), SIGNATURE_LEN)
    )
    return MessageRecord(**values)


# The order ``due`` and ``claim`` hand messages out in; the messages_due indexes match it.
_DUE_ORDER = "next_attempt_at, origin_chain, nonce"


def _due_filter(
    state: State, now: float, destination_chain: str | None, origin_chain: str | None
) -> tuple[str, list[Any]]:
    """The WHERE clause (``?`` placeholders) and its arguments of the due messages in
    ``state``, of one destination and/or origin chain if given."""
    where = "state = ? AND next_attempt_at <= ?"
    args: list[Any] = [State(state), now]
    if destination_chain is not None:
        where += " AND destination_chain = ?"
        args.append(destination_chain)
    if origin_chain is not None:
        where += " AND origin_chain = ?"
        args.append(origin_chain)
    return where, args


def _states(expect: State | Collection[State] | None) -> frozenset[State] | None:
    if expect is None:
        return None
    if isinstance(expect, State):
        return frozenset({expect})
    return frozenset(State(s) for s in expect)


def _describe(states: Iterable[State]) -> str:
    return "|".join(sorted(s.value for s in states))


def _short(value: bytes) -> str:
    return "0x" + value.hex()


def _as_row(row: ObservedRow | Mapping[str, Any]) -> ObservedRow:
    if isinstance(row, ObservedRow):
        return row
    unknown = set(row) - _ROW_FIELDS
    if unknown:
        raise StoreError(f"observed row has unknown fields {sorted(unknown)}")
    return ObservedRow(**row)


def _route_pause(row: Sequence[Any]) -> RoutePause:
    return RoutePause(
        route=str(row[0]), reason=str(row[1]), paused_at=float(row[2]), paused_by=str(row[3])
    )


def _light_client_row(row: Sequence[Any]) -> LightClientRow:
    return LightClientRow(row[0], row[1], row[2], bytes(row[3]), row[4])


def _store_block_evidence(conn: _Conn, blobs: Iterable[bytes]) -> dict[bytes, bytes]:
    """Store each distinct non-empty block evidence once; returns its digest by value.

    The messages of a block hand over one bytes object, whose hash Python computes once, so a
    block of a thousand messages costs one SHA-256 and one insert here."""
    digests: dict[bytes, bytes] = {}
    for blob in blobs:
        if blob and blob not in digests:
            digests[blob] = hashlib.sha256(blob).digest()
    conn.executemany(
        "INSERT INTO block_evidence (digest, evidence) VALUES (?, ?)"
        " ON CONFLICT (digest) DO NOTHING",
        [(digest, blob) for blob, digest in digests.items()],
    )
    return digests


def _pack_signatures(signatures: Sequence[bytes]) -> bytes:
    for signature in signatures:
        if len(signature) != SIGNATURE_LEN:
            raise StoreError(
                f"a signature of {len(signature)} bytes cannot be stored; "
                f"attestations are {SIGNATURE_LEN}-byte (r, s, v) ECDSA signatures"
            )
    return b"".join(signatures)


def _configure(conn: sqlite3.Connection, target: str, busy_timeout: float) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if target != ":memory:" and str(mode).lower() != "wal":
        raise StoreError(
            f"the ledger at {target} cannot use WAL journaling (SQLite chose {mode!r}); "
            "put it on a local filesystem, not a network share"
        )
    # FULL: a commit is on disk before COMMIT returns, so "recorded" survives power loss, not
    # only a killed process.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")


class Ledger:
    """The ledger. Create with ``Ledger.open(path)``; close with ``close()`` or ``with``.

    This class holds the whole state machine, and runs it on SQLite; ``PostgresLedger``
    (``relayer/store/postgres.py``, what ``Ledger.open`` returns for a ``postgresql://`` URL)
    runs the same code on PostgreSQL and replaces only the plumbing: connections, transactions,
    work leases. Every method raises ``StoreError`` when the ledger refuses an operation
    (unknown message, illegal transition, bad field) or when the database fails (the original
    error is chained)."""

    # The SQL fragments that differ between the engines.
    _dialect: ClassVar[Dialect] = SQLITE
    #: Whether other processes may share this ledger (Postgres): then claims split the work,
    #: leases can be lost, and each call is a network round trip worth running off the event
    #: loop (``asyncio.to_thread``; the Postgres ledger is safe to call from many threads).
    #: False here: one process owns the file, and a call is a few microseconds of SQLite.
    shared: ClassVar[bool] = False

    def __init__(
        self, conn: sqlite3.Connection | None, *, path: str, clock: Clock = time.time
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()
        self._clock = clock
        self.path = path
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()

    # --- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | Path, clock: Clock = time.time, *, busy_timeout: float = 5.0
    ) -> Ledger:
        """Open (creating the file, its directory and the schema if needed) the ledger at
        ``path``; ``":memory:"`` gives a private in-memory ledger for tests. A
        ``postgresql://`` (or ``postgres://``) URL opens the ledger in that database instead
        (``PostgresLedger.connect``; ``busy_timeout`` is then how long to wait for a
        connection)."""
        target = str(path)
        if is_postgres_url(target):
            # Imported here: psycopg is loaded only by processes that use Postgres.
            from relayer.store.postgres import PostgresLedger  # noqa: PLC0415

            return PostgresLedger.connect(target, clock, connect_timeout=busy_timeout)
        if target != ":memory:":
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves, so a transaction
            # spans exactly the statements of one operation and nothing commits implicitly.
            conn = sqlite3.connect(
                target, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the ledger at {target}: {exc}") from exc
        try:
            _configure(conn, target, busy_timeout)
            migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot initialise the ledger at {target}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, path=target, clock=clock)

    def close(self) -> None:
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
            self._checkpointer = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def start_checkpointer(self, interval: float = 1.0, log: Any = None) -> None:
        """Take WAL checkpoints off the write path (the daemon calls this; short-lived tools
        need not). SQLite's default runs one inside the COMMIT that takes the WAL past 1000
        pages: copying them into the database and syncing it stalled accepting a 900-message
        block by 50 ms. From now on a thread of the ledger's own, on a connection of its own,
        runs a PASSIVE checkpoint (it waits for no reader and no writer) every ``interval``
        seconds until ``close``, and this connection checkpoints on commit only past
        ``_WAL_BACKSTOP_PAGES``: should that thread fall behind or fail, the WAL stays bounded.
        ``log`` (a structlog logger) hears of failing checkpoints, at most once a minute."""
        if self._checkpointer is not None or self.path == ":memory:":
            return
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the ledger at {self.path}: {exc}") from exc
        with self._read() as own:
            own.execute(f"PRAGMA wal_autocheckpoint = {_WAL_BACKSTOP_PAGES}")
            # After a checkpoint that reached the end, the next writer starts the WAL over;
            # this also gives its file back down to this size.
            own.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
        self._stop_checkpoints.clear()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop,
            args=(conn, interval, log),
            name="ledger-checkpoints",
            daemon=True,
        )
        self._checkpointer.start()

    def _checkpoint_loop(self, conn: sqlite3.Connection, interval: float, log: Any) -> None:
        said_at = -math.inf
        try:
            while not self._stop_checkpoints.wait(interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except Exception as exc:  # noqa: BLE001  (the thread must outlive any failure)
                    # Only the WAL grows meanwhile (up to the backstop): every commit stays
                    # durable.
                    if log is not None and time.monotonic() - said_at > 60:
                        said_at = time.monotonic()
                        log.warning(
                            "ledger.checkpoint_failed",
                            path=self.path,
                            error=f"{type(exc).__name__}: {exc}",
                        )
        finally:
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- transaction plumbing --------------------------------------------------------------------

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the ledger at {self.path} is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[_Conn]:
        """One committed transaction; on any exception (ours, SQLite's, a cancellation) nothing
        of it is kept."""
        with self._lock:
            conn = self._live()
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"ledger {self.path}: {exc}") from exc
                raise

    @contextmanager
    def _read(self) -> Iterator[_Conn]:
        with self._lock:
            conn = self._live()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise StoreError(f"ledger {self.path}: {exc}") from exc

    def _history(
        self,
        conn: _Conn,
        message_id: bytes,
        now: float,
        *,
        from_state: State | None,
        to_state: State,
        detail: str | None = None,
        error: str | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO history (message_id, at, from_state, to_state, detail, error)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (message_id, now, from_state, to_state, detail, error),
        )

    @staticmethod
    def _histories(
        conn: _Conn,
        now: float,
        entries: Sequence[tuple[bytes, State | None, State, str | None]],
    ) -> None:
        """History rows (message id, from, to, detail) for many messages in one statement."""
        conn.executemany(
            "INSERT INTO history (message_id, at, from_state, to_state, detail, error)"
            " VALUES (?, ?, ?, ?, ?, NULL)",
            [(mid, now, before, after, detail) for mid, before, after, detail in entries],
        )

    @staticmethod
    def _fetch(conn: _Conn, message_id: bytes) -> MessageRecord:
        row = conn.execute(f"{_SELECT} WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise StoreError(f"message {_short(message_id)} is not in the ledger")
        return _record(row)

    @staticmethod
    def _briefs(conn: _Conn, ids: Sequence[bytes]) -> list[_Brief]:
        """State, destination and transaction of each of ``ids``, in order: what a transition
        needs, without building whole records, in one query per 500 ids. Raises
        ``StoreError`` naming the first id the ledger does not hold."""
        found: dict[bytes, _Brief] = {}
        for message_id, state, destination, tx_hash in Ledger._rows_in(
            conn, "id, state, destination_chain, tx_hash", ids
        ):
            brief = _Brief(
                id=bytes(message_id),
                state=State(state),
                destination_chain=str(destination),
                tx_hash=None if tx_hash is None else bytes(tx_hash),
            )
            found[brief.id] = brief
        missing = next((message_id for message_id in ids if message_id not in found), None)
        if missing is not None:
            raise StoreError(f"message {_short(missing)} is not in the ledger")
        return [found[message_id] for message_id in ids]

    @staticmethod
    def _check(record: MessageRecord | _Brief, to: State, expect: frozenset[State] | None) -> None:
        if expect is not None and record.state not in expect:
            raise StoreError(
                f"message {_short(record.id)} is {record.state}, expected {_describe(expect)} "
                f"before moving it to {to}"
            )
        if to not in ALLOWED_TRANSITIONS[record.state]:
            raise StoreError(
                f"message {_short(record.id)}: transition {record.state} -> {to} is not allowed"
            )

    @staticmethod
    def _prune_txs(conn: _Conn, txs: Iterable[tuple[str, bytes]]) -> None:
        """Forget the signed transactions (destination chain, tx hash) ``txs`` that no submitted
        message waits on any more. Called in the transaction that moved their last message
        away, so the table holds only what a restart may broadcast again."""
        conn.executemany(
            "DELETE FROM pending_txs WHERE destination_chain = ? AND tx_hash = ?"  # noqa: S608 -- constant
            f" AND NOT {_PENDING_TX_IS_USED}",
            txs,
        )

    # --- observations ----------------------------------------------------------------------------

    def record_observed(
        self,
        *,
        id: bytes,
        origin_chain: str,
        destination_chain: str,
        route: str,
        nonce: int,
        message: bytes,
        block_number: int,
        block_hash: bytes,
        evidence: bytes,
    ) -> bool:
        """Record a message seen on its origin chain, idempotently by id.

        True when the ledger changed: a new message (OBSERVED), or a known one re-included in
        another block after an origin reorg (back to OBSERVED with the new block and evidence,
        unless it is already submitted, delivered or rejected: then it is kept and the new block
        only noted in its history). False when nothing changed."""
        row = ObservedRow(
            id=id,
            origin_chain=origin_chain,
            destination_chain=destination_chain,
            route=route,
            nonce=nonce,
            message=message,
            block_number=block_number,
            block_hash=block_hash,
            evidence=evidence,
        )
        with self._write() as conn:
            return self._observe(conn, row, self._clock())

    def record_observed_many(
        self,
        rows: Sequence[ObservedRow | Mapping[str, Any]],
        verdicts: Sequence[str | None] | None = None,
    ) -> int:
        """``record_observed`` for many messages (a block's) in one transaction; returns how
        many were new or changed.

        ``verdicts``, if given, holds the caller's verdict on each row's evidence, in order:
        None where it verified, the reason where it did not. A row then takes its next step in
        the same transaction: a verified one that is (still, or again) OBSERVED moves to
        VERIFIED; a refused one goes in as REJECTED with its reason if the ledger does not know
        the message, and is ignored if it does (evidence that fails to verify must never
        replace evidence that did: that would be a forged "reorg"). Where one id comes with
        rows of both kinds, a verified row is the one kept."""
        batch = [_as_row(r) for r in rows]
        for row in batch:
            if len(row.id) != 32:
                raise StoreError(f"message id {_short(row.id)} is {len(row.id)} bytes, not 32")
        if verdicts is not None and len(verdicts) != len(batch):
            raise StoreError(f"{len(verdicts)} verdicts for {len(batch)} observed rows")
        judged: list[tuple[ObservedRow, str | _Unjudged | None]] = list(
            zip(batch, [_UNJUDGED] * len(batch) if verdicts is None else verdicts, strict=True)
        )
        verified_ids = {row.id for row, verdict in judged if verdict is None}
        # A verified row of an id outranks every other row of it (a forged twin in the same
        # batch must not decide what is stored), and a refused row only ever introduces an id
        # nothing else in the batch vouches for.
        judged = [(r, v) for r, v in judged if v is None or r.id not in verified_ids]
        vouched = {row.id for row, verdict in judged if not isinstance(verdict, str)}
        with self._write() as conn:
            now = self._clock()
            known = self._states_in(conn, [row.id for row in batch])
            # Ids never seen (a block's worth, usually all of them) go in with a few statements
            # for the lot; the rest (re-observations, repeats within the batch) one by one.
            fresh: dict[bytes, tuple[ObservedRow, str | _Unjudged | None]] = {}
            again: list[ObservedRow] = []
            for row, verdict in judged:
                refused = isinstance(verdict, str)
                if row.id in known or row.id in fresh:
                    if not refused:
                        again.append(row)
                elif not refused or row.id not in vouched:
                    fresh[row.id] = (row, verdict)
            self._insert_observed(conn, list(fresh.values()), now)
            changed = {row.id for row in again if self._observe(conn, row, now)}
            pending = self._states_in(conn, [row.id for row in again if row.id in verified_ids])
            moving = [mid for mid, state in pending.items() if state is State.OBSERVED]
            self._move(conn, now, [(mid, State.OBSERVED, State.VERIFIED, None) for mid in moving])
            return len(fresh) + len(changed | set(moving))

    def _move(
        self,
        conn: _Conn,
        now: float,
        moves: Sequence[tuple[bytes, State | None, State, str | None]],
    ) -> None:
        """Messages (id, from, to, detail) to new states, due at once, with their history rows;
        the caller checked the transitions."""
        conn.executemany(
            "UPDATE messages SET state = ?, updated_at = ?, next_attempt_at = ? WHERE id = ?",
            [(to, now, now, message_id) for message_id, _, to, _ in moves],
        )
        self._histories(conn, now, moves)

    @staticmethod
    def _states_in(conn: _Conn, ids: Sequence[bytes]) -> dict[bytes, State]:
        """The state of each of ``ids`` the ledger holds, in one query per 500 ids."""
        return {
            bytes(message_id): State(state)
            for message_id, state in Ledger._rows_in(conn, "id, state", ids)
        }

    @staticmethod
    def _rows_in(conn: _Conn, columns: str, ids: Sequence[bytes]) -> Iterator[Any]:
        """``columns`` (a constant) of the messages among ``ids``, in one query per 500 ids."""
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            yield from conn.execute(
                f"SELECT {columns} FROM messages WHERE id IN ({marks})",  # noqa: S608 -- constants and placeholders
                chunk,
            )

    def _insert_observed(
        self,
        conn: _Conn,
        judged: Sequence[tuple[ObservedRow, str | _Unjudged | None]],
        now: float,
    ) -> None:
        """Never-seen messages with their evidence and history, a few statements for the lot:
        OBSERVED, or straight on to VERIFIED / REJECTED with the caller's verdict (the history
        shows both steps)."""
        rows = [row for row, _ in judged]
        verified = {row.id for row, verdict in judged if verdict is None}
        rejected = {row.id: verdict for row, verdict in judged if isinstance(verdict, str)}

        def state_of(row: ObservedRow) -> State:
            if row.id in rejected:
                return State.REJECTED
            return State.VERIFIED if row.id in verified else State.OBSERVED

        conn.executemany(
            "INSERT INTO messages (id, origin_chain, destination_chain, route, nonce, message,"
            " block_number, block_hash, evidence, state, attempts, last_error, next_attempt_at,"
            " created_at, updated_at, finality)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
            [
                (
                    row.id,
                    row.origin_chain,
                    row.destination_chain,
                    row.route,
                    row.nonce,
                    row.message,
                    row.block_number,
                    row.block_hash,
                    b"",
                    state_of(row),
                    rejected.get(row.id),
                    now,
                    now,
                    now,
                    row.finality,
                )
                for row in rows
            ],
        )
        digests = _store_block_evidence(conn, (row.block_evidence for row in rows))
        conn.executemany(
            "INSERT INTO evidence (message_id, evidence, block_digest) VALUES (?, ?, ?)",
            [(row.id, row.evidence, digests.get(row.block_evidence)) for row in rows],
        )
        self._histories(
            conn,
            now,
            [
                (
                    row.id,
                    None,
                    State.OBSERVED,
                    f"observed in block {row.block_number} ({_short(row.block_hash)})",
                )
                for row in rows
            ],
        )
        self._histories(
            conn,
            now,
            [(row.id, State.OBSERVED, State.VERIFIED, None) for row in rows if row.id in verified],
        )
        for row in rows:
            if row.id in rejected:
                reason = rejected[row.id]
                self._history(
                    conn,
                    row.id,
                    now,
                    from_state=State.OBSERVED,
                    to_state=State.REJECTED,
                    error=reason,
                )

    def _observe(self, conn: _Conn, row: ObservedRow, now: float) -> bool:
        if len(row.id) != 32:
            raise StoreError(f"message id {_short(row.id)} is {len(row.id)} bytes, not 32")
        existing = conn.execute(
            "SELECT state, block_number, block_hash FROM messages WHERE id = ?", (row.id,)
        ).fetchone()
        if existing is None:
            self._insert_observed(conn, [(row, _UNJUDGED)], now)
            return True
        state, old_number, old_hash = State(existing[0]), existing[1], bytes(existing[2])
        # An orphaned message seen in its very block again is news too: the chain reorged back
        # to the block that an earlier reorg had made non-canonical.
        if old_hash == row.block_hash and state is not State.ORPHANED:
            return False
        if state in REOBSERVABLE:
            detail = (
                f"reobserved after reorg: {_short(old_hash)} -> {_short(row.block_hash)}"
                f" (block {old_number} -> {row.block_number})"
            )
            if state is State.ORPHANED:
                detail += "; the canonical chain holds it again"
            self._reobserve(
                conn,
                row.id,
                state,
                now,
                block_number=row.block_number,
                block_hash=row.block_hash,
                evidence=row.evidence,
                block_evidence=row.block_evidence,
                finality=row.finality,
                detail=detail,
            )
            return True
        # Submitted or delivered (a transaction may be in flight or mined, and the destination
        # refuses replays) or rejected (terminal): keep it, but leave a trace for `explain`.
        detail = (
            f"seen again in block {row.block_number} ({_short(row.block_hash)}) after an origin"
            f" reorg; kept as {state} from block {old_number} ({_short(old_hash)})"
        )
        conn.execute("UPDATE messages SET updated_at = ? WHERE id = ?", (now, row.id))
        self._history(conn, row.id, now, from_state=state, to_state=state, detail=detail)
        return False

    def reobserve(
        self,
        id: bytes,
        *,
        block_number: int,
        block_hash: bytes,
        evidence: bytes,
        block_evidence: bytes = b"",
        finality: str | None = None,
        detail: str | None = None,
    ) -> MessageRecord:
        """Send a message in observed/verified/attested/failed/orphaned back to OBSERVED with
        new block fields and evidence (its signatures no longer apply: they bind the old block
        hash)."""
        with self._write() as conn:
            record = self._fetch(conn, id)
            if record.state not in REOBSERVABLE:
                raise StoreError(
                    f"message {_short(id)} is {record.state}; only "
                    f"{_describe(REOBSERVABLE)} messages can be reobserved"
                )
            self._reobserve(
                conn,
                id,
                record.state,
                self._clock(),
                block_number=block_number,
                block_hash=block_hash,
                evidence=evidence,
                block_evidence=block_evidence,
                finality=record.finality if finality is None else finality,
                detail=detail or f"reobserved: {_short(record.block_hash)} -> {_short(block_hash)}",
            )
            return self._fetch(conn, id)

    def _reobserve(
        self,
        conn: _Conn,
        message_id: bytes,
        state: State,
        now: float,
        *,
        block_number: int,
        block_hash: bytes,
        evidence: bytes,
        block_evidence: bytes,
        finality: str,
        detail: str,
    ) -> None:
        # What orphaned the message no longer holds: its last_error said why it was orphaned.
        clear_error = ", last_error = NULL" if state is State.ORPHANED else ""
        conn.execute(
            "UPDATE messages SET block_number = ?, block_hash = ?, state = ?, signatures = ?,"  # noqa: S608 -- constant
            f" attempts = 0, next_attempt_at = ?, updated_at = ?, finality = ?{clear_error}"
            " WHERE id = ?",
            (block_number, block_hash, State.OBSERVED, b"", now, now, finality, message_id),
        )
        digest = _store_block_evidence(conn, [block_evidence]).get(block_evidence)
        before = conn.execute(
            "SELECT block_digest FROM evidence WHERE message_id = ?", (message_id,)
        ).fetchone()
        conn.execute(
            "INSERT INTO evidence (message_id, evidence, block_digest) VALUES (?, ?, ?)"
            " ON CONFLICT (message_id) DO UPDATE SET evidence = excluded.evidence,"
            " block_digest = excluded.block_digest",
            (message_id, evidence, digest),
        )
        if before is not None and before[0] is not None and before[0] != digest:
            # The old block's evidence goes with the last message that left that block: no
            # message could reach it again, and prune only sees what its messages reference.
            conn.execute(_DROP_UNREFERENCED_BLOCK_EVIDENCE.format("?"), (before[0],))
        self._history(
            conn, message_id, now, from_state=state, to_state=State.OBSERVED, detail=detail
        )

    # --- transitions -----------------------------------------------------------------------------

    def transition(
        self,
        id: bytes,
        to: State,
        *,
        expect: State | Collection[State] | None = None,
        detail: str | None = None,
        error: str | None = None,
        signatures: Sequence[bytes] | None = None,
        tx_hash: bytes | None = None,
        tx_nonce: int | None = None,
        clear_tx: bool = False,
        next_attempt_at: float | None = None,
        reset_attempts: bool = False,
    ) -> MessageRecord:
        """Move one message to ``to`` and return it as committed.

        Refused (``StoreError``) when the id is unknown, its state is not in ``expect`` (when
        given) or the transition is not in ``ALLOWED_TRANSITIONS``. Fields given are written;
        ``error`` also becomes ``last_error``; ``clear_tx`` empties tx_hash/tx_nonce (before the
        given ones are written). ``next_attempt_at`` defaults to now, so a message that enters a
        new state is due at once rather than after the previous state's backoff. A signed
        transaction is stored only by ``mark_submitted``; one that no submitted message holds
        any more after this move is forgotten."""
        wanted = _states(expect)
        to = State(to)
        packed = None if signatures is None else _pack_signatures(signatures)
        with self._write() as conn:
            now = self._clock()
            record = self._fetch(conn, id)
            self._check(record, to, wanted)
            sets = ["state = ?", "updated_at = ?", "next_attempt_at = ?"]
            args: list[Any] = [to, now, now if next_attempt_at is None else next_attempt_at]
            if clear_tx:
                sets += ["tx_hash = NULL", "tx_nonce = NULL"]
            for column, value in (
                ("last_error", error),
                ("signatures", packed),
                ("tx_hash", tx_hash),
                ("tx_nonce", tx_nonce),
            ):
                if value is not None:
                    sets.append(f"{column} = ?")
                    args.append(value)
            if reset_attempts:
                sets.append("attempts = 0")
            conn.execute(
                f"UPDATE messages SET {', '.join(sets)} WHERE id = ?",  # noqa: S608 -- fixed names
                (*args, id),
            )
            self._history(
                conn, id, now, from_state=record.state, to_state=to, detail=detail, error=error
            )
            if record.tx_hash is not None:
                self._prune_txs(conn, [(record.destination_chain, record.tx_hash)])
            return self._fetch(conn, id)

    def transition_many(
        self,
        ids: Iterable[bytes],
        to: State,
        *,
        expect: State | Collection[State] | None,
        detail: str | None = None,
    ) -> int:
        """``transition`` for many messages in one transaction, all or nothing: one unknown id
        or refused transition raises ``StoreError`` and changes none. Returns how many moved."""
        wanted = _states(expect)
        to = State(to)
        unique = list(dict.fromkeys(ids))
        with self._write() as conn:
            now = self._clock()
            txs: set[tuple[str, bytes]] = set()
            briefs = self._briefs(conn, unique)
            for record in briefs:
                self._check(record, to, wanted)
                if record.tx_hash is not None:
                    txs.add((record.destination_chain, record.tx_hash))
            self._move(conn, now, [(r.id, r.state, to, detail) for r in briefs])
            self._prune_txs(conn, txs)
            return len(unique)

    def mark_attested(self, items: Sequence[tuple[bytes, Sequence[bytes], str | None]]) -> int:
        """VERIFIED -> ATTESTED for many messages in one transaction, each with its own quorum
        of signatures and detail; all or nothing (``StoreError`` as ``transition``)."""
        with self._write() as conn:
            now = self._clock()
            briefs = self._briefs(conn, [message_id for message_id, _, _ in items])
            if len({record.id for record in briefs}) != len(briefs):
                # As attesting one twice in a row would be: ATTESTED -> ATTESTED is refused.
                raise StoreError("mark_attested was given the same message twice")
            for record in briefs:
                self._check(record, State.ATTESTED, frozenset({State.VERIFIED}))
            conn.executemany(
                "UPDATE messages SET state = ?, signatures = ?, updated_at = ?,"
                " next_attempt_at = ? WHERE id = ?",
                [
                    (State.ATTESTED, _pack_signatures(signatures), now, now, message_id)
                    for message_id, signatures, _ in items
                ],
            )
            self._histories(
                conn,
                now,
                [
                    (record.id, record.state, State.ATTESTED, detail)
                    for record, (_, _, detail) in zip(briefs, items, strict=True)
                ],
            )
            return len(items)

    def mark_submitted(
        self,
        ids: Iterable[bytes],
        *,
        tx_hash: bytes,
        tx_nonce: int,
        raw_tx: bytes,
        detail: str | None = None,
        owner: str | None = None,
        signer: bytes | None = None,
    ) -> int:
        """Record that one signed transaction carries ``ids``, in one transaction, all or
        nothing: attested messages move to SUBMITTED; messages already SUBMITTED (a fee-bumped
        replacement of their transaction) stay there with the new tx fields. Anything else, or
        messages bound for more than one chain, raises ``StoreError``. The signed bytes are
        stored before they are broadcast, so a restart can re-broadcast or replace the very
        transaction that may be in a mempool (``pending_txs``).

        The bytes are stored once, not per message; a replaced transaction that no submitted
        message holds any more is forgotten: the replacement lists every hash signed at its
        nonce, which is all a restart needs to find whichever of them is mined.

        ``owner``: the worker that claimed the messages (``claim``). Where workers share the
        ledger, one whose lease on any of them ran out meanwhile is refused with
        ``LeaseLostError`` (another worker may be submitting them), before anything is
        recorded: the caller must not send the transaction.

        ``signer``: the account that signed it, stored with it so that a restarted worker
        recovers only its own transactions (``pending_txs``)."""
        with self._write() as conn:
            return self._submitted(
                conn,
                self._clock(),
                ids,
                tx_hash=tx_hash,
                tx_nonce=tx_nonce,
                raw_tx=raw_tx,
                detail=detail,
                owner=owner,
                signer=signer,
            )

    def mark_submitted_many(self, txs: Sequence[SubmittedTx], *, owner: str | None = None) -> int:
        """``mark_submitted`` for several transactions (consecutive nonces signed together) in
        one transaction, all or nothing; returns how many messages were recorded. ``owner``
        as in ``mark_submitted``."""
        with self._write() as conn:
            now = self._clock()
            return sum(
                self._submitted(
                    conn,
                    now,
                    tx.ids,
                    tx_hash=tx.tx_hash,
                    tx_nonce=tx.tx_nonce,
                    raw_tx=tx.raw_tx,
                    owner=owner,
                    signer=tx.signer,
                )
                for tx in txs
            )

    def _submitted(
        self,
        conn: _Conn,
        now: float,
        ids: Iterable[bytes],
        *,
        tx_hash: bytes,
        tx_nonce: int,
        raw_tx: bytes,
        detail: str | None = None,
        owner: str | None = None,
        signer: bytes | None = None,
    ) -> int:
        unique = list(dict.fromkeys(ids))
        if owner is not None:
            self._check_leases(conn, unique, owner, now)
        chains: set[str] = set()
        replaced: set[tuple[str, bytes]] = set()
        moves: list[tuple[bytes, State | None, State, str | None]] = []
        for brief in self._briefs(conn, unique):
            if brief.state not in {State.ATTESTED, State.SUBMITTED}:
                raise StoreError(
                    f"message {_short(brief.id)} is {brief.state}; only attested or "
                    "submitted messages can be put in a transaction"
                )
            chains.add(brief.destination_chain)
            if brief.tx_hash is not None and brief.tx_hash != tx_hash:
                replaced.add((brief.destination_chain, brief.tx_hash))
            verb = "replaced by" if brief.state is State.SUBMITTED else "submitted in"
            moves.append(
                (
                    brief.id,
                    brief.state,
                    State.SUBMITTED,
                    detail or f"{verb} tx {_short(tx_hash)} (nonce {tx_nonce})",
                )
            )
        conn.executemany(
            "UPDATE messages SET state = ?, tx_hash = ?, tx_nonce = ?,"
            " next_attempt_at = ?, updated_at = ? WHERE id = ?",
            [(State.SUBMITTED, tx_hash, tx_nonce, now, now, mid) for mid, *_ in moves],
        )
        self._histories(conn, now, moves)
        if len(chains) > 1:
            raise StoreError(
                f"tx {_short(tx_hash)} cannot carry messages for {sorted(chains)}: "
                "a transaction lands on one destination chain"
            )
        for chain in chains:
            conn.execute(
                "INSERT INTO pending_txs"
                " (destination_chain, tx_hash, tx_nonce, raw_tx, created_at, signer)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (destination_chain, tx_hash) DO UPDATE"
                " SET tx_nonce = excluded.tx_nonce, raw_tx = excluded.raw_tx,"
                " signer = excluded.signer",
                (chain, tx_hash, tx_nonce, raw_tx, now, signer),
            )
        self._prune_txs(conn, replaced)
        return len(unique)

    def postpone(
        self, ids: Iterable[bytes], *, delay: float, state: State, unchanged_for: float = 0.0
    ) -> int:
        """Make messages due again only in ``delay`` seconds, state and history unchanged (not
        an attempt: e.g. verified messages whose signatures are long overdue, so that they
        stop filling the head of ``due`` before newer ones). Only those still in ``state`` and
        unchanged for ``unchanged_for`` seconds are touched (one that moved meanwhile, say
        re-verified after a reorg, is left due). Returns how many were postponed."""
        if delay < 0 or unchanged_for < 0:
            raise StoreError(f"postpone needs delays >= 0, got {delay} and {unchanged_for}")
        unique = list(dict.fromkeys(ids))
        with self._write() as conn:
            now = self._clock()
            return conn.executemany(
                "UPDATE messages SET next_attempt_at = ?"
                " WHERE id = ? AND state = ? AND updated_at <= ?",
                [
                    (now + delay, message_id, State(state), now - unchanged_for)
                    for message_id in unique
                ],
            ).rowcount

    def schedule_retry(
        self,
        id: bytes,
        *,
        error: str,
        delay: float,
        to: State | None = None,
        expect: State | Collection[State] | None = None,
    ) -> MessageRecord:
        """Count a failed attempt: attempts + 1, ``last_error``, due again in ``delay`` seconds,
        and, with ``to``, move the message (allowed transitions only). The schedule is in the
        ledger, so a restart keeps the backoff instead of hammering a failing endpoint."""
        if delay < 0:
            raise StoreError(f"retry delay must not be negative, got {delay}")
        wanted = _states(expect)
        with self._write() as conn:
            now = self._clock()
            record = self._fetch(conn, id)
            target = record.state if to is None else State(to)
            if to is not None:
                self._check(record, target, wanted)
            elif wanted is not None and record.state not in wanted:
                raise StoreError(
                    f"message {_short(id)} is {record.state}, expected {_describe(wanted)} "
                    "before scheduling its retry"
                )
            attempts = record.attempts + 1
            conn.execute(
                "UPDATE messages SET state = ?, attempts = ?, last_error = ?,"
                " next_attempt_at = ?, updated_at = ? WHERE id = ?",
                (target, attempts, error, now + delay, now, id),
            )
            self._history(
                conn,
                id,
                now,
                from_state=record.state,
                to_state=target,
                detail=f"retry {attempts} in {delay:g}s",
                error=error,
            )
            if record.tx_hash is not None:
                self._prune_txs(conn, [(record.destination_chain, record.tx_hash)])
            return self._fetch(conn, id)

    def clear_failed(self, route: str | None = None, ids: Iterable[bytes] | None = None) -> int:
        """The operator's ``relayer clear``: failed messages (of ``route``, or only ``ids``) go
        back to attested with a fresh retry budget, due now. Ids that are not failed are left
        alone. Returns how many were cleared."""
        with self._write() as conn:
            now = self._clock()
            if ids is not None:
                chosen = []
                for message_id in dict.fromkeys(ids):
                    row = conn.execute(
                        "SELECT route FROM messages WHERE id = ? AND state = ?",
                        (message_id, State.FAILED),
                    ).fetchone()
                    if row is not None and (route is None or row[0] == route):
                        chosen.append(message_id)
            elif route is not None:
                chosen = [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM messages WHERE route = ? AND state = ?",
                        (route, State.FAILED),
                    )
                ]
            else:
                chosen = [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM messages WHERE state = ?", (State.FAILED,)
                    )
                ]
            for message_id in chosen:
                conn.execute(
                    "UPDATE messages SET state = ?, attempts = 0, next_attempt_at = ?,"
                    " updated_at = ? WHERE id = ?",
                    (State.ATTESTED, now, now, message_id),
                )
                self._history(
                    conn,
                    message_id,
                    now,
                    from_state=State.FAILED,
                    to_state=State.ATTESTED,
                    detail="cleared by operator",
                )
            return len(chosen)

    def orphan_above(self, chain: str, block_number: int, *, reason: str) -> list[bytes]:
        """After a reorg of ``chain`` deeper than its finality, forked at ``block_number``:
        every message of ``chain`` from a block above it that is observed, verified, attested
        or failed moves to ORPHANED, in one transaction, with ``reason`` (what the reorg was)
        and the block it was recorded from in its history and ``last_error``; returns their
        ids, by block and nonce. Submitted and delivered messages are left alone (a
        transaction may be in flight or mined; the destination refuses replays), as are those
        already orphaned: a second call for the same reorg moves nothing.

        Call it before rescanning from the fork point: a message the canonical chain includes
        again is then observed again (back to OBSERVED, whatever its block), and what stays
        ORPHANED is what the canonical chain does not hold. Where workers share the ledger,
        an attested message's claim ends with it (the lease ends with the state), so a worker
        about to submit it finds its lease lost."""
        orphanable = sorted(_ORPHANABLE)
        marks = ", ".join("?" * len(orphanable))
        with self._write() as conn:
            now = self._clock()
            # By state first: the orphanable messages are the ledger's few unfinished ones, far
            # fewer than the chain's whole history.
            rows = conn.execute(
                "SELECT id, state, block_number, block_hash"  # noqa: S608 -- constants, placeholders
                f" FROM {self._dialect.unfinished_by_state}"
                f" WHERE state IN ({marks}) AND origin_chain = ? AND block_number > ?"
                " ORDER BY block_number, nonce",
                (*orphanable, chain, block_number),
            ).fetchall()
            moves: list[tuple[bytes, State | None, State, str | None]] = [
                (
                    bytes(message_id),
                    State(state),
                    State.ORPHANED,
                    f"origin block {number} ({_short(bytes(block_hash))}) is no longer"
                    f" canonical: {reason}",
                )
                for message_id, state, number, block_hash in rows
            ]
            conn.executemany(
                "UPDATE messages SET state = ?, last_error = ?, updated_at = ?,"
                " next_attempt_at = ? WHERE id = ?",
                [(State.ORPHANED, detail, now, now, mid) for mid, _, _, detail in moves],
            )
            self._histories(conn, now, moves)
            return [message_id for message_id, *_ in moves]

    # --- route pauses ----------------------------------------------------------------------------

    def pause_route(self, route: str, *, reason: str, by: str) -> bool:
        """Pause ``route`` (``origin->destination``): ``claim`` with the paused routes in its
        ``skip_routes`` passes its messages over until ``resume_route``. True if it was not
        paused before; a route paused already keeps its first reason, time and author."""
        if not route:
            raise StoreError("pause_route needs a route, got an empty name")
        with self._write() as conn:
            inserted = conn.execute(
                "INSERT INTO route_pauses (route, reason, paused_at, paused_by)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (route) DO NOTHING",
                (route, reason, self._clock(), by),
            ).rowcount
        return inserted == 1

    def resume_route(self, route: str) -> RoutePause | None:
        """Lift the pause of ``route``; returns it, or None if the route was not paused."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT route, reason, paused_at, paused_by FROM route_pauses WHERE route = ?",
                (route,),
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM route_pauses WHERE route = ?", (route,))
        return _route_pause(row)

    def paused_routes(self) -> dict[str, RoutePause]:
        """Every paused route and its pause."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT route, reason, paused_at, paused_by FROM route_pauses ORDER BY route"
            ).fetchall()
        return {pause.route: pause for pause in map(_route_pause, rows)}

    # --- fees paid -------------------------------------------------------------------------------

    def record_fee(
        self, chain: str, signer: bytes, fee: int, *, tx_hash: bytes, at: float | None = None
    ) -> bool:
        """Record that the key ``signer`` paid ``fee`` (the chain's smallest unit, above 0) for
        its transaction ``tx_hash``, mined on ``chain``, at ``at`` (the ledger clock's seconds;
        default now): what a worker holding that key later counts against its hourly budget
        (``fees_since``). True if recorded now, False if that transaction's fee was already:
        a settle replayed after a restart counts it once. Rows older than ``FEE_KEEP`` go in the
        same transaction."""
        if fee <= 0:
            raise StoreError(f"a fee paid is above 0, got {fee} for tx {_short(tx_hash)}")
        with self._write() as conn:
            now = self._clock()
            inserted = conn.execute(
                "INSERT INTO fees_paid (chain, tx_hash, signer, paid_at, fee)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (chain, tx_hash) DO NOTHING",
                # Decimal digits: exact on both engines, whatever the size (the column is TEXT
                # on SQLite, NUMERIC on Postgres, which casts them).
                (chain, tx_hash, signer, now if at is None else at, str(fee)),
            ).rowcount
            conn.execute("DELETE FROM fees_paid WHERE paid_at < ?", (now - FEE_KEEP,))
        return inserted == 1

    def fees_since(self, chain: str, signer: bytes, since: float) -> list[tuple[float, int]]:
        """``(paid_at, fee)`` of each fee the key ``signer`` paid on ``chain`` after ``since``
        (the ledger clock's seconds), oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT paid_at, fee FROM fees_paid"
                " WHERE chain = ? AND signer = ? AND paid_at > ? ORDER BY paid_at",
                (chain, signer, since),
            ).fetchall()
        # int() of the TEXT (SQLite) or of the Decimal (Postgres): exact either way.
        return [(float(at), int(fee)) for at, fee in rows]

    # --- queries ---------------------------------------------------------------------------------

    def states(self, ids: Iterable[bytes]) -> dict[bytes, State]:
        """The state of each of ``ids`` the ledger holds (absent ids are left out), in one
        query per 500 ids rather than a record read per message."""
        with self._read() as conn:
            return self._states_in(conn, list(dict.fromkeys(ids)))

    def get(self, id: bytes) -> MessageRecord | None:
        with self._read() as conn:
            row = conn.execute(f"{_SELECT} WHERE id = ?", (id,)).fetchone()
        return None if row is None else _record(row)

    def evidence(self, id: bytes) -> bytes | None:
        """The evidence the message was recorded with (of its current origin block)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT evidence FROM evidence WHERE message_id = ?", (id,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def block_evidence(self, id: bytes) -> bytes | None:
        """The block evidence the message was recorded with (``b""`` if it came with none),
        or None for a message the ledger does not hold."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT b.evidence FROM evidence e LEFT JOIN block_evidence b"
                " ON b.digest = e.block_digest WHERE e.message_id = ?",
                (id,),
            ).fetchone()
        if row is None:
            return None
        return b"" if row[0] is None else bytes(row[0])

    # --- light clients -------------------------------------------------------------------------

    def light_client(self, chain: str, owner: str) -> LightClientRow | None:
        """The state ``owner`` saved for its light client of ``chain``, if any (of whatever
        mode it was)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT owner, chain, mode, state, updated_at FROM light_clients"
                " WHERE chain = ? AND owner = ?",
                (chain, owner),
            ).fetchone()
        return None if row is None else _light_client_row(row)

    def light_clients(self) -> list[LightClientRow]:
        """Every saved light-client state, by chain and owner."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT owner, chain, mode, state, updated_at FROM light_clients"
                " ORDER BY chain, owner"
            ).fetchall()
        return [_light_client_row(r) for r in rows]

    def save_light_client(self, chain: str, owner: str, mode: str, state: bytes) -> None:
        """Replace the light-client state ``owner`` keeps for ``chain``."""
        if not state:
            raise StoreError(f"chain `{chain}`: an empty light-client state cannot be saved")
        with self._write() as conn:
            conn.execute(
                "INSERT INTO light_clients (owner, chain, mode, state, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (owner, chain) DO UPDATE SET"
                " mode = excluded.mode, state = excluded.state, updated_at = excluded.updated_at",
                (owner, chain, mode, state, self._clock()),
            )

    def find(self, prefix_hex: str, *, limit: int = 20) -> list[MessageRecord]:
        """Messages whose id starts with ``prefix_hex`` (``0x`` optional, any case): what
        ``relayer explain`` resolves a short id with."""
        prefix = prefix_hex.strip().lower().removeprefix("0x")
        if not prefix or len(prefix) > 64 or any(c not in "0123456789abcdef" for c in prefix):
            raise StoreError(f"{prefix_hex!r} is not a hex message id or prefix of one")
        low = bytes.fromhex(prefix.ljust(64, "0"))
        high = bytes.fromhex(prefix.ljust(64, "f"))
        with self._read() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE id BETWEEN ? AND ? ORDER BY id LIMIT ?", (low, high, limit)
            ).fetchall()
        return [_record(r) for r in rows]

    def history(self, id: bytes) -> list[HistoryEntry]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT at, from_state, to_state, detail, error FROM history"
                " WHERE message_id = ? ORDER BY seq",
                (id,),
            ).fetchall()
        return [
            HistoryEntry(
                at=at,
                from_state=None if from_state is None else State(from_state),
                to_state=State(to_state),
                detail=detail,
                error=error,
            )
            for at, from_state, to_state, detail, error in rows
        ]

    def due(
        self,
        state: State,
        *,
        destination_chain: str | None = None,
        origin_chain: str | None = None,
        limit: int = 500,
    ) -> list[MessageRecord]:
        """Messages in ``state`` whose next attempt is due, oldest schedule first, then by
        origin chain and nonce (so a destination sees one origin's messages in order)."""
        where, args = _due_filter(state, self._clock(), destination_chain, origin_chain)
        with self._read() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE {where} ORDER BY {_DUE_ORDER} LIMIT ?", (*args, limit)
            ).fetchall()
        return [_record(r) for r in rows]

    # --- work claims -----------------------------------------------------------------------------
    #
    # Workers that share a ledger (Postgres) take due messages with ``claim`` rather than ``due``:
    # each message is leased to one worker at a time, for ``lease`` seconds, renewed while its
    # work is in flight and ended by the transition that finishes the step; a worker that dies
    # stops renewing, and once its leases run out another worker's claim takes the messages.
    # Here a single process owns the ledger, so every lease is granted at once and never lost:
    # ``claim`` is ``due``, and the pipeline code is the same on both engines. The engine's
    # part is in the ``_claim``/``_renew``/``_release``/``_check_leases`` hooks.

    def claim(
        self,
        state: State,
        *,
        owner: str,
        lease: float,
        destination_chain: str | None = None,
        origin_chain: str | None = None,
        limit: int = 500,
        skip_routes: Collection[str] = (),
    ) -> list[MessageRecord]:
        """``due`` for one worker among several: the due messages in ``state`` that no other
        worker holds a live lease on, each now leased to ``owner`` for ``lease`` seconds, in
        ``due`` order. Concurrent claims never return the same message; a message ``owner``
        holds already is returned again (its lease extended), as ``due`` would. Messages of
        ``skip_routes`` (paused routes, say) are neither returned nor leased."""
        if lease <= 0:
            raise StoreError(f"a lease must last more than 0 seconds, got {lease}")
        now = self._clock()
        where, args = _due_filter(state, now, destination_chain, origin_chain)
        # Only when there is something to skip: the hot query stays as it always was.
        skipped = [skip_routes] if isinstance(skip_routes, str) else sorted(set(skip_routes))
        if skipped:
            where += f" AND route NOT IN ({', '.join('?' * len(skipped))})"
            args.extend(skipped)
        return self._claim(where, args, owner=owner, now=now, until=now + lease, limit=limit)

    def renew(self, ids: Iterable[bytes], *, owner: str, lease: float) -> set[bytes]:
        """Extend ``owner``'s leases on ``ids`` to ``lease`` seconds from now; returns the ids
        it still held. One missing from the answer was lost (the lease ran out and another
        worker claimed it, or its step ended): stop working on it."""
        if lease <= 0:
            raise StoreError(f"a lease must last more than 0 seconds, got {lease}")
        unique = list(dict.fromkeys(ids))
        if not unique:
            return set()
        now = self._clock()
        return self._renew(unique, owner, now=now, until=now + lease)

    def release(self, ids: Iterable[bytes], *, owner: str) -> None:
        """Give up ``owner``'s leases on ``ids`` (work set aside, or shutting down), so another
        worker need not wait for them to run out. Leases held by others are left alone."""
        unique = list(dict.fromkeys(ids))
        if unique:
            self._release(unique, owner)

    def adopt(self, ids: Iterable[bytes], *, owner: str, lease: float) -> set[bytes]:
        """Lease the submitted messages among ``ids`` to ``owner`` for ``lease`` seconds,
        whoever held them: for a restarted worker resuming the transactions of its own key,
        whose earlier worker is gone (it holds the key's lock, ``hold_signer``), so that it
        need not wait for that worker's leases to run out. Returns the ids leased (those
        still submitted)."""
        if lease <= 0:
            raise StoreError(f"a lease must last more than 0 seconds, got {lease}")
        unique = list(dict.fromkeys(ids))
        if not unique:
            return set()
        return self._adopt(unique, owner, until=self._clock() + lease)

    def _adopt(self, ids: Sequence[bytes], owner: str, *, until: float) -> set[bytes]:
        """Here every lease is this process's already."""
        return {mid for mid, state in self.states(ids).items() if state is State.SUBMITTED}

    def _claim(
        self, where: str, args: Sequence[Any], *, owner: str, now: float, until: float, limit: int
    ) -> list[MessageRecord]:
        """The due messages matching ``where``, leased to ``owner`` until ``until``: here, the
        due messages, every lease being this process's."""
        with self._read() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE {where} ORDER BY {_DUE_ORDER} LIMIT ?", (*args, limit)
            ).fetchall()
        return [_record(r) for r in rows]

    def _renew(self, ids: Sequence[bytes], owner: str, *, now: float, until: float) -> set[bytes]:
        """Of ``ids``, those whose lease ``owner`` held and now holds until ``until``: here,
        all of them."""
        return set(ids)

    def _release(self, ids: Sequence[bytes], owner: str) -> None:
        """End ``owner``'s leases on ``ids``: here, there are none to end."""

    def _check_leases(self, conn: _Conn, ids: Sequence[bytes], owner: str, now: float) -> None:
        """Raise ``LeaseLostError`` unless ``owner`` holds a live lease on each of ``ids``
        (inside the write transaction that acts on them). Here it always does."""

    def hold_signer(self, chain: str, signer: bytes, *, owner: str) -> SignerHold:
        """Keep any other worker from delivering to ``chain`` with the key ``signer`` while the
        returned hold lives (until its ``release``); ``owner`` names this worker to the one
        refused. Raises ``SignerTakenError`` when another worker holds it. Here (SQLite) a
        single process owns the ledger, and there is nobody to keep out."""
        return _NoHold()

    def in_state(
        self,
        state: State,
        *,
        destination_chain: str | None = None,
        origin_chain: str | None = None,
    ) -> list[MessageRecord]:
        """Every message in ``state``, due or not (recovery at start-up: e.g. all SUBMITTED
        transactions of a destination), in ``due`` order."""
        where = ["state = ?"]
        args: list[Any] = [State(state)]
        if destination_chain is not None:
            where.append("destination_chain = ?")
            args.append(destination_chain)
        if origin_chain is not None:
            where.append("origin_chain = ?")
            args.append(origin_chain)
        with self._read() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE {' AND '.join(where)}"
                " ORDER BY next_attempt_at, origin_chain, nonce",
                args,
            ).fetchall()
        return [_record(r) for r in rows]

    def pending_txs(
        self, destination_chain: str, *, tx_hashes: Iterable[bytes] | None = None
    ) -> list[SignedTx]:
        """The signed transactions that submitted messages bound for ``destination_chain`` are
        waiting on (recovery at start-up), by nonce; should one nonce have several, the one
        stored last (the newest replacement) comes last. Every signer's: several workers
        with keys of their own may deliver to one chain, and each recovers only its own
        (``SignedTx.signer``); ``tx_hashes``, if given, limits the answer to those."""
        query = (
            "SELECT tx_nonce, tx_hash, raw_tx, signer FROM pending_txs"  # noqa: S608 -- constant
            f" WHERE destination_chain = ? AND {_PENDING_TX_IS_USED}"
        )
        order = f" ORDER BY tx_nonce, {self._dialect.insertion_order}"
        with self._read() as conn:
            if tx_hashes is None:
                rows = conn.execute(query + order, (destination_chain,)).fetchall()
            else:
                wanted = list(dict.fromkeys(tx_hashes))
                rows = []
                for start in range(0, len(wanted), _CHUNK):
                    chunk = wanted[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows += conn.execute(
                        f"{query} AND tx_hash IN ({marks}){order}", (destination_chain, *chunk)
                    ).fetchall()
        return [
            SignedTx(
                nonce=int(nonce),
                tx_hash=bytes(tx_hash),
                raw_tx=bytes(raw_tx),
                signer=None if signer is None else bytes(signer),
            )
            for nonce, tx_hash, raw_tx, signer in rows
        ]

    def counts(self) -> dict[tuple[str, State], int]:
        """How many messages each route has in each state (states with none are absent)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT route, state, count(*) FROM messages GROUP BY route, state"
            ).fetchall()
        return {(route, State(state)): n for route, state, n in rows}

    # --- retention -------------------------------------------------------------------------------

    def prune(
        self, older_than: float, *, batch: int = PRUNE_BATCH, max_batches: int | None = None
    ) -> PruneReport:
        """Delete the messages that became final (delivered, rejected or orphaned) before
        ``older_than`` (a ``time.time()`` value), oldest first, with their history and evidence,
        and the block evidence that no message references any more. A message in any other
        state is never touched, however old: failed ones wait for `relayer clear`.

        "Became final" is the message's ``updated_at``: when it was delivered, rejected or
        orphaned, or later if an origin reorg showed it again (which only keeps it longer).

        One write transaction per ``batch`` messages, so the daemon's writers wait for one batch
        at most, never for the whole prune, and a crash leaves whole messages deleted or kept.
        ``max_batches`` stops after that many; ``complete`` then says whether it got to the
        end. Raises ``StoreError`` as every method does."""
        if batch < 1:
            raise StoreError(f"prune needs a batch of at least one message, got {batch}")
        report = PruneReport()
        while max_batches is None or report.batches < max_batches:
            step = self._prune_batch(older_than, batch)
            report += step
            if step.messages < batch:
                return report
        return replace(report, complete=False)

    def _prune_batch(self, older_than: float, limit: int) -> PruneReport:
        with self._write() as conn:
            ids = [
                bytes(message_id)
                for (message_id,) in conn.execute(
                    f"SELECT id FROM {self._dialect.final_by_age}"  # noqa: S608 -- constant
                    f" WHERE {_FINAL_BEFORE} ORDER BY updated_at LIMIT ?",
                    (older_than, limit),
                )
            ]
            if not ids:
                return PruneReport()
            digests = sorted(
                {
                    bytes(digest)
                    for (digest,) in self._each_chunk(
                        conn,
                        "SELECT DISTINCT block_digest FROM evidence"
                        " WHERE block_digest IS NOT NULL AND message_id IN ({})",
                        ids,
                    )
                }
            )
            # Children first: the history and evidence rows are counted, and the foreign keys'
            # cascades then find nothing left to do.
            history = self._delete_chunks(conn, "DELETE FROM history WHERE message_id IN ({})", ids)
            evidence = self._delete_chunks(
                conn, "DELETE FROM evidence WHERE message_id IN ({})", ids
            )
            messages = self._delete_chunks(conn, "DELETE FROM messages WHERE id IN ({})", ids)
            # Block evidence goes with the last message that referenced it; a block's other
            # messages (kept: younger, or not final) keep it.
            block_evidence = self._delete_chunks(conn, _DROP_UNREFERENCED_BLOCK_EVIDENCE, digests)
        return PruneReport(
            messages=messages,
            history=history,
            evidence=evidence,
            block_evidence=block_evidence,
            batches=1,
        )

    @staticmethod
    def _each_chunk(conn: _Conn, query: str, values: Sequence[bytes]) -> Iterator[Any]:
        """The rows of ``query`` (a constant whose ``{}`` takes the placeholders) over
        ``values``, 500 at a time."""
        for start in range(0, len(values), _CHUNK):
            chunk = values[start : start + _CHUNK]
            yield from conn.execute(query.format(",".join("?" * len(chunk))), chunk)

    @staticmethod
    def _delete_chunks(conn: _Conn, query: str, values: Sequence[bytes]) -> int:
        """``_each_chunk`` for a DELETE; returns how many rows it deleted."""
        deleted = 0
        for start in range(0, len(values), _CHUNK):
            chunk = values[start : start + _CHUNK]
            deleted += conn.execute(query.format(",".join("?" * len(chunk))), chunk).rowcount
        return deleted

    def prunable(self, older_than: float, *, batch: int = PRUNE_BATCH) -> PruneReport:
        """What ``prune(older_than, batch=batch)`` would delete now, counted by one query
        (one snapshot) for `relayer prune --dry-run`; deletes nothing."""
        if batch < 1:
            raise StoreError(f"prune needs a batch of at least one message, got {batch}")
        with self._read() as conn:
            messages, history, evidence, block_evidence = (
                int(n)
                for n in conn.execute(
                    _COUNT_PRUNABLE.format(self._dialect.final_by_age), (older_than,)
                ).fetchone()
            )
        return PruneReport(
            messages=messages,
            history=history,
            evidence=evidence,
            block_evidence=block_evidence,
            batches=-(-messages // batch),
        )

    def blocks_kept(
        self, origin_chain: str, block_hashes: Sequence[bytes], *, older_than: float
    ) -> set[bytes]:
        """Of ``block_hashes`` (origin blocks of ``origin_chain``), those holding a message
        that ``prune(older_than)`` keeps: one in any state but delivered, rejected and orphaned,
        or one that became final at or after ``older_than``. A block the ledger holds no message
        of is not among them: which is what its attestation files' pruning needs to know
        (``DirectoryCheckpointStore.prune``)."""
        unique = list(dict.fromkeys(block_hashes))
        kept: set[bytes] = set()
        with self._read() as conn:
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                kept.update(
                    bytes(block_hash)
                    for (block_hash,) in conn.execute(
                        "SELECT DISTINCT block_hash FROM messages"  # noqa: S608 -- constants and placeholders
                        f" WHERE origin_chain = ? AND block_hash IN ({marks})"
                        f" AND NOT ({_FINAL_BEFORE})",
                        (origin_chain, *chunk, older_than),
                    )
                )
        return kept

    # --- cursors and block hashes ----------------------------------------------------------------

    def get_cursor(self, chain: str, owner: str) -> Cursor | None:
        """Where ``owner`` ("relayer", "attester:<name>") stopped following ``chain``."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT block_number, block_hash FROM cursors WHERE chain = ? AND owner = ?",
                (chain, owner),
            ).fetchone()
        return None if row is None else Cursor(block_number=row[0], block_hash=row[1])

    def set_cursor(self, chain: str, owner: str, block_number: int, block_hash: bytes) -> None:
        with self._write() as conn:
            self._set_cursor(
                conn,
                chain,
                owner,
                block_number=block_number,
                block_hash=block_hash,
                now=self._clock(),
            )

    @staticmethod
    def _set_cursor(
        conn: _Conn,
        chain: str,
        owner: str,
        *,
        block_number: int,
        block_hash: bytes,
        now: float,
    ) -> None:
        conn.execute(
            "INSERT INTO cursors (chain, owner, block_number, block_hash, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (chain, owner) DO UPDATE SET"
            " block_number = excluded.block_number, block_hash = excluded.block_hash,"
            " updated_at = excluded.updated_at",
            (chain, owner, block_number, block_hash, now),
        )

    def remember_blocks(self, chain: str, owner: str, blocks: Sequence[tuple[int, bytes]]) -> None:
        """Keep (number, hash) of recent blocks, so a reorg can be found by comparing them with
        the chain's parent hashes; a number seen again gets its new hash."""
        with self._write() as conn:
            self._remember(conn, chain, owner, blocks)

    @staticmethod
    def _remember(conn: _Conn, chain: str, owner: str, blocks: Sequence[tuple[int, bytes]]) -> None:
        conn.executemany(
            "INSERT INTO blocks (chain, owner, block_number, block_hash) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (chain, owner, block_number) DO UPDATE"
            " SET block_hash = excluded.block_hash",
            [(chain, owner, number, block_hash) for number, block_hash in blocks],
        )

    def block_hash(self, chain: str, owner: str, number: int) -> bytes | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT block_hash FROM blocks WHERE chain = ? AND owner = ? AND block_number = ?",
                (chain, owner, number),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def remembered_blocks(
        self, chain: str, owner: str, *, below: int | None = None
    ) -> list[tuple[int, bytes]]:
        """The remembered (number, hash) pairs, lowest first; with ``below``, only those under
        it (the candidates for a fork point under a block whose parent does not match)."""
        query = "SELECT block_number, block_hash FROM blocks WHERE chain = ? AND owner = ?"
        args: list[Any] = [chain, owner]
        if below is not None:
            query += " AND block_number < ?"
            args.append(below)
        with self._read() as conn:
            rows = conn.execute(query + " ORDER BY block_number", args).fetchall()
        return [(int(number), bytes(block_hash)) for number, block_hash in rows]

    def forget_blocks_from(self, chain: str, owner: str, number: int) -> int:
        """Drop remembered blocks at and above ``number`` (they were reorged out)."""
        with self._write() as conn:
            return conn.execute(
                "DELETE FROM blocks WHERE chain = ? AND owner = ? AND block_number >= ?",
                (chain, owner, number),
            ).rowcount

    def prune_blocks(self, chain: str, owner: str, below: int) -> int:
        """Drop remembered blocks below ``below`` (final: no reorg can reach them)."""
        with self._write() as conn:
            return conn.execute(
                "DELETE FROM blocks WHERE chain = ? AND owner = ? AND block_number < ?",
                (chain, owner, below),
            ).rowcount

    def rewind(self, chain: str, owner: str, block_number: int, block_hash: bytes) -> None:
        """After a reorg: forget blocks above the common ancestor and move the cursor back to
        it, in one transaction."""
        with self._write() as conn:
            conn.execute(
                "DELETE FROM blocks WHERE chain = ? AND owner = ? AND block_number > ?",
                (chain, owner, block_number),
            )
            self._remember(conn, chain, owner, [(block_number, block_hash)])
            self._set_cursor(
                conn,
                chain,
                owner,
                block_number=block_number,
                block_hash=block_hash,
                now=self._clock(),
            )

    def advance(
        self,
        chain: str,
        owner: str,
        blocks: Sequence[tuple[int, bytes]],
        observed_rows: Sequence[ObservedRow | Mapping[str, Any]] = (),
    ) -> int:
        """Record the observations found in ``blocks``, remember the blocks and move the cursor
        to the highest of them, in ONE transaction: the cursor can never pass an observation
        that is not durable, and a crash replays the blocks (``record_observed`` is
        idempotent). Returns how many observations were new or changed."""
        if not blocks:
            raise StoreError(f"advance on {chain} for {owner} needs at least one block")
        batch = [_as_row(r) for r in observed_rows]
        last_number, last_hash = max(blocks, key=lambda b: b[0])
        with self._write() as conn:
            now = self._clock()
            changed = sum(self._observe(conn, row, now) for row in batch)
            self._remember(conn, chain, owner, blocks)
            self._set_cursor(
                conn, chain, owner, block_number=last_number, block_hash=last_hash, now=now
            )
            return changed

    # --- transaction nonces ----------------------------------------------------------------------

    def get_nonce(self, chain: str, address: bytes) -> int | None:
        """The next nonce this relayer will use for ``address`` on ``chain``, if it knows one."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT nonce FROM nonces WHERE chain = ? AND address = ?", (chain, address)
            ).fetchone()
        return None if row is None else int(row[0])

    def set_nonce(self, chain: str, address: bytes, nonce: int) -> None:
        if nonce < 0:
            raise StoreError(f"nonce for {_short(address)} on {chain} must not be negative")
        with self._write() as conn:
            conn.execute(
                "INSERT INTO nonces (chain, address, nonce, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (chain, address) DO UPDATE SET nonce = excluded.nonce,"
                " updated_at = excluded.updated_at",
                (chain, address, nonce, self._clock()),
            )
