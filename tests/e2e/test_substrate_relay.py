"""Substrate <-> EVM through the daemon and attesters as processes, on a real chopsticks chain
and a real anvil: every message proven from its block, attested, delivered exactly once; what
is not a message is ignored with a reason; a lying endpoint and a kill -9 lose nothing."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from chains.evm.devnet import Devnet
from chains.substrate.devnet import SENDER_URI
from chains.substrate.keys import Sr25519Keypair
from chains.substrate.remark import encode_dispatch
from relayer.message import Message
from tests.e2e.substrate import DOT_A_DOMAIN, config_with_dot_a
from tests.integration.chopsticks import require_chopsticks
from tests.integration.substrate_proxy import WsRpcProxy

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _chopsticks() -> None:
    require_chopsticks()


def _log_events(devnet: Devnet, name: str = "relayer") -> list[dict[str, Any]]:
    import json  # noqa: PLC0415

    lines = (devnet.work / f"{name}.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_100_messages_each_way_between_substrate_and_evm_are_delivered_once(
    devnet_factory: Callable[..., Devnet],
) -> None:
    devnet = devnet_factory(config_text=config_with_dot_a())
    devnet.start_attesters()
    devnet.start_daemon()

    async def run() -> tuple[dict[bytes, float], list[bytes], list[bytes]]:
        to_evm, to_substrate = await asyncio.gather(
            devnet.send("dot-a", "chain-a", 100), devnet.send("chain-a", "dot-a", 100, sender=8)
        )
        latencies = await devnet.await_delivery(
            {"chain-a": to_evm, "dot-a": to_substrate}, timeout=180
        )
        return latencies, [m for m, _ in to_evm], [m for m, _ in to_substrate]

    latencies, to_evm, to_substrate = asyncio.run(run())
    assert len(latencies) == 200
    on_evm = asyncio.run(devnet.delivered_events("chain-a"))
    on_substrate = asyncio.run(devnet.delivered_events("dot-a"))
    assert {m: on_evm[m] for m in to_evm} == dict.fromkeys(to_evm, 1)
    assert {m: on_substrate[m] for m in to_substrate} == dict.fromkeys(to_substrate, 1)
    assert sum(on_substrate.values()) == 100  # nothing else was ever delivered there
    devnet.check_alive()


def test_remarks_that_are_not_deliverable_messages_are_ignored_with_a_reason(
    devnet_factory: Callable[..., Devnet],
) -> None:
    devnet = devnet_factory(config_text=config_with_dot_a(destination=False))
    devnet.start_attesters()
    devnet.start_daemon()
    alice = Sr25519Keypair.from_uri(SENDER_URI)
    bob = Sr25519Keypair.from_uri("//Bob")
    recipient = bytes.fromhex(devnet.recipients["chain-a"][2:]).rjust(32, b"\0")

    def message(
        nonce: int, *, sender: bytes = alice.public_key, destination: int = 1000
    ) -> Message:
        return Message(nonce, DOT_A_DOMAIN, sender, destination, recipient, b"body %d" % nonce)

    good = message(4)
    unknown = message(2, destination=9999)  # for a domain nobody configured
    remarks = [
        b"gm, not a relayer remark",
        encode_dispatch(message(1))[:-3],  # truncated
        encode_dispatch(unknown),
        encode_dispatch(message(3, sender=bob.public_key)),  # claims a sender that did not sign
        encode_dispatch(good),
    ]
    chain = devnet.substrate["dot-a"]

    async def run() -> dict[bytes, float]:
        await chain.send_remarks(remarks)
        return await devnet.await_delivery({"chain-a": [(good.id, time.time())]}, timeout=120)

    assert list(asyncio.run(run())) == [good.id]
    time.sleep(2)  # anything wrongly relayed would be delivered by now, as the good one was
    events = asyncio.run(devnet.delivered_events("chain-a"))
    assert dict(events) == {good.id: 1}
    reasons = [e["reason"] for e in _log_events(devnet) if e["event"] == "remark.ignored"]
    assert any("announces" in r and "carries" in r for r in reasons), reasons  # truncated
    assert any("signed by 0x" + alice.public_key.hex() in r for r in reasons), reasons
    rejected = [e for e in _log_events(devnet) if e.get("message_id") == "0x" + unknown.id.hex()]
    assert rejected and all(e["event"] != "submit.started" for e in rejected)
    assert any("9999" in str(e) for e in rejected), rejected
    devnet.check_alive()


def _corrupt_last_extrinsic(result: Any) -> Any:
    extrinsics = result["block"]["extrinsics"]
    last = extrinsics[-1]
    # One hex digit of the last extrinsic's last byte: a remark that is not the one sealed.
    extrinsics[-1] = last[:-1] + ("0" if last[-1] != "0" else "1")
    return result


def test_a_lying_substrate_endpoint_is_refused_and_the_message_delivered_once_after(
    devnet_factory: Callable[..., Devnet],
) -> None:
    devnet = devnet_factory(config_text=config_with_dot_a(destination=False))
    devnet.start_attesters()  # on the honest node
    chain = devnet.substrate["dot-a"]

    async def run() -> tuple[dict[str, int], dict[bytes, float], list[bytes]]:
        async with WsRpcProxy(chain.ws_url) as proxy:
            proxy.lie("chain_getBlock", _corrupt_last_extrinsic)
            devnet.start_daemon(extra_env={"DOT_A_RPC": proxy.url})
            sent = await devnet.send("dot-a", "chain-a", 5)
            deadline = time.monotonic() + 60
            while proxy.lied.get("chain_getBlock", 0) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            counts_while_lying = devnet.ledger_counts()
            proxy.lie("chain_getBlock", None)
            latencies = await devnet.await_delivery({"chain-a": sent}, timeout=120)
        return counts_while_lying, latencies, [m for m, _ in sent]

    counts_while_lying, latencies, ids = asyncio.run(run())
    assert counts_while_lying == {}, "nothing of a lying endpoint is persisted"
    assert sorted(latencies) == sorted(ids)
    events = asyncio.run(devnet.delivered_events("chain-a"))
    assert {m: events[m] for m in ids} == dict.fromkeys(ids, 1)
    assert any(e["event"] == "proof.rejected" for e in _log_events(devnet))


def test_kill_9_during_substrate_to_evm_traffic_loses_and_doubles_nothing(
    devnet_factory: Callable[..., Devnet],
) -> None:
    devnet = devnet_factory(config_text=config_with_dot_a(destination=False))
    devnet.start_attesters()
    devnet.start_daemon()
    chain = devnet.substrate["dot-a"]
    recipient = bytes.fromhex(devnet.recipients["chain-a"][2:])
    bodies = [f"survives kill {i}".encode() for i in range(60)]

    async def run() -> tuple[dict[bytes, float], list[bytes], int]:
        sending = asyncio.ensure_future(chain.send(1000, recipient, bodies, per_extrinsic=10))
        kills = 0
        while not sending.done():
            await asyncio.sleep(2.5)
            assert devnet.kill("relayer", signal.SIGKILL) == -signal.SIGKILL
            kills += 1
            devnet.start_daemon()
        sent = await sending
        latencies = await devnet.await_delivery({"chain-a": sent}, timeout=120)
        return latencies, [m for m, _ in sent], kills

    latencies, ids, kills = asyncio.run(run())
    assert kills >= 2
    assert sorted(latencies) == sorted(ids)
    events = asyncio.run(devnet.delivered_events("chain-a"))
    assert {m: events[m] for m in ids} == dict.fromkeys(ids, 1)
