"""Scale-out benchmark: the split deployment (watcher + 1..3 workers as processes, a real
Mosquitto broker and a throwaway PostgreSQL ledger) against the embedded default (one
`relayer start`, SQLite, in-process bus), on the same two anvil chains (1 s blocks), with three
attester processes and committee finality, messages sent both ways (two routes).

Prints per deployment: delivered msgs/s (delivered / (last delivery seen - first send)), relay
overhead p50/p99 (origin block final -> the message's destination submission, from the
ledger's history), delivering transactions sent and how many were wasted (all their messages
already delivered: counted from `submit.*` log lines), peak RSS summed over the relayer
processes (not the attesters), and each figure's ratio to the embedded default.

On this 2-core machine more workers cannot add cores: what matters here is that the split
deployment stays within 2x of the embedded default's msgs/s and wastes under 10% of
submissions. Four chains and 10,000 messages (the issue's full size) are `--messages 2500`
with more chains: the devnet has two EVM chains today, so this runs two routes.

Run: ``.venv/bin/python bench/scale.py [--messages N] [--workers 1,2,3]`` (N each way,
default 500).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.e2e import HeadClock, _pct, describe_stages, evm_config, stage_times
from chains.evm.anvil import DEV_KEYS
from chains.evm.devnet import Devnet
from chains.localnode import free_port
from tests.integration.mosquitto import start_mosquitto
from tests.integration.postgres import start_postgres

# anvil dev accounts no other role signs with: one key per worker, on both chains.
WORKER_KEYS = (1, 2, 9)


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
                "RELAYER_KEY_CHAIN_A": key,
                "RELAYER_KEY_CHAIN_B": key,
                "RELAYER_DATA_DIR": str(data),
                "RELAYER_HEALTH": f"127.0.0.1:{free_port()}",
            },
        )
        names.append(name)
    return names


def run(work: Path, n: int, workers: int | None) -> dict[str, Any]:
    """One deployment: ``workers`` None is the embedded default."""
    config_path = evm_config(work)
    broker = cluster = None
    try:
        if workers is not None:
            cluster = start_postgres()
            broker = start_mosquitto(work / "mosquitto")
            database = cluster.create_database("bench")
            config_path.write_text(_split(config_path.read_text(), database, broker.port))
        devnet = Devnet(config_path=config_path, workdir=work / "devnet")
        try:
            devnet.start_chains()
            devnet.start_attesters()
            names = _start_relayers(devnet, config_path, work, workers)
            _wait_started(devnet, names)
            clock = HeadClock(devnet.chain_a.rpc)
            try:

                async def flow() -> list[list[tuple[bytes, float]]]:
                    return list(
                        await asyncio.gather(
                            devnet.send("chain-a", "chain-b", n),
                            devnet.send("chain-b", "chain-a", n),
                        )
                    )

                a_to_b, b_to_a = asyncio.run(flow())
                latencies = asyncio.run(
                    devnet.await_delivery(
                        {"chain-b": a_to_b, "chain-a": b_to_a}, timeout=900, alive=names
                    )
                )
            finally:
                clock.stop()
            if len(latencies) != 2 * n:
                sys.exit(f"only {len(latencies)} of {2 * n} delivered; logs in {devnet.work}")
            sent_at = dict(a_to_b)  # the overhead is measured on chain-a's route (its clock)
            first = min(t for _, t in a_to_b + b_to_a)
            everything = dict(a_to_b + b_to_a)
            last = max(everything[i] + lat for i, lat in latencies.items())
            stages = stage_times(devnet, sent_at, clock)
            overheads = stages["submitted"]
            print(f"{names[-1]}: stages after origin final: {describe_stages(stages)}", flush=True)
            transactions, wasted = _submissions(devnet, names)
            return {
                "deployment": "embedded" if workers is None else f"{workers} worker(s)",
                "messages": 2 * n,
                "msgs_per_s": 2 * n / (last - first),
                "overhead_p50_s": statistics.median(overheads) if overheads else float("nan"),
                "overhead_p99_s": _pct(overheads, 0.99) if overheads else float("nan"),
                "transactions": transactions,
                "wasted": wasted,
                "peak_rss_mb": _peak_rss_mb(devnet, names),
            }
        finally:
            devnet.stop()
    finally:
        if broker is not None:
            broker.stop()
        if cluster is not None:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500, help="messages each way")
    parser.add_argument("--workers", default="1,2,3", help="worker counts to run")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",") if w]
    if any(not 1 <= w <= len(WORKER_KEYS) for w in counts):
        sys.exit(f"--workers: 1 to {len(WORKER_KEYS)} each")
    results = []
    for workers in (None, *counts):
        with tempfile.TemporaryDirectory(prefix="xrelayer-scale-") as tmp:
            result = run(Path(tmp), args.messages, workers)
        results.append(result)
        print(json.dumps(result), flush=True)
    base = results[0]
    print(f"\nscale-out, {base['messages']} messages over two routes, committee finality:")
    for r in results:
        wasted = r["wasted"] / r["transactions"] if r["transactions"] else 0.0
        print(
            f"  {r['deployment']:<12} {r['msgs_per_s']:7.1f} msgs/s "
            f"({r['msgs_per_s'] / base['msgs_per_s']:.2f}x)  overhead p50 "
            f"{r['overhead_p50_s']:.2f} s p99 {r['overhead_p99_s']:.2f} s  "
            f"transactions {r['transactions']} wasted {wasted:.1%}  "
            f"peak RSS {r['peak_rss_mb']:.0f} MB ({r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x)"
        )


if __name__ == "__main__":
    main()
