"""The daemon's operator surface as an operator meets it, against real anvil chains: /metrics
after a relay, /readyz turning unready and ready again, and the head-subscription watchdog
restarting the stream of a node that was paused (SIGSTOP) and resumed (SIGCONT)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chains.evm.devnet import Devnet
from tests.e2e.conftest import example_config

pytestmark = pytest.mark.slow


def _get(devnet: Devnet, path: str) -> tuple[int, str]:
    url = f"http://{devnet.env['RELAYER_HEALTH']}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _until(what: str, check: Callable[[], Any], devnet: Devnet, timeout: float = 90.0) -> Any:
    """Poll ``check`` until it returns something true; its value. Fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        devnet.check_alive(["relayer"])
        try:
            found = check()
        except (urllib.error.URLError, ConnectionError):
            found = None  # the listener is not up yet
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def _samples(devnet: Devnet) -> dict[str, list[tuple[dict[str, str], float]]]:
    status, text = _get(devnet, "/metrics")
    assert status == 200
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        out.setdefault(family.name, [])
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def _value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


def _readyz(devnet: Devnet) -> tuple[int, dict[str, Any]]:
    status, body = _get(devnet, "/readyz")
    return status, json.loads(body)


def _events(devnet: Devnet, name: str) -> list[dict[str, Any]]:
    out = []
    for line in (devnet.work / f"{name}.log").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


@contextmanager
def _paused(devnet: Devnet, chain: str) -> Iterator[None]:
    """The chain's node stopped (SIGSTOP): its sockets stay open and say nothing."""
    node = devnet.chain_a if chain == "chain-a" else devnet.chain_b
    node.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        node.process.send_signal(signal.SIGCONT)


def test_metrics_expose_every_family_after_a_relay(devnet_factory: Callable[..., Devnet]) -> None:
    devnet = devnet_factory()
    devnet.start_attesters()
    devnet.start_daemon()

    async def flow() -> tuple[list[tuple[bytes, float]], list[tuple[bytes, float]]]:
        return await asyncio.gather(
            devnet.send("chain-a", "chain-b", 5), devnet.send("chain-b", "chain-a", 5)
        )

    a_to_b, b_to_a = asyncio.run(flow())
    asyncio.run(devnet.await_delivery({"chain-b": a_to_b, "chain-a": b_to_a}, timeout=120))
    # Settled in the ledger (the delivery is seen on chain first) and the balances read.
    samples = _until(
        "every delivery settled and both balances read",
        lambda: (
            (s := _samples(devnet))
            and _value(s, "relayer_messages", route="chain-a->chain-b", state="delivered") == 5
            and _value(s, "relayer_messages", route="chain-b->chain-a", state="delivered") == 5
            and len(s.get("relayer_signer_balance", [])) == 2
            and s
        ),
        devnet,
    )
    for family in (
        "relayer_proof_failures",
        "relayer_retries",
        "relayer_stream_reconnects",
        "relayer_rpc_errors",
        "relayer_endpoint_up",
        "relayer_chain_head_age_seconds",
    ):
        assert family in samples, family
    for route in ("chain-a->chain-b", "chain-b->chain-a"):
        assert _value(samples, "relayer_backlog_messages", route=route) == 0
        assert _value(samples, "relayer_backlog_oldest_age_seconds", route=route) == 0
    for chain in ("chain-a", "chain-b"):
        assert _value(samples, "relayer_submission_latency_seconds_count", chain=chain) == 5
        assert _value(samples, "relayer_confirmation_latency_seconds_count", chain=chain) >= 1
        assert _value(samples, "relayer_fee_paid_total", chain=chain, unit="wei") > 0
        assert _value(samples, "relayer_signer_balance", chain=chain, unit="wei") > 10**18
        assert _value(samples, "relayer_chain_head", chain=chain) > 0
    rpc = samples["relayer_rpc_latency_seconds_count"]
    endpoints = {labels["endpoint"] for labels, _ in rpc}
    assert endpoints == {devnet.env["CHAIN_A_RPC"], devnet.env["CHAIN_B_RPC"]}
    assert {labels["method"] for labels, _ in rpc} >= {"eth_blockNumber", "eth_sendRawTransaction"}
    status, ready = _readyz(devnet)
    assert (status, ready) == (200, {"status": "ready", "problems": []})


def test_a_paused_node_turns_readyz_unready_and_its_stream_is_restarted(
    devnet_factory: Callable[..., Devnet],
) -> None:
    # chain-a makes a block a second (block_time = 1.0 in the example config): 3 s without one
    # is a stall here.
    devnet = devnet_factory(
        config_text=example_config(
            **{"stall_after_blocks = 10                  # [Default: 10]": "stall_after_blocks = 3"}
        )
    )
    devnet.start_attesters()
    devnet.start_daemon()
    _until("/readyz ready", lambda: _readyz(devnet)[0] == 200, devnet)
    with _paused(devnet, "chain-a"):
        _, body = _until("/readyz unready", lambda: (r := _readyz(devnet))[0] == 503 and r, devnet)
        assert body["status"] == "unready"
        (problem,) = [p for p in body["problems"] if p["subject"] == "chain-a"]
        assert problem["check"] == "head"
        assert (
            "has not advanced" in problem["reason"] and "3 x block_time (1 s)" in problem["reason"]
        )
        _until(
            "a watchdog restart",
            lambda: _value(_samples(devnet), "relayer_stream_reconnects_total", chain="chain-a"),
            devnet,
        )
    _until("/readyz ready again", lambda: _readyz(devnet)[0] == 200, devnet)
    _until(
        "the stream announcing heads again",
        lambda: any(
            e.get("event") == "heads.stream_recovered" and e.get("chain") == "chain-a"
            for e in _events(devnet, "relayer")
        ),
        devnet,
    )
    restarted = [
        e
        for e in _events(devnet, "relayer")
        if e.get("event") == "heads.stream_restarted" and e.get("chain") == "chain-a"
    ]
    assert restarted and restarted[0]["level"] == "warning"
    assert restarted[0]["threshold_s"] == 3.0
    # And relaying goes on.
    sent = asyncio.run(devnet.send("chain-a", "chain-b", 1))
    asyncio.run(devnet.await_delivery({"chain-b": sent}, timeout=90))


def test_a_backlog_older_than_its_slo_turns_readyz_unready_until_it_is_delivered(
    devnet_factory: Callable[..., Devnet],
) -> None:
    devnet = devnet_factory(
        config_text=example_config(
            **{"backlog_slo = 600.0                      # [Default: 600.0]": "backlog_slo = 2.0"}
        )
    )
    devnet.start_daemon()  # no attesters yet: messages wait for their quorum
    sent = asyncio.run(devnet.send("chain-a", "chain-b", 2))
    _, body = _until("/readyz unready", lambda: (r := _readyz(devnet))[0] == 503 and r, devnet)
    (problem,) = [p for p in body["problems"] if p["check"] == "backlog"]
    assert problem["subject"] == "chain-a->chain-b"
    assert "of 2 undelivered messages" in problem["reason"]
    assert (
        _value(_samples(devnet), "relayer_backlog_oldest_age_seconds", route="chain-a->chain-b") > 2
    )
    devnet.start_attesters()
    asyncio.run(devnet.await_delivery({"chain-b": sent}, timeout=90))
    _until("/readyz ready again", lambda: _readyz(devnet)[0] == 200, devnet)
