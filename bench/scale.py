"""Scale-out benchmark: the split deployment (watcher + 1..3 workers as processes, a real
Mosquitto broker and a throwaway PostgreSQL ledger) against the embedded default (one
`relayer start`, SQLite, in-process bus), on the same four anvil chains (1 s blocks), with three
attester processes and committee finality, messages sent around a ring of four routes
(chain-a -> chain-b -> chain-c -> chain-d -> chain-a), a quarter of them on each.

Prints per deployment: delivered msgs/s (delivered / (last delivery seen - first send)), relay
overhead p50/p99 (origin block final -> the message's destination submission, from the
ledger's history, over every route), delivering transactions sent and how many were wasted
(all their messages already delivered: counted from `submit.*` log lines), peak RSS summed
over the relayer processes (not the attesters), and each figure's ratio to the embedded
default.

On this 2-core machine more workers cannot add cores: what matters here is that the split
deployment stays within 2x of the embedded default's msgs/s and wastes under 10% of
submissions.

Run: ``.venv/bin/python bench/scale.py [--messages N] [--workers 1,2,3]`` (N in all, over the
four routes; default 10,000, the issue's size; ``--messages 1000`` for a quick run).
The broker runs with max_queued_messages 100000, as docker/mosquitto.conf: past Mosquitto's
default of 1,000 QoS 1 messages per client it drops notices to a subscriber that fell behind,
and with single-message notices at 10,000 messages a worker did; ``--broker-queue N`` sets
another limit (0: none, 1000: Mosquitto's default). A deployment with no delivery for
``--stall-after`` seconds (120) is reported as stalled, its figures over what was delivered.
``--trace`` runs the workers under ``bench/trace.py`` and prints where each block's
attestations spent their time; ``--keep`` keeps every deployment's work dir (logs, traces).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.e2e import REPO, HeadClock, _pct, describe_stages, stage_times
from bench.trace import describe
from chains.evm.anvil import DEV_KEYS, start_anvil
from chains.evm.devnet import (
    ATTESTERS,
    Devnet,
    committee_finality,
    deploy_contracts,
    evm_only_config,
)
from chains.localnode import free_port
from tests.integration.mosquitto import start_mosquitto
from tests.integration.postgres import start_postgres

# The ring: each chain sends to the next. Chain ids from anvil's default up, domains by 1000s.
CHAINS = ("chain-a", "chain-b", "chain-c", "chain-d")
ROUTES = tuple(zip(CHAINS, CHAINS[1:] + CHAINS[:1], strict=True))
# anvil dev accounts (the same on every chain, each its own nonces there): the embedded
# daemon's delivering key, the senders' key (one route leaves each chain), and one key per
# worker; none is an attester's (#5-#7) or the deployer's (#0).
EMBEDDED_KEY = 1
SENDER_KEY = 3
WORKER_KEYS = (1, 2, 9)


def _env(chain: str, what: str) -> str:
    """``chain-c``, ``RPC`` -> ``CHAIN_C_RPC``: the variables the example config reads."""
    return f"{chain.upper().replace('-', '_')}_{what}"


def _key_env(chain: str) -> str:
    return "RELAYER_KEY_" + chain.upper().replace("-", "_")


def four_chain_config(work: Path) -> Path:
    """The example config's EVM chains with committee finality, chain-b's table copied as
    chain-c and chain-d, and every attester watching all four."""
    text = committee_finality(evm_only_config((REPO / "config.toml").read_text()))
    blocks = re.split(r"(?m)^(?=\[\[)", text)
    (index,) = [i for i, b in enumerate(blocks) if 'name = "chain-b"' in b]
    template = blocks[index]
    copies = []
    for number, name in enumerate(CHAINS[2:], start=2):
        block = template
        for old, new in (
            ('name = "chain-b"', f'name = "{name}"'),
            ("domain = 2000", f"domain = {1000 * (number + 1)}"),
            ("chain_id = 31338", f"chain_id = {31337 + number}"),
            ("CHAIN_B_", _env(name, "")),
            ('"RELAYER_KEY_CHAIN_B"', f'"{_key_env(name)}"'),
        ):
            if old not in block:
                sys.exit(f"the example config changed: {old!r} is not in chain-b's table")
            block = block.replace(old, new)
        copies.append(block)
    blocks[index + 1 : index + 1] = copies
    text = "".join(blocks)
    origins = 'origins = ["chain-a", "chain-b"]'
    if origins not in text:
        sys.exit(f"the example config changed: {origins!r} is not in it")
    text = text.replace(origins, "origins = [" + ", ".join(f'"{c}"' for c in CHAINS) + "]")
    path = work / "config.toml"
    path.write_text(text)
    return path


class FourChains(Devnet):
    """The devnet's processes and traffic on four anvil chains instead of two; with ``trace``,
    the workers run under ``bench.trace`` (their trace files in the work dir)."""

    trace = False
    request_after: float | None = None

    def spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> None:
        if not ((self.trace or self.request_after) and name.startswith("worker")):
            super().spawn(name, args, extra_env)
            return
        env = {**self.env, **(extra_env or {})}
        if self.trace:
            env["RELAYER_TRACE"] = str(self.work / f"{name}.trace")
        if self.request_after:
            env["RELAYER_TRACE_REQUEST_AFTER"] = str(self.request_after)
        with (self.work / f"{name}.log").open("ab") as handle:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "bench.trace", *args],
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    def start_chains(self) -> None:
        for number, _ in enumerate(CHAINS):
            self.anvils.append(start_anvil(31337 + number, block_time=1))

        async def deploy() -> list[Any]:
            return list(
                await asyncio.gather(
                    *(
                        deploy_contracts(node, 1000 * (number + 1))
                        for number, node in enumerate(self.anvils)
                    )
                )
            )

        deployed = asyncio.run(deploy())
        self.env = {
            **os.environ,
            "RELAYER_DATA_DIR": str(self.work),
            "RELAYER_HEALTH": f"127.0.0.1:{free_port()}",
            **{f"ATTESTER_KEY_{n + 1}": DEV_KEYS[i] for n, i in enumerate(ATTESTERS)},
        }
        for name, node, contracts in zip(CHAINS, self.anvils, deployed, strict=True):
            self.recipients[name] = contracts.recipient
            self.env[_env(name, "RPC")] = node.url
            self.env[_env(name, "WS")] = node.ws_url
            self.env[_env(name, "GATEWAY")] = contracts.gateway
            self.env[_key_env(name)] = DEV_KEYS[EMBEDDED_KEY]
        self._config = None


def _peak_rss_mb(devnet: Devnet, names: list[str]) -> float:
    total = 0
    for name in names:
        proc = devnet.procs.get(name)
        if proc is None:
            continue
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total / 1024


def _submissions(devnet: Devnet, names: list[str]) -> tuple[int, int]:
    """(delivering transactions sent, those whose messages were all delivered already)."""
    sent = wasted = 0
    for name in names:
        for line in (devnet.work / f"{name}.log").read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            event = entry.get("event")
            if event == "submit.started":
                sent += 1
            elif event == "submit.complete" and entry.get("delivered") == 0:
                wasted += 1
    return sent, wasted


def _wait_started(devnet: Devnet, names: list[str], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    for name in names:
        log = devnet.work / f"{name}.log"
        while '"relayer.started"' not in (log.read_text() if log.exists() else ""):
            devnet.check_alive([name])
            if time.monotonic() > deadline:
                sys.exit(f"{name} did not start; see {log}")
            time.sleep(0.2)


def _split(text: str, database: str, broker_port: int) -> str:
    replacements = {
        'database = "${RELAYER_DATA_DIR:-.relayer}/relayer.db"': f'database = "{database}"',
        'type = "memory"': 'type = "mqtt"',
        "[bus.mqtt]\n": f'[bus.mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\n',
    }
    for old, new in replacements.items():
        if old not in text:
            sys.exit(f"the example config changed: {old!r} is not in it")
        text = text.replace(old, new, 1)
    return text


def _start_relayers(
    devnet: Devnet, config_path: Path, work: Path, workers: int | None
) -> list[str]:
    """The relayer processes of one deployment; their names."""
    if workers is None:
        devnet.start_daemon()
        return ["relayer"]
    devnet.spawn(
        "watcher",
        ["start", "-c", str(config_path), "--role", "watcher"],
        {"RELAYER_HEALTH": f"127.0.0.1:{free_port()}"},
    )
    names = ["watcher"]
    for index in range(workers):
        name = f"worker-{index}"
        data = work / name
        data.mkdir()
        key = DEV_KEYS[WORKER_KEYS[index]]
        devnet.spawn(
            name,
            ["start", "-c", str(config_path), "--role", "worker"],
            {
                **{_key_env(chain): key for chain in CHAINS},
                "RELAYER_DATA_DIR": str(data),
                "RELAYER_HEALTH": f"127.0.0.1:{free_port()}",
            },
        )
        names.append(name)
    return names


def _await_delivery(
    devnet: Devnet, batches: list[list[tuple[bytes, float]]], names: list[str], stall_after: float
) -> dict[bytes, float]:
    """Every message's latency, or those delivered until none was for ``stall_after`` s."""
    pending = {
        destination: list(batch) for (_, destination), batch in zip(ROUTES, batches, strict=True)
    }
    latencies: dict[bytes, float] = {}
    while any(pending.values()):
        found = asyncio.run(devnet.await_delivery(pending, timeout=stall_after, alive=names))
        if not found:
            break
        latencies.update(found)
        pending = {
            dest: [(i, t) for i, t in items if i not in found] for dest, items in pending.items()
        }
    return latencies


