"""The daemon and three attesters as real processes between two real anvil chains."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable

import pytest

from chains.evm.devnet import Devnet

pytestmark = pytest.mark.slow


def _events(devnet: Devnet, name: str) -> list[dict[str, object]]:
    out = []
    for line in (devnet.work / f"{name}.log").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _assert_exactly_once(devnet: Devnet, expected: dict[str, set[bytes]]) -> None:
    for chain, ids in expected.items():
        events = asyncio.run(devnet.delivered_events(chain))
        assert set(events) == ids, f"{chain}: delivered ids differ from the ids sent"
        doubled = {i.hex(): n for i, n in events.items() if n != 1}
        assert not doubled, f"{chain}: delivered more than once: {doubled}"


def test_200_messages_both_ways_are_delivered_exactly_once(
    devnet_factory: Callable[..., Devnet],
) -> None:
    devnet = devnet_factory()
    devnet.start_attesters()
    devnet.start_daemon()

    async def flow() -> tuple[list[tuple[bytes, float]], list[tuple[bytes, float]]]:
        return await asyncio.gather(
            devnet.send("chain-a", "chain-b", 100), devnet.send("chain-b", "chain-a", 100)
        )

    a_to_b, b_to_a = asyncio.run(flow())
    latencies = asyncio.run(
        devnet.await_delivery({"chain-b": a_to_b, "chain-a": b_to_a}, timeout=120, alive=None)
    )
    assert len(latencies) == 200
    _assert_exactly_once(
        devnet, {"chain-b": {i for i, _ in a_to_b}, "chain-a": {i for i, _ in b_to_a}}
    )
    counts = devnet.ledger_counts()
    assert counts == {"delivered": 200}, counts
    verified = [e for e in _events(devnet, "relayer") if e.get("event") == "message.verified"]
    assert len(verified) == 200


def test_a_reverting_recipient_is_retried_on_schedule_and_sinks_nothing_else(
    devnet_factory: Callable[..., Devnet],
) -> None:
    devnet = devnet_factory()
    devnet.start_attesters()
    devnet.start_daemon()
    bodies = [b"first", b"revert", b"last"]  # TestRecipient reverts on the body "revert"
    sent = asyncio.run(devnet.send("chain-a", "chain-b", 3, bodies=bodies))
    good = [sent[0], sent[2]]
    assert len(asyncio.run(devnet.await_delivery({"chain-b": good}, timeout=60))) == 2
    bad_id = sent[1][0]
    from relayer.store import Ledger, State  # noqa: PLC0415

    with Ledger.open(devnet.config.relayer.database) as ledger:
        record = ledger.get(bad_id)
        assert record is not None
        assert record.state is State.ATTESTED
        assert record.attempts >= 1
        assert record.last_error is not None
        assert "simulation" in record.last_error
        assert record.next_attempt_at > time.time() - 1
    _assert_exactly_once(devnet, {"chain-b": {sent[0][0], sent[2][0]}})


def test_sigterm_stops_every_process_cleanly(devnet_factory: Callable[..., Devnet]) -> None:
    devnet = devnet_factory()
    devnet.start_attesters(["att-1"])
    devnet.start_daemon()
    # Both up (their signal handlers installed) before they are stopped: on a loaded machine
    # the attester may still be importing when the daemon has started.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(e.get("event") == "relayer.started" for e in _events(devnet, "relayer")) and any(
            e.get("event") == "attester.started" for e in _events(devnet, "att-1")
        ):
            break
        time.sleep(0.1)
    for name, role in (("relayer", "relayer"), ("att-1", "attester")):
        started = time.monotonic()
        assert devnet.kill(name, signal.SIGTERM) == 0
        assert time.monotonic() - started < 5
        assert any(e.get("event") == f"{role}.stopped" for e in _events(devnet, name))
