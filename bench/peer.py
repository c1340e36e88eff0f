"""Our relayer against the Hyperlane TypeScript relayer, on identical local chains, in one run.

1. the peer: ``../shared/bench/hyperlane-peer.sh`` (Hyperlane CLI 44.0.2 ``hyperlane relayer``,
   anvil 1.7.1, origin block time 1 s, destination automine, N messages pre-signed and sent as
   fast as possible, trusted-relayer ISM);
2. ours, the same way: fresh anvil 1.7.1 chains (origin 1 s blocks, destination automine), the
   example config's EVM chains with committee finality (so: committee attestations from three
   attester processes, origin depth 2 blocks, every message proven), N messages pre-signed and
   sent as fast as possible;
3. ours again with chain-a's finality from its sync-committee light client following the dev
   beacon server (the example config's finality), beside it.

Definitions are the peer script's: messages/s = delivered / (last delivery seen on the
destination - first dispatch sent); latency = send -> delivery seen on the destination. Ours
also reports the relay overhead (origin block final -> destination submission).

Run: ``.venv/bin/python bench/peer.py [--n N | --quick] [--skip-peer RESULT.json]``; writes
``bench/results/peer-<date>.json``. The peer run takes about 15 minutes for N = 1,000.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
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

from bench.e2e import HeadClock, _pct, describe_stages, evm_config, stage_times
from chains.evm.devnet import Devnet

REPO = Path(__file__).resolve().parents[1]
PEER_SCRIPT = REPO.parent / "shared" / "bench" / "hyperlane-peer.sh"
RESULTS = REPO / "bench" / "results"


def run_peer(n: int) -> dict[str, Any]:
    if not PEER_SCRIPT.is_file():
        sys.exit(f"the peer script is not at {PEER_SCRIPT}")
    env = {**os.environ, "N": str(n), "WORK": str(REPO / ".peer-bench")}
    print(f"peer: running {PEER_SCRIPT.name} with N={n} (about {n * 0.86:.0f} s)", flush=True)
    proc = subprocess.run(
        ["bash", str(PEER_SCRIPT)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    out = proc.stdout
    marker = out.find("peer_bench result")
    if marker < 0:
        sys.exit(f"peer failed (exit {proc.returncode}):\n{out[-2000:]}\n{proc.stderr[-2000:]}")
    tail = out[marker:]
    start = tail.index("{")
    result: dict[str, Any] = json.JSONDecoder().raw_decode(tail[start:])[0]
    cpu = re.search(r"relayer_cpu_s=([\d.]+)", tail)
    hwm = re.search(r"VmHWM=(\d+)", tail)
    peak = re.search(r"sampled_peak=(\d+)", tail)
    rss_kb = max(int(hwm.group(1)) if hwm else 0, int(peak.group(1)) if peak else 0)
    latency = result.get("latency_s", {})
    return {
        "n": n,
        "delivered": result.get("delivered"),
        "msgs_per_s": result.get("msgs_per_s"),
        "time_to_last_delivery_s": result.get("wall_s"),
        "latency_p50_s": latency.get("p50"),
        "latency_p99_s": latency.get("p99"),
        "latency_max_s": latency.get("max"),
        "peak_rss_mb": round(rss_kb / 1024, 1),
        "cpu_s": float(cpu.group(1)) if cpu else None,
        "raw": result,
    }


def _proc_stats(pid: int) -> tuple[float, float]:
    """(peak RSS in MB, CPU seconds) of a live process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return hwm / 1024, ticks / os.sysconf("SC_CLK_TCK")


def run_ours(n: int, *, light_clients: bool = False) -> dict[str, Any]:
    """``light_clients``: chain-a's finality from its sync-committee light client (following
    the dev beacon server), as the example config has it; else committee finality."""
    work = Path(tempfile.mkdtemp(prefix="bench-peer-ours-"))
    devnet = Devnet(
        config_path=evm_config(work, light_clients=light_clients),
        workdir=work,
        block_time_a=1,
        block_time_b=None,  # automine, as the peer's destination
    )
    try:
        devnet.start_chains()
        devnet.start_attesters()
        devnet.start_daemon()
        time.sleep(2)  # both roles up, as the peer script waits for its relayer
        clock = HeadClock(devnet.chain_a.rpc)
        try:
            sent = asyncio.run(devnet.send("chain-a", "chain-b", n))
            latencies = asyncio.run(devnet.await_delivery({"chain-b": sent}, timeout=900))
        finally:
            clock.stop()
        stats = {name: _proc_stats(proc.pid) for name, proc in devnet.procs.items()}
        sent_at = dict(sent)
        first_send = min(sent_at.values())
        last_seen = max(sent_at[i] + lat for i, lat in latencies.items())
        depth = int(devnet.evm("chain-a").confirmations)
        stages = stage_times(devnet, sent_at, clock)
        overheads = stages["submitted"]
        print("ours, stages after origin final:", describe_stages(stages), flush=True)
    finally:
        devnet.stop()
    values = sorted(latencies.values())
    attesters = {k: v for k, v in stats.items() if k != "relayer"}
    return {
        "n": n,
        "delivered": len(values),
        "msgs_per_s": round(len(values) / (last_seen - first_send), 3),
        "time_to_last_delivery_s": round(last_seen - first_send, 3),
        "latency_p50_s": round(statistics.median(values), 3),
        "latency_p99_s": round(_pct(values, 0.99), 3),
        "latency_max_s": round(values[-1], 3),
        "relay_overhead_p50_s": round(statistics.median(overheads), 3),
        "relay_overhead_p99_s": round(_pct(overheads, 0.99), 3),
        "peak_rss_mb": round(stats["relayer"][0], 1),
        "cpu_s": round(stats["relayer"][1], 2),
        "attesters_peak_rss_mb": {k: round(v[0], 1) for k, v in attesters.items()},
        "attesters_cpu_s": {k: round(v[1], 2) for k, v in attesters.items()},
        "all_processes_peak_rss_mb": round(sum(v[0] for v in stats.values()), 1),
        "all_processes_cpu_s": round(sum(v[1] for v in stats.values()), 2),
        "origin_confirmations": depth,
    }


