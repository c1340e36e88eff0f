"""Several delivery workers, each with its own key, on one Postgres ledger and one anvil chain:
every message delivered exactly once (the destination's Delivered events counted), the work
split between them, a killed worker's messages taken over, and a second worker with a key
already in use refused."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
from eth_account import Account
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3

from chains.evm.anvil import DEV_KEYS
from chains.evm.devnet import deploy_contracts
from proofs.hashing import keccak256
from relayer.store import Ledger, SignerTakenError, State
from relayer.store.postgres import PostgresLedger
from tests.integration.anvil import AnvilNode, start_anvil
from tests.integration.scaleout import CHAIN_ID, EventLog, attest_messages, delivery_worker

pytest_plugins = ["tests.integration.postgres"]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DELIVERED_TOPIC = "0x" + keccak256(b"Delivered(bytes32)").hex()


@dataclass(frozen=True)
class Destination:
    node: AnvilNode
    gateway: str
    recipient: str

    def delivered(self) -> tuple[Counter[bytes], Counter[str]]:
        """Delivered events per message id, and per sender of the delivering transaction."""
        w3 = Web3(HTTPProvider(self.node.url))
        logs = w3.eth.get_logs(
            {
                "address": Web3.to_checksum_address(self.gateway),
                "topics": [DELIVERED_TOPIC],
                "fromBlock": 0,
                "toBlock": "latest",
            }
        )
        by_id = Counter(bytes(entry["topics"][1]) for entry in logs)
        senders = {
            h: str(w3.eth.get_transaction(HexBytes(h))["from"])
            for h in {bytes(entry["transactionHash"]) for entry in logs}
        }
        by_sender = Counter(senders[bytes(entry["transactionHash"])] for entry in logs)
        return by_id, by_sender


@pytest.fixture(scope="module")
def destination() -> Iterator[Destination]:
    node = start_anvil(CHAIN_ID)
    try:
        deployed = asyncio.run(deploy_contracts(node, 2000))
        yield Destination(node, deployed.gateway, deployed.recipient)
    finally:
        node.stop()


def address(key_index: int) -> str:
    return str(Account.from_key(DEV_KEYS[key_index]).address)


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.1)


async def stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_two_workers_with_their_own_keys_deliver_every_message_once(
    destination: Destination, postgres_url: str
) -> None:
    ledgers = [Ledger.open(postgres_url) for _ in range(3)]
    try:
        ids = attest_messages(
            ledgers[0],
            gateway=destination.gateway,
            recipient=destination.recipient,
            first=0,
            count=300,
        )
        workers = [
            delivery_worker(
                led, rpc=destination.node.url, gateway=destination.gateway, key_index=k, lease=5.0
            )
            for led, k in ((ledgers[0], 1), (ledgers[1], 2))
        ]
        tasks = [asyncio.create_task(w.run()) for w in workers]
        try:

            async def all_delivered() -> bool:
                for task in tasks:
                    if task.done():
                        task.result()
                states = ledgers[2].states(ids)
                return all(s is State.DELIVERED for s in states.values())

            await until(all_delivered)
            # A third worker with a key already delivering to the chain: refused at start,
            # before it takes a nonce.
            twin = delivery_worker(
                ledgers[2],
                rpc=destination.node.url,
                gateway=destination.gateway,
                key_index=1,
                lease=5.0,
            )
            with pytest.raises(SignerTakenError, match="already delivers to chain-b") as refused:
                await twin.run()
            assert f"0x{bytes.fromhex(address(1)[2:]).hex()}" in str(refused.value)
            assert workers[0].owner[:63] in str(refused.value)
        finally:
            await stop(*tasks)
    finally:
        for led in ledgers:
            led.close()

    by_id, by_sender = destination.delivered()
    assert [by_id[mid] for mid in ids] == [1] * len(ids)
    assert by_sender[address(1)] > 0
    assert by_sender[address(2)] > 0


async def test_a_killed_workers_messages_are_taken_over_after_its_lease_and_delivered_once(
    destination: Destination, postgres_url: str
) -> None:
    with Ledger.open(postgres_url) as ledger:
        assert isinstance(ledger, PostgresLedger)
        ids = attest_messages(
            ledger,
            gateway=destination.gateway,
            recipient=destination.recipient,
            first=1000,
            count=200,
        )
        # A worker in a process of its own, killed (SIGKILL, by the failpoint) right after it
        # recorded its first transactions and before it sent any: they are signed with its
        # key and in the ledger, and leased to it.
        dead = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.integration.scaleout",
                postgres_url,
                destination.node.url,
                destination.gateway,
                "3",
                "2.0",
            ],
            cwd=REPO,
            env={**os.environ, "RELAYER_FAILPOINT": "after_record"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert dead.returncode == -signal.SIGKILL, dead.stderr
        orphaned = [mid for mid in ids if ledger.get(mid).state is State.SUBMITTED]  # type: ignore[union-attr]
        assert orphaned
        assert all(ledger.lease(mid) is not None for mid in orphaned)

        log = EventLog()
        live = delivery_worker(
            ledger,
            rpc=destination.node.url,
            gateway=destination.gateway,
            key_index=4,
            lease=2.0,
            log=log,
        )
        task = asyncio.create_task(live.run())
        try:

            async def all_delivered() -> bool:
                if task.done():
                    task.result()
                return all(s is State.DELIVERED for s in ledger.states(ids).values())

            await until(all_delivered)
        finally:
            await stop(task)
        assert "submit.taken_over" in log.events

    by_id, by_sender = destination.delivered()
    assert [by_id[mid] for mid in ids] == [1] * len(ids)
    # The dead worker's own signed transactions went out (sent by the live one) and delivered
    # what they carried; the live worker's key delivered the rest.
    assert by_sender[address(3)] > 0
    assert by_sender[address(4)] > 0
