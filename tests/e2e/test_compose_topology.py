"""docker/compose.yaml's topology, run without docker: every service of our image started from
its compose command and environment, as the container would run it, and messages relayed
through them on every route of the demo.

What changes from a container: each service name resolves to 127.0.0.1, each published port
is mapped to a free loopback port (and so is the same port in commands and URLs), ``--host
0.0.0.0`` binds loopback, and a container path under a mount is the mount's host side (a
named volume is a directory of the test's). Everything else is the compose file's own: the
console scripts and their options, the ``${VAR}``s config.toml reads, the dev keys, the order
(``depends_on`` on health checks that look for each service's ready file). So a service that
cannot find its chain, a key that goes to the wrong process or a command the image does not
have fails here, not on an operator's first ``docker compose up``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from chains.evm.devnet import _SENDER_TO_SUBSTRATE, Devnet, _routes
from chains.localnode import free_port
from chains.substrate.chopsticks import SPEC_ENV
from chains.substrate.config import SubstrateChainConfig
from chains.substrate.devnet import RECIPIENT_URI, SubstrateDevChain
from chains.substrate.keys import Sr25519Keypair
from tests.docker_compose import (
    REPO,
    compose_services,
    environment,
    mounts_of,
    our_services,
    published,
)
from tests.integration.anvil import require_anvil
from tests.integration.chopsticks import require_chopsticks

pytestmark = pytest.mark.slow

_BIN = Path(sys.executable).parent
_READY_TIMEOUT_S = 180.0
_MESSAGES = 3


class _Topology:
    """The compose services as local processes; ``stop()`` ends every one it started."""

    def __init__(self, workdir: Path) -> None:
        self.work = workdir
        self.services = our_services()
        self.ports = {port: free_port() for s in self.services.values() for port in published(s)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ready: dict[str, Path] = {}

    # --- translating a container's view into this machine's ---------------------------------

    def _paths(self, name: str) -> dict[str, Path]:
        out = {}
        for mount in mounts_of(self.services[name]):
            if mount.is_bind:
                out[mount.target] = mount.host_path()
            else:
                out[mount.target] = self.work / "volumes" / mount.source
                out[mount.target].mkdir(parents=True, exist_ok=True)
        return out

    def _local(self, name: str, value: str) -> str:
        for service in compose_services():
            value = re.sub(
                rf"://{re.escape(service)}:(\d+)",
                lambda m: f"://127.0.0.1:{self.ports[int(m.group(1))]}",
                value,
            )
        value = re.sub(
            r"^0\.0\.0\.0:(\d+)$", lambda m: f"127.0.0.1:{self.ports[int(m.group(1))]}", value
        )
        for target, host in self._paths(name).items():
            if value == target or value.startswith(target + "/"):
                return str(host) + value[len(target) :]
        return value

    def command(self, name: str) -> list[str]:
        argv = [str(a) for a in self.services[name]["command"]]
        out = [str(_BIN / argv[0])]
        args = iter(argv[1:])
        for arg in args:
            if arg == "--host":
                next(args)  # 0.0.0.0: the container's network; loopback here
                out += [arg, "127.0.0.1"]
            elif arg == "--port":
                out += [arg, str(self.ports[int(next(args))])]
            elif arg == "--ready-file":
                next(args)
                self.ready[name] = self.work / f"{name}-ready.json"
                out += [arg, str(self.ready[name])]
            else:
                out.append(self._local(name, arg))
        return out

    def env(self, name: str) -> dict[str, str]:
        return {k: self._local(name, v) for k, v in environment(self.services[name]).items()}

    # --- running --------------------------------------------------------------------------

    def order(self) -> list[str]:
        done: list[str] = []

        def visit(name: str) -> None:
            if name not in done:
                for dependency in self.services[name].get("depends_on", {}):
                    visit(dependency)
                done.append(name)

        for name in self.services:
            visit(name)
        return done

    def start(self, name: str) -> None:
        with (self.work / f"{name}.log").open("wb") as log:
            self.procs[name] = subprocess.Popen(
                self.command(name),
                env={**os.environ, **self.env(name)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    def wait_ready(self, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not self.ready[name].exists():
            self.check_alive()
            assert time.monotonic() < deadline, f"{name} not ready: {self.tail(name)}"
            time.sleep(0.2)
        facts: dict[str, Any] = json.loads(self.ready[name].read_text())
        return facts

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited {proc.returncode}: {self.tail(name)}"

    def tail(self, name: str) -> str:
        return (self.work / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> dict[str, int]:
        codes = {}
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes[name] = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait(timeout=10)
        self.procs.clear()
        return codes


class _AttachedChain(SubstrateDevChain):
    """A ``SubstrateDevChain`` over a chain another process started (the dot-a service), so
    that ``Devnet``'s sending and delivery checks work on it unchanged."""

    def __init__(self, ws_url: str, name: str, domain: int, config: SubstrateChainConfig):
        self._ws_url = ws_url
        self.name = name
        self.domain = domain
        self.config = config
        self._next_nonce = 0
        self.finalized_at: dict[bytes, float] = {}
        self._deliveries: Counter[bytes] = Counter()
        self._scanned = 0

    @property
    def ws_url(self) -> str:
        return self._ws_url

    def stop(self) -> None:
        """The chain is the dot-a service's to stop."""


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[_Topology]:
    require_anvil()
    require_chopsticks()
    running = _Topology(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        text: str = response.read().decode()
    return text


def test_every_route_relays_through_the_compose_services(
    topology: _Topology, tmp_path: Path
) -> None:
    spec = topology.env("dot-a")[SPEC_ENV]
    if not Path(spec).is_file():
        reason = f"{spec} (the fixtures compose mounts) is not here"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    facts: dict[str, dict[str, Any]] = {}
    for name in topology.order():
        topology.start(name)
        if name in topology.ready:
            facts[name] = topology.wait_ready(name)

    relayer_env = topology.env("relayer")
    devnet = Devnet(config_path=REPO / "config.toml", workdir=tmp_path / "traffic")
    devnet.env = {**os.environ, **relayer_env}
    for chain in devnet.config.chains:
        if chain.type == "substrate":
            config = chain.plugin_config(SubstrateChainConfig)
            devnet.substrate[chain.name] = _AttachedChain(
                config.rpc, config.system_chain, chain.domain, config
            )
            devnet.recipients[chain.name] = (
                "0x" + Sr25519Keypair.from_uri(RECIPIENT_URI).public_key.hex()
            )
        else:
            (served,) = [f for f in facts.values() if f.get("domain") == chain.domain]
            devnet.recipients[chain.name] = served["recipient"]
    routes = _routes(devnet.config, list(devnet.substrate))
    assert len(routes) == 4

    async def traffic() -> tuple[dict[tuple[str, str], list[bytes]], dict[bytes, float]]:
        batches = await asyncio.gather(
            *(
                devnet.send(
                    origin,
                    destination,
                    _MESSAGES,
                    sender=_SENDER_TO_SUBSTRATE if destination in devnet.substrate else None,
                )
                for origin, destination in routes
            )
        )
        sent: dict[str, list[tuple[bytes, float]]] = {}
        for (_, destination), batch in zip(routes, batches, strict=True):
            sent.setdefault(destination, []).extend(batch)
        latencies = await devnet.await_delivery(sent, timeout=240)
        ids = {r: [mid for mid, _ in b] for r, b in zip(routes, batches, strict=True)}
        return ids, latencies

    ids, latencies = asyncio.run(traffic())
    topology.check_alive()
    for route, route_ids in ids.items():
        missing = [mid for mid in route_ids if mid not in latencies]
        assert not missing, f"{route}: {len(missing)} not delivered: {topology.tail('relayer')}"
    for destination in {d for _, d in routes}:
        events: Mapping[bytes, int] = asyncio.run(devnet.delivered_events(destination))
        assert all(n == 1 for n in events.values()), f"{destination}: delivered twice"

    # Prometheus's target: the relayer's listener, where RELAYER_HEALTH put it.
    health = relayer_env["RELAYER_HEALTH"]
    assert "relayer_" in _metrics(f"http://{health}/metrics")

    codes = topology.stop()
    assert codes == dict.fromkeys(codes, 0), codes
