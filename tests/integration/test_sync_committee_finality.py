"""chains.evm.sync_committee against the dev beacon server following a real anvil chain (1 s
blocks): the light client bootstraps from the server's finalized root, follows finality across a
sync-committee period boundary, proves execution blocks anvil really produced, keeps its state
for a restart, and refuses every kind of lie the server can tell."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from chains.evm.beacon_api import BeaconApi
from chains.evm.beacon_dev import BeaconDevNode, LieMode, start_beacon_dev
from chains.evm.sync_committee import FinalizedExecution, SyncCommitteeFinality, status_of
from tests.integration.anvil import AnvilNode

# Block N is slot 56 + N: the first period boundary (slot 64) comes at block 8.
FIRST_SLOT = 56
LAG = 2


class MemoryState:
    def __init__(self) -> None:
        self.saved: bytes | None = None

    def load(self) -> bytes | None:
        return self.saved

    def save(self, state: bytes) -> None:
        self.saved = state


@pytest.fixture
def chain(anvil_factory: Callable[..., AnvilNode]) -> Iterator[tuple[AnvilNode, BeaconDevNode]]:
    node = anvil_factory(block_time=1)
    beacon = start_beacon_dev(node.url, finality_lag=LAG, first_slot=FIRST_SLOT)
    try:
        yield node, beacon
    finally:
        beacon.stop()


def _network(beacon: BeaconDevNode) -> dict[str, Any]:
    """The dev server's network as an operator would write it down (a minimal-preset config)."""
    config: dict[str, Any] = dict(beacon.get("/eth/v1/config/spec")["data"])
    genesis = beacon.get("/eth/v1/beacon/genesis")["data"]
    config["GENESIS_VALIDATORS_ROOT"] = genesis["genesis_validators_root"]
    config["GENESIS_TIME"] = genesis["genesis_time"]
    return config


def _trusted_root(beacon: BeaconDevNode) -> bytes:
    deadline = time.monotonic() + 20
    while True:
        root = beacon.get("/eth/v1/beacon/headers/finalized")["data"]["root"]
        if int(root, 16) != 0 or time.monotonic() > deadline:
            return bytes.fromhex(root[2:])
        time.sleep(0.5)


def _client(
    beacon: BeaconDevNode, state: MemoryState, root: bytes | None = None
) -> SyncCommitteeFinality:
    return SyncCommitteeFinality(
        chain="chain-a",
        api=BeaconApi(beacon.url, chain="chain-a"),
        network=_network(beacon),
        trusted_block_root=root or _trusted_root(beacon),
        state=state,
        log=structlog.get_logger(),
    )


async def _until(
    client: SyncCommitteeFinality, done: Callable[[FinalizedExecution], bool], timeout: float
) -> FinalizedExecution:
    deadline = time.monotonic() + timeout
    while True:
        final = await client.finalized()
        if final is not None and done(final):
            return final
        if time.monotonic() > deadline:
            raise AssertionError(f"finality stuck at {final}")
        await asyncio.sleep(0.5)


def _anvil_hash(node: AnvilNode, number: int) -> bytes:
    return bytes.fromhex(node.rpc("eth_getBlockByNumber", [hex(number), False])["hash"][2:])


