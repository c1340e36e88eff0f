"""/metrics and /healthz read the ledger and endpoint health, served on a loopback port."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import structlog

from relayer.health import EndpointHealth
from relayer.metrics import metrics_text, serve_metrics
from relayer.store import Ledger, ObservedRow, State


def _ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger.open(tmp_path / "l.db")
    ledger.record_observed_many(
        [
            ObservedRow(
                id=bytes([i]) * 32,
                origin_chain="a",
                destination_chain="b",
                route="a->b",
                nonce=i,
                message=b"\x03" + bytes(80),
                block_number=1,
                block_hash=b"\x01" * 32,
                evidence=b"",
            )
            for i in range(3)
        ]
    )
    ledger.transition(bytes([0]) * 32, State.REJECTED, error="forged")
    return ledger


def test_metrics_count_messages_per_route_and_state(tmp_path: Path) -> None:
    with _ledger(tmp_path) as ledger:
        text = metrics_text(ledger)
    assert 'relayer_messages{route="a->b",state="observed"} 2' in text
    assert 'relayer_messages{route="a->b",state="rejected"} 1' in text


def test_endpoint_health_reports_down_then_up_once_each() -> None:
    health = EndpointHealth()
    events: list[str] = []

    class Log:
        def warning(self, event: str, **_: object) -> None:
            events.append(event)

        def info(self, event: str, **_: object) -> None:
            events.append(event)

    for _ in range(3):
        health.failed(Log(), "b", "http://x", "refused")
    assert health.endpoints() == [("b", "http://x", False)]
    for _ in range(3):
        health.succeeded(Log(), "b", "http://x")
    assert events == ["chain.unavailable", "chain.recovered"]
    assert health.endpoints() == [("b", "http://x", True)]


async def test_healthz_and_metrics_are_served_on_loopback(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with _ledger(tmp_path) as ledger:
        runner = await serve_metrics(ledger, "127.0.0.1", port, structlog.get_logger())
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    body = await response.json()
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    text = await response.text()
        finally:
            await runner.cleanup()
    assert body["messages"]["a->b rejected"] == 1
    assert "relayer_messages" in text
