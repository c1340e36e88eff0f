"""The conformance kit's fake chain: ``node`` as a process of its own, behind a TCP proxy.

``start()`` runs ``python -m tests.conformance.fake.node --port 0`` in a new process group and
returns once the node printed its port; ``close()`` ends that group (and the proxy), also when
starting failed half way. The node automines: a delivery is in a block as soon as it is taken.
The lying endpoint is the node's own ``/liar/`` API, lying while ``lying_chain()`` is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import IO, Any

from relayer.config import ChainConfig
from relayer.keys import KeyRef
from relayer.message import Message
from relayer.plugin import Delivery
from tests.conformance.fake import register, unregister
from tests.conformance.fake.blocks import TxKind, sha256
from tests.conformance.fake.config import FakeChainConfig
from tests.conformance.fake.keys import FakeSigner
from tests.conformance.harness import ORIGIN_DOMAIN, PEER_DOMAIN
from tests.e2e.proxy import TcpProxy

__all__ = ["CONFIRMATIONS", "NETWORK", "FakeHarness", "start"]

REPO_ROOT = Path(__file__).resolve().parents[3]
NETWORK = "kit-fake-net"
#: blocks below the head before one is final, for the kit's chain
CONFIRMATIONS = 1
_KEY_ENV = "KIT_FAKE_SUBMITTER_KEY"
# Development seeds, known to everyone: this chain exists for the length of a test.
_SUBMITTER_SEED = sha256(b"kit-fake submitter")
_DISPATCHER_SEED = sha256(b"kit-fake dispatcher")
_START_TIMEOUT_S = 20.0
_STOP_TIMEOUT_S = 5.0


class FakeHarness:
    kind = "fake"

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="kit-fake-")
        self._log: IO[bytes] = Path(self._dir.name, "node.log").open("wb")  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None
        self.proxy: TcpProxy | None = None
        self._dispatcher = FakeSigner(_DISPATCHER_SEED, "the kit's dispatcher")
        self._dispatched = 0
        self._delivery_nonce = 0
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.conformance.fake.node",
                    "--port",
                    "0",
                    "--network",
                    NETWORK,
                    "--domain",
                    str(ORIGIN_DOMAIN),
                ],
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=self._log,
                start_new_session=True,
            )
            self.port = self._read_port(self.process)
            #: the node itself, never through the proxy: what the chain says, outage or not
            self.node_url = f"http://127.0.0.1:{self.port}"
            self.proxy = TcpProxy(self.port)
        except BaseException:
            self.close()
            raise

    def _read_port(self, process: subprocess.Popen[bytes]) -> int:
        assert process.stdout is not None
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 0.1)
            if ready:
                line = process.stdout.readline()
                if line:
                    port: int = json.loads(line)["port"]
                    return port
            if process.poll() is not None:
                break
        raise RuntimeError(f"the fake node did not start; its log:\n{self.log_tail()}")

    def log_tail(self, limit: int = 4000) -> str:
        self._log.flush()
        return Path(self._dir.name, "node.log").read_text(errors="replace")[-limit:]

    # --- the node's API, for the harness's own use ---------------------------------------------

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request to the node itself (blocking: for control calls and tests)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.node_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return json.loads(exc.read())

    async def _acall(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(self.call, method, path, body)

    # --- ChainHarness --------------------------------------------------------------------------

    def _config(self, url: str) -> ChainConfig:
        return ChainConfig(
            name="kit-fake",
            type="fake",
            domain=ORIGIN_DOMAIN,
            finality="confirmations",
            committee=None,
            plugin=FakeChainConfig(
                rpc=url,
                network=NETWORK,
                confirmations=CONFIRMATIONS,
                poll_interval=0.2,
                request_timeout=5.0,
                submit_timeout=5.0,
                submitter_key=self.submitter_key(),
            ),
        )

    def chain(self) -> ChainConfig:
        assert self.proxy is not None
        return self._config(self.proxy.url)

    @contextlib.asynccontextmanager
    async def lying_chain(self) -> AsyncIterator[ChainConfig]:
        await self._acall("POST", "/control/lie", {"mode": "mixed"})
        try:
            yield self._config(self.node_url + "/liar")
        finally:
            await self._acall("POST", "/control/lie", {"mode": "off"})

    def drop(self) -> None:
        assert self.proxy is not None
        self.proxy.drop()

    def restore(self) -> None:
        assert self.proxy is not None
        self.proxy.restore()

    async def send(self, count: int) -> list[bytes]:
        ids = await self.dispatch(count)
        await self.advance()
        return ids

    async def dispatch(self, count: int) -> list[bytes]:
        """Send ``count`` messages in one new block, and leave it unconfirmed."""
        messages = []
        for _ in range(count):
            messages.append(
                Message(
                    nonce=self._dispatched,
                    origin=ORIGIN_DOMAIN,
                    sender=self._dispatcher.address,
                    destination=PEER_DOMAIN,
                    recipient=b"\x0b" * 32,
                    body=b"kit %d" % self._dispatched,
                )
            )
            self._dispatched += 1
        await asyncio.to_thread(self._dispatch, messages)
        return [message.id for message in messages]

    def _dispatch(self, messages: Sequence[Message]) -> None:
        # Held in the pool and mined together: one block holding many messages.
        self.call("POST", "/control/automine", {"on": False})
        try:
            nonce = self.call("GET", f"/account/0x{self._dispatcher.address.hex()}")["nonce"]
            for offset, message in enumerate(messages):
                tx = self._dispatcher.sign(TxKind.DISPATCH, nonce + offset, 1, message.encode())
                answer = self.call("POST", "/tx", {"tx": "0x" + tx.encode().hex()})
                if "error" in answer:
                    raise RuntimeError(f"the node refused a dispatch: {answer['error']}")
        finally:
            self.call("POST", "/control/automine", {"on": True})

    async def advance(self) -> None:
        await self._acall("POST", "/control/mine", {"count": CONFIRMATIONS})

    def submitter_key(self) -> KeyRef:
        return KeyRef(env=_KEY_ENV)

    def key_env(self) -> dict[str, str]:
        return {_KEY_ENV: _SUBMITTER_SEED.hex()}

    def deliveries(self, count: int) -> list[Delivery]:
        out = []
        for _ in range(count):
            self._delivery_nonce += 1
            message = Message(
                nonce=self._delivery_nonce,
                origin=PEER_DOMAIN,
                sender=b"\x0a" * 32,
                destination=ORIGIN_DOMAIN,
                recipient=b"\x0b" * 32,
                body=b"kit delivery %d" % self._delivery_nonce,
            )
            out.append(
                Delivery(
                    message_id=message.id,
                    message=message.encode(),
                    origin_block_hash=sha256(b"peer block %d" % self._delivery_nonce),
                    # The node checks no attestation: the fake chain has no committee.
                    signatures=(),
                )
            )
        return out

    async def delivered(self, message_ids: Sequence[bytes]) -> list[int]:
        answer = await self._acall(
            "POST", "/delivered", {"ids": ["0x" + mid.hex() for mid in message_ids]}
        )
        return [int(count) for count in answer["counts"]]

    def close(self) -> None:
        """Idempotent; stops the proxy and the node's whole process group, and unregisters the
        family (``start`` registered it): later tests in the process see the installed ones."""
        unregister()
        proxy, self.proxy = self.proxy, None
        if proxy is not None:
            proxy.close()
        process, self.process = self.process, None
        if process is not None:
            _stop(process)
        if not self._log.closed:
            self._log.close()
        self._dir.cleanup()


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def start() -> FakeHarness:
    """A running fake chain, its family registered (``register()``: the kit loads plugins by
    entry point, and this one's is not installed)."""
    register()
    return FakeHarness()