async def test_finality_follows_anvil_across_a_period_and_survives_a_restart(
    chain: tuple[AnvilNode, BeaconDevNode],
) -> None:
    node, beacon = chain
    state = MemoryState()
    client = _client(beacon, state)
    try:
        first = await _until(client, lambda f: True, 20)
        assert first.hash == _anvil_hash(node, first.number)
        store = client.store
        assert store is not None
        period = store.period
        crossed = await _until(client, lambda f: client.store.period > period, 25)  # type: ignore[union-attr]
        assert crossed.number > first.number
        assert crossed.hash == _anvil_hash(node, crossed.number), "a block anvil produced"
        head = int(node.rpc("eth_blockNumber"), 16)
        assert crossed.number <= head - LAG + 1
    finally:
        await client.close()
    assert state.saved is not None
    shown = status_of(state.saved)
    assert shown["finalized block"].startswith(f"{crossed.number} ")
    # a restart resumes from the saved state (no bootstrap), then keeps following
    again = _client(beacon, state, client.trusted_block_root)
    try:
        with capture_logs() as logs:
            resumed = await again.finalized()
        assert resumed is not None and resumed.number >= crossed.number
        assert any(e["event"] == "lightclient.resumed" for e in logs)
        assert not any(e["event"] == "lightclient.bootstrapped" for e in logs)
    finally:
        await again.close()
    # another trusted root is the operator's new word: the saved state is set aside
    other = _client(beacon, state)
    try:
        with capture_logs() as logs:
            await other.finalized()
        assert [e["event"] for e in logs if e["event"].startswith("lightclient.")][:2] == [
            "lightclient.checkpoint_changed",
            "lightclient.bootstrapped",
        ]
    finally:
        await other.close()


@pytest.mark.parametrize(
    "lie",
    [
        LieMode.FORGED_BLOCK,
        LieMode.MINORITY,
        LieMode.WRONG_FINALITY_BRANCH,
        LieMode.WRONG_COMMITTEE,
    ],
)
async def test_a_lying_beacon_node_moves_nothing_and_honest_answers_carry_on(
    chain: tuple[AnvilNode, BeaconDevNode], lie: LieMode
) -> None:
    node, beacon = chain
    client = _client(beacon, MemoryState())
    try:
        honest = await _until(client, lambda f: True, 20)
        beacon.set_mode(lie)
        await asyncio.sleep(2.5)  # new blocks, each update now a lie
        with capture_logs() as logs:
            during = await client.finalized()
        refused = [e for e in logs if e["event"] == "lightclient.update_refused"]
        if lie is LieMode.FORGED_BLOCK:
            # Signed by the whole committee over branches that verify: only the execution
            # block's absence from anvil gives the lie away, which chains.evm.ancestry catches
            # (the block does not hash as anvil's block at that height).
            assert during is not None
            if during.number != honest.number:
                assert during.hash != _anvil_hash(node, during.number)
        else:
            assert during is not None and during.number == honest.number, f"{lie} moved finality"
            if lie is LieMode.MINORITY:
                # valid, but below 2/3: the spec keeps it as a candidate and finalizes nothing
                # (force_update, which would take it, is never called)
                assert not refused
            else:
                assert refused, f"{lie}: nothing refused"
        beacon.set_mode(LieMode.HONEST)
        if lie is LieMode.FORGED_BLOCK:
            return
        after = await _until(client, lambda f: f.number > honest.number, 20)
        assert after.hash == _anvil_hash(node, after.number)
    finally:
        await client.close()


async def test_dev_mode_takes_the_network_and_root_from_the_dev_server(
    chain: tuple[AnvilNode, BeaconDevNode],
) -> None:
    node, beacon = chain
    _trusted_root(beacon)  # wait until something is finalized
    state = MemoryState()
    client = SyncCommitteeFinality(
        chain="chain-a",
        api=BeaconApi(beacon.url, chain="chain-a"),
        network=None,
        trusted_block_root=None,
        state=state,
    )
    try:
        final = await _until(client, lambda f: True, 20)
        assert final.hash == _anvil_hash(node, final.number)
    finally:
        await client.close()
    assert state.saved is not None
    assert status_of(state.saved)["network"] == "dev beacon server"
    again = SyncCommitteeFinality(
        chain="chain-a",
        api=BeaconApi(beacon.url, chain="chain-a"),
        network=None,
        trusted_block_root=None,
        state=state,
    )
    try:
        with capture_logs() as logs:
            assert await again.finalized() is not None
        assert any(e["event"] == "lightclient.resumed" for e in logs)
    finally:
        await again.close()
