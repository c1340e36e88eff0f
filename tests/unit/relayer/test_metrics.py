"""/metrics, /healthz, /readyz and /explain: the ledger, endpoint health and the daemon's own
counters, served on a loopback port."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import aiohttp
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from relayer.health import EndpointHealth
from relayer.metrics import (
    LedgerSnapshot,
    RelayerMetrics,
    metrics_text,
    reason_label,
    serve_metrics,
)
from relayer.plugin import observe_rpc, observing_rpc, rpc_call
from relayer.readiness import ChainLimits
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_backlog_counts_undelivered_messages_and_ages_the_oldest(tmp_path: Path) -> None:
    with _ledger(tmp_path) as ledger:
        text = metrics_text(ledger)
        oldest = min(r.created_at for r in ledger.in_state(State.OBSERVED))
    samples = _samples(text)
    assert (
        samples[("relayer_backlog_messages", (("route", "a->b"),))] == 2
    )  # the rejected one is not
    age = samples[("relayer_backlog_oldest_age_seconds", (("route", "a->b"),))]
    assert 0 <= age <= time.time() - oldest + 1


def test_every_event_family_is_exposed_with_its_base_unit_name(tmp_path: Path) -> None:
    metrics = RelayerMetrics(
        limits={"a": ChainLimits(block_time=1.0, stall_after_blocks=3, min_balance=5)}
    )
    metrics.proof_rejected("a", "verify", "proof rejected: node 0xab12 is not in the trie")
    metrics.submission_latency.labels("b").observe(0.3)
    metrics.confirmation_latency.labels("b").observe(2.0)
    metrics.retries.labels("b", "scheduled").inc()
    metrics.fee_paid.labels("b", "wei").inc(21_000 * 10**9)
    metrics.balance_seen("b", "0xAbC", 10**18, "wei")
    metrics.rpc_call("http://127.0.0.1:8545", "eth_blockNumber", 0.002, None)
    metrics.rpc_call("http://127.0.0.1:8545", "eth_blockNumber", 0.5, "TransientChainError")
    metrics.head_seen("a", 41)
    metrics.stream_reconnects.labels("a").inc()
    with _ledger(tmp_path) as ledger:
        samples = _samples(metrics_text(ledger, metrics))
    expected = {
        (
            "relayer_proof_failures_total",
            (("chain", "a"), ("reason", "proof rejected"), ("stage", "verify")),
        ): 1,
        ("relayer_submission_latency_seconds_count", (("chain", "b"),)): 1,
        ("relayer_confirmation_latency_seconds_sum", (("chain", "b"),)): 2.0,
        ("relayer_retries_total", (("chain", "b"), ("kind", "scheduled"))): 1,
        ("relayer_fee_paid_total", (("chain", "b"), ("unit", "wei"))): 21_000 * 10**9,
        ("relayer_signer_balance", (("chain", "b"), ("signer", "0xAbC"), ("unit", "wei"))): 10**18,
        (
            "relayer_rpc_latency_seconds_count",
            (("endpoint", "http://127.0.0.1:8545"), ("method", "eth_blockNumber")),
        ): 2,
        (
            "relayer_rpc_errors_total",
            (
                ("endpoint", "http://127.0.0.1:8545"),
                ("error", "TransientChainError"),
                ("method", "eth_blockNumber"),
            ),
        ): 1,
        ("relayer_chain_head", (("chain", "a"),)): 41,
        ("relayer_stream_reconnects_total", (("chain", "a"),)): 1,
        ("relayer_messages", (("route", "a->b"), ("state", "observed"))): 2,
    }
    for key, value in expected.items():
        assert samples.get(key) == value, key
    assert ("relayer_chain_head_age_seconds", (("chain", "a"),)) in samples


def test_each_daemon_counts_in_a_registry_of_its_own() -> None:
    first, second = RelayerMetrics(), RelayerMetrics()
    first.retries.labels("b", "failed").inc()
    assert first.registry is not second.registry
    text = second.exposition(LedgerSnapshot()).decode()
    assert 'relayer_retries_total{chain="b",kind="failed"}' not in text


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("proof rejected: receipt 0x12ab is not under root 0xffee", "proof rejected"),
        (
            "Dispatch carries other message bytes than observed",
            "Dispatch carries other message bytes than observed",
        ),
        ("destination domain 4242 is not configured", "destination domain is not configured"),
        ("chain `a`: block 12 does not hash to 0xab", "chain"),
        ("", "unspecified"),
    ],
)
def test_a_rejection_reason_becomes_a_label_without_its_values(reason: str, label: str) -> None:
    assert reason_label(reason) == label


async def test_rpc_calls_reach_the_observer_of_their_own_context_only() -> None:
    mine, other = RelayerMetrics(), RelayerMetrics()
    with observing_rpc(mine):
        with rpc_call("ws://node:9944", "chain_getHeader"):
            pass
        with pytest.raises(TimeoutError), rpc_call("ws://node:9944", "chain_getHeader"):
            raise TimeoutError
    observe_rpc("ws://node:9944", "chain_getHeader", 1.0, "TimeoutError")  # nobody listens
    samples = _samples(mine.exposition(LedgerSnapshot()).decode())
    labels = (("endpoint", "ws://node:9944"), ("method", "chain_getHeader"))
    assert samples[("relayer_rpc_latency_seconds_count", labels)] == 2
    assert (
        samples[("relayer_rpc_errors_total", (*labels[:1], ("error", "TimeoutError"), labels[1]))]
        == 1
    )
    assert "chain_getHeader" not in other.exposition(LedgerSnapshot()).decode()


async def test_readyz_says_which_check_failed_and_recovers(tmp_path: Path) -> None:
    port = _free_port()
    metrics = RelayerMetrics(
        limits={"b": ChainLimits(block_time=None, stall_after_blocks=10, min_balance=100)},
        backlog_slo=0,
    )
    with _ledger(tmp_path) as ledger:
        runner = await serve_metrics(
            ledger, "127.0.0.1", port, structlog.get_logger(), metrics=metrics
        )
        try:
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{port}/readyz"
                async with session.get(url) as response:
                    before = (response.status, await response.json())
                metrics.balance_seen("b", "0xabc", 99, "wei")
                async with session.get(url) as response:
                    low = (response.status, await response.json())
                metrics.balance_seen("b", "0xabc", 100, "wei")
                async with session.get(url) as response:
                    after = (response.status, await response.json())
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    health = response.status
        finally:
            await runner.cleanup()
    assert before == (200, {"status": "ready", "problems": []})
    assert low[0] == 503 and low[1]["status"] == "unready"
    (problem,) = low[1]["problems"]
    assert problem["check"] == "balance" and problem["subject"] == "b"
    assert "0xabc holds 99 wei, below min_balance (100 wei)" in problem["reason"]
    assert after[0] == 200
    assert health == 200, "/healthz is the process being up, whatever readiness says"
