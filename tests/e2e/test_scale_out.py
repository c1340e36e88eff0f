"""Scale-out on real things: `relayer start --role watcher|worker|all` processes joined by a
real Mosquitto broker and a real PostgreSQL ledger, between two anvil chains, with the three
attesters publishing their signatures on the bus (every delivering process keeps its own
checkpoint directory, so every signature it counts came over the bus).

The chains, the broker and the attesters are the module's (started once); each test has a
database, relayer processes and a config of its own, its watchers starting at the chains' heads
when it begins, so that no test sees another's messages.

What is protected, each time as every message delivered exactly once (the destinations'
Delivered events): 1,000 messages spread over three workers; three complete instances on one
ledger wasting (almost) no delivery on messages another delivered; a broker restart mid-flight;
a worker killed while holding notices, and one kept away while more than 1,000 notices are
published, neither keeping a share of them; notices replayed, reordered and forged.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from eth_account import Account

from chains.evm.anvil import DEV_KEYS
from chains.evm.devnet import Devnet
from chains.evm.rpc import EvmRpc
from chains.localnode import free_port
from proofs.hashing import keccak256
from relayer.bus import MqttBus, MqttSettings, ObservationNotice, encode_notice
from relayer.store import Ledger
from tests.e2e.conftest import example_config
from tests.integration.anvil import require_anvil
from tests.integration.mosquitto import MosquittoBroker, start_mosquitto

if TYPE_CHECKING:
    # A plugin (pytest_plugins below), not an import: an import would come before pytest could
    # rewrite its asserts.
    from tests.integration.postgres import PostgresCluster

pytestmark = pytest.mark.slow
pytest_plugins = ["tests.integration.postgres"]

# anvil dev accounts no other role of the devnet signs with: one key per delivering process,
# on both chains.
WORKER_KEYS = (1, 2, 9)
CHAINS = ("chain-a", "chain-b")

_BATCH_SELECTOR = keccak256(b"deliverBatch((bytes,bytes32,bytes[],uint64)[])")[:4]
_DELIVERED_TOPIC = "0x" + keccak256(b"Delivered(bytes32)").hex()
_FAILED_TOPIC = "0x" + keccak256(b"DeliveryFailed(bytes32,bytes)").hex()

Sent = dict[str, list[tuple[bytes, float]]]


def _config_text(
    *,
    database: str,
    broker_port: int,
    prefix: str,
    start_blocks: Sequence[int] = (0, 0),
    lease: float = 30.0,
) -> str:
    text = example_config(
        **{
            'database = "${RELAYER_DATA_DIR:-.relayer}/relayer.db"': f'database = "{database}"',
            'type = "memory"': 'type = "mqtt"',
            "[bus.mqtt]\n": (
                f'[bus.mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\n'
                f'topic_prefix = "{prefix}"\nreconnect_initial = 0.1\nreconnect_max = 1.0\n'
                # Each process's MQTT client ids start with its name: the broker's log says
                # which process each notice went to.
                'client_id_prefix = "${RELAYER_MQTT_CLIENT:-relayer}"\n'
                # Per process: the test that stops a worker wants the broker to notice soon.
                'keepalive = "${RELAYER_MQTT_KEEPALIVE:-10}"\n'
            ),
            "lease = 30.0": f"lease = {lease}",
        }
    )
    # chain-a's table comes first, chain-b's second.
    assert text.count("start_block = 0 ") == len(start_blocks), "the example config changed"
    for start in start_blocks:
        text = text.replace("start_block = 0 ", f"start_block = {start} ", 1)
    return text


@dataclass
class _Site:
    """The module's chains, broker and attesters."""

    devnet: Devnet
    broker: MosquittoBroker
    prefix: str


@pytest.fixture(scope="module")
def site(
    postgres_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_Site]:
    require_anvil()
    root = tmp_path_factory.mktemp("scale-out")
    prefix = f"test-{root.name}"
    # The attesters keep their cursors in files of their own; a split config must still name a
    # shared ledger.
    database = f"scale_out_{uuid.uuid4().hex[:8]}"
    url = postgres_cluster.create_database(database)
    try:
        with start_mosquitto(root / "mosquitto") as broker:
            config_path = root / "attesters.toml"
            config_path.write_text(
                _config_text(database=url, broker_port=broker.port, prefix=prefix)
            )
            devnet = Devnet(config_path=config_path, workdir=root / "devnet")
            try:
                devnet.start_chains()
                devnet.start_attesters()
                yield _Site(devnet=devnet, broker=broker, prefix=prefix)
            finally:
                devnet.stop()
    finally:
        postgres_cluster.drop_database(database)


