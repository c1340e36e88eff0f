"""SubstrateSubmitter with several endpoints, without a chain: reads and broadcasts go to the
next endpoint when one is down, an answer is not failed over, and all of them down is a
retryable outage that names each endpoint."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from chains.endpoints import EndpointsFailedError
from chains.substrate.config import SubstrateChainConfig
from chains.substrate.rpc import PermanentRpcError, PoolRefusal
from chains.substrate.submitter import SubstrateSubmitter
from relayer.errors import PermanentChainError, TransientChainError
from relayer.plugin import BroadcastResult
from tests.unit.chains.substrate.test_submitter import ALICE, CONTEXT, FakeRpc, connected, signed

URLS = ["ws://user:secret@127.0.0.1:9001/key", "ws://127.0.0.1:9002"]


def two_endpoints(*clients: FakeRpc | None) -> SubstrateSubmitter:
    """A submitter of ``URLS``; endpoint i holds ``clients[i]``, or cannot connect (None)."""
    config = SubstrateChainConfig(rpc=URLS, system_chain="dst")
    sub = SubstrateSubmitter(chain_name="dst", config=config, signer=ALICE)
    sub._context = CONTEXT
    for node, client in zip(sub._nodes.members, clients, strict=True):
        if client is None:

            async def refused(node: Any = node) -> Any:
                raise TransientChainError(
                    f"chain `dst`: connection to {node.endpoint} failed during connect "
                    "(ConnectionRefusedError(111, 'Connection refused')); check that the node "
                    "is up, will retry"
                )

            node.connection.client = refused
        else:
            client.endpoint = node.endpoint
            node.connection.current = client
    return sub


def test_the_submitter_names_its_first_endpoint_and_how_many_more() -> None:
    assert two_endpoints(FakeRpc(), FakeRpc()).endpoint == "ws://127.0.0.1:9001 (+1 more)"


async def test_a_broadcast_goes_through_the_next_endpoint_when_the_first_is_down() -> None:
    alive = FakeRpc()
    sub = two_endpoints(None, alive)
    pending = signed(sub)
    with structlog.testing.capture_logs() as logs:
        assert await sub.broadcast(pending) is BroadcastResult.ACCEPTED
    assert alive.submitted == [pending.extrinsic]
    (down,) = [e for e in logs if e["event"] == "endpoint.unhealthy"]
    assert down["endpoint"] == "ws://127.0.0.1:9001" and "Connection refused" in down["reason"]
    first, second = sub.endpoint_health()
    assert (first.endpoint, first.healthy, first.failures) == ("ws://127.0.0.1:9001", False, 1)
    assert (second.endpoint, second.healthy, second.reason) == ("ws://127.0.0.1:9002", True, None)


async def test_reads_prefer_the_healthy_endpoint_while_the_dead_one_sits_out_its_backoff() -> None:
    alive = FakeRpc(nonce=9)
    sub = two_endpoints(None, alive)
    assert await sub.resync_nonce() == 9
    assert sub._nodes.ordered()[0] is sub._nodes.members[1]


async def test_a_pool_refusal_is_an_answer_and_is_not_sent_elsewhere() -> None:
    refusing = FakeRpc(refusal=PermanentRpcError("bad", 1010, None, PoolRefusal.INVALID))
    other = FakeRpc()
    sub = two_endpoints(refusing, other)
    with pytest.raises(PermanentChainError):
        await sub.broadcast(signed(sub))
    assert other.submitted == []
    assert connected(sub, 0) is refusing
    assert all(h.healthy for h in sub.endpoint_health())


async def test_every_endpoint_down_is_a_retryable_outage_naming_each_endpoint() -> None:
    sub = two_endpoints(None, None)
    with pytest.raises(EndpointsFailedError) as raised:
        await sub.broadcast(signed(sub))
    error = raised.value
    assert isinstance(error, TransientChainError) and error.retryable
    text = str(error)
    assert text.startswith("chain `dst`: all 2 endpoints failed")
    assert "ws://127.0.0.1:9001" in text and "ws://127.0.0.1:9002" in text
    assert "secret" not in text and "/key" not in text
    assert not any(h.healthy for h in sub.endpoint_health())


async def test_a_node_serving_another_chain_is_failed_over_at_connect() -> None:
    sub = two_endpoints(None, FakeRpc(nonce=3))
    wrong = FakeRpc(chain="other")
    node = sub._nodes.members[0]
    wrong.endpoint = node.endpoint

    async def connect_wrong() -> Any:
        await sub._check(wrong)  # type: ignore[arg-type]  # the fake has what _check reads
        return wrong

    node.connection.client = connect_wrong  # type: ignore[method-assign]
    assert await sub.resync_nonce() == 3
    (first, _) = sub.endpoint_health()
    assert first.reason is not None and "system_chain 'other'" in first.reason
