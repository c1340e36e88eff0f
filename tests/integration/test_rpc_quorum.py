"""Several endpoints of one real anvil chain: a quorum refuses a header only a lying endpoint
gives (a loopback proxy rewriting ``eth_getBlockByNumber``), and reads fail over past an
endpoint that is down."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from chains.endpoints import Endpoints, QuorumError
from chains.evm.config import EvmChainConfig
from chains.evm.reader import EvmReader
from chains.evm.rpc import EvmRpc
from tests.e2e.proxy import JsonRpcProxy, TcpProxy
from tests.integration.anvil import AnvilFactory, AnvilNode

_SECRET = "s3cr3t-api-key"
_GATEWAY = "0x" + "11" * 20


def _forge_hash(method: str, params: Any, result: Any) -> Any:
    """Every block answered as one of another fork: another state root, and its hash."""
    if method != "eth_getBlockByNumber" or not isinstance(result, dict):
        return result
    forged = copy.deepcopy(result)
    forged["stateRoot"] = "0x" + "22" * 32
    forged["hash"] = "0x" + "ee" * 30 + forged["hash"][-4:]
    return forged


@pytest.fixture
def node(anvil_factory: AnvilFactory) -> AnvilNode:
    node = anvil_factory(31421)
    node.rpc("anvil_mine", ["0x10"])
    return node


@pytest.fixture
def liar(node: AnvilNode) -> Iterator[JsonRpcProxy]:
    proxy = JsonRpcProxy(node.url)
    proxy.rewrite = _forge_hash
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def honest(node: AnvilNode) -> Iterator[JsonRpcProxy]:
    proxy = JsonRpcProxy(node.url)
    try:
        yield proxy
    finally:
        proxy.close()


def _reader(urls: list[str], quorum: int) -> EvmReader:
    config = EvmChainConfig.model_validate(
        {"chain_id": 31421, "rpc": urls, "gateway": _GATEWAY, "quorum": quorum}
    )
    return EvmReader(chain_name="chain-a", config=config, rpc=EvmRpc(config.rpc))


def _true_hash(node: AnvilNode, number: int) -> bytes:
    return bytes.fromhex(node.rpc("eth_getBlockByNumber", [hex(number), False])["hash"][2:])


async def test_quorum_rejects_a_header_from_a_lying_endpoint(
    node: AnvilNode, liar: JsonRpcProxy
) -> None:
    reader = _reader([f"{liar.url}/?apikey={_SECRET}", node.url], quorum=2)
    try:
        with structlog.testing.capture_logs() as logs, pytest.raises(QuorumError):
            await reader.hash_at(5)
    finally:
        await reader.close()
    assert liar.rewritten > 0
    assert _SECRET not in repr(logs)


async def test_quorum_takes_the_agreed_header_and_marks_the_liar_unhealthy(
    node: AnvilNode, liar: JsonRpcProxy, honest: JsonRpcProxy
) -> None:
    reader = _reader([f"{liar.url}/?apikey={_SECRET}", node.url, honest.url], quorum=2)
    try:
        with structlog.testing.capture_logs() as logs:
            for number in (5, 6, 7):
                assert await reader.hash_at(number) == _true_hash(node, number)
            head = await reader.confirmed_head()
    finally:
        await reader.close()
    assert head == int(node.rpc("eth_blockNumber"), 16) - 2
    unhealthy = [e for e in logs if e["event"] == "endpoint.unhealthy"]
    assert len(unhealthy) == 1, unhealthy  # logged once, however often it lied
    assert unhealthy[0]["chain"] == "chain-a"
    assert unhealthy[0]["endpoint"] == liar.url
    assert "block 5's hash" in unhealthy[0]["reason"]
    assert _SECRET not in repr(logs)


async def test_failover_survives_one_endpoint_down(node: AnvilNode) -> None:
    gone = TcpProxy(node.port)
    gone.drop()
    rpc = EvmRpc(Endpoints([gone.url, node.url]))
    try:
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                assert await rpc.block_number() == int(node.rpc("eth_blockNumber"), 16)
                assert await rpc.block(3) is not None
                block, receipts = await rpc.batch(
                    [("eth_getBlockByNumber", ["0x3", False]), ("eth_getBlockReceipts", ["0x3"])]
                )
                assert block["number"] == "0x3" and receipts == []
    finally:
        await rpc.close()
        gone.close()
    unhealthy = [e for e in logs if e["event"] == "endpoint.unhealthy"]
    assert [e["endpoint"] for e in unhealthy] == [gone.url]
    assert gone.dropped_connections == 1, "the dead endpoint sits out its backoff"


async def test_a_quorum_of_two_survives_one_of_three_endpoints_down(
    node: AnvilNode, honest: JsonRpcProxy
) -> None:
    gone = TcpProxy(node.port)
    gone.drop()
    reader = _reader([gone.url, node.url, honest.url], quorum=2)
    try:
        assert await reader.hash_at(4) == _true_hash(node, 4)
        assert await reader.latest_head() == int(node.rpc("eth_blockNumber"), 16)
    finally:
        await reader.close()
        gone.close()
