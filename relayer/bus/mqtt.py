"""The bus between processes and machines: an MQTT v5 broker, through ``aiomqtt``.

Notices are published with QoS 1 to ``<prefix>/v1/<origin-domain>/<kind>`` (``topics``), never
retained; a subscription with a ``group`` subscribes to ``$share/<group>/...``, so that the
group's members split the notices. Each subscription is its own MQTT connection, so one process
can hold several (a member of two groups, or two members of one) with the broker seeing each as
a separate client; the publisher is one more.

Session settings, and why. Measured on Mosquitto 2.0.11 with aiomqtt 2.5.1: a member of a shared
subscription that dies keeps its unacknowledged notices, and keeps being dealt its share, for as
long as its session lives; an offline session queues at most 1,000 messages and silently drops
the rest; aiomqtt acknowledges a message when it arrives, before the code that takes it has done
anything with it. So no session here outlives its connection:

- clean start on every connection and no session expiry (``SessionExpiryInterval`` 0): when a
  worker's connection ends, for any reason, the broker discards its session and its
  membership at once, and deals the next notices to the members that are alive. A dead worker
  never soaks up work, and no session queues notices for a process that may not come back.
- a short keepalive (10 s by default): a connection whose peer vanished without closing it (a
  machine that lost power or network) ends within 1.5 keepalives, not the default minute.
- a fresh client id per connection object (``<client_id_prefix>-<role>-<random>``), kept across
  its reconnections: two processes can never take each other's session over.
- retained messages are neither published nor taken (``retainHandling`` 2): a stale notice
  sitting on the broker would only make every new subscriber look at old work.
- a ``MaximumPacketSize`` on connect: the broker does not send us more than the payload limit
  (plus room for the topic and headers); larger payloads that arrive anyway are dropped
  (``bus.payload_dropped``, reason ``too_large``) before they are decoded.

What that costs: notices published while a subscriber is disconnected, and notices it had taken
but not yet handled when it died, are lost to it. That is the design: the ledger (not the
broker) holds the truth. A watcher writes each observation to the ledger before it publishes
the notice, and workers poll the ledger as well as listen, so a lost notice only delays its
message, and a duplicated one is deduplicated by message id. The bus is not trusted either:
every consumer re-verifies what it takes off it (``relayer.bus.payloads``).

Reconnection: each connection reconnects by itself with ``relayer.retry.backoff_delay``
(``reconnect_initial`` doubling up to ``reconnect_max``, jittered) and re-subscribes; an outage
is logged once (``bus.unavailable``) and its end once (``bus.recovered``); subscribers keep
iterating through it. A broker that refuses the credentials or the certificate raises
``BrokerRefusedError`` at start; later (the broker's password file changed under us) it is logged
(``bus.refused``) and retried, as an operator may fix the broker.

Credentials: ``username`` and ``password_env`` (the name of the environment variable holding the
password: config files never hold secrets); the password is held in a ``relayer.keys.Secret``
and appears in no log line, ``repr`` or error message. ``tls`` enables TLS with the system's CAs
or ``ca_file``, and a client certificate (``cert_file``, ``key_file``) if the broker wants one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import os
import re
import secrets
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import aiomqtt
import structlog
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from relayer.bus.errors import BrokerRefusedError, BusUnavailableError
from relayer.bus.inbox import DEFAULT_MAX_BACKLOG, Inbox, admit
from relayer.bus.payloads import MAX_PAYLOAD_BYTES, Notice, NoticeT, encode_notice
from relayer.bus.protocol import Subscription
from relayer.bus.topics import Topics
from relayer.errors import ConfigError
from relayer.keys import Secret
from relayer.retry import backoff_delay, describe_error

if TYPE_CHECKING:
    from paho.mqtt.client import Client as PahoClient
    from paho.mqtt.client import SocketLike

__all__ = ["MqttBus", "MqttSettings", "MqttTls"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Room for the fixed header, the topic (up to 64 KiB) and the properties of a PUBLISH.
_PACKET_OVERHEAD = 65_536 + 1024
# MQTT's own ceiling on a packet (the variable-length "remaining length" field).
_MQTT_MAX_PACKET = 268_435_455
# CONNACK reason codes (v5, and the v3.1.1 return codes paho reports as ints) that retrying
# cannot fix: the configuration, the broker's or ours, has to change.
_REFUSALS_V5 = frozenset({0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C})
_REFUSALS_V3 = frozenset({1, 2, 4, 5})


class _Table(BaseModel):
    # The attribute docstrings are the keys' descriptions in `relayer config default | schema`.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        strict=True,
        use_attribute_docstrings=True,
    )


class MqttTls(_Table):
    """``[bus.mqtt.tls]``: TLS to the broker. Without ``ca_file`` the system's CAs are used; a
    client certificate is ``cert_file`` (with its key in it, or in ``key_file``)."""

    ca_file: Path | None = Field(default=None, strict=False)
    """PEM file of the CAs that signed the broker's certificate (default: the system's)."""
    cert_file: Path | None = Field(default=None, strict=False)
    """PEM client certificate, for a broker that authenticates clients by certificate."""
    key_file: Path | None = Field(default=None, strict=False)
    """PEM key of cert_file, when it is not in cert_file itself."""

    @model_validator(mode="after")
    def _key_needs_cert(self) -> MqttTls:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file is the key of cert_file: give cert_file too")
        return self

    def context(self) -> ssl.SSLContext:
        """The client's TLS context (certificate and host name verified). Raises
        ``ConfigError`` naming the file that cannot be read or used."""
        try:
            context = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"bus.mqtt.tls.ca_file: cannot load CA certificates from {self.ca_file}: {exc}"
            ) from None
        if self.cert_file is not None:
            try:
                context.load_cert_chain(
                    str(self.cert_file), str(self.key_file) if self.key_file else None
                )
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"bus.mqtt.tls.cert_file: cannot load the client certificate "
                    f"{self.cert_file} (key {self.key_file or 'in the same file'}): {exc}"
                ) from None
        context.sslsocket_class = _ClosingSSLSocket
        return context


class _ClosingSSLSocket(ssl.SSLSocket):
    """An ``SSLSocket`` that closes itself when its handshake fails. paho-mqtt 2.2.0 wraps the
    connection and calls ``do_handshake()`` without closing the socket if that raises (an
    untrusted certificate): each reconnection attempt would leak a file descriptor."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


