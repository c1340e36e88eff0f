"""Several endpoints of one real chopsticks chain: a quorum refuses a block hash only a lying
endpoint gives, and reads fail over past an endpoint that refuses every connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog

from chains.endpoints import Endpoints, QuorumError
from chains.substrate.chopsticks import ChopsticksNode
from chains.substrate.config import SubstrateChainConfig
from chains.substrate.reader import SubstrateReader
from chains.substrate.rpc import SubstrateRpc
from tests.integration.chopsticks import running_chopsticks
from tests.integration.substrate_proxy import WsRpcProxy

pytestmark = pytest.mark.slow

CHAIN = "xrly-substrate-quorum"


@pytest.fixture(scope="module")
def chopsticks() -> Iterator[ChopsticksNode]:
    with running_chopsticks(CHAIN) as node:
        yield node


@pytest.fixture
async def liar(chopsticks: ChopsticksNode) -> AsyncIterator[WsRpcProxy]:
    async with WsRpcProxy(chopsticks.ws_url) as proxy:
        proxy.lie("chain_getBlockHash", _forged)
        yield proxy


@pytest.fixture
async def honest(chopsticks: ChopsticksNode) -> AsyncIterator[WsRpcProxy]:
    async with WsRpcProxy(chopsticks.ws_url) as proxy:
        yield proxy


def _forged(result: Any) -> Any:
    return "0x" + "ee" * 32 if isinstance(result, str) else result


def _reader(urls: list[str], quorum: int) -> SubstrateReader:
    config = SubstrateChainConfig.model_validate(
        {
            "rpc": urls,
            "quorum": quorum,
            "system_chain": CHAIN,
            "dev": True,
            "extrinsics_commitment": "dev-concat",
        }
    )
    return SubstrateReader(chain_name="dot-q", domain=3000, config=config, url=config.rpc)


async def _true_hash(node: ChopsticksNode, number: int) -> bytes | None:
    async with SubstrateRpc.connect(node.ws_url, chain=CHAIN) as rpc:
        return await rpc.block_hash(number)


async def test_quorum_rejects_a_block_hash_only_a_lying_endpoint_gives(
    chopsticks: ChopsticksNode, liar: WsRpcProxy, honest: WsRpcProxy
) -> None:
    alone = _reader([liar.url, chopsticks.ws_url], quorum=2)
    outvoted = _reader([liar.url, chopsticks.ws_url, honest.url], quorum=2)
    try:
        head = await outvoted.confirmed_head()
        with pytest.raises(QuorumError):
            await alone.hash_at(head)
        with structlog.testing.capture_logs() as logs:
            assert await outvoted.hash_at(head) == await _true_hash(chopsticks, head)
    finally:
        await alone.close()
        await outvoted.close()
    assert liar.lied.get("chain_getBlockHash", 0) > 0
    unhealthy = [e for e in logs if e["event"] == "endpoint.unhealthy"]
    assert [(e["chain"], e["endpoint"]) for e in unhealthy] == [("dot-q", liar.url)]
    assert f"block {head}'s hash" in unhealthy[0]["reason"]


async def test_reads_fail_over_past_an_endpoint_that_is_down(
    chopsticks: ChopsticksNode, honest: WsRpcProxy
) -> None:
    honest.refuse(True)
    reader = SubstrateReader(
        chain_name="dot-q",
        domain=3000,
        config=SubstrateChainConfig(
            rpc=chopsticks.ws_url, system_chain=CHAIN, dev=True, extrinsics_commitment="dev-concat"
        ),
        url=Endpoints([honest.url, chopsticks.ws_url]),
    )
    try:
        with structlog.testing.capture_logs() as logs:
            head = await reader.confirmed_head()
            assert await reader.latest_head() >= head
            assert await reader.hash_at(head) == await _true_hash(chopsticks, head)
    finally:
        await reader.close()
    unhealthy = [e for e in logs if e["event"] == "endpoint.unhealthy"]
    assert [e["endpoint"] for e in unhealthy] == [honest.url]
