"""Route pauses kept in the ledger (``Ledger.pause_route`` / ``resume_route`` /
``paused_routes``) and the claims that pass over paused routes (``claim(skip_routes=...)``).

Every test runs on both engines, SQLite and Postgres (a throwaway cluster,
tests/integration/postgres.py); what only several processes sharing Postgres show is in
tests/integration/test_ledger_postgres.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from relayer.errors import StoreError
from relayer.store import Ledger, RoutePause, State
from relayer.store.ledger import _DUE_ORDER, _SELECT
from tests.unit.relayer.test_ledger import FakeClock, mid, row

# The fixtures ledger_target, postgres_url, postgres_cluster.
pytest_plugins = ["tests.integration.postgres"]

A_B, C_B, A_D = "chain-a->chain-b", "chain-c->chain-b", "chain-a->chain-d"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(ledger_target: str, clock: FakeClock) -> Iterator[Ledger]:
    with Ledger.open(ledger_target, clock=clock) as led:
        yield led


# --- pauses --------------------------------------------------------------------------------------


def test_a_pause_is_kept_until_the_route_is_resumed(ledger: Ledger, clock: FakeClock) -> None:
    assert ledger.paused_routes() == {}
    assert ledger.pause_route(A_B, reason="3 reverts in a row", by="worker@h:1:ab")
    clock.advance(10)
    assert ledger.pause_route(C_B, reason="operator", by="cli")

    first = RoutePause(
        route=A_B, reason="3 reverts in a row", paused_at=1_000.0, paused_by="worker@h:1:ab"
    )
    assert ledger.paused_routes() == {
        A_B: first,
        C_B: RoutePause(route=C_B, reason="operator", paused_at=1_010.0, paused_by="cli"),
    }

    assert ledger.resume_route(A_B) == first
    assert ledger.paused_routes().keys() == {C_B}
    assert ledger.resume_route(A_B) is None, "not paused any more"
    assert ledger.resume_route("chain-x->chain-y") is None, "never paused"


def test_a_second_pause_keeps_the_first_reason_and_time(ledger: Ledger, clock: FakeClock) -> None:
    assert ledger.pause_route(A_B, reason="first", by="one")
    clock.advance(60)
    assert not ledger.pause_route(A_B, reason="second", by="two")
    assert ledger.paused_routes() == {
        A_B: RoutePause(route=A_B, reason="first", paused_at=1_000.0, paused_by="one")
    }
    ledger.resume_route(A_B)
    assert ledger.pause_route(A_B, reason="third", by="three"), "paused anew after a resume"
    assert ledger.paused_routes()[A_B].paused_at == 1_060.0


def test_a_pause_outlives_the_process(ledger_target: str, clock: FakeClock) -> None:
    with Ledger.open(ledger_target, clock=clock) as led:
        led.pause_route(A_B, reason="breaker", by="w")
    with Ledger.open(ledger_target, clock=clock) as led:
        assert led.paused_routes()[A_B].reason == "breaker"


def test_a_route_without_a_name_cannot_be_paused(ledger: Ledger) -> None:
    with pytest.raises(StoreError, match="needs a route"):
        ledger.pause_route("", reason="x", by="y")


# --- claims --------------------------------------------------------------------------------------


def _verified(led: Ledger) -> dict[str, list[bytes]]:
    """Two verified messages per route, interleaved in due order."""
    routes = {A_B: ("chain-a", "chain-b"), C_B: ("chain-c", "chain-b"), A_D: ("chain-a", "chain-d")}
    ids: dict[str, list[bytes]] = {route: [] for route in routes}
    rows = []
    for n in range(6):
        route = list(routes)[n % 3]
        origin, destination = routes[route]
        rows.append(row(n, origin=origin, destination=destination))
        ids[route].append(mid(n))
    led.record_observed_many(rows, [None] * len(rows))
    return ids


def test_a_claim_passes_over_the_routes_it_is_told_to_skip(ledger: Ledger) -> None:
    ids = _verified(ledger)
    every = [r.id for r in ledger.claim(State.VERIFIED, owner="w", lease=30)]
    assert len(every) == 6

    got = ledger.claim(State.VERIFIED, owner="w", lease=30, skip_routes=[A_B, "chain-x->chain-y"])
    assert [r.id for r in got] == [m for m in every if m not in ids[A_B]], "due order kept"
    got = ledger.claim(
        State.VERIFIED, owner="w", lease=30, destination_chain="chain-b", skip_routes={C_B}
    )
    assert [r.id for r in got] == ids[A_B]
    got = ledger.claim(State.VERIFIED, owner="w", lease=30, skip_routes=(A_B, C_B, A_D), limit=1)
    assert got == []
    # One route given as a string is that route, not its characters.
    got = ledger.claim(State.VERIFIED, owner="w", lease=30, skip_routes=A_D)
    assert {r.route for r in got} == {A_B, C_B}


def test_claims_skip_what_paused_routes_hold(ledger: Ledger) -> None:
    ids = _verified(ledger)
    ledger.pause_route(C_B, reason="breaker", by="w")
    got = ledger.claim(
        State.VERIFIED, owner="w", lease=30, skip_routes=ledger.paused_routes().keys()
    )
    assert sorted(r.id for r in got) == sorted(ids[A_B] + ids[A_D])
    ledger.resume_route(C_B)
    got = ledger.claim(
        State.VERIFIED, owner="w", lease=30, skip_routes=ledger.paused_routes().keys()
    )
    assert len(got) == 6


class _Recorder:
    """A ledger connection that remembers the statements run on it."""

    def __init__(self, conn: Any, seen: list[str]) -> None:
        self._conn = conn
        self._seen = seen

    def execute(self, sql: str, *args: Any) -> Any:
        self._seen.append(sql)
        return self._conn.execute(sql, *args)


def _claim_sql(led: Ledger, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> list[str]:
    seen: list[str] = []
    reads = led._read

    @contextmanager
    def recording() -> Iterator[Any]:
        with reads() as conn:
            yield _Recorder(conn, seen)

    monkeypatch.setattr(led, "_read", recording)
    try:
        led.claim(State.VERIFIED, owner="w", lease=30, destination_chain="chain-b", **kw)
    finally:
        monkeypatch.setattr(led, "_read", reads)
    return seen


def test_a_claim_with_nothing_to_skip_runs_the_query_it_always_ran(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    _verified(ledger)
    where = "state = ? AND next_attempt_at <= ? AND destination_chain = ?"
    if ledger.shared:
        from relayer.store.postgres import _CLAIM_COLUMNS  # noqa: PLC0415 -- loads psycopg

        hot = (
            f"WITH picked AS (SELECT id FROM messages WHERE {where}"
            " AND (lease_until IS NULL OR lease_until <= ? OR lease_owner = ?)"
            f" ORDER BY {_DUE_ORDER} LIMIT ? FOR UPDATE SKIP LOCKED)"
            " UPDATE messages AS m SET lease_owner = ?, lease_until = ?"
            f" FROM picked WHERE m.id = picked.id RETURNING {_CLAIM_COLUMNS}"
        )
    else:
        hot = f"{_SELECT} WHERE {where} ORDER BY {_DUE_ORDER} LIMIT ?"

    assert _claim_sql(ledger, monkeypatch) == [hot]
    assert _claim_sql(ledger, monkeypatch, skip_routes=()) == [hot]
    assert _claim_sql(ledger, monkeypatch, skip_routes=set()) == [hot]
    skipping = _claim_sql(ledger, monkeypatch, skip_routes=[C_B, A_B])
    assert skipping != [hot]
    assert "route NOT IN (?, ?)" in skipping[0]
