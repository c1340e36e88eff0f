"""relayer.core's attestation collector on a ledger that several processes share: it claims
the verified messages it works on, so that two collectors never attest one message, and one
that stops leaves its messages to the others once its lease runs out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relayer.core import Core
from relayer.store import Ledger, State
from relayer.store.postgres import PostgresLedger
from tests.unit.relayer.test_core import (
    COMMITTEE_KEYS,
    Harness,
    _never,
    genuine,
    run_collector,
)
from tests.unit.relayer.test_ledger import FakeClock

# The fixtures postgres_url, postgres_cluster.
pytest_plugins = ["tests.integration.postgres"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def h(tmp_path: Path, postgres_url: str, clock: FakeClock) -> Iterator[Harness]:
    """The core's harness on a Postgres ledger (the checkpoints stay in their directory)."""
    harness = Harness(tmp_path)
    harness.ledger.close()
    harness.ledger = Ledger.open(postgres_url, clock=clock)
    harness.core = Core(harness.config, harness.ledger, harness.store, harness.log)
    try:
        yield harness
    finally:
        harness.ledger.close()


async def test_a_collector_leaves_messages_another_holds_until_their_lease_runs_out(
    h: Harness, clock: FakeClock
) -> None:
    await h.core.accept(genuine())
    records = h.ledger.in_state(State.VERIFIED)
    for record in records:
        h.attest(COMMITTEE_KEYS[1], record)
        h.attest(COMMITTEE_KEYS[2], record)
    # Another collector (another process) holds the first two.
    held = [r.id for r in records[:2]]
    other = h.ledger.claim(State.VERIFIED, owner="collector@elsewhere", lease=30, limit=2)
    assert [r.id for r in other] == held

    rest = [r.id for r in records[2:]]
    # Until the others are attested (a fixed number of loop turns was not always enough for
    # the collector's thread hops on a loaded machine), and some turns more.
    await run_collector(
        h, until=lambda: all(s is State.ATTESTED for s in h.ledger.states(rest).values())
    )
    await run_collector(h, until=_never, rounds=50)
    assert h.ledger.states(held) == dict.fromkeys(held, State.VERIFIED)
    assert h.ledger.states(rest) == dict.fromkeys(rest, State.ATTESTED)
    assert isinstance(h.ledger, PostgresLedger)
    assert all(h.ledger.lease(i) is None for i in rest)  # attesting ended the lease

    clock.advance(31)  # the other collector stopped: its leases ran out
    ids = [r.id for r in records]
    await run_collector(
        h, until=lambda: all(s is State.ATTESTED for s in h.ledger.states(ids).values())
    )
    assert h.ledger.states(ids) == dict.fromkeys(ids, State.ATTESTED)
