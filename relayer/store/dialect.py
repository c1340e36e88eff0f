"""What differs between the ledger's SQL on SQLite and on PostgreSQL, and nothing else.

The ledger's statements are written once, in the subset both engines accept (``INSERT ... ON
CONFLICT`` upserts, ``excluded.``, standard joins and subqueries), with ``?`` placeholders. What
is left differs in a few fragments, named here, and in the placeholder style, which the Postgres
connection translates once per statement text (``to_pyformat``). The schemas differ more (BLOB
vs BYTEA, rowid vs identity columns) and live apart: ``schema.py`` and ``pg_schema.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

__all__ = ["POSTGRES", "POSTGRES_SCHEMES", "SQLITE", "Dialect", "is_postgres_url", "to_pyformat"]

#: What a ledger target starts with to select Postgres; anything else is a SQLite file path.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(target: str) -> bool:
    return target.startswith(POSTGRES_SCHEMES)


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    # Which index prune must walk. SQLite without statistics may prefer messages_due (every
    # final message, young ones included); Postgres plans from statistics and has no hint.
    final_by_age: str
    # Which index finds the unfinished messages by state (``orphan_above``). SQLite without
    # statistics prefers messages_by_block for "origin_chain = ?", which walks the chain's
    # whole history, delivered messages included, to find its few unfinished ones.
    unfinished_by_state: str
    # The column that orders pending_txs rows by when they were stored.
    insertion_order: str


SQLITE = Dialect(
    name="sqlite",
    final_by_age="messages INDEXED BY messages_final_by_age",
    unfinished_by_state="messages INDEXED BY messages_due",
    insertion_order="rowid",
)
POSTGRES = Dialect(
    name="postgres",
    final_by_age="messages",
    unfinished_by_state="messages",
    insertion_order="seq",
)


@lru_cache(maxsize=1024)
def to_pyformat(query: str) -> str:
    """``query`` with psycopg's ``%s`` placeholders for ``?``.

    The ledger's statements hold neither ``?`` nor ``%`` in a literal, which this relies on:
    a literal ``%`` would have to be written ``%%`` for psycopg."""
    return query.replace("?", "%s")