class MqttSettings(_Table):
    """``[bus.mqtt]``: where the broker is and how this process talks to it."""

    host: str = Field(default="127.0.0.1", min_length=1)
    """The broker's host name or address."""
    port: int = Field(default=1883, ge=1, le=65535)
    """The broker's port (8883 is MQTT over TLS by convention)."""
    topic_prefix: str = "relayer"
    """The first topic levels of every notice; deployments (or tests) sharing a broker differ
    here."""
    client_id_prefix: str = Field(default="relayer", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    """The start of this process's MQTT client ids (a random suffix makes each unique)."""
    username: str | None = Field(default=None, min_length=1)
    """The broker user, when the broker asks for one."""
    password_env: str | None = None
    """The environment variable holding the password of username (never the password itself)."""
    tls: MqttTls | None = None
    """TLS to the broker ([bus.mqtt.tls]); without it the connection is plain MQTT."""
    keepalive: int = Field(default=10, ge=2, le=3600)
    """Seconds between keepalive pings; a dead peer is noticed within 1.5 times this."""
    connect_timeout: float = Field(default=10.0, gt=0)
    """Seconds a connection attempt may take."""
    publish_timeout: float = Field(default=5.0, gt=0)
    """Seconds a publish waits for a connection and the broker's acknowledgement."""
    reconnect_initial: float = Field(default=0.5, gt=0)
    """Seconds before the first reconnection attempt; doubled after each failure."""
    reconnect_max: float = Field(default=30.0, gt=0)
    """The longest wait between reconnection attempts."""
    max_payload_bytes: int = Field(
        default=MAX_PAYLOAD_BYTES, ge=1024, le=_MQTT_MAX_PACKET - _PACKET_OVERHEAD
    )
    """The largest notice sent or read; a larger observation is not announced (workers find it
    in the ledger)."""
    max_backlog: int = Field(default=DEFAULT_MAX_BACKLOG, ge=1)
    """Notices a subscription holds for its consumer before it drops the newest."""

    @field_validator("topic_prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        Topics(value)
        return value

    @field_validator("password_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError("must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if self.password_env is not None and self.username is None:
            raise ValueError("password_env is the password of username: give username too")
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must not be less than reconnect_initial")
        return self

    @property
    def endpoint(self) -> str:
        scheme = "mqtts" if self.tls is not None else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"

    def password(self, environ: Mapping[str, str] | None = None) -> Secret | None:
        """The password named by ``password_env`` (None without one). Raises ``ConfigError``
        naming the variable if it is not set."""
        if self.password_env is None:
            return None
        value = (os.environ if environ is None else environ).get(self.password_env)
        if value is None:
            raise ConfigError(
                f"bus.mqtt.password_env: environment variable {self.password_env} is not set "
                f"(it holds the broker password of user {self.username!r})"
            )
        return Secret(value)


class MqttBus:
    """The MQTT bus (``relayer.bus.Bus``): ``async with MqttBus(settings) as bus: ...``.

    Raises ``ConfigError`` on construction if the password variable is unset or the TLS files
    cannot be loaded."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        environ: Mapping[str, str] | None = None,
        log: Any = None,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self._password = settings.password(environ)
        self._tls = settings.tls.context() if settings.tls is not None else None
        self._log = (log if log is not None else structlog.get_logger()).bind(
            endpoint=settings.endpoint
        )
        self._publisher: _Connection | None = None
        self._subscriptions: set[_Connection] = set()
        self._down: set[_Connection] = set()
        self._closed = False

    def __repr__(self) -> str:
        user = f", user={self.settings.username!r}" if self.settings.username else ""
        return f"MqttBus({self.settings.endpoint}{user})"

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._closed:
            raise BusUnavailableError(f"{self!r} is closed; make a new one")
        if self._password is not None and self._tls is None and not _loopback(self.settings.host):
            self._log.warning(
                "bus.insecure",
                reason="the broker password is sent without TLS to a host that is not loopback",
            )
        self._publisher = _Connection(self, role="pub", filters=(), inbox=None)
        try:
            await self._publisher.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        connections = [*self._subscriptions, *([self._publisher] if self._publisher else [])]
        self._subscriptions.clear()
        for connection in connections:
            if connection.inbox is not None:
                connection.inbox.close()
        await asyncio.gather(*(connection.stop() for connection in connections))

    @property
    def connected(self) -> bool:
        return self._publisher is not None and self._publisher.client is not None

    async def wait_connected(self, timeout: float | None = None) -> None:
        publisher = self._require_open()
        async with asyncio.timeout(timeout):
            await publisher.ready.wait()

    # -- publishing ------------------------------------------------------------------------------

    async def publish(self, notice: Notice) -> None:
        payload = encode_notice(notice, max_bytes=self.settings.max_payload_bytes)
        await self.publish_payload(self.topics.for_notice(notice), payload)

    async def publish_payload(self, topic: str, payload: bytes) -> None:
        """Publish bytes as they are (QoS 1, not retained), for tests and tools: no size check,
        no encoding. Raises ``BusUnavailableError`` as ``publish`` does."""
        publisher = self._require_open()
        timeout = self.settings.publish_timeout
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await publisher.ready.wait()
                    client = publisher.client
                    if client is not None:
                        break
                await client.publish(topic, payload, qos=1, retain=False, timeout=math.inf)
        except TimeoutError:
            raise BusUnavailableError(
                f"MQTT broker {self.settings.endpoint} did not take a notice for {topic} within "
                f"{timeout:g} s (not connected, or no acknowledgement); it stays in the ledger"
            ) from None
        except aiomqtt.MqttError as exc:
            raise BusUnavailableError(
                f"MQTT broker {self.settings.endpoint}: publishing to {topic} failed "
                f"({describe_error(exc)}); it stays in the ledger"
            ) from exc

    # -- subscribing -----------------------------------------------------------------------------

    def subscribe(
        self,
        kind: type[NoticeT],
        *,
        origins: Iterable[int] | None = None,
        group: str | None = None,
    ) -> contextlib.AbstractAsyncContextManager[Subscription[NoticeT]]:
        filters = self.topics.filters(kind, None if origins is None else list(origins), group)
        return self._subscription(kind, filters, group)

    @contextlib.asynccontextmanager
    async def _subscription(
        self, kind: type[NoticeT], filters: tuple[str, ...], group: str | None
    ) -> AsyncIterator[Subscription[NoticeT]]:
        self._require_open()
        inbox: Inbox[NoticeT] = Inbox(kind, max_backlog=self.settings.max_backlog, log=self._log)
        connection = _Connection(self, role=group or "sub", filters=filters, inbox=inbox)
        self._subscriptions.add(connection)
        try:
            await connection.start()
            yield inbox
        finally:
            self._subscriptions.discard(connection)
            inbox.close()
            await connection.stop()

    # -- what the connections share --------------------------------------------------------------

    def _require_open(self) -> _Connection:
        if self._closed or self._publisher is None:
            raise BusUnavailableError(f"{self!r} is not open: use it as `async with MqttBus(...)`")
        return self._publisher

    def _new_client(self, client_id: str) -> aiomqtt.Client:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 0
        properties.MaximumPacketSize = self.settings.max_payload_bytes + _PACKET_OVERHEAD
        client = _Client(
            self.settings.host,
            self.settings.port,
            username=self.settings.username,
            password=self._password.reveal() if self._password is not None else None,
            identifier=client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=True,
            keepalive=self.settings.keepalive,
            timeout=self.settings.connect_timeout,
            properties=properties,
            tls_context=self._tls,
            logger=_LIBRARY_LOG,
        )
        # aiomqtt warns past 10 publishes awaiting their acknowledgement; a watcher announcing a
        # block's messages has more in flight than that, as it should.
        client.pending_calls_threshold = 100_000
        return client

    def _went_down(self, connection: _Connection, error: BaseException) -> None:
        if isinstance(error, BrokerRefusedError):
            if connection not in self._down or not connection.refused:
                self._log.error("bus.refused", error=str(error))
            connection.refused = True
        elif not self._down:
            self._log.warning("bus.unavailable", error=describe_error(error))
        self._down.add(connection)

    def _came_up(self, connection: _Connection) -> None:
        connection.refused = False
        if connection in self._down:
            self._down.discard(connection)
            if not self._down:
                self._log.info("bus.recovered")

    def _forget(self, connection: _Connection) -> None:
        self._down.discard(connection)

    def _refusal(self, exc: BaseException) -> BrokerRefusedError | None:
        """``exc`` as a ``BrokerRefusedError`` if retrying cannot help; else None."""
        who = (
            f"user {self.settings.username!r}"
            if self.settings.username is not None
            else "an anonymous client"
        )
        if isinstance(exc, MqttConnectError):
            rc = exc.rc
            if isinstance(rc, ReasonCode):
                refused, reason = rc.value in _REFUSALS_V5, f"{rc} (reason code {rc.value})"
            else:
                refused, reason = rc in _REFUSALS_V3, f"{exc} (return code {rc})"
            if refused:
                if self.settings.username is None:
                    hint = (
                        "set [bus.mqtt] username and password_env, or let the broker accept "
                        "anonymous clients"
                    )
                elif self.settings.password_env is None:
                    hint = (
                        "check [bus.mqtt] username (and set password_env if the user has a "
                        "password) and the broker's password file and access rules"
                    )
                else:
                    hint = (
                        f"check [bus.mqtt] username, the password in "
                        f"${self.settings.password_env}, and the broker's password file and "
                        "access rules"
                    )
                return BrokerRefusedError(
                    f"MQTT broker {self.settings.endpoint} refused {who}: {reason}; {hint}"
                )
        context = exc.__context__ or exc.__cause__
        if isinstance(context, ssl.SSLCertVerificationError):
            return BrokerRefusedError(
                f"MQTT broker {self.settings.endpoint}: its TLS certificate is not trusted "
                f"({context.verify_message}); check [bus.mqtt.tls] ca_file and the host name"
            )
        return None


class _LibraryLog(logging.Handler):
    """What aiomqtt and paho log, as debug lines of ours. Without a handler Python prints
    their warnings and errors to stderr as plain text, outside the JSON log; and each says
    again what ``bus.unavailable`` and ``bus.recovered`` say once per outage ("failed to receive
    on socket: Broken pipe" at every lost connection)."""

    def emit(self, record: logging.LogRecord) -> None:
        structlog.get_logger().debug(
            "bus.client_logged", level_name=record.levelname, detail=record.getMessage()
        )


_LIBRARY_LOG = logging.getLogger("relayer.bus.mqtt.client")
_LIBRARY_LOG.propagate = False
# paho logs every packet at debug level: those records are not even made.
_LIBRARY_LOG.setLevel(logging.WARNING)
_LIBRARY_LOG.addHandler(_LibraryLog())


class _Client(aiomqtt.Client):
    """aiomqtt 2.5.1's client with a race closed. When paho wants to write, aiomqtt asks the
    loop to run ``add_writer(sock.fileno(), ...)`` later, the descriptor's number read now.
    If the connection breaks before the loop gets to it (a process thawed after the broker
    dropped it: measured in tests/e2e/test_scale_out.py), paho has closed the socket and
    unregistered its writer meanwhile, and the late registration either fails (asyncio prints
    an ``OSError: Bad file descriptor`` traceback to stderr) or, had the number gone to a new
    socket of this process in between, installs the dead client's writer on that socket for
    good (tests/integration/test_scale_out_mqtt_client.py): the new socket's own writer
    replaced, and the dead client called at every turn of the loop while the socket is
    writable (its ``loop_write`` returns "no connection" and unregisters nothing). Here the
    registration reads the number when it runs, and registers nothing for a socket paho no
    longer uses."""

    def _on_socket_register_write(
        self,
        client: PahoClient,
        userdata: Any,
        sock: SocketLike,
    ) -> None:
        def write() -> None:
            # As aiomqtt's: a failed write is a broken connection, ended at once.
            try:
                client.loop_write()
            except Exception as exc:  # noqa: BLE001
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def register() -> None:
            fileno = sock.fileno()
            if fileno < 0 or client.socket() is not sock:
                return
            self._loop.add_writer(fileno, write)

        # paho may call this from the thread that connects (aiomqtt's executor).
        self._loop.call_soon_threadsafe(register)


class _Connection:
    """One MQTT connection, kept up: connect (clean start), subscribe, read, and on any loss
    wait (``backoff_delay``) and do it all again, until ``stop``."""

    def __init__(
        self,
        bus: MqttBus,
        *,
        role: str,
        filters: tuple[str, ...],
        inbox: Inbox[Any] | None,
    ) -> None:
        self.bus = bus
        self.client_id = f"{bus.settings.client_id_prefix}-{role}-{secrets.token_hex(6)}"
        self.filters = filters
        self.inbox = inbox
        self.client: aiomqtt.Client | None = None
        self.ready = asyncio.Event()
        self.refused = False
        self._was_up = False
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Connect (and subscribe); return once that is done, or once the first attempt failed
        in a way worth retrying (it goes on in the background, logged). Raises
        ``BrokerRefusedError`` if the broker refused us for good."""
        self._first = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name=f"bus.mqtt.{self.client_id}")
        try:
            await asyncio.shield(self._first)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            # wait(), not await task: the task's CancelledError is not ours to raise, and our
            # own cancellation (if any) still propagates.
            await asyncio.wait([task])
        self.bus._forget(self)

    def _settle_first(self, error: BaseException | None = None) -> None:
        if self._first is not None and not self._first.done():
            if error is None:
                self._first.set_result(None)
            else:
                self._first.set_exception(error)

    async def _run(self) -> None:
        bus = self.bus
        attempt = 0
        while True:
            self._was_up = False
            error: BaseException
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (every failure is logged and retried)
                error = bus._refusal(exc) or exc
            else:  # the broker ended the session without an error: reconnect as after one
                error = BusUnavailableError("the broker closed the connection")
            finally:
                self.client = None
                self.ready.clear()
                if self.inbox is not None:
                    self.inbox.set_subscribed(False)
            if isinstance(error, BrokerRefusedError) and not self._first_settled():
                self._settle_first(error)
                return
            bus._went_down(self, error)
            self._settle_first()
            # The backoff grows over consecutive failures, and starts again after a connection.
            attempt = 1 if self._was_up else attempt + 1
            delay = backoff_delay(
                attempt, base=bus.settings.reconnect_initial, cap=bus.settings.reconnect_max
            )
            bus._log.debug(
                "retry.scheduled",
                attempt=attempt,
                delay=round(delay, 3),
                error=describe_error(error),
            )
            await asyncio.sleep(delay)

    def _first_settled(self) -> bool:
        return self._first is not None and self._first.done()

    async def _session(self) -> None:
        """One connection, from connect to its loss (raised as the library's error)."""
        bus = self.bus
        client = bus._new_client(self.client_id)
        async with client:
            options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
            for topic_filter in self.filters:
                granted = await client.subscribe(topic_filter, options=options)
                for code in granted:
                    if isinstance(code, ReasonCode) and code.is_failure:
                        raise BrokerRefusedError(
                            f"MQTT broker {bus.settings.endpoint} refused the subscription to "
                            f"{topic_filter}: {code} (reason code {code.value}); check the "
                            "broker's access rules for this user"
                        )
            self.client = client
            self.ready.set()
            if self.inbox is not None:
                self.inbox.set_subscribed(True)
            self._was_up = True
            bus._came_up(self)
            self._settle_first()
            settings = bus.settings
            async for message in client.messages:
                if self.inbox is None:
                    continue
                payload = message.payload
                if not isinstance(payload, bytes):  # aiomqtt types it wider than paho delivers
                    continue
                notice = admit(
                    bus.topics,
                    message.topic.value,
                    payload,
                    max_bytes=settings.max_payload_bytes,
                    log=bus._log,
                )
                if notice is not None:
                    self.inbox.offer(notice)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
