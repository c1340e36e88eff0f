"""Scale-out on real things: two watchers and three workers as separate `relayer start --role`
processes, joined by a real Mosquitto broker and a real PostgreSQL ledger, between two anvil
chains, with the three attesters publishing their signatures on the bus (the workers keep their
own checkpoint directories, so every signature a worker counts came over the bus).

What is protected: every message delivered exactly once (the destination's Delivered events),
the work spread over all three workers (each signed delivering transactions with its own key).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chains.evm.anvil import DEV_KEYS
from chains.evm.devnet import Devnet
from chains.localnode import free_port
from tests.e2e.conftest import example_config
from tests.integration.mosquitto import start_mosquitto

pytestmark = pytest.mark.slow
pytest_plugins = ["tests.integration.postgres"]

# anvil dev accounts no other role of the devnet signs with: one key per worker, on both chains.
WORKER_KEYS = (1, 2, 9)
MESSAGES_EACH_WAY = 60
# Sent in rounds, so that the work arrives over time as it does in production, and each worker
# has many chances to claim some (claims go to whichever worker asks first).
ROUNDS = 10


def _split_config(database: str, broker_port: int, prefix: str) -> str:
    text = example_config(
        **{
            'database = "${RELAYER_DATA_DIR:-.relayer}/relayer.db"': f'database = "{database}"',
            'type = "memory"': 'type = "mqtt"',
            "[bus.mqtt]\n": (
                f'[bus.mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\n'
                f'topic_prefix = "{prefix}"\nreconnect_initial = 0.1\nreconnect_max = 1.0\n'
            ),
        }
    )
    return text


def _signers(devnet: Devnet, name: str) -> set[str]:
    """The delivering accounts a worker's log shows transactions from."""
    found: set[str] = set()
    for line in (devnet.work / f"{name}.log").read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("event") == "submit.started":
            found.add(str(entry.get("chain")))
    return found


def _wait_started(devnet: Devnet, names: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    for name in names:
        log = devnet.work / f"{name}.log"
        while '"relayer.started"' not in (log.read_text() if log.exists() else ""):
            devnet.check_alive([name])
            assert time.monotonic() < deadline, f"{name} did not start: see {log}"
            time.sleep(0.2)


# postgres_url first: fixtures are torn down in reverse, so the processes stop before their
# database is dropped.
def test_two_watchers_and_three_workers_deliver_every_message_exactly_once(
    postgres_url: str, devnet_factory: Callable[..., Devnet], tmp_path: Path
) -> None:
    with start_mosquitto(tmp_path / "mosquitto") as broker:
        devnet = devnet_factory(
            config_text=_split_config(postgres_url, broker.port, f"test-{tmp_path.name}")
        )
        devnet.start_attesters()
        watchers = ["watcher-1", "watcher-2"]
        for name in watchers:
            devnet.spawn(
                name,
                ["start", "-c", str(devnet.config_path), "--role", "watcher", "--instance", name],
                {"RELAYER_HEALTH": f"127.0.0.1:{free_port()}"},
            )
        workers = [f"worker-{n}" for n in range(len(WORKER_KEYS))]
        for name, key in zip(workers, WORKER_KEYS, strict=True):
            data = tmp_path / name
            data.mkdir()
            devnet.spawn(
                name,
                ["start", "-c", str(devnet.config_path), "--role", "worker"],
                {
                    "RELAYER_KEY_CHAIN_A": DEV_KEYS[key],
                    "RELAYER_KEY_CHAIN_B": DEV_KEYS[key],
                    # Its own checkpoint directory: the signatures it counts come over the bus.
                    "RELAYER_DATA_DIR": str(data),
                    "RELAYER_HEALTH": f"127.0.0.1:{free_port()}",
                },
            )

        _wait_started(devnet, [*watchers, *workers])

        async def flow() -> tuple[list[tuple[bytes, float]], list[tuple[bytes, float]]]:
            a_to_b, b_to_a = [], []
            for _ in range(ROUNDS):
                sent = await asyncio.gather(
                    devnet.send("chain-a", "chain-b", MESSAGES_EACH_WAY // ROUNDS),
                    devnet.send("chain-b", "chain-a", MESSAGES_EACH_WAY // ROUNDS),
                )
                a_to_b += sent[0]
                b_to_a += sent[1]
                await asyncio.sleep(1.5)
            return a_to_b, b_to_a

        a_to_b, b_to_a = asyncio.run(flow())
        latencies = asyncio.run(
            devnet.await_delivery(
                {"chain-b": a_to_b, "chain-a": b_to_a},
                timeout=180,
                alive=[*watchers, *workers],
            )
        )
        assert len(latencies) == 2 * MESSAGES_EACH_WAY
        for chain, sent in (("chain-b", a_to_b), ("chain-a", b_to_a)):
            events = asyncio.run(devnet.delivered_events(chain))
            assert set(events) == {i for i, _ in sent}, f"{chain}: ids differ from those sent"
            doubled = {i.hex(): n for i, n in events.items() if n != 1}
            assert not doubled, f"{chain}: delivered more than once: {doubled}"
        busy = {name: _signers(devnet, name) for name in workers}
        assert all(busy.values()), f"a worker delivered nothing: {busy}"
        devnet.stop()  # before the broker: a clean stop, not a bus outage
        for name in (*watchers, *workers):
            text = (devnet.work / f"{name}.log").read_text()
            assert '"relayer.fatal"' not in text, f"{name} failed: see its log"
