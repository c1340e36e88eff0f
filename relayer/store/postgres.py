"""The ledger on PostgreSQL: what several relayer processes, on several machines, share.

``PostgresLedger`` is the ``Ledger``: the same methods, the same state machine, the same
statements (``relayer/store/dialect.py`` says what differs). Only the plumbing is its own: a
``psycopg_pool.ConnectionPool`` instead of one SQLite connection, so that the ledger may be used
from several threads at once (``asyncio.to_thread``), and work leases for claiming messages.

Writes are serialized per database by a transaction-scoped advisory lock, as SQLite's
``BEGIN IMMEDIATE`` serializes them per file: each write reads rows, checks the transition and
writes, and the lock is what makes that read-check-write atomic across processes without a
``FOR UPDATE`` on every read. Claims do not take it: they only touch lease columns, and lock
the rows they take with ``FOR UPDATE SKIP LOCKED``, so that concurrent claims split the due
messages between them instead of waiting on each other. Reads take no lock at all.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg_pool

from relayer.errors import StoreError
from relayer.keys import redact_url
from relayer.store.dialect import POSTGRES, to_pyformat
from relayer.store.ledger import (
    _COLUMNS,
    _DUE_ORDER,
    Clock,
    LeaseLostError,
    Ledger,
    LedgerUnavailableError,
    MessageRecord,
    SignerTakenError,
    _Conn,
    _record,
    new_owner,
)
from relayer.store.pg_schema import migrate

__all__ = ["Lease", "PostgresLedger", "new_owner"]

# The per-database advisory lock every write transaction holds (see the module's docstring).
_WRITE_LOCK = 0x78726C79_00000002
# A writer that froze inside its transaction (a stopped process, a lost network) would hold the
# write lock for ever: the server ends such a transaction after a minute, and a writer waiting
# for the lock gives up after half a minute (LedgerUnavailableError, retryable) rather than hang.
_SESSION_OPTIONS = "-c idle_in_transaction_session_timeout=60s -c lock_timeout=30s"
_CLAIM_COLUMNS = ", ".join(f"m.{column}" for column in _COLUMNS)


def _where(url: str) -> str:
    """``url`` as messages may show it: server and database, no user or password."""
    try:
        database = psycopg.conninfo.conninfo_to_dict(url).get("dbname")
    except psycopg.ProgrammingError:
        raise StoreError(
            f"the ledger URL {redact_url(url)}/... is not a valid postgresql:// URL: give"
            " postgresql://user@host:port/dbname (the password in PGPASSWORD or ~/.pgpass)"
        ) from None  # libpq's message may quote the URL, password included
    return redact_url(url) + (f"/{database}" if database else "")


def _signer_lock_key(chain: str, signer: bytes) -> int:
    """The session advisory lock (a signed 64-bit key) of delivering to ``chain`` with
    ``signer``. A hash: two pairs sharing a key would refuse a worker wrongly, with odds of
    about one in 2**63 per pair, and never let two workers share a key."""
    digest = hashlib.sha256(b"xrelayer signer\0" + chain.encode() + b"\0" + signer).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _SignerLock:
    """A session advisory lock held on a connection of its own (not the pool's: a pooled
    connection serves others between uses, and the lock must stay for the worker's life).
    Should that connection die, the server drops the lock with it."""

    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn: psycopg.Connection[Any] | None = conn

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # ends the session, and the lock with it


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a message's current step, and until when (ledger clock seconds)."""

    owner: str
    until: float


class _Connection:
    """A pool connection as the ledger's shared code uses it: ``execute``/``executemany`` with
    ``?`` placeholders, returning cursors (``fetchone``, ``fetchall``, iteration, ``rowcount``)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, query: str, parameters: Any = (), /) -> psycopg.Cursor[Any]:
        return self._conn.execute(to_pyformat(query), parameters)

    def executemany(self, query: str, parameters: Any, /) -> psycopg.Cursor[Any]:
        cursor = self._conn.cursor()
        # psycopg sends the rows in one pipeline: one round trip, not one per row.
        cursor.executemany(to_pyformat(query), parameters)
        return cursor


class PostgresLedger(Ledger):
    """The ledger in a PostgreSQL database. Create with ``Ledger.open(url)`` (or
    ``PostgresLedger.connect`` for the pool's settings); every method raises ``StoreError`` as
    ``Ledger``'s do, the driver's error chained."""

    _dialect = POSTGRES
    shared = True

    def __init__(
        self, pool: psycopg_pool.ConnectionPool[Any], *, path: str, clock: Clock = time.time
    ) -> None:
        super().__init__(None, path=path, clock=clock)
        self._pool: psycopg_pool.ConnectionPool[Any] | None = pool

    @classmethod
    def connect(
        cls,
        url: str,
        clock: Clock = time.time,
        *,
        min_connections: int = 1,
        max_connections: int = 8,
        connect_timeout: float = 10.0,
    ) -> PostgresLedger:
        """Connect to the database at ``url`` (``postgresql://user@host:port/dbname``), creating
        or migrating the schema; raises ``StoreError`` naming the server (never the password)
        when it cannot be reached or the schema is from a newer relayer."""
        where = _where(url)
        pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            url,
            min_size=min_connections,
            max_size=max_connections,
            # Autocommit: a read is one statement and needs no transaction; writes open theirs.
            kwargs={
                "autocommit": True,
                "connect_timeout": max(1, int(connect_timeout)),
                "options": _SESSION_OPTIONS,
            },
            timeout=connect_timeout,
            name="ledger",
            open=False,
        )
        try:
            pool.open(wait=True, timeout=connect_timeout)
            with pool.connection() as conn:
                migrate(conn, where=where)
        except psycopg_pool.PoolTimeout as exc:
            pool.close()
            raise LedgerUnavailableError(
                f"cannot connect to the ledger database at {where} within {connect_timeout:g} s;"
                " check that Postgres runs there and accepts this user"
            ) from exc
        except psycopg.Error as exc:
            pool.close()
            raise StoreError(f"cannot initialise the ledger at {where}: {exc}") from exc
        except BaseException:
            pool.close()
            raise
        return cls(pool, path=where, clock=clock)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def start_checkpointer(self, interval: float = 1.0, log: Any = None) -> None:
        """Nothing to do: the server checkpoints its own write-ahead log."""

    # --- transaction plumbing --------------------------------------------------------------------

    def _live_pool(self) -> psycopg_pool.ConnectionPool[Any]:
        if self._pool is None:
            raise StoreError(f"the ledger at {self.path} is closed")
        return self._pool

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._live_pool().connection() as conn:
                yield conn
        except psycopg_pool.PoolTimeout as exc:
            raise LedgerUnavailableError(
                f"ledger {self.path}: no database connection free or possible ({exc});"
                " check the server, or raise the pool's max_connections"
            ) from exc
        except psycopg.OperationalError as exc:
            raise LedgerUnavailableError(
                f"ledger {self.path}: the database server failed ({exc}); check that it runs"
            ) from exc
        except psycopg.Error as exc:
            raise StoreError(f"ledger {self.path}: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[_Conn]:
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
            yield _Connection(conn)

    @contextmanager
    def _read(self) -> Iterator[_Conn]:
        with self._connection() as conn:
            yield _Connection(conn)

    # --- work leases: the engine's part of ``Ledger.claim``, ``renew`` and ``release`` -----------

    def _claim(
        self, where: str, args: Sequence[Any], *, owner: str, now: float, until: float, limit: int
    ) -> list[MessageRecord]:
        # One statement: the rows are picked and locked (SKIP LOCKED: rows another claim is
        # taking at this instant are passed over, not waited for) and leased in one go.
        query = (
            f"WITH picked AS (SELECT id FROM messages WHERE {where}"  # noqa: S608 -- constants
            " AND (lease_until IS NULL OR lease_until <= ? OR lease_owner = ?)"
            f" ORDER BY {_DUE_ORDER} LIMIT ? FOR UPDATE SKIP LOCKED)"
            " UPDATE messages AS m SET lease_owner = ?, lease_until = ?"
            f" FROM picked WHERE m.id = picked.id RETURNING {_CLAIM_COLUMNS}"
        )
        # Not under the write lock: one statement that touches only leases, its own
        # transaction (autocommit), which is what lets claims run side by side.
        with self._read() as conn:
            rows = conn.execute(query, (*args, now, owner, limit, owner, until)).fetchall()
        records = [_record(r) for r in rows]
        # RETURNING keeps no order.
        records.sort(key=lambda r: (r.next_attempt_at, r.origin_chain, r.nonce))
        return records

    def _renew(self, ids: Sequence[bytes], owner: str, *, now: float, until: float) -> set[bytes]:
        with self._read() as conn:
            rows = conn.execute(
                "UPDATE messages SET lease_until = ? WHERE id = ANY(?)"
                " AND lease_owner = ? AND lease_until > ? RETURNING id",
                (until, list(ids), owner, now),
            ).fetchall()
        return {bytes(message_id) for (message_id,) in rows}

    def _adopt(self, ids: Sequence[bytes], owner: str, *, until: float) -> set[bytes]:
        with self._read() as conn:
            rows = conn.execute(
                "UPDATE messages SET lease_owner = ?, lease_until = ? WHERE id = ANY(?)"
                " AND state = 'submitted' RETURNING id",
                (owner, until, list(ids)),
            ).fetchall()
        return {bytes(message_id) for (message_id,) in rows}

    def _release(self, ids: Sequence[bytes], owner: str) -> None:
        with self._read() as conn:
            conn.execute(
                "UPDATE messages SET lease_owner = NULL, lease_until = NULL"
                " WHERE id = ANY(?) AND lease_owner = ?",
                (list(ids), owner),
            )

    def _check_leases(self, conn: _Conn, ids: Sequence[bytes], owner: str, now: float) -> None:
        # FOR UPDATE: from here to the commit, a claim skips these rows, so a lease seen live
        # cannot pass to another worker before this transaction records what ours did.
        rows = conn.execute(
            "SELECT id, lease_owner, lease_until FROM messages WHERE id = ANY(?)"
            " ORDER BY id FOR UPDATE",
            (list(ids),),
        ).fetchall()
        for message_id, holder, until in rows:
            if holder != owner or until <= now:
                held = "nobody" if holder is None else f"`{holder}`"
                raise LeaseLostError(
                    f"message 0x{bytes(message_id).hex()} is no longer leased to `{owner}` (held"
                    f" by {held} now): its lease ran out while this worker was busy, and another"
                    " worker may be delivering it; this batch is dropped, not sent"
                )

    # --- signers ---------------------------------------------------------------------------------

    def hold_signer(self, chain: str, signer: bytes, *, owner: str) -> _SignerLock:
        key = _signer_lock_key(chain, signer)
        pool = self._live_pool()
        conninfo = pool.conninfo if isinstance(pool.conninfo, str) else pool.conninfo()
        try:
            conn = psycopg.connect(
                conninfo,
                autocommit=True,
                connect_timeout=max(1, int(pool.timeout)),
                # What the refused worker is told of the holder (pg_stat_activity); 63 bytes.
                application_name=owner[:63],
                # The session is idle for the worker's life: keepalives make a dead peer (or
                # a middlebox that dropped the connection) show, on both sides, in minutes.
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
            )
        except psycopg.Error as exc:
            raise LedgerUnavailableError(
                f"ledger {self.path}: cannot open the connection that holds the signer lock"
                f" ({exc}); check that the database runs"
            ) from exc
        try:
            held = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if held is not None and held[0]:
                return _SignerLock(conn)
            row = conn.execute(
                "SELECT a.application_name, a.client_addr, a.pid FROM pg_locks l"
                " JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory'"
                " AND l.granted AND l.objsubid = 1 AND l.classid = %s AND l.objid = %s",
                ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
            ).fetchone()
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"ledger {self.path}: cannot take the signer lock: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        conn.close()
        holder = (
            "another worker"
            if row is None
            else f"another worker (`{row[0]}`, client {row[1] or 'local'}, server pid {row[2]})"
        )
        raise SignerTakenError(
            f"signer 0x{signer.hex()} already delivers to {chain} from {holder}: give each"
            " worker its own key (two workers with one key take each other's nonces)"
        )

    def lease(self, id: bytes) -> Lease | None:
        """The lease on message ``id``, live or run out, if any (``relayer explain``, tests)."""
        with self._connection() as conn:
            row = conn.execute(
                "SELECT lease_owner, lease_until FROM messages WHERE id = %s", (id,)
            ).fetchone()
        if row is None or row[0] is None:
            return None
        return Lease(owner=str(row[0]), until=float(row[1]))
