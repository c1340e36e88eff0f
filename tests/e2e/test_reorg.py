"""Origin reorgs: below the confirmation depth nothing from orphaned blocks is relayed; deeper
than the depth the daemon raises ``chain.reorg_beyond_finality``, rescans, and relays a message
re-included in the new chain exactly once, attested over its new block, while a message the new
chain does not hold ends orphaned and is never delivered."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from chains.evm.devnet import DEV_KEYS, SENDER_A, Devnet, _send_calldata, _sign_and_send
from chains.evm.evidence import DISPATCH_TOPIC
from chains.evm.rpc import EvmRpc
from proofs.hashing import keccak256
from tests.e2e.conftest import example_config
from tests.e2e.test_relay import _assert_exactly_once, _events
from tests.integration.anvil import REPO_ROOT

pytestmark = pytest.mark.slow


def _send_one(devnet: Devnet) -> tuple[bytes, dict[str, Any]]:
    """One A->B message; (message id, its receipt)."""

    async def go() -> tuple[bytes, dict[str, Any]]:
        cfg = devnet.evm("chain-a")
        rpc = EvmRpc(cfg.rpc)
        try:
            data = _send_calldata(2000, devnet.recipients["chain-b"], b"reorg me")
            (tx_hash,) = await _sign_and_send(
                rpc, DEV_KEYS[SENDER_A], 31337, [{"to": cfg.gateway, "data": data, "gas": 200_000}]
            )
            for _ in range(100):
                receipt = await rpc.receipt(tx_hash)
                if receipt and receipt.get("blockNumber"):
                    break
                await asyncio.sleep(0.05)
            assert receipt is not None
        finally:
            await rpc.close()
        (log,) = [e for e in receipt["logs"] if e["topics"][0] == "0x" + DISPATCH_TOPIC.hex()]
        return bytes.fromhex(log["topics"][1][2:]), receipt

    return asyncio.run(go())


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_reorg_below_the_confirmation_depth_relays_nothing_from_orphaned_blocks(
    devnet_factory: Callable[..., Devnet],
) -> None:
    config = example_config(**{"confirmations = 2 ": "confirmations = 6 "})
    devnet = devnet_factory(config_text=config)
    devnet.start_attesters()
    devnet.start_daemon()
    message_id, receipt = _send_one(devnet)
    mined_in = int(receipt["blockNumber"], 16)
    head = int(devnet.chain_a.rpc("eth_blockNumber"), 16)
    assert head - mined_in < 4, "too slow to reorg below the depth"
    devnet.chain_a.rpc("anvil_reorg", [head - mined_in + 1, []])
    assert devnet.chain_a.rpc("eth_getTransactionReceipt", [receipt["transactionHash"]]) is None
    time.sleep(10)  # well past the depth: the orphaned block would have been relayed by now
    assert asyncio.run(devnet.delivered_events("chain-b")) == {}
    assert devnet.ledger_counts() == {}
    alarms = [e for e in _events(devnet, "relayer") if e["event"] == "chain.reorg_beyond_finality"]
    assert alarms == []
    del message_id


def test_reorg_deeper_than_the_depth_alarms_and_relays_the_reincluded_message_once(
    devnet_factory: Callable[..., Devnet],
) -> None:
    devnet = devnet_factory()
    devnet.start_attesters(["att-1"])  # below threshold: the message waits, verified
    devnet.start_daemon()
    message_id, receipt = _send_one(devnet)
    _wait_for(lambda: devnet.ledger_counts() == {"verified": 1}, 20, "the message to be verified")
    raw = devnet.chain_a.rpc("eth_getRawTransactionByHash", [receipt["transactionHash"]])
    mined_in = int(receipt["blockNumber"], 16)
    head = int(devnet.chain_a.rpc("eth_blockNumber"), 16)
    # Replace everything from the message's block on; the transaction lands one block later.
    devnet.chain_a.rpc("anvil_reorg", [head - mined_in + 1, [[raw, 1]]])
    new_receipt = devnet.chain_a.rpc("eth_getTransactionReceipt", [receipt["transactionHash"]])
    assert new_receipt is not None
    assert new_receipt["blockHash"] != receipt["blockHash"]
    _wait_for(
        lambda: any(
            e["event"] == "chain.reorg_beyond_finality" for e in _events(devnet, "relayer")
        ),
        20,
        "the reorg alarm",
    )
    devnet.start_attesters(["att-2"])
    sent = [(message_id, time.time())]
    assert len(asyncio.run(devnet.await_delivery({"chain-b": sent}, timeout=60))) == 1
    _assert_exactly_once(devnet, {"chain-b": {message_id}})
    from relayer.store import Ledger  # noqa: PLC0415

    with Ledger.open(devnet.config.relayer.database) as ledger:
        record = ledger.get(message_id)
        assert record is not None
        assert "0x" + record.block_hash.hex() == new_receipt["blockHash"]
        assert record.signatures  # attested over the new block


def test_a_message_whose_block_a_deep_reorg_removes_for_good_ends_orphaned_and_undelivered(
    devnet_factory: Callable[..., Devnet],
) -> None:
    devnet = devnet_factory()
    devnet.start_attesters(["att-1"])  # below threshold: the message waits, verified
    devnet.start_daemon()
    message_id, receipt = _send_one(devnet)
    _wait_for(lambda: devnet.ledger_counts() == {"verified": 1}, 20, "the message to be verified")
    mined_in = int(receipt["blockNumber"], 16)
    head = int(devnet.chain_a.rpc("eth_blockNumber"), 16)
    # Replace everything from the message's block on, and include the transaction nowhere.
    devnet.chain_a.rpc("anvil_reorg", [head - mined_in + 1, []])
    assert devnet.chain_a.rpc("eth_getTransactionReceipt", [receipt["transactionHash"]]) is None
    _wait_for(lambda: devnet.ledger_counts() == {"orphaned": 1}, 30, "the message to be orphaned")
    relayer_events = _events(devnet, "relayer")
    (alarm,) = [e for e in relayer_events if e["event"] == "chain.reorg_beyond_finality"]
    (orphaned,) = [e for e in relayer_events if e["event"] == "message.orphaned"]
    assert (orphaned["chain"], orphaned["count"]) == ("chain-a", 1)
    assert orphaned["block"] == alarm["rescan_from"] - 1 < mined_in
    assert orphaned["message_ids"] == ["0x" + message_id.hex()]

    explained = subprocess.run(
        [
            *(sys.executable, "-m", "relayer.cli", "explain"),
            *("-c", str(devnet.config_path), message_id.hex()[:16]),
        ],
        env=devnet.env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "state      orphaned" in explained
    assert f"origin block {mined_in} ({receipt['blockHash']}) is no longer canonical" in explained
    assert "a reorg deeper than the finality of chain-a replaced its blocks above" in explained
    assert "verified -> orphaned" in explained
    assert "why: a reorg deeper than the origin chain's finality removed its block" in explained

    # A quorum from now on: had the message stayed verified, it would be delivered now.
    devnet.start_attesters(["att-2"])
    time.sleep(10)
    assert asyncio.run(devnet.delivered_events("chain-b")) == {}
    assert devnet.ledger_counts() == {"orphaned": 1}


def test_destination_reorg_that_drops_a_delivery_is_noticed_and_delivered_again(
    devnet_factory: Callable[..., Devnet],
) -> None:
    # A deeper destination depth keeps each delivery under watch for a few blocks.
    config = example_config(**{"confirmations = 2 ": "confirmations = 6 "})
    devnet = devnet_factory(config_text=config)
    devnet.start_attesters()
    devnet.start_daemon()
    message_id, _ = _send_one(devnet)
    sent = [(message_id, time.time())]
    assert len(asyncio.run(devnet.await_delivery({"chain-b": sent}, timeout=60))) == 1
    (delivered_log,) = devnet.chain_b.rpc(
        "eth_getLogs",
        [
            {
                "fromBlock": "0x0",
                "toBlock": "latest",
                "address": devnet.evm("chain-b").gateway,
                "topics": ["0x" + keccak256(b"Delivered(bytes32)").hex()],
            }
        ],
    )
    head = int(devnet.chain_b.rpc("eth_blockNumber"), 16)
    depth = head - int(delivered_log["blockNumber"], 16) + 1
    assert depth < 6, "too slow to reorg the delivery while it is watched"
    devnet.chain_b.rpc("anvil_reorg", [depth, []])
    assert asyncio.run(devnet.delivered_events("chain-b")) == {}
    _wait_for(
        lambda: any(
            e["event"] == "chain.reorg_dropped_delivery" for e in _events(devnet, "relayer")
        ),
        20,
        "the dropped delivery to be noticed",
    )
    assert len(asyncio.run(devnet.await_delivery({"chain-b": sent}, timeout=60))) == 1
    _assert_exactly_once(devnet, {"chain-b": {message_id}})
