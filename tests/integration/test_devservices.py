"""``relayer-dev``'s services for real: each started as the installed console script on a free
127.0.0.1 port, as a compose service runs it, asked what it serves, and stopped with SIGTERM
(what `docker stop` sends): it exits 0, clears its ready file and leaves nothing listening.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

from chains.evm.devnet import deployment_address
from chains.localnode import free_port, loopback_rpc
from tests.integration.anvil import require_anvil
from tests.integration.chopsticks import require_chopsticks

pytestmark = pytest.mark.slow

_SCRIPT = Path(sys.executable).parent / "relayer-dev"
_GATEWAY = deployment_address(0)


class _Service:
    """One ``relayer-dev`` process and its ready file."""

    def __init__(self, workdir: Path, name: str, args: list[str]) -> None:
        if not _SCRIPT.exists():
            pytest.fail(f"{_SCRIPT} is not installed: run `make setup` (pip install -e .)")
        self.ready = workdir / f"{name}-ready.json"
        self.log_path = workdir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(_SCRIPT), *args, "--ready-file", str(self.ready)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"exited with {self.process.returncode}: {self.log_path.read_text()}")
            if self.ready.exists():
                facts: dict[str, Any] = json.loads(self.ready.read_text())
                return facts
            time.sleep(0.1)
        pytest.fail(f"not ready within {timeout} s: {self.log_path.read_text()}")

    def children(self) -> list[int]:
        """The processes it started (anvil, chopsticks' node), from /proc."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def terminate(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[_Service]]:
    started: list[_Service] = []
    yield started
    for service in reversed(started):
        service.terminate()


def _start(started: list[_Service], workdir: Path, name: str, *args: str) -> _Service:
    service = _Service(workdir, name, list(args))
    started.append(service)
    return service


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _ws_rpc(url: str, method: str, params: list[Any]) -> Any:
    with ws_connect(url, open_timeout=10) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        answer = json.loads(ws.recv(timeout=10))
    assert "error" not in answer, answer
    return answer["result"]


def _stops_clean(service: _Service, port: int) -> None:
    children = service.children()
    assert service.terminate() == 0, service.log_path.read_text()
    assert not service.ready.exists()
    assert not _listening(port)
    for pid in children:
        assert not _running(pid), f"child {pid} outlived the service"


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "zombie" not in status


def test_anvil_service_serves_its_chain_with_the_gateway_deployed(
    services: list[_Service], tmp_path: Path
) -> None:
    require_anvil()
    port = free_port()
    chain = _start(services, tmp_path, "anvil", "anvil", "--chain-id", "31338", "--domain",
                   "2000", "--port", str(port))  # fmt: skip
    facts = chain.wait_ready(60)
    assert facts["gateway"] == _GATEWAY and facts["port"] == port and facts["domain"] == 2000
    url = f"http://127.0.0.1:{port}"
    assert int(loopback_rpc(url, "eth_chainId", [], 5), 16) == 31338
    assert loopback_rpc(url, "eth_getCode", [_GATEWAY, "latest"], 5) not in {"0x", ""}
    assert loopback_rpc(url, "eth_getCode", [facts["recipient"], "latest"], 5) not in {"0x", ""}
    _stops_clean(chain, port)


def test_a_service_whose_chain_died_exits_non_zero(
    services: list[_Service], tmp_path: Path
) -> None:
    """A container whose chain is gone must stop, not stay up looking healthy."""
    require_anvil()
    port = free_port()
    chain = _start(services, tmp_path, "anvil", "anvil", "--chain-id", "31337", "--domain",
                   "1000", "--port", str(port))  # fmt: skip
    chain.wait_ready(60)
    (anvil,) = chain.children()
    with contextlib.suppress(ProcessLookupError):
        os.kill(anvil, signal.SIGKILL)
    assert chain.process.wait(timeout=30) == 1
    assert not chain.ready.exists()


def test_beacon_service_follows_an_anvil_service(services: list[_Service], tmp_path: Path) -> None:
    require_anvil()
    chain_port, beacon_port = free_port(), free_port()
    chain = _start(services, tmp_path, "anvil", "anvil", "--chain-id", "31337", "--domain",
                   "1000", "--port", str(chain_port))  # fmt: skip
    chain.wait_ready(60)
    beacon = _start(services, tmp_path, "beacon", "beacon", "--rpc",
                    f"http://127.0.0.1:{chain_port}", "--port", str(beacon_port))  # fmt: skip
    facts = beacon.wait_ready(60)
    # relayer devnet's geometry: finality 2 slots behind, anvil's block 0 at slot 48.
    assert (facts["finality_lag"], facts["first_slot"]) == (2, 48)
    base = f"http://127.0.0.1:{beacon_port}"
    assert _get(base + "/eth/v1/beacon/genesis")["data"]["genesis_time"]
    deadline = time.monotonic() + 30
    while True:
        try:
            finalized = _get(base + "/eth/v1/beacon/headers/finalized")
            break
        except OSError:
            assert time.monotonic() < deadline, "no finalized header within 30 s"
            time.sleep(0.5)
    assert int(finalized["data"]["header"]["message"]["slot"]) >= 48
    _stops_clean(beacon, beacon_port)
    _stops_clean(chain, chain_port)


def test_chopsticks_and_voter_services_serve_a_chain_and_its_finality(
    services: list[_Service], tmp_path: Path
) -> None:
    require_chopsticks()
    chain_port, voter_port = free_port(), free_port()
    chain = _start(services, tmp_path, "chopsticks", "chopsticks", "--chain-name", "dot-a",
                   "--port", str(chain_port))  # fmt: skip
    chain.wait_ready(120)
    assert loopback_rpc(f"http://127.0.0.1:{chain_port}", "system_chain", [], 10) == "dot-a"
    voters = _start(services, tmp_path, "voters", "grandpa-voters", "--chain-ws",
                    f"ws://127.0.0.1:{chain_port}", "--port", str(voter_port))  # fmt: skip
    facts = voters.wait_ready(120)
    # relayer devnet's schedule: the set changes one block after the checkpoint.
    assert facts["enactment"] == facts["checkpoint"] + 1
    url = f"ws://127.0.0.1:{voter_port}"
    checkpoint = _ws_rpc(url, "dev_grandpaCheckpoint", [])
    assert checkpoint["number"] == facts["checkpoint"]
    # A block past the checkpoint (chopsticks builds one per extrinsic, or on request): the
    # voters justify it and prove it, as the relayer's light client asks them to.
    loopback_rpc(f"http://127.0.0.1:{chain_port}", "dev_newBlock", [], 30)
    deadline = time.monotonic() + 30
    while (_ws_rpc(url, "dev_grandpaStatus", [])["justified"] or 0) < facts["enactment"]:
        assert time.monotonic() < deadline, "the new block was not justified within 30 s"
        time.sleep(0.2)
    assert _ws_rpc(url, "grandpa_proveFinality", [facts["enactment"]]) is not None
    _stops_clean(voters, voter_port)
    _stops_clean(chain, chain_port)