def _relay(devnet: Devnet, per_route: int, names: list[str], stall_after: float) -> dict[str, Any]:
    """Send ``per_route`` messages on every route, wait for all of them; the figures."""
    clocks = {
        origin: HeadClock(node.rpc) for origin, node in zip(CHAINS, devnet.anvils, strict=True)
    }
    try:

        async def flow() -> list[list[tuple[bytes, float]]]:
            return list(
                await asyncio.gather(
                    *(
                        devnet.send(origin, destination, per_route, sender=SENDER_KEY)
                        for origin, destination in ROUTES
                    )
                )
            )

        batches = asyncio.run(flow())
        total = per_route * len(ROUTES)
        latencies = _await_delivery(devnet, batches, names, stall_after)
    finally:
        for clock in clocks.values():
            clock.stop()
    if len(latencies) != total:
        print(
            f"{names[-1]}: STALLED: {len(latencies)} of {total} delivered, none for "
            f"{stall_after:.0f} s; the figures below are over what was delivered "
            f"(logs in {devnet.work})",
            flush=True,
        )
    everything = dict(item for batch in batches for item in batch)
    first = min(everything.values())
    last = max(everything[i] + lat for i, lat in latencies.items())
    stages: dict[str, list[float]] = {}
    for (origin, _), batch in zip(ROUTES, batches, strict=True):
        for stage, values in stage_times(devnet, dict(batch), clocks[origin]).items():
            stages.setdefault(stage, []).extend(values)
    print(f"{names[-1]}: stages after origin final: {describe_stages(stages)}", flush=True)
    overheads = stages["submitted"]
    transactions, wasted = _submissions(devnet, names)
    return {
        "messages": total,
        "delivered": len(latencies),
        "msgs_per_s": len(latencies) / (last - first),
        "overhead_p50_s": statistics.median(overheads) if overheads else float("nan"),
        "overhead_p99_s": _pct(overheads, 0.99) if overheads else float("nan"),
        "transactions": transactions,
        "wasted": wasted,
        "peak_rss_mb": _peak_rss_mb(devnet, names),
    }


