"""The watcher's read-ahead against a real anvil: what it prepares is what the ordinary read
finds, it reads no receipts where the bloom rules a Dispatch out, and a reorg of prepared
blocks never leaks a message of the dropped fork."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chains.evm.config import EvmChainConfig
from chains.evm.readahead import ReadAhead
from chains.evm.reader import EvmReader
from chains.evm.rpc import EvmRpc
from relayer.follower import Follower, LedgerCursor
from relayer.plugin import Observation
from relayer.store import Ledger
from tests.integration.anvil import AnvilFactory
from tests.integration.test_gateway import (
    ATTESTERS,
    DOMAIN_A,
    DOMAIN_B,
    THRESHOLD,
    Chain,
    connect,
    deploy,
    deploy_gateway,
    dispatch,
)


@pytest.fixture
def pair(anvil_factory: AnvilFactory) -> Iterator[tuple[Chain, Chain]]:
    chains = []
    for domain, chain_id in ((DOMAIN_A, 31401), (DOMAIN_B, 31402)):
        node = anvil_factory(chain_id)
        w3 = connect(node)
        gateway = deploy_gateway(w3, domain, [a.address for a in ATTESTERS], THRESHOLD)
        chains.append(Chain(node, w3, domain, gateway, deploy(w3, "TestRecipient")))
    yield chains[0], chains[1]


class CountingRpc(EvmRpc):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.receipt_reads: list[int] = []

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        self.receipt_reads += [int(p[0], 16) for m, p in calls if m == "eth_getBlockReceipts"]
        return await super().batch(calls)


def _reader(chain: Chain, rpc: EvmRpc) -> EvmReader:
    config = EvmChainConfig(
        chain_id=chain.w3.eth.chain_id,
        rpc=chain.node.url,
        gateway=chain.gateway.address,
        confirmations=2,
    )
    return EvmReader(chain_name="chain-a", config=config, rpc=rpc)


def _follower(reader: EvmReader, ledger: Ledger) -> Follower:
    cursor = LedgerCursor(ledger, "chain-a", "test", start_block=reader.start_block)
    return Follower(chain="chain-a", reader=reader, cursor=cursor, log=None)


def test_prepared_blocks_hold_what_the_ordinary_read_finds(
    pair: tuple[Chain, Chain], tmp_path: Path
) -> None:
    a, b = pair
    first = a.w3.eth.block_number + 1
    for body in (b"one", b"two"):
        dispatch(a, b, body)
    a.w3.provider.make_request("evm_mine", [])  # a block without a Dispatch
    head = a.w3.eth.block_number

    async def run() -> tuple[list[Observation], list[Observation], list[int]]:
        rpc = CountingRpc(a.node.url)
        with Ledger.open(tmp_path / "ledger.db"):
            reader = _reader(a, rpc)
            ahead = ReadAhead(chain_name="chain-a", gateway=reader.gateway, rpc=rpc)
            await ahead.extend(first)
            parent = a.w3.eth.get_block(first - 1)["hash"]
            blocks = ahead.take(bytes(parent), first, head)
            assert blocks is not None
            prepared = [o for blk in blocks for o in blk.observations]
            span = await reader._read(first, head)
            ordinary = list(span.observations)
            assert span.end_hash == blocks[-1].hash
            await rpc.close()
            return prepared, ordinary, rpc.receipt_reads

    prepared, ordinary, receipt_reads = asyncio.run(run())
    assert [o.message for o in prepared] == [o.message for o in ordinary]
    assert prepared == ordinary
    assert len(prepared) == 2
    # Receipts were read for the two Dispatch blocks only, never for the empty one.
    assert sorted(set(receipt_reads)) == sorted({o.block_number for o in prepared})


def test_a_reorg_of_prepared_blocks_relays_only_the_new_fork(
    pair: tuple[Chain, Chain], tmp_path: Path
) -> None:
    a, b = pair
    for _ in range(3):
        a.w3.provider.make_request("evm_mine", [])
    gone = dispatch(a, b, b"dropped by the reorg")
    a.w3.provider.make_request("evm_mine", [])
    seen: list[Observation] = []

    async def sink(observations: Any) -> None:
        seen.extend(observations)

    async def run() -> None:
        rpc = EvmRpc(a.node.url)
        with Ledger.open(tmp_path / "ledger.db") as ledger:
            reader = _reader(a, rpc)
            follower = _follower(reader, ledger)
            gone_block = gone.receipt["blockNumber"]
            ledger.set_cursor(
                "chain-a", "test", gone_block - 1, bytes(a.w3.eth.get_block(gone_block - 1)["hash"])
            )
            await reader.ahead.extend(gone_block)
            assert any(blk.observations for blk in reader.ahead.blocks.values())
            # The prepared block and its successor are replaced by empty ones, then the chain
            # grows until exactly those two heights are confirmed: the prepared blocks still
            # link to the cursor, only the node's hash at the end height tells them stale.
            a.w3.provider.make_request("anvil_reorg", [2, []])
            for _ in range(2):
                a.w3.provider.make_request("evm_mine", [])
            assert reader.ahead.take(
                ledger.get_cursor("chain-a", "test").block_hash,  # type: ignore[union-attr]
                gone_block,
                gone_block + 1,
            )
            while await follower.step(sink):
                pass
            cursor = ledger.get_cursor("chain-a", "test")
            assert cursor is not None and cursor.block_number >= gone_block
            await rpc.close()

    asyncio.run(run())
    assert gone.id not in {
        o.message and __import__("proofs.hashing").hashing.keccak256(o.message) for o in seen
    }
    assert seen == []
