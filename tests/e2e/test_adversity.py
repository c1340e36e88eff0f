"""Outages, lying endpoints and missing attesters, against the daemon as a real process."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from typing import Any

import pytest

from chains.evm.devnet import Devnet
from chains.evm.evidence import DISPATCH_TOPIC
from tests.e2e.proxy import JsonRpcProxy, TcpProxy
from tests.e2e.test_relay import _assert_exactly_once, _events

pytestmark = pytest.mark.slow


def _delivered_now(devnet: Devnet, chain: str, ids: list[bytes]) -> int:
    latencies = asyncio.run(
        devnet.await_delivery({chain: [(i, time.time()) for i in ids]}, timeout=0.01, alive=())
    )
    return len(latencies)


def test_destination_rpc_outage_of_20s_is_ridden_out_and_logged_once(
    devnet_factory: Callable[..., Devnet],
) -> None:
    devnet = devnet_factory()
    proxy = TcpProxy(devnet.chain_b.port)
    try:
        devnet.start_attesters()
        devnet.start_daemon(extra_env={"CHAIN_B_RPC": proxy.url})
        before = asyncio.run(devnet.send("chain-a", "chain-b", 20))
        assert len(asyncio.run(devnet.await_delivery({"chain-b": before}, timeout=60))) == 20
        proxy.drop()
        during = asyncio.run(devnet.send("chain-a", "chain-b", 30))
        time.sleep(20)
        assert _delivered_now(devnet, "chain-b", [i for i, _ in during]) == 0
        proxy.restore()
        latencies = asyncio.run(devnet.await_delivery({"chain-b": during}, timeout=60))
        assert len(latencies) == 30
        _assert_exactly_once(devnet, {"chain-b": {i for i, _ in before + during}})
    finally:
        proxy.close()
    events = [e for e in _events(devnet, "relayer") if e.get("chain") == "chain-b"]
    down = [e for e in events if e["event"] == "chain.unavailable"]
    up = [e for e in events if e["event"] == "chain.recovered"]
    assert proxy.dropped_connections > 0
    assert len(down) == 1, down
    assert len(up) == 1, up


def _forge_receipts(method: str, params: Any, result: Any) -> Any:
    """Change one byte of every Dispatch message in eth_getBlockReceipts answers."""
    if method != "eth_getBlockReceipts" or not result:
        return result
    forged = copy.deepcopy(result)
    changed = False
    for receipt in forged:
        for log in receipt.get("logs", []):
            if log["topics"] and log["topics"][0] == "0x" + DISPATCH_TOPIC.hex():
                data = log["data"]
                log["data"] = data[:-4] + ("00" if data[-4:-2] != "00" else "01") + data[-2:]
                changed = True
    return forged if changed else result


def _forge_header(method: str, params: Any, result: Any) -> Any:
    """Claim another state root in block headers (the claimed hash no longer matches)."""
    if method != "eth_getBlockByNumber" or not isinstance(result, dict):
        return result
    forged = dict(result)
    forged["stateRoot"] = "0x" + "11" * 32
    return forged


@pytest.mark.parametrize("forge", [_forge_receipts, _forge_header], ids=["receipts", "header"])
def test_lying_origin_endpoint_is_refused_and_nothing_is_submitted(
    devnet_factory: Callable[..., Devnet], forge: Callable[[str, Any, Any], Any]
) -> None:
    devnet = devnet_factory()
    proxy = JsonRpcProxy(devnet.chain_a.url)
    try:
        proxy.rewrite = forge
        devnet.start_attesters()  # honest: their own endpoints
        devnet.start_daemon(extra_env={"CHAIN_A_RPC": proxy.url})
        sent = asyncio.run(devnet.send("chain-a", "chain-b", 5))
        time.sleep(8)
        assert proxy.rewritten > 0
        assert _delivered_now(devnet, "chain-b", [i for i, _ in sent]) == 0
        rejected = [
            e
            for e in _events(devnet, "relayer")
            if e.get("event") == "proof.rejected" and e.get("chain") == "chain-a"
        ]
        assert rejected, "the lie was not reported"
        # Nothing the lying endpoint said was persisted, so nothing can ever be submitted.
        assert devnet.ledger_counts() == {}
        proxy.rewrite = None
        latencies = asyncio.run(devnet.await_delivery({"chain-b": sent}, timeout=60))
        assert len(latencies) == 5
        _assert_exactly_once(devnet, {"chain-b": {i for i, _ in sent}})
    finally:
        proxy.close()


def test_fewer_attesters_than_the_threshold_never_deliver(
    devnet_factory: Callable[..., Devnet],
) -> None:
    devnet = devnet_factory()
    devnet.start_attesters(["att-1"])
    devnet.start_daemon()
    sent = asyncio.run(devnet.send("chain-a", "chain-b", 5))
    time.sleep(8)
    assert _delivered_now(devnet, "chain-b", [i for i, _ in sent]) == 0
    assert devnet.ledger_counts() == {"verified": 5}
    devnet.start_attesters(["att-2"])
    assert len(asyncio.run(devnet.await_delivery({"chain-b": sent}, timeout=60))) == 5
    _assert_exactly_once(devnet, {"chain-b": {i for i, _ in sent}})


def _garbage(method: str, params: Any, result: Any) -> Any:
    """Answers that are not what JSON-RPC promises: receipts without fields, blocks as strings."""
    if method == "eth_getBlockReceipts" and result:
        return [{"status": "0x1"} for _ in result]
    if method == "eth_getBlockByNumber" and isinstance(result, dict) and params[0] != "latest":
        return "not a block"
    return result


def test_garbage_rpc_answers_are_an_outage_not_a_crash(
    devnet_factory: Callable[..., Devnet],
) -> None:
    devnet = devnet_factory()
    proxy = JsonRpcProxy(devnet.chain_a.url)
    try:
        proxy.rewrite = _garbage
        devnet.start_attesters()
        devnet.start_daemon(extra_env={"CHAIN_A_RPC": proxy.url})
        sent = asyncio.run(devnet.send("chain-a", "chain-b", 5))
        # Until the daemon has met garbage (its start takes longer on a loaded machine), then
        # a few seconds more of it.
        deadline = time.monotonic() + 60
        while proxy.rewritten == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(4)
        devnet.check_alive()  # every process still up
        assert proxy.rewritten > 0
        assert devnet.ledger_counts() == {}
        proxy.rewrite = None
        assert len(asyncio.run(devnet.await_delivery({"chain-b": sent}, timeout=60))) == 5
        _assert_exactly_once(devnet, {"chain-b": {i for i, _ in sent}})
    finally:
        proxy.close()
