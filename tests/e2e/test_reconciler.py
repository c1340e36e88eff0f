"""The reconciler against real anvil chains and the daemon as a process: a message whose
``Dispatch`` event the watcher's endpoint withheld (the stream moved past its block and never
saw it) is found by the reconciler's re-scan and delivered, exactly once, through the normal
verified path."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from chains.evm.devnet import Devnet
from chains.evm.evidence import DISPATCH_TOPIC
from relayer.store import Ledger
from tests.e2e.conftest import example_config
from tests.e2e.proxy import JsonRpcProxy
from tests.e2e.test_relay import _assert_exactly_once, _events

pytestmark = pytest.mark.slow


def _rpc(url: str, method: str, params: list[Any]) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["result"]


def _until(what: str, check: Callable[[], Any], devnet: Devnet, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        devnet.check_alive(["relayer"])
        found = check()
        if found:
            return found
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


def test_the_reconciler_delivers_a_message_whose_event_the_stream_missed(
    devnet_factory: Callable[..., Devnet],
) -> None:
    # chain-a's own settings (they override [relayer]'s): a pass every second over 64 blocks.
    devnet = devnet_factory(
        config_text=example_config(
            **{
                'name = "chain-a"': (
                    'reconcile_interval = 1.0\nreconcile_window = 64\nname = "chain-a"'
                )
            }
        )
    )
    # While cut, the daemon's chain-a endpoint withholds every Dispatch: log queries answer
    # nothing and block receipts are missing (what the read-ahead uses). Headers still flow,
    # so the watcher's cursor moves on over the message's block as if it were empty.
    cut = threading.Event()
    cut.set()

    def blind(method: str, params: Any, result: Any) -> Any:
        if cut.is_set() and method == "eth_getLogs":
            return []
        if cut.is_set() and method == "eth_getBlockReceipts":
            return None
        return result

    proxy = JsonRpcProxy(devnet.chain_a.url)
    proxy.rewrite = blind
    try:
        devnet.start_attesters()  # honest: their own endpoints
        devnet.start_daemon(extra_env={"CHAIN_A_RPC": proxy.url})
        sent = asyncio.run(devnet.send("chain-a", "chain-b", 1))
        ((message_id, _),) = sent
        gateway = devnet.evm("chain-a").gateway
        topic = "0x" + DISPATCH_TOPIC.hex()
        dispatched = _until(
            "the dispatch to be mined",
            lambda: _rpc(
                devnet.chain_a.url,
                "eth_getLogs",
                [{"fromBlock": "0x0", "toBlock": "latest", "address": gateway, "topics": [topic]}],
            ),
            devnet,
        )
        block = max(int(entry["blockNumber"], 16) for entry in dispatched)

        def cursor_past_the_block() -> bool:
            with Ledger.open(devnet.config.relayer.database) as ledger:
                cursor = ledger.get_cursor("chain-a", "relayer")
            return cursor is not None and cursor.block_number > block

        _until("the watcher's cursor to pass the dispatch block", cursor_past_the_block, devnet)
        with Ledger.open(devnet.config.relayer.database) as ledger:
            assert ledger.states([message_id]) == {}, "the stream saw the message after all"
        assert proxy.rewritten > 0
        cut.clear()
        latencies = asyncio.run(devnet.await_delivery({"chain-b": sent}, timeout=60))
        assert len(latencies) == 1
        _assert_exactly_once(devnet, {"chain-b": {message_id}})
    finally:
        proxy.close()
    healed = [e for e in _events(devnet, "relayer") if e.get("event") == "reconcile.healed"]
    assert len(healed) == 1, healed
    assert healed[0]["route"] == "chain-a->chain-b"
    assert healed[0]["messages"] == 1
    assert healed[0]["message_ids"] == ["0x" + message_id.hex()]
