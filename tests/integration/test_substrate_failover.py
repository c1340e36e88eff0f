"""SubstrateSubmitter with several endpoints against a real chopsticks chain: with the first
endpoint a closed port the delivery worker delivers through the second; an endpoint that goes
down while in use is failed over for reads and for the broadcast of the signed extrinsic; every
endpoint down is a retryable outage whose message names each endpoint, and delivery resumes
when one comes back."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from chains.endpoints import EndpointsFailedError
from chains.substrate.chopsticks import ChopsticksNode
from chains.substrate.config import SubstrateChainConfig
from chains.substrate.keys import Sr25519Keypair
from chains.substrate.submitter import SubstrateSubmitter
from relayer.delivery import DeliveryWorker
from relayer.errors import TransientChainError
from relayer.plugin import BroadcastResult, Delivery, DeliverySettings
from relayer.store import Ledger, State
from tests.integration.chopsticks import running_chopsticks
from tests.integration.substrate_proxy import WsRpcProxy
from tests.integration.test_substrate_submitter import (
    attested_ledger,
    deliveries,
    delivery_counts,
    until,
)

pytestmark = pytest.mark.slow

CHAIN = "xrly-substrate-failover"


@pytest.fixture(scope="module")
def chopsticks() -> Iterator[ChopsticksNode]:
    with running_chopsticks(CHAIN) as node:
        yield node


def closed_port() -> str:
    """A loopback URL nothing listens on: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ws://127.0.0.1:{port}"


def submitter(*urls: str) -> SubstrateSubmitter:
    config = SubstrateChainConfig(
        rpc=list(urls), system_chain=CHAIN, dev=True, extrinsics_commitment="dev-concat"
    )
    return SubstrateSubmitter(
        chain_name=CHAIN, config=config, signer=Sr25519Keypair.from_uri("//Alice")
    )


class _Log:
    """Records every event (the worker's outage and recovery logs are part of the contract)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def bind(self, **_: Any) -> _Log:
        return self

    def _record(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    debug = info = warning = error = _record

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for name, fields in self.events if name == event]


@pytest.fixture
async def worker_run(
    tmp_path: Path,
) -> AsyncIterator[Any]:
    """Starts a DeliveryWorker of ``sub`` over ``batch`` attested; waits until all delivered."""
    tasks: list[asyncio.Task[None]] = []
    ledgers: list[Ledger] = []

    def run(sub: SubstrateSubmitter, batch: list[Delivery], log: _Log) -> Ledger:
        ledger = attested_ledger(tmp_path / f"ledger{len(ledgers)}.db", batch, CHAIN)
        ledgers.append(ledger)
        worker = DeliveryWorker(
            chain=CHAIN,
            submitter=sub,  # type: ignore[arg-type]  # takes its own PendingTx type
            ledger=ledger,
            log=log,
            settings=DeliverySettings(
                batch_size=20, max_in_flight=2, submit_timeout=60, reorg_depth=1
            ),
            poll_interval=0.1,
        )
        tasks.append(asyncio.create_task(worker.run()))
        return ledger

    yield run
    for task in tasks:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    for ledger in ledgers:
        ledger.close()


async def all_delivered(ledger: Ledger, ids: list[bytes]) -> None:
    async def done() -> bool | None:
        states = ledger.states(ids)
        return True if all(s is State.DELIVERED for s in states.values()) else None

    await until(done, timeout=120)


async def test_delivery_goes_through_the_second_endpoint_when_the_first_is_a_closed_port(
    chopsticks: ChopsticksNode, worker_run: Any
) -> None:
    dead = closed_port()
    sub = submitter(dead, chopsticks.ws_url)
    batch = deliveries(10)
    ids = [d.message_id for d in batch]
    with structlog.testing.capture_logs() as logs:
        ledger = worker_run(sub, batch, _Log())
        await all_delivered(ledger, ids)
    unhealthy = [e for e in logs if e["event"] == "endpoint.unhealthy"]
    assert [e["endpoint"] for e in unhealthy] == [dead]
    assert "connect" in unhealthy[0]["reason"]
    first, second = sub.endpoint_health()
    assert (first.endpoint, first.healthy) == (dead, False)
    assert (second.endpoint, second.healthy) == (chopsticks.ws_url, True)
    counts = await delivery_counts(chopsticks.ws_url)
    assert [counts[mid] for mid in ids] == [1] * len(ids)


async def test_an_endpoint_going_down_in_use_is_failed_over_for_reads_and_the_broadcast(
    chopsticks: ChopsticksNode,
) -> None:
    async with WsRpcProxy(chopsticks.ws_url) as proxy:
        sub = submitter(proxy.url, chopsticks.ws_url)
        await sub.start()
        try:
            pending = await sub.prepare(deliveries(3))  # read through the proxy
            assert [h.healthy for h in sub.endpoint_health()] == [True, True]
            proxy.refuse(True)
            await proxy.drop()
            # The same signed bytes, sent through the other endpoint.
            assert await sub.broadcast(pending) is BroadcastResult.ACCEPTED
            outcomes = await until(lambda: sub.outcome(pending))
            assert all(o.delivered and o.tx_hash == pending.tx_hash for o in outcomes)
            down, up = sub.endpoint_health()
            assert not down.healthy and up.healthy
            # Sent again (as after a restart) with both endpoints up: an answer, not an error.
            proxy.refuse(False)
            assert await sub.broadcast(pending) in {
                BroadcastResult.ACCEPTED,
                BroadcastResult.NONCE_USED,
            }
        finally:
            await sub.close()


async def test_every_endpoint_down_is_a_retryable_outage_naming_each_endpoint(
    chopsticks: ChopsticksNode,
) -> None:
    dead = [closed_port(), closed_port()]
    sub = submitter(*dead)
    try:
        with pytest.raises(EndpointsFailedError) as raised:
            await sub.start()
        error = raised.value
        assert isinstance(error, TransientChainError) and error.retryable
        assert str(error).startswith(f"chain `{CHAIN}`: all 2 endpoints failed")
        assert all(url in str(error) for url in dead)
        with pytest.raises(EndpointsFailedError):
            await sub.resync_nonce()  # reads too, after their in-place retries
    finally:
        await sub.close()


async def test_delivery_waits_out_an_outage_of_every_endpoint_and_resumes_on_one(
    chopsticks: ChopsticksNode, worker_run: Any
) -> None:
    async with WsRpcProxy(chopsticks.ws_url) as first, WsRpcProxy(chopsticks.ws_url) as second:
        first.refuse(True)
        second.refuse(True)
        sub = submitter(first.url, second.url)
        batch = deliveries(5)
        log = _Log()
        ledger = worker_run(sub, batch, log)
        await until(lambda: _first(log.named("chain.unavailable")), timeout=30)
        (outage,) = log.named("chain.unavailable")
        assert "all 2 endpoints failed" in outage["error"]
        assert first.url in outage["error"] and second.url in outage["error"]
        assert ledger.states([d.message_id for d in batch]) == {
            d.message_id: State.ATTESTED for d in batch
        }
        second.refuse(False)
        await all_delivered(ledger, [d.message_id for d in batch])
        assert log.named("chain.recovered")


async def _first(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    return items[0] if items else None
