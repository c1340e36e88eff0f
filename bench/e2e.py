"""End-to-end relay benchmark on two local anvil chains (block time 1 s), daemon and attesters as
real processes with the example config.

Prints:
- delivered messages/s A->B for N messages (delivered / (last delivery seen - first send));
- relay overhead: origin block final (its ``confirmations``-th successor first seen on the
  chain) -> the daemon's destination submission, median and p99;
- restart time: ``relayer start`` -> first submission, with 10,000 messages already in the
  ledger and one new attested message waiting.

Run: ``.venv/bin/python bench/e2e.py [--messages N]`` (default 1,000; ``--quick`` = 100).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chains.evm.devnet import Devnet
from relayer.store import Ledger, ObservedRow, State

REPO = Path(__file__).resolve().parents[1]


class HeadClock:
    """Records when each block number was first seen on a chain (50 ms polling)."""

    def __init__(self, node_rpc: object) -> None:
        self.rpc = node_rpc
        self.first_seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            head = int(self.rpc("eth_blockNumber"), 16)  # type: ignore[operator]
            now = time.time()
            for number in range(max(self.first_seen, default=head - 1) + 1, head + 1):
                self.first_seen.setdefault(number, now)
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _events(log: Path, name: str) -> list[dict[str, object]]:
    out = []
    for line in log.read_text().splitlines():
        if name not in line:
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("event") == name:
            out.append(entry)
    return out


def relay_overheads(devnet: Devnet, sent_at: dict[bytes, float], clock: HeadClock) -> list[float]:
    """Per message: origin block final (its ``confirmations``-th successor first seen) ->
    the daemon's destination submission (from the ledger's history)."""
    return stage_times(devnet, sent_at, clock)["submitted"]


def stage_times(
    devnet: Devnet, sent_at: dict[bytes, float], clock: HeadClock
) -> dict[str, list[float]]:
    """Per message and stage (verified, attested, submitted): seconds from the origin block
    being final to the daemon reaching that stage, from the ledger's history."""
    depth = int(devnet.evm("chain-a").confirmations)  # the example config uses a block count
    stages: dict[str, list[float]] = {"verified": [], "attested": [], "submitted": []}
    with Ledger.open(devnet.config.relayer.database) as ledger:
        for message_id in sent_at:
            record = ledger.get(message_id)
            if record is None:
                continue
            final_at = clock.first_seen.get(record.block_number + depth)
            if final_at is None:
                continue
            reached: dict[str, float] = {}
            for entry in ledger.history(message_id):
                reached.setdefault(entry.to_state.value, entry.at)
            if "submitted" not in reached:
                continue
            for stage, values in stages.items():
                values.append(reached.get(stage, reached["submitted"]) - final_at)
    return stages


def describe_stages(stages: dict[str, list[float]]) -> str:
    return ", ".join(
        f"{stage} p50 {statistics.median(v):.2f} / p99 {_pct(v, 0.99):.2f} s"
        for stage, v in stages.items()
        if v
    )


def throughput(devnet: Devnet, n: int) -> dict[str, float]:
    clock = HeadClock(devnet.chain_a.rpc)
    try:
        sent = asyncio.run(devnet.send("chain-a", "chain-b", n))
        first_send = min(t for _, t in sent)
        latencies = asyncio.run(devnet.await_delivery({"chain-b": sent}, timeout=600))
    finally:
        clock.stop()
    if len(latencies) != n:
        sys.exit(f"only {len(latencies)} of {n} delivered; logs in {devnet.work}")
    sent_at = dict(sent)
    last_seen = max(sent_at[i] + lat for i, lat in latencies.items())
    stages = stage_times(devnet, sent_at, clock)
    overheads = stages["submitted"]
    print("stages after origin final:", describe_stages(stages))
    return {
        "messages": n,
        "msgs_per_s": n / (last_seen - first_send),
        "seconds": last_seen - first_send,
        "latency_p50_s": statistics.median(latencies.values()),
        "overhead_p50_s": statistics.median(overheads),
        "overhead_p99_s": _pct(overheads, 0.99),
    }


def _fill_ledger(path: Path, count: int) -> None:
    """``count`` delivered messages, as a long-running relayer's ledger would hold them."""
    with Ledger.open(path) as ledger:
        for start in range(0, count, 1000):
            rows = [
                ObservedRow(
                    id=(10**9 + i).to_bytes(32, "big"),
                    origin_chain="chain-b",
                    destination_chain="chain-a",
                    route="chain-b->chain-a",
                    nonce=10**6 + i,
                    message=b"\x03" + bytes(80),
                    block_number=1,
                    block_hash=b"\x01" * 32,
                    evidence=b"",
                )
                for i in range(start, min(count, start + 1000))
            ]
            ledger.record_observed_many(rows)
            ids = [r.id for r in rows]
            for state in (State.VERIFIED, State.ATTESTED):
                ledger.transition_many(ids, state, expect=None)
            ledger.mark_submitted(ids, tx_hash=b"\x02" * 32, tx_nonce=0, raw_tx=b"")
            ledger.transition_many(ids, State.DELIVERED, expect=State.SUBMITTED)


def restart_time(devnet: Devnet) -> float:
    devnet.kill("relayer")
    _fill_ledger(devnet.config.relayer.database, 10_000)
    ((_message_id, _),) = asyncio.run(devnet.send("chain-a", "chain-b", 1))
    time.sleep(4)  # let the attesters sign it while the daemon is down
    log = devnet.work / "relayer.log"
    before = len(_events(log, "submit.started"))
    started = time.time()
    devnet.start_daemon()
    deadline = started + 60
    while time.time() < deadline:
        events = _events(log, "submit.started")
        if len(events) > before:
            at = events[before]["timestamp"]
            assert isinstance(at, str)
            from datetime import datetime  # noqa: PLC0415

            return datetime.fromisoformat(at).timestamp() - started
        time.sleep(0.02)
    sys.exit("no submission within 60 s of restart")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 messages")
    args = parser.parse_args()
    n = 100 if args.quick else args.messages
    devnet = Devnet(
        config_path=REPO / "config.toml", workdir=Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    )
    try:
        devnet.start_chains()
        devnet.start_attesters()
        devnet.start_daemon()
        figures = throughput(devnet, n)
        figures["restart_to_first_submission_s"] = restart_time(devnet)
    finally:
        devnet.stop()
    print(f"bench/e2e.py: {n} messages A->B, anvil block time 1 s, confirmations 2")
    print(f"  delivered msgs/s              {figures['msgs_per_s']:.1f}")
    print(f"  time to last delivery         {figures['seconds']:.1f} s")
    print(f"  latency p50 (send->delivered) {figures['latency_p50_s']:.2f} s")
    print(
        f"  relay overhead p50 / p99      {figures['overhead_p50_s']:.2f} / "
        f"{figures['overhead_p99_s']:.2f} s (origin final -> destination submission)"
    )
    print(
        f"  restart -> first submission   {figures['restart_to_first_submission_s']:.2f} s "
        "(10,000 messages in the ledger)"
    )


if __name__ == "__main__":
    main()