def run(
    work: Path,
    per_route: int,
    workers: int | None,
    *,
    trace: bool = False,
    broker_queue: int | None = None,
    stall_after: float = 120.0,
    request_after: float | None = None,
) -> dict[str, Any]:
    """One deployment: ``workers`` None is the embedded default. ``broker_queue``: the
    broker's ``max_queued_messages`` (None: the test broker's, 100000)."""
    config_path = four_chain_config(work)
    broker = cluster = None
    try:
        if workers is not None:
            cluster = start_postgres()
            broker = start_mosquitto(work / "mosquitto")
            if broker_queue is not None:
                config = broker.config_path.read_text()
                broker.config_path.write_text(config + f"max_queued_messages {broker_queue}\n")
                broker.stop()
                broker.start()
            database = cluster.create_database("bench")
            config_path.write_text(_split(config_path.read_text(), database, broker.port))
        devnet = FourChains(config_path=config_path, workdir=work / "devnet")
        devnet.trace = trace
        devnet.request_after = request_after
        try:
            devnet.start_chains()
            devnet.start_attesters()
            names = _start_relayers(devnet, config_path, work, workers)
            _wait_started(devnet, names)
            figures = _relay(devnet, per_route, names, stall_after)
        finally:
            devnet.stop()
        if trace and workers is not None:
            print(f"{workers} worker(s): where each block's attestations spent their time")
            for line in describe(devnet.work, sorted(devnet.work.glob("worker-*.trace"))):
                print(line, flush=True)
    finally:
        if broker is not None:
            broker.stop()
        if cluster is not None:
            cluster.stop()
    deployment = "embedded" if workers is None else f"{workers} worker(s)"
    return {"deployment": deployment, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Scale-out benchmark: split deployment vs embedded."
    )
    parser.add_argument(
        "--messages", type=int, default=10_000, help="messages in all, over the four routes"
    )
    parser.add_argument("--workers", default="1,2,3", help="worker counts to run")
    parser.add_argument(
        "--broker-queue",
        type=int,
        default=None,
        help="the broker's max_queued_messages (0: no limit; default 100000, as docker/)",
    )
    parser.add_argument(
        "--stall-after",
        type=float,
        default=120.0,
        help="seconds without a delivery after which a deployment is reported as stalled",
    )
    parser.add_argument(
        "--request-after",
        type=float,
        default=None,
        help="experiment: workers ask attesters to publish a block again after this many "
        "seconds of waiting (10 in the relayer)",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="run the workers under bench.trace and print where attestations spent their time",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep each deployment's work dir (logs) and say where"
    )
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",") if w]
    if any(not 1 <= w <= len(WORKER_KEYS) for w in counts):
        sys.exit(f"--workers: 1 to {len(WORKER_KEYS)} each")
    per_route = max(1, args.messages // len(ROUTES))
    options: dict[str, Any] = {
        "trace": args.trace,
        "broker_queue": args.broker_queue,
        "stall_after": args.stall_after,
        "request_after": args.request_after,
    }
    results = []
    for workers in (None, *counts):
        if args.keep:
            work = Path(tempfile.mkdtemp(prefix="xrelayer-scale-"))
            print(f"work dir {work}", flush=True)
            result = run(work, per_route, workers, **options)
        else:
            with tempfile.TemporaryDirectory(prefix="xrelayer-scale-") as tmp:
                result = run(Path(tmp), per_route, workers, **options)
        results.append(result)
        print(json.dumps(result), flush=True)
    base = results[0]
    queue = "100000 (default)" if args.broker_queue is None else args.broker_queue
    print(
        f"\nscale-out, {base['messages']} messages over four routes "
        f"({', '.join(f'{o}->{d}' for o, d in ROUTES)}), committee finality, broker "
        f"max_queued_messages {queue}:"
    )
    for r in results:
        wasted = r["wasted"] / r["transactions"] if r["transactions"] else 0.0
        print(
            f"  {r['deployment']:<12} {r['delivered']:>6} delivered {r['msgs_per_s']:7.1f} msgs/s "
            f"({r['msgs_per_s'] / base['msgs_per_s']:.2f}x)  overhead p50 "
            f"{r['overhead_p50_s']:.2f} s ({r['overhead_p50_s'] / base['overhead_p50_s']:.2f}x)"
            f" p99 {r['overhead_p99_s']:.2f} s "
            f"({r['overhead_p99_s'] / base['overhead_p99_s']:.2f}x)  "
            f"transactions {r['transactions']} wasted {r['wasted']} ({wasted:.1%})  "
            f"peak RSS {r['peak_rss_mb']:.0f} MB ({r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x)"
        )


if __name__ == "__main__":
    main()