@dataclass
class _Deployment:
    """One test's relayer processes on its own database, and what they did."""

    site: _Site
    database: str
    tmp_path: Path
    config_path: Path = field(init=False)
    start_blocks: tuple[int, int] = field(init=False)
    #: where this test's part of the broker's log starts
    log_start: int = field(init=False)
    names: list[str] = field(default_factory=list)
    #: the names of the processes that take observations off the bus
    takers: list[str] = field(default_factory=list)

    @property
    def devnet(self) -> Devnet:
        return self.site.devnet

    def configure(self, *, lease: float = 30.0) -> None:
        """This test's config: its database, watchers starting at the chains' heads now."""
        heads = asyncio.run(_heads(self.devnet))
        self.start_blocks = (heads["chain-a"], heads["chain-b"])
        self.config_path = self.config(lease=lease)
        self.log_start = len(self.site.broker.log_text())

    def config(
        self,
        *,
        lease: float = 30.0,
        database: str | None = None,
        prefix: str | None = None,
        name: str = "relayer.toml",
    ) -> Path:
        """A config file of this test's (another ledger or topic prefix if given)."""
        path = self.tmp_path / name
        path.write_text(
            _config_text(
                database=self.database if database is None else database,
                broker_port=self.site.broker.port,
                prefix=self.site.prefix if prefix is None else prefix,
                start_blocks=self.start_blocks,
                lease=lease,
            )
        )
        return path

    def spawn(
        self,
        name: str,
        role: str,
        key: int | None = None,
        *,
        keepalive: int = 10,
        config: Path | None = None,
    ) -> None:
        """``relayer start --role ROLE --instance NAME``; a delivering role signs with
        ``DEV_KEYS[key]`` and keeps its own checkpoint directory."""
        env = {
            "RELAYER_HEALTH": f"127.0.0.1:{free_port()}",
            "RELAYER_MQTT_CLIENT": name,
            "RELAYER_MQTT_KEEPALIVE": str(keepalive),
        }
        if key is not None:
            data = self.tmp_path / name
            data.mkdir()
            env |= {
                "RELAYER_KEY_CHAIN_A": DEV_KEYS[key],
                "RELAYER_KEY_CHAIN_B": DEV_KEYS[key],
                "RELAYER_DATA_DIR": str(data),
            }
        self.devnet.spawn(
            name,
            [
                "start",
                "-c",
                str(self.config_path if config is None else config),
                "--role",
                role,
                "--instance",
                name,
            ],
            env,
        )
        self.names.append(name)
        if role != "watcher":
            self.takers.append(name)

    def wait_started(self, timeout: float = 60.0) -> None:
        """Until every process has started, and every worker is a member of the workers'
        shared subscription (the broker acknowledged both origins' filters)."""
        deadline = time.monotonic() + timeout
        for name in self.names:
            while '"relayer.started"' not in self.log_text(name):
                self.devnet.check_alive([name])
                assert time.monotonic() < deadline, f"{name} did not start: see its log"
                time.sleep(0.2)
        acknowledged = re.compile(r"Sending SUBACK to (\S+)-workers-")
        while True:
            members = Counter(acknowledged.findall(self.site.broker.log_text(), self.log_start))
            if all(members[name] >= len(CHAINS) for name in self.takers):
                return
            self.devnet.check_alive(self.names)
            assert time.monotonic() < deadline, f"not all subscribed: {members}"
            time.sleep(0.1)

    def log_text(self, name: str) -> str:
        path = self.devnet.work / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def events(self, name: str, event: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log_text(name).splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("event") == event:
                found.append(entry)
        return found

    def stop(self) -> None:
        for name in self.names:
            proc = self.devnet.procs.get(name)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.devnet.kill(name, signal.SIGTERM)
            del self.devnet.procs[name]

    def assert_clean_logs(self) -> None:
        """No process failed, and each logged JSON lines only (nothing a library printed)."""
        for name in self.names:
            text = self.log_text(name)
            assert '"relayer.fatal"' not in text, f"{name} failed: see its log"
            stray = [line for line in text.splitlines() if not line.startswith("{")]
            assert not stray, f"{name} logged lines that are not JSON: {stray[:5]}"


# postgres_url first: fixtures are torn down in reverse, so the processes stop before their
# database is dropped.
@pytest.fixture
def deployment(postgres_url: str, site: _Site, tmp_path: Path) -> Iterator[_Deployment]:
    made = _Deployment(site=site, database=postgres_url, tmp_path=tmp_path)
    try:
        yield made
    finally:
        made.stop()
        site.broker.start()  # if a test stopped it and failed before starting it again
        # The next test's processes may have the same names: their logs start afresh, and
        # these stay with this test's files.
        for name in made.names:
            log = site.devnet.work / f"{name}.log"
            if log.exists():
                log.rename(tmp_path / log.name)


def _notices(broker: MosquittoBroker, direction: str, client: str, *, after: int = 0) -> int:
    """Observation notices the broker's log says it took from (``direction`` "from") or dealt
    to ("to") the MQTT clients whose ids start with ``client``, at or past character ``after``
    of its log."""
    verb = "Received PUBLISH from" if direction == "from" else "Sending PUBLISH to"
    pattern = re.compile(rf"{verb} {re.escape(client)}[^ ]* \(.*/observations'")
    return len(pattern.findall(broker.log_text(), after))


async def _heads(devnet: Devnet) -> dict[str, int]:
    heads = {}
    for chain in CHAINS:
        rpc = EvmRpc(devnet.evm(chain).rpc)
        try:
            heads[chain] = await rpc.block_number()
        finally:
            await rpc.close()
    return heads


async def _traffic(devnet: Devnet, rounds: int, each_way: int, pause: float) -> Sent:
    """``each_way`` messages a round from each chain to the other, ``pause`` seconds apart, so
    that work arrives over time as it does in production."""
    sent: Sent = {"chain-a": [], "chain-b": []}
    for _ in range(rounds):
        a_to_b, b_to_a = await asyncio.gather(
            devnet.send("chain-a", "chain-b", each_way), devnet.send("chain-b", "chain-a", each_way)
        )
        sent["chain-b"] += a_to_b
        sent["chain-a"] += b_to_a
        await asyncio.sleep(pause)
    return sent


def _assert_delivered_once(
    deployment: _Deployment, sent: Sent, *, timeout: float, alive: Sequence[str]
) -> None:
    devnet = deployment.devnet
    latencies = asyncio.run(devnet.await_delivery(sent, timeout=timeout, alive=alive))
    missing = sum(len(ids) for ids in sent.values()) - len(latencies)
    assert missing == 0, f"{missing} messages not delivered within {timeout:g} s"
    for chain, items in sent.items():
        events = asyncio.run(devnet.delivered_events(chain))
        ids = {i for i, _ in items}
        doubled = {i.hex(): events[i] for i in ids if events[i] != 1}
        assert not doubled, f"{chain}: delivered more or less than once: {doubled}"


@dataclass
class _Submissions:
    """What the delivery transactions to one chain carried, read from the chain."""

    transactions: int = 0
    items: int = 0
    delivered: int = 0
    failed: int = 0
    reverted: int = 0
    senders: Counter[str] = field(default_factory=Counter)

    @property
    def wasted(self) -> int:
        """Items that delivered nothing: skipped as delivered already, or in a reverted
        transaction (a recipient that failed is not waste: it is retried on a schedule)."""
        return self.items - self.delivered - self.failed


async def _submissions(devnet: Devnet, chain: str, since: int) -> _Submissions:
    """Every deliverBatch transaction to ``chain``'s Gateway from block ``since`` on."""
    gateway = devnet.evm(chain).gateway.lower()
    rpc = EvmRpc(devnet.evm(chain).rpc)
    found = _Submissions()
    try:
        head = await rpc.block_number()
        blocks = await rpc.batch(
            [("eth_getBlockByNumber", [hex(n), True]) for n in range(since, head + 1)]
        )
        txs = [
            tx
            for block in blocks
            for tx in block["transactions"]
            if (tx.get("to") or "").lower() == gateway
            and tx["input"].startswith("0x" + _BATCH_SELECTOR.hex())
        ]
        receipts = await rpc.batch([("eth_getTransactionReceipt", [tx["hash"]]) for tx in txs])
    finally:
        await rpc.close()
    for tx, receipt in zip(txs, receipts, strict=True):
        data = bytes.fromhex(tx["input"][2:])
        # Selector, then one dynamic argument: its offset (one word), then the array's length.
        found.transactions += 1
        found.items += int.from_bytes(data[36:68], "big")
        found.senders[tx["from"].lower()] += 1
        if int(receipt["status"], 16) != 1:
            found.reverted += 1
            continue
        for entry in receipt["logs"]:
            if entry["address"].lower() != gateway:
                continue
            if entry["topics"][0] == _DELIVERED_TOPIC:
                found.delivered += 1
            elif entry["topics"][0] == _FAILED_TOPIC:
                found.failed += 1
    return found


# --- the tests -----------------------------------------------------------------------------------


def test_one_watcher_and_three_workers_deliver_1000_messages_once_spread_over_all(
    deployment: _Deployment,
) -> None:
    """One watcher announces, three workers (each its own key) share the notices and claim
    the work from the Postgres ledger: 1,000 messages, each delivered once, by all three."""
    deployment.configure()
    workers = [f"worker-{n}" for n in range(len(WORKER_KEYS))]
    deployment.spawn("watcher", "watcher")
    for name, key in zip(workers, WORKER_KEYS, strict=True):
        deployment.spawn(name, "worker", key)
    deployment.wait_started()

    sent = asyncio.run(_traffic(deployment.devnet, rounds=5, each_way=100, pause=1.0))
    _assert_delivered_once(deployment, sent, timeout=180, alive=["watcher", *workers])

    senders: Counter[str] = Counter()
    for chain, since in zip(CHAINS, deployment.start_blocks, strict=True):
        found = asyncio.run(_submissions(deployment.devnet, chain, since))
        assert found.delivered == len(sent[chain]), f"{chain}: {found}"
        senders += found.senders
    # Each worker signs with its own key: the destinations say who delivered.
    keys = {
        Account.from_key(DEV_KEYS[key]).address.lower(): name
        for name, key in zip(workers, WORKER_KEYS, strict=True)
    }
    idle = [name for address, name in keys.items() if not senders[address]]
    assert not idle, f"delivered nothing: {idle} (transactions by sender: {senders})"
    deployment.stop()
    deployment.assert_clean_logs()


def test_three_complete_instances_on_one_ledger_deliver_once_and_waste_little(
    deployment: _Deployment,
) -> None:
    """Three `--role all` processes, each a whole relayer with its own key, on the same chains
    and the same Postgres ledger: each watches every chain and would deliver every message;
    the ledger's claims must leave nothing delivered twice and (almost) no transaction spent on
    a message another instance delivered."""
    deployment.configure()
    names = [f"all-{n}" for n in range(len(WORKER_KEYS))]
    for name, key in zip(names, WORKER_KEYS, strict=True):
        deployment.spawn(name, "all", key)
    deployment.wait_started()

    sent = asyncio.run(_traffic(deployment.devnet, rounds=6, each_way=20, pause=1.0))
    _assert_delivered_once(deployment, sent, timeout=120, alive=names)

    for chain, since in zip(CHAINS, deployment.start_blocks, strict=True):
        found = asyncio.run(_submissions(deployment.devnet, chain, since))
        total = len(sent[chain])
        assert found.delivered == total, f"{chain}: {found}"
        # A complete instance that lost a race settles the message from the chain before it
        # signs anything: waste comes only from a claim taken over, and must stay rare.
        assert found.wasted <= total // 10, f"{chain}: {found.wasted} wasted of {found}"
    deployment.stop()
    deployment.assert_clean_logs()


def test_a_broker_restart_mid_flight_loses_no_observation_and_doubles_nothing(
    deployment: _Deployment,
) -> None:
    """Two watchers (so every notice is on the bus twice) and three workers; the broker is
    stopped while messages flow and started again on the same port. The notices published
    meanwhile are lost, by design: the ledger has every observation, and workers poll it."""
    broker = deployment.site.broker
    deployment.configure()
    watchers = ["watcher-1", "watcher-2"]
    workers = [f"worker-{n}" for n in range(len(WORKER_KEYS))]
    for name in watchers:
        deployment.spawn(name, "watcher")
    for name, key in zip(workers, WORKER_KEYS, strict=True):
        deployment.spawn(name, "worker", key)
    deployment.wait_started()
    log_start = len(broker.log_text())

    async def flow() -> Sent:
        sent = await _traffic(deployment.devnet, rounds=2, each_way=15, pause=1.0)
        broker.stop()
        during = await _traffic(deployment.devnet, rounds=2, each_way=15, pause=1.0)
        broker.start()
        after = await _traffic(deployment.devnet, rounds=2, each_way=15, pause=1.0)
        return {chain: sent[chain] + during[chain] + after[chain] for chain in sent}

    sent = asyncio.run(flow())
    _assert_delivered_once(deployment, sent, timeout=120, alive=[*watchers, *workers])
    # Both watchers announced (before and after the outage): the workers had duplicates to drop.
    for name in watchers:
        assert _notices(broker, "from", name, after=log_start) > 0, f"{name} announced nothing"
    deployment.stop()
    deployment.assert_clean_logs()
    for name in [*watchers, *workers]:
        outages = len(deployment.events(name, "bus.unavailable"))
        recoveries = len(deployment.events(name, "bus.recovered"))
        # Logged once each, however many connections the process has.
        assert (outages, recoveries) == (1, 1), (
            f"{name}: {outages} outages, {recoveries} recoveries"
        )


def test_killed_and_offline_workers_lose_nothing_and_keep_no_share_of_the_notices(
    deployment: _Deployment,
) -> None:
    """One watcher, three workers. worker-0 is frozen (SIGSTOP) while notices are dealt to it,
    then killed: what it held reaches the others through the ledger. worker-1 is frozen until
    the broker drops it (its keepalive ran out) and stays away while more than 1,000 notices
    are published: the broker deals none to it, queues none for it (its session ended with
    its connection), and every message is still delivered exactly once."""
    broker = deployment.site.broker
    # A short lease: a frozen worker's claims pass to the live one within seconds.
    deployment.configure(lease=6.0)
    workers = [f"worker-{n}" for n in range(len(WORKER_KEYS))]
    deployment.spawn("watcher", "watcher")
    for name, key in zip(workers, WORKER_KEYS, strict=True):
        # worker-1's broker notices it is gone within 1.5 keepalives (3 s), the others 15 s.
        deployment.spawn(name, "worker", key, keepalive=2 if name == "worker-1" else 10)
    deployment.wait_started()
    devnet = deployment.devnet

    # worker-0, frozen, is dealt its share of notices it will never take; then it is killed.
    devnet.procs["worker-0"].send_signal(signal.SIGSTOP)
    frozen_at = len(broker.log_text())
    held = asyncio.run(_traffic(devnet, rounds=2, each_way=20, pause=1.0))
    assert _notices(broker, "to", "worker-0", after=frozen_at) > 0, "worker-0 was dealt nothing"
    devnet.kill("worker-0")
    # worker-1 frozen until the broker drops it.
    frozen_at = len(broker.log_text())
    devnet.procs["worker-1"].send_signal(signal.SIGSTOP)
    broker.wait_for_log(
        r"Client worker-1-workers-\S+ has exceeded timeout", timeout=10, after=frozen_at
    )
    away_at = len(broker.log_text())
    offline = asyncio.run(_traffic(devnet, rounds=3, each_way=175, pause=0.5))
    sent = {chain: held[chain] + offline[chain] for chain in CHAINS}
    _assert_delivered_once(deployment, sent, timeout=180, alive=["watcher", "worker-2"])
    # The watcher announces after it recorded, and workers poll too: by now it has announced.
    published = _notices(broker, "from", "watcher", after=away_at)
    assert published > 1000, f"only {published} notices published while worker-1 was away"
    assert _notices(broker, "to", "worker-1", after=away_at) == 0, "dealt to a dropped worker"
    # Every notice published meanwhile was dealt to the live worker: none went to a session
    # kept for a worker that is not there.
    dealt = _notices(broker, "to", "worker-2", after=away_at)
    assert dealt >= published, f"{published} notices published, {dealt} dealt to worker-2"

    # worker-1 thaws: it reconnects with a clean session, and nothing queued meets it.
    back_at = len(broker.log_text())
    devnet.procs["worker-1"].send_signal(signal.SIGCONT)
    broker.wait_for_log(r"Sending SUBACK to worker-1-workers-", timeout=30, after=back_at)
    time.sleep(1.0)
    assert _notices(broker, "to", "worker-1", after=back_at) == 0, "a stale session's backlog"
    devnet.check_alive(["watcher", "worker-1", "worker-2"])
    _assert_delivered_once(deployment, sent, timeout=10, alive=["watcher", "worker-1", "worker-2"])
    deployment.stop()
    deployment.assert_clean_logs()


def test_replayed_reordered_and_forged_observation_notices_deliver_each_message_once(
    deployment: _Deployment, postgres_cluster: PostgresCluster
) -> None:
    """Two workers whose only source of observations is the bus. The test plays the watcher:
    it takes a real watcher's notices (that watcher records in a ledger of its own and
    announces under another topic prefix) and publishes each of them ten times, in shuffled
    order, among forgeries: a real message's evidence under a message of the forger's, a
    real message under another id, and bytes that are no notice at all. Each real message is
    recorded and delivered once; nothing forged is recorded, let alone delivered."""
    deployment.configure()
    broker = deployment.site.broker
    devnet = deployment.devnet
    capture_prefix = f"{deployment.site.prefix}-capture"
    capture_db = f"capture_{uuid.uuid4().hex[:8]}"
    capture_url = postgres_cluster.create_database(capture_db)
    try:
        deployment.spawn(
            "watcher",
            "watcher",
            config=deployment.config(
                database=capture_url, prefix=capture_prefix, name="watcher.toml"
            ),
        )
        workers = ["worker-0", "worker-1"]
        for name, key in zip(workers, WORKER_KEYS[:2], strict=True):
            deployment.spawn(name, "worker", key)
        deployment.wait_started()

        async def capture_and_replay() -> tuple[Sent, list[bytes]]:
            capture = MqttSettings(host=broker.host, port=broker.port, topic_prefix=capture_prefix)
            relay = MqttSettings(
                host=broker.host, port=broker.port, topic_prefix=deployment.site.prefix
            )
            async with MqttBus(capture) as listener, MqttBus(relay) as forger:
                async with listener.subscribe(ObservationNotice) as notices:
                    await notices.wait_subscribed(timeout=10)
                    sent = await _traffic(devnet, rounds=2, each_way=10, pause=0.5)
                    expected = sum(len(items) for items in sent.values())
                    real: dict[bytes, ObservationNotice] = {}
                    async with asyncio.timeout(60):
                        while len(real) < expected:
                            notice = await anext(notices)
                            real[notice.message_id] = notice
                forged = [_forge(notice) for notice in list(real.values())[:3]]
                wrong_ids = [
                    msgspec.structs.replace(notice, message_id=keccak256(notice.message_id))
                    for notice in list(real.values())[3:6]
                ]
                topic = forger.topics.for_notice
                wire = [(topic(n), encode_notice(n)) for n in real.values()] * 10
                wire += [(topic(n), encode_notice(n)) for n in [*forged, *wrong_ids]] * 10
                wire += [(topic(forged[0]), b"\x93not a notice")] * 5
                random.Random(11).shuffle(wire)
                for notice_topic, payload in wire:
                    await forger.publish_payload(notice_topic, payload)
            return sent, [notice.message_id for notice in [*forged, *wrong_ids]]

        sent, bad_ids = asyncio.run(capture_and_replay())
        _assert_delivered_once(deployment, sent, timeout=90, alive=["watcher", *workers])
        delivered = Counter[bytes]()
        for chain in CHAINS:
            delivered += asyncio.run(devnet.delivered_events(chain))
        assert not [i for i in bad_ids if delivered[i]], "a forged notice was delivered"
        with Ledger.open(deployment.database) as ledger:
            held = sum(ledger.counts().values())
            assert not ledger.states(bad_ids), "a forged notice was recorded"
        assert held == sum(len(items) for items in sent.values()), "the ledger holds extra rows"
        deployment.stop()
        deployment.assert_clean_logs()
        refused = Counter(
            entry["reason"]
            for name in workers
            for entry in deployment.events(name, "bus.observation_refused")
        )
        assert refused["forged"] > 0, refused
        assert refused["wrong_id"] > 0, refused
        dropped = sum(len(deployment.events(name, "bus.payload_dropped")) for name in workers)
        assert dropped > 0, "the garbage payloads were not dropped with a log line"
    finally:
        deployment.stop()  # the watcher, before its database goes
        postgres_cluster.drop_database(capture_db)


def _forge(notice: ObservationNotice) -> ObservationNotice:
    """``notice`` with a message of the forger's under its real evidence (id consistent)."""
    message = notice.message[:77] + b"forged: pay the forger"
    return msgspec.structs.replace(notice, message=message, message_id=keccak256(message))
