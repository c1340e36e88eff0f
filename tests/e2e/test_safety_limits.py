"""Safety limits against the real daemon and real anvil chains: a route's rate limit paces its
deliveries (each still delivered once); the circuit breaker pauses a route when its origin
endpoint lies, and when a transaction from the relayer's own key appears that the daemon did
not send; messages observed while paused wait, and `relayer route resume` lets them through
exactly once. A spent fee budget stays spent when the daemon is killed and started again."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from chains.evm.anvil import DEV_KEYS
from chains.evm.devnet import SUBMITTER_B, Devnet, _sign_and_send
from chains.evm.rpc import EvmRpc
from tests.e2e.conftest import example_config
from tests.e2e.proxy import JsonRpcProxy
from tests.e2e.test_adversity import _delivered_now, _forge_receipts
from tests.e2e.test_operator_surface import _events, _readyz, _samples, _until, _value
from tests.e2e.test_relay import _assert_exactly_once
from tests.integration.anvil import REPO_ROOT

pytestmark = pytest.mark.slow

ROUTE = "chain-a->chain-b"


def _with_route(**settings: str) -> str:
    table = "".join(f"{key} = {value}\n" for key, value in settings.items())
    return example_config() + f'\n[routes."{ROUTE}"]\n{table}'


def _cli(devnet: Devnet, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "relayer.cli", *args, "-c", str(devnet.config_path)],
        env=devnet.env,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _route_line(devnet: Devnet) -> str:
    return next(
        line for line in _cli(devnet, "route", "list").splitlines() if line.startswith(ROUTE)
    )


def _paused(devnet: Devnet) -> bool:
    return _value(_samples(devnet), "relayer_route_paused", route=ROUTE) == 1


def _resume_and_deliver(devnet: Devnet, sent: list[tuple[bytes, float]]) -> None:
    """Resume the route from the CLI; everything sent is then delivered, each once."""
    assert _cli(devnet, "route", "resume", ROUTE).startswith(f"resumed {ROUTE}")
    _until("the pause lifted", lambda: not _paused(devnet), devnet)
    latencies = asyncio.run(devnet.await_delivery({"chain-b": sent}, timeout=90))
    assert len(latencies) == len(sent)
    _assert_exactly_once(devnet, {"chain-b": {mid for mid, _ in sent}})


def test_a_rate_limit_paces_a_burst_and_delivers_each_message_once(
    devnet_factory: Callable[..., Devnet],
) -> None:
    devnet = devnet_factory(config_text=_with_route(rate_limit="5.0", burst="5"))
    devnet.start_attesters()
    devnet.start_daemon()
    sent = asyncio.run(devnet.send("chain-a", "chain-b", 30))
    latencies = asyncio.run(devnet.await_delivery({"chain-b": sent}, timeout=120))
    assert len(latencies) == 30
    _assert_exactly_once(devnet, {"chain-b": {mid for mid, _ in sent}})
    started = [
        e
        for e in _events(devnet, "relayer")
        if e.get("event") == "submit.started" and e.get("chain") == "chain-b"
    ]
    # Unlimited, 30 messages that attest together go out in one or two transactions of up to
    # batch_size (100); paced at 5 a second with a burst of 5, none carries more than 5.
    assert sum(e["messages"] for e in started) == 30
    assert max(e["messages"] for e in started) <= 5
    assert len(started) >= 6
    held = _value(_samples(devnet), "relayer_rate_limited_total", route=ROUTE)
    assert held > 0
    # The other direction has no limit and is not held up.
    back = asyncio.run(devnet.send("chain-b", "chain-a", 10))
    assert len(asyncio.run(devnet.await_delivery({"chain-a": back}, timeout=90))) == 10


def test_a_lying_origin_endpoint_trips_the_breaker_until_the_route_is_resumed(
    devnet_factory: Callable[..., Devnet],
) -> None:
    devnet = devnet_factory(config_text=_with_route(pause_after_rejections="3"))
    proxy = JsonRpcProxy(devnet.chain_a.url)
    try:
        proxy.rewrite = _forge_receipts
        devnet.start_attesters()  # honest: their own endpoints
        devnet.start_daemon(extra_env={"CHAIN_A_RPC": proxy.url})
        sent = asyncio.run(devnet.send("chain-a", "chain-b", 5))
        _until("the route paused by the breaker", lambda: _paused(devnet), devnet)
        samples = _samples(devnet)
        assert _value(samples, "relayer_breaker_trips_total", route=ROUTE) == 1
        assert (
            _value(samples, "relayer_breaker_trips_total", route=ROUTE, reason="read_failures") == 1
        )
        (paused,) = [
            e
            for e in _events(devnet, "relayer")
            if e.get("event") == "route.paused" and e.get("route") == ROUTE
        ]
        assert paused["hint"] == f"resume with: relayer route resume {ROUTE}"
        assert "did not verify" in paused["reason"]
        assert "PAUSED since" in _route_line(devnet)
        status, body = _readyz(devnet)
        assert status == 503
        assert any(p["check"] == "paused" and p["subject"] == ROUTE for p in body["problems"])

        # The endpoint turns honest: the messages are verified and attested, not delivered.
        proxy.rewrite = None
        _until(
            "the messages attested and waiting",
            lambda: devnet.ledger_counts() == {"attested": 5},
            devnet,
        )
        time.sleep(5)
        assert _delivered_now(devnet, "chain-b", [mid for mid, _ in sent]) == 0
        assert devnet.ledger_counts() == {"attested": 5}
        _resume_and_deliver(devnet, sent)
    finally:
        proxy.close()
    assert _route_line(devnet) == f"{ROUTE}  active"


async def _spend_from_the_relayers_key(devnet: Devnet) -> None:
    """A transaction from the relayer's chain-b key, sent by this test and not the daemon."""
    rpc = EvmRpc(devnet.chain_b.url)
    try:
        stranger = "0x" + "42" * 20
        await _sign_and_send(
            rpc, DEV_KEYS[SUBMITTER_B], devnet.chain_b.chain_id, [{"to": stranger, "gas": 21000}]
        )
    finally:
        await rpc.close()