def _row(label: str, peer: Any, ours: Any, ratio: str = "") -> str:
    return f"{label:<34}{peer!s:>14}{ours!s:>14}{ratio:>12}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="N = 100")
    parser.add_argument("--skip-peer", type=Path, help="reuse the peer figures of a results file")
    args = parser.parse_args()
    n = 100 if args.quick else args.n
    peer = json.loads(args.skip_peer.read_text())["peer"] if args.skip_peer else run_peer(n)
    ours = run_ours(n)
    synced = run_ours(n, light_clients=True)
    ratio = ours["msgs_per_s"] / peer["msgs_per_s"]
    print(_row("", "Hyperlane TS", "ours", "ours/peer"))
    print(_row("delivered", f"{peer['delivered']}/{n}", f"{ours['delivered']}/{n}"))
    print(_row("messages/s", peer["msgs_per_s"], ours["msgs_per_s"], f"{ratio:.1f}x"))
    print(
        _row(
            "time to last delivery (s)",
            peer["time_to_last_delivery_s"],
            ours["time_to_last_delivery_s"],
            f"{ours['time_to_last_delivery_s'] / peer['time_to_last_delivery_s']:.3f}x",
        )
    )
    for key, label in (
        ("p50", "latency p50 (s)"),
        ("p99", "latency p99 (s)"),
        ("max", "latency max (s)"),
    ):
        p, o = peer[f"latency_{key}_s"], ours[f"latency_{key}_s"]
        print(_row(label, p, o, f"{o / p:.3f}x"))
    print(
        _row(
            "peak RSS relayer (MB)",
            peer["peak_rss_mb"],
            ours["peak_rss_mb"],
            f"{ours['peak_rss_mb'] / peer['peak_rss_mb']:.2f}x",
        )
    )
    print(_row("CPU s relayer", peer["cpu_s"], ours["cpu_s"]))
    for name, rss in ours["attesters_peak_rss_mb"].items():
        print(
            _row(f"  {name} peak RSS MB / CPU s", "-", f"{rss} / {ours['attesters_cpu_s'][name]}")
        )
    print(
        _row(
            "all our processes RSS MB / CPU s",
            "-",
            f"{ours['all_processes_peak_rss_mb']} / {ours['all_processes_cpu_s']}",
        )
    )
    print(
        f"relay overhead (origin final -> submission): p50 {ours['relay_overhead_p50_s']} s, "
        f"p99 {ours['relay_overhead_p99_s']} s"
    )
    synced_ratio = synced["msgs_per_s"] / peer["msgs_per_s"]
    print(
        f"ours with finality = sync-committee on chain-a: {synced['msgs_per_s']} messages/s "
        f"({synced_ratio:.1f}x the peer), latency p50 {synced['latency_p50_s']} s, relay "
        f"overhead p50 {synced['relay_overhead_p50_s']} s (from the block's 2nd successor), "
        f"peak RSS {synced['peak_rss_mb']} MB"
    )
    if args.skip_peer:
        # The committed JSON is one run of both relayers; a run that reused the peer's
        # figures only prints.
        return
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"peer-{dt.date.today().isoformat()}.json"
    out.write_text(
        json.dumps(
            {
                "n": n,
                "peer": peer,
                "ours": ours,
                "ours_sync_committee": synced,
                "ratio_msgs_per_s": round(ratio, 1),
            },
            indent=2,
        )
        + "\n"
    )
    # The README quotes this line verbatim.
    headline = (
        "Throughput: {:.1f}× the Hyperlane TS relayer (delivered msgs/s, N={}, bench/peer.py)"  # noqa: RUF001  (the exact form the README quotes)
    )
    print(headline.format(ratio, n))
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
