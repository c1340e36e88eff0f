"""relayer.bus.mqtt against a real Mosquitto (a throwaway broker per test, on a free port).

What is protected: both notice kinds make the round trip; a shared subscription splits notices
between live workers with none lost and none duplicated; a worker killed with SIGKILL leaves its
group at once (clean start, no session expiry), so the survivor gets every later notice instead
of the dead worker's session soaking up half; a broker restart is ridden out (publish fails
cleanly while it is down, subscribers resubscribe and keep iterating, the outage is logged once
and its end once); garbage, another version and oversized payloads are dropped with a log line
and the subscriber goes on; a password is accepted, a wrong one (or none) is refused with an
error that says what to fix; the password is never in a log line, a repr or an error.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import msgspec
import pytest
import structlog
from structlog.testing import capture_logs

from relayer.bus import (
    AttestationNotice,
    BrokerRefusedError,
    BusUnavailableError,
    MqttBus,
    MqttSettings,
    MqttTls,
    ObservationNotice,
    encode_notice,
)
from relayer.bus.protocol import Bus, Subscription
from relayer.errors import ConfigError
from tests.integration.mosquitto import MosquittoBroker, start_mosquitto

REPO_ROOT = Path(__file__).resolve().parents[2]
ORIGIN = 1000
USER = "relayer"
PASSWORD = "s3cret-Pa55-word"
PASSWORD_ENV = "XRELAYER_TEST_MQTT_PASSWORD"


def observation(index: int, origin: int = ORIGIN) -> ObservationNotice:
    return ObservationNotice(
        origin_domain=origin,
        origin_chain="chain-a",
        message_id=index.to_bytes(32, "big"),
        block_number=100 + index,
        block_hash=b"\xaa" * 32,
        message=b"\x03" + index.to_bytes(4, "big") + b"body",
        evidence=b"proof-%d" % index,
    )


def attestation(index: int) -> AttestationNotice:
    return AttestationNotice(
        origin_domain=ORIGIN,
        destination_domain=2000,
        message_id=index.to_bytes(32, "big"),
        origin_block_hash=b"\xbb" * 32,
        signer=b"\x11" * 20,
        signature=b"\x22" * 64 + b"\x1c",
    )


def settings_for(broker: MosquittoBroker, **overrides: object) -> MqttSettings:
    values: dict[str, object] = {
        "host": broker.host,
        "port": broker.port,
        # Each test its own corner of the broker.
        "topic_prefix": f"test-{uuid.uuid4().hex[:8]}/relayer",
        "reconnect_initial": 0.05,
        "reconnect_max": 0.5,
        "connect_timeout": 5.0,
        "publish_timeout": 5.0,
        "keepalive": 5,
    }
    values.update(overrides)
    return MqttSettings.model_validate(values)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    with start_mosquitto(tmp_path / "mosquitto") as running:
        yield running


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    with start_mosquitto(tmp_path / "mosquitto", users={USER: PASSWORD}) as running:
        yield running


class Collector:
    """Consumes a subscription in a task; ``wait_for(n)`` waits for ``n`` notices in all.
    ``changed`` (shared by several collectors) is set at each notice."""

    def __init__(
        self, subscription: Subscription[ObservationNotice], changed: asyncio.Event | None = None
    ) -> None:
        self.indexes: list[int] = []
        self._changed = changed if changed is not None else asyncio.Event()
        self._task = asyncio.create_task(self._consume(subscription))

    async def _consume(self, subscription: Subscription[ObservationNotice]) -> None:
        async for notice in subscription:
            self.indexes.append(int.from_bytes(notice.message_id))
            self._changed.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[int]:
        async with asyncio.timeout(timeout):
            while len(self.indexes) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.indexes

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.wait([self._task])


class _Counted(Protocol):
    indexes: list[int]


async def wait_total(
    sources: Sequence[_Counted],
    changed: asyncio.Event,
    count: int,
    timeout: float = 10.0,
) -> None:
    """Wait until ``sources`` (which set ``changed`` at each notice) hold ``count`` in all."""
    async with asyncio.timeout(timeout):
        while sum(len(source.indexes) for source in sources) < count:
            changed.clear()
            await changed.wait()


# --- settings (no broker needed) -------------------------------------------------------------


def test_settings_name_the_password_variable_and_never_hold_the_password() -> None:
    settings = MqttSettings(username=USER, password_env=PASSWORD_ENV)
    assert PASSWORD not in repr(settings)
    secret = settings.password({PASSWORD_ENV: PASSWORD})
    assert secret is not None
    assert secret.reveal() == PASSWORD
    assert PASSWORD not in repr(secret) + str(secret)
    with pytest.raises(ConfigError, match=PASSWORD_ENV):
        MqttBus(settings, environ={})


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"password_env": PASSWORD_ENV}, "give username too"),
        ({"username": USER, "password_env": "not a name"}, "environment variable name"),
        ({"topic_prefix": "relayer/+"}, "topic prefix"),
        ({"tls": {"key_file": "client.key"}}, "give cert_file too"),
        ({"reconnect_initial": 5.0, "reconnect_max": 1.0}, "reconnect_max"),
        ({"password": PASSWORD}, "Extra inputs are not permitted"),
    ],
)
def test_settings_refuse_what_cannot_work(values: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        MqttSettings.model_validate(values)


def test_a_missing_ca_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    settings = MqttSettings(tls=MqttTls(ca_file=missing))
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        MqttBus(settings)


# --- against the broker ----------------------------------------------------------------------


async def test_both_notice_kinds_make_the_round_trip(broker: MosquittoBroker) -> None:
    bus: Bus = MqttBus(settings_for(broker))
    async with (
        bus,
        bus.subscribe(ObservationNotice, origins=[ORIGIN]) as observations,
        bus.subscribe(AttestationNotice) as attestations,
        bus.subscribe(ObservationNotice, origins=[ORIGIN + 1]) as elsewhere,
    ):
        assert bus.connected
        await bus.publish(observation(1))
        await bus.publish(attestation(1))
        async with asyncio.timeout(5):
            assert await anext(observations) == observation(1)
            assert await anext(attestations) == attestation(1)
        # Another origin's subscription got nothing; a notice of its own shows it was listening.
        await bus.publish(observation(2, origin=ORIGIN + 1))
        async with asyncio.timeout(5):
            assert await anext(elsewhere) == observation(2, origin=ORIGIN + 1)


async def test_a_shared_subscription_splits_notices_between_live_workers(
    broker: MosquittoBroker,
) -> None:
    count = 200
    async with (
        MqttBus(settings_for(broker)) as bus,
        bus.subscribe(ObservationNotice, group="workers") as one,
        bus.subscribe(ObservationNotice, group="workers") as two,
    ):
        changed = asyncio.Event()
        first, second = Collector(one, changed), Collector(two, changed)
        await asyncio.gather(*(bus.publish(observation(index)) for index in range(count)))
        await wait_total([first, second], changed, count)
        for collector in (first, second):
            await collector.stop()
    assert first.indexes
    assert second.indexes
    assert Counter(first.indexes + second.indexes) == Counter(range(count))


# A worker in a process of its own, so that it can be killed: prints "ready" once subscribed,
# then the index of every notice it takes.
_WORKER = """
import asyncio, sys
from relayer.bus import MqttBus, MqttSettings, ObservationNotice

