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


async def test_explain_is_served_read_only_on_loopback(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with _ledger(tmp_path) as ledger:
        before = ledger.counts()
        runner = await serve_metrics(ledger, "127.0.0.1", port, structlog.get_logger())
        answers = {}
        try:
            async with aiohttp.ClientSession() as session:
                for ask in ("0x0000", "0202", "zz", "0x03", "0x0"):
                    url = f"http://127.0.0.1:{port}/explain/{ask}"
                    async with session.get(url) as response:
                        answers[ask] = (response.status, await response.json())
        finally:
            await runner.cleanup()
        assert ledger.counts() == before, "explain changes nothing"
    status, rejected = answers["0x0000"]
    assert status == 200
    assert rejected["id"] == "0x" + "00" * 32
    assert rejected["state"] == "rejected" and rejected["route"] == "a->b"
    assert [h["to"] for h in rejected["history"]] == ["observed", "rejected"]
    assert rejected["history"][-1]["error"] == "forged"
    assert "will never be submitted" in rejected["why"]
    assert answers["0202"][0] == 200 and answers["0202"][1]["state"] == "observed"
    assert answers["zz"][0] == 400 and "not a hex message id" in answers["zz"][1]["error"]
    assert answers["0x03"][0] == 404
    assert answers["0x0"][0] == 409 and "give more digits" in answers["0x0"][1]["error"]
