"""RPC resilience against the daemon and attesters as real processes: chain-a is read from four
endpoints with ``quorum = 2``, one of which lies about every block header and one of which is
down; messages are still delivered, exactly once, and both are reported unhealthy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from chains.evm.devnet import Devnet
from tests.e2e.conftest import example_config
from tests.e2e.proxy import JsonRpcProxy, TcpProxy
from tests.e2e.test_operator_surface import _get, _samples
from tests.e2e.test_relay import _assert_exactly_once, _events
from tests.integration.test_rpc_quorum import _forge_hash

pytestmark = pytest.mark.slow

_SECRET = "s3cr3t-api-key"
_ONE_RPC = 'rpc = "${CHAIN_A_RPC:-http://127.0.0.1:8545}"'
# The honest node first: the test's own sends go to the first endpoint, as writes do.
_FOUR_RPCS = (
    'rpc = ["${CHAIN_A_RPC:-http://127.0.0.1:8545}", "${QUORUM_LIAR:-http://127.0.0.1:9}", '
    '"${QUORUM_DEAD:-http://127.0.0.1:10}", "${QUORUM_HONEST:-http://127.0.0.1:11}"]\n'
    "quorum = 2"
)


def test_quorum_outvotes_a_lying_endpoint_and_reads_fail_over_past_a_dead_one(
    devnet_factory: Callable[..., Devnet],
) -> None:
    # example_config's first match is chain-a's rpc line.
    devnet = devnet_factory(config_text=example_config(**{_ONE_RPC: _FOUR_RPCS}))
    liar = JsonRpcProxy(devnet.chain_a.url)
    liar.rewrite = _forge_hash
    honest = JsonRpcProxy(devnet.chain_a.url)
    dead = TcpProxy(devnet.chain_a.port)
    dead.drop()
    try:
        devnet.env |= {
            "QUORUM_LIAR": f"{liar.url}/?apikey={_SECRET}",
            "QUORUM_DEAD": dead.url,
            "QUORUM_HONEST": honest.url,
        }
        devnet.start_attesters()
        devnet.start_daemon()
        sent = asyncio.run(devnet.send("chain-a", "chain-b", 5))
        latencies = asyncio.run(devnet.await_delivery({"chain-b": sent}, timeout=60))
        assert len(latencies) == 5
        _assert_exactly_once(devnet, {"chain-b": {i for i, _ in sent}})
        assert liar.rewritten > 0
        assert dead.dropped_connections > 0
        # The gauge shows each endpoint's verdict (redacted), and losing two of four endpoints
        # is no reason for /readyz to fail: failover and the quorum cover it.
        healthy = {
            labels["endpoint"]: value
            for labels, value in _samples(devnet)["relayer_rpc_endpoint_healthy"]
            if labels["chain"] == "chain-a"
        }
        assert healthy[liar.url] == 0.0, healthy
        assert healthy[dead.url] == 0.0, healthy
        assert healthy[devnet.chain_a.url] == 1.0, healthy
        assert not any(_SECRET in endpoint for endpoint in healthy)
        _, ready = _get(devnet, "/readyz")
        assert '"endpoints"' not in ready, ready
    finally:
        liar.close()
        honest.close()
        dead.close()
    for process in ("relayer", "att-1"):
        unhealthy = {
            str(e["endpoint"]): str(e["reason"])
            for e in _events(devnet, process)
            if e.get("event") == "endpoint.unhealthy" and e.get("chain") == "chain-a"
        }
        assert "hash" in unhealthy[liar.url], unhealthy  # redacted: no API key
        assert dead.url in unhealthy, unhealthy
        assert devnet.chain_a.url not in unhealthy, unhealthy
        assert _SECRET not in (devnet.work / f"{process}.log").read_text()