async def main():
    settings = MqttSettings.model_validate_json(sys.argv[1])
    async with MqttBus(settings) as bus:
        async with bus.subscribe(ObservationNotice, group=sys.argv[2]) as notices:
            await notices.wait_subscribed(timeout=10)
            print("ready", flush=True)
            async for notice in notices:
                print(int.from_bytes(notice.message_id), flush=True)

asyncio.run(main())
"""


class WorkerProcess:
    def __init__(self, process: asyncio.subprocess.Process, changed: asyncio.Event) -> None:
        self.process = process
        self.indexes: list[int] = []
        self.changed = changed
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls, settings: MqttSettings, group: str, changed: asyncio.Event
    ) -> WorkerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER,
            settings.model_dump_json(),
            group,
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
        )
        worker = cls(process, changed)
        assert process.stdout is not None
        async with asyncio.timeout(30):
            line = await process.stdout.readline()
        assert line == b"ready\n", line
        worker._reader = asyncio.create_task(worker._read())
        return worker

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.indexes.append(int(line))
            self.changed.set()

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            await asyncio.wait([self._reader])


@pytest.fixture
async def workers() -> AsyncIterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        await worker.kill()


async def test_a_killed_worker_leaves_its_group_and_the_survivor_gets_later_notices(
    broker: MosquittoBroker, workers: list[WorkerProcess]
) -> None:
    settings = settings_for(broker)
    victim_settings = settings.model_copy(update={"client_id_prefix": "victim"})
    async with (
        MqttBus(settings) as bus,
        bus.subscribe(ObservationNotice, group="workers") as subscription,
    ):
        changed = asyncio.Event()
        survivor = Collector(subscription, changed)
        victim = await WorkerProcess.start(victim_settings, "workers", changed)
        workers.append(victim)

        await asyncio.gather(*(bus.publish(observation(index)) for index in range(40)))
        await wait_total([survivor, victim], changed, 40)
        assert victim.indexes, "the second worker was not dealt any notice"
        assert Counter(survivor.indexes + victim.indexes) == Counter(range(40))

        log_mark = len(broker.log_text())
        await victim.kill()
        # The broker's own word that the connection is gone (no sleep, no guess).
        await asyncio.to_thread(
            broker.wait_for_log,
            r"Client victim-\S+ (closed its connection|disconnected)",
            10.0,
            after=log_mark,
        )
        before = len(survivor.indexes)
        await asyncio.gather(*(bus.publish(observation(index)) for index in range(40, 80)))
        got = await survivor.wait_for(before + 40)
        await survivor.stop()
    assert sorted(got[before:]) == list(range(40, 80))


async def test_subscribers_ride_out_a_broker_restart(broker: MosquittoBroker) -> None:
    settings = settings_for(broker, publish_timeout=1.0)
    with capture_logs() as logs:
        async with (
            MqttBus(settings, log=structlog.get_logger()) as bus,
            bus.subscribe(ObservationNotice) as subscription,
        ):
            collector = Collector(subscription)
            await bus.publish(observation(1))
            await collector.wait_for(1)

            await asyncio.to_thread(broker.stop)
            with pytest.raises(BusUnavailableError, match="stays in the ledger"):
                await bus.publish(observation(2))
            await asyncio.to_thread(broker.start)

            await bus.wait_connected(timeout=10)
            await subscription.wait_subscribed(timeout=10)
            await bus.publish(observation(3))
            assert await collector.wait_for(2) == [1, 3]
            await collector.stop()
    events = [entry["event"] for entry in logs if entry["event"].startswith("bus.")]
    assert events == ["bus.unavailable", "bus.recovered"]


async def test_bad_payloads_are_dropped_with_a_log_line_and_the_subscriber_goes_on(
    broker: MosquittoBroker,
) -> None:
    settings = settings_for(broker, max_payload_bytes=4096)
    with capture_logs() as logs:
        async with (
            MqttBus(settings, log=structlog.get_logger()) as bus,
            bus.subscribe(ObservationNotice) as subscription,
        ):
            topic = bus.topics.topic(ObservationNotice, ORIGIN)
            await bus.publish_payload(topic, b"\xc1 garbage")
            await bus.publish_payload(
                topic, msgspec.msgpack.encode({"format": "bus.observation.v2", "message": b""})
            )
            await bus.publish_payload(topic, b"\x00" * 5000)
            await bus.publish_payload(
                bus.topics.topic(ObservationNotice, ORIGIN + 1), encode_notice(observation(9))
            )
            await bus.publish(observation(1))
            async with asyncio.timeout(5):
                assert await anext(subscription) == observation(1)
            assert subscription.backlog == 0
    dropped = [entry for entry in logs if entry["event"] == "bus.payload_dropped"]
    assert [entry["reason"] for entry in dropped] == [
        "garbage",
        "unsupported_version",
        "too_large",
        "wrong_topic",
    ]


async def test_a_password_is_accepted_and_never_shown(
    password_broker: MosquittoBroker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    settings = settings_for(password_broker, username=USER, password_env=PASSWORD_ENV)
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        bus = MqttBus(settings, log=structlog.get_logger())
        async with bus, bus.subscribe(AttestationNotice) as subscription:
            await bus.publish(attestation(5))
            async with asyncio.timeout(5):
                assert await anext(subscription) == attestation(5)
    shown = repr(settings) + repr(bus) + str(logs) + caplog.text + password_broker.log_text()
    assert USER in repr(bus)
    assert PASSWORD not in shown


async def test_a_wrong_password_is_refused_with_an_error_saying_what_to_fix(
    password_broker: MosquittoBroker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "not-the-" + PASSWORD
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    settings = settings_for(password_broker, username=USER, password_env=PASSWORD_ENV)
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs, pytest.raises(BrokerRefusedError) as refused:
        async with MqttBus(settings, log=structlog.get_logger()):
            pytest.fail("a wrong password was accepted")
    message = str(refused.value)
    assert f"refused user {USER!r}" in message
    assert PASSWORD_ENV in message
    assert not refused.value.retryable
    assert wrong not in message + str(logs) + caplog.text

    # Without credentials the hint is to give some.
    with pytest.raises(BrokerRefusedError, match=r"anonymous client.*set \[bus.mqtt\] username"):
        async with MqttBus(settings_for(password_broker)):
            pytest.fail("an anonymous client was accepted")


async def test_an_unreachable_broker_is_retried_in_the_background(
    broker: MosquittoBroker,
) -> None:
    port = broker.port
    await asyncio.to_thread(broker.stop)
    settings = settings_for(broker, port=port, publish_timeout=0.5)
    with capture_logs() as logs:
        async with MqttBus(settings, log=structlog.get_logger()) as bus:
            assert not bus.connected
            with pytest.raises(BusUnavailableError):
                await bus.publish(observation(1))
            await asyncio.to_thread(broker.start)
            await bus.wait_connected(timeout=10)
            await bus.publish(observation(1))
    events = [entry["event"] for entry in logs if entry["event"].startswith("bus.")]
    assert events == ["bus.unavailable", "bus.recovered"]


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    with start_mosquitto(tmp_path / "mosquitto", tls=True) as running:
        yield running


async def test_tls_with_a_ca_file_and_a_client_certificate(tls_broker: MosquittoBroker) -> None:
    files = tls_broker.tls
    assert files is not None
    tls = MqttTls(ca_file=files.ca_file, cert_file=files.client_cert, key_file=files.client_key)
    bus = MqttBus(settings_for(tls_broker, tls=tls))
    assert repr(bus).startswith("MqttBus(mqtts://")
    async with bus, bus.subscribe(ObservationNotice) as subscription:
        await bus.publish(observation(4))
        async with asyncio.timeout(5):
            assert await anext(subscription) == observation(4)


async def test_a_broker_certificate_of_an_unknown_ca_is_refused(
    tls_broker: MosquittoBroker,
) -> None:
    files = tls_broker.tls
    assert files is not None
    # The system's CAs, which never signed the throwaway CA's server certificate.
    tls = MqttTls(cert_file=files.client_cert, key_file=files.client_key)
    with pytest.raises(BrokerRefusedError, match=r"TLS certificate is not trusted.*ca_file"):
        async with MqttBus(settings_for(tls_broker, tls=tls)):
            pytest.fail("an untrusted broker certificate was accepted")