def test_a_transaction_the_daemon_did_not_send_from_its_key_pauses_routes_into_that_chain(
    devnet_factory: Callable[..., Devnet],
) -> None:
    devnet = devnet_factory()
    devnet.start_attesters()
    devnet.start_daemon()
    # Relaying (so the delivery worker to chain-b is up and has counted its nonces).
    first = asyncio.run(devnet.send("chain-a", "chain-b", 2))
    assert len(asyncio.run(devnet.await_delivery({"chain-b": first}, timeout=90))) == 2
    asyncio.run(_spend_from_the_relayers_key(devnet))
    _until("the routes into chain-b paused", lambda: _paused(devnet), devnet)
    samples = _samples(devnet)
    assert (
        _value(samples, "relayer_breaker_trips_total", route=ROUTE, reason="foreign_transaction")
        == 1
    )
    assert _value(samples, "relayer_route_paused", route="chain-b->chain-a") == 0
    (alarm,) = [
        e for e in _events(devnet, "relayer") if e.get("event") == "signer.foreign_transaction"
    ]
    assert alarm["chain"] == "chain-b"
    assert alarm["chain_nonce"] == alarm["expected_nonce"] + 1
    assert "did not send" in _route_line(devnet)

    during = asyncio.run(devnet.send("chain-a", "chain-b", 3))
    _until(
        "the new messages attested and waiting",
        lambda: devnet.ledger_counts().get("attested") == 3,
        devnet,
    )
    time.sleep(4)
    assert _delivered_now(devnet, "chain-b", [mid for mid, _ in during]) == 0
    _resume_and_deliver(devnet, first + during)
    # The other direction was never paused.
    back = asyncio.run(devnet.send("chain-b", "chain-a", 2))
    assert len(asyncio.run(devnet.await_delivery({"chain-a": back}, timeout=90))) == 2


def test_a_spent_fee_budget_stays_spent_when_the_daemon_is_killed_and_started_again(
    devnet_factory: Callable[..., Devnet],
) -> None:
    # Chain-b's key may pay 1 wei an hour: its first delivery spends the budget.
    budget = "# fee_budget_per_hour = 50000000000000000   # [Default: none: no budget]\n"
    devnet = devnet_factory(config_text=example_config(**{budget: "fee_budget_per_hour = 1\n"}))
    devnet.start_attesters()
    devnet.start_daemon()
    first = asyncio.run(devnet.send("chain-a", "chain-b", 1))
    assert len(asyncio.run(devnet.await_delivery({"chain-b": first}, timeout=90))) == 1
    _until(
        "the budget spent",
        lambda: any(e.get("event") == "fee_budget.exhausted" for e in _events(devnet, "relayer")),
        devnet,
    )

    devnet.kill("relayer", signal.SIGKILL)  # a crash: nothing is said on the way out
    devnet.start_daemon()
    restored = _until(
        "the restarted daemon counting what its key paid",
        lambda: [e for e in _events(devnet, "relayer") if e.get("event") == "fee_budget.restored"],
        devnet,
    )
    assert restored[0]["chain"] == "chain-b"
    assert restored[0]["spent"] >= 1 and restored[0]["transactions"] == 1
    during = asyncio.run(devnet.send("chain-a", "chain-b", 2))
    _until(
        "the new messages attested and waiting",
        lambda: devnet.ledger_counts().get("attested") == 2,
        devnet,
    )
    time.sleep(4)
    assert _delivered_now(devnet, "chain-b", [mid for mid, _ in during]) == 0
    exhausted = [e for e in _events(devnet, "relayer") if e.get("event") == "fee_budget.exhausted"]
    assert len(exhausted) == 2, "once before the restart, once after"
    assert exhausted[-1]["resumes_in_s"] > 3000, "the hour counts from the first payment"
    status, body = _readyz(devnet)
    assert status == 503 and "chain-b" in str(body)
    # The other direction has no budget and is not held up.
    back = asyncio.run(devnet.send("chain-b", "chain-a", 1))
    assert len(asyncio.run(devnet.await_delivery({"chain-a": back}, timeout=90))) == 1
