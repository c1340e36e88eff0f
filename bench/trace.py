"""``python -m bench.trace <relayer CLI args>``: the relayer CLI with timestamps taken where a
worker's attestations pass, for ``bench/scale.py --trace``: each attestation notice as the MQTT
client reads it (paho's callback) and as the collector takes it, each batch written to the
checkpoint store, each collector pass (its claim, its quorum search, its ledger write), each
batch of observations verified, and the event loop's lag (a 10 ms sleep that overslept).

Nothing in the relayer changes: the wrapped methods call the originals. One experiment:
``RELAYER_TRACE_REQUEST_AFTER=S`` makes the worker ask attesters to publish a block again only
after its messages waited S seconds (10 in the relayer). The records go, as
one JSON object, to the file named by ``RELAYER_TRACE`` when the process exits.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import math
import os
import statistics
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt

from relayer.bus.attestations import AttestationCollector, AttestationRequester
from relayer.bus.payloads import decode_notice
from relayer.core import Core
from relayer.store.postgres import PostgresLedger

_records: dict[str, list[Any]] = {
    "received": [],  # (time, message id hex): an attestation notice at paho's callback
    "taken": [],  # (time, message id hex, signer hex): collector.take returned
    "merged": [],  # (start, end, notices): a flush's write to the checkpoint store
    "claim": [],  # (start, end, messages): the collector pass's ledger claim
    "attested": [],  # (start, end, messages): mark_attested
    "accept": [],  # (start, end, observations): Core.accept (verify + record)
    "lag": [],  # (time, seconds late): the event loop's oversleeps above 20 ms
}
_lock = threading.Lock()


def _add(kind: str, *row: Any) -> None:
    with _lock:
        _records[kind].append(row)


def _timed(kind: str, count: Callable[..., int]) -> Callable[[Any], Any]:
    def wrap(method: Any) -> Any:
        if asyncio.iscoroutinefunction(method):

            @functools.wraps(method)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                start = time.time()
                result = await method(*args, **kwargs)
                _add(kind, start, time.time(), count(args, result))
                return result

            return run_async

        @functools.wraps(method)
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.time()
            result = method(*args, **kwargs)
            _add(kind, start, time.time(), count(args, result))
            return result

        return run

    return wrap


def _install() -> None:
    after = os.environ.get("RELAYER_TRACE_REQUEST_AFTER")
    if after:
        # An experiment, not a trace: how much of a worker's backlog the attestation
        # requests (asking attesters to publish whole blocks again) cost when they fire
        # because the worker is behind rather than because notices were lost.
        init = AttestationRequester.__init__

        def later(self: AttestationRequester, *args: Any, **kwargs: Any) -> None:
            kwargs["after"] = kwargs["every"] = float(after)
            init(self, *args, **kwargs)

        AttestationRequester.__init__ = later  # type: ignore[method-assign]

    on_message = aiomqtt.Client._on_message

    def received(self: Any, client: Any, userdata: Any, message: Any) -> None:
        at = time.time()
        on_message(self, client, userdata, message)
        if message.topic.endswith("/attestations"):
            notice = decode_notice(message.payload, max_bytes=len(message.payload))
            _add("received", at, notice.message_id.hex())

    aiomqtt.Client._on_message = received  # type: ignore[method-assign]

    take = AttestationCollector.take

    def taken(self: AttestationCollector, notice: Any) -> None:
        take(self, notice)
        _add(
            "taken",
            time.time(),
            notice.message_id.hex(),
            notice.signer.hex(),
        )

    AttestationCollector.take = taken  # type: ignore[method-assign]
    AttestationCollector._merge = _timed(  # type: ignore[method-assign]
        "merged", lambda args, _: sum(len(v) for v in args[1].values())
    )(AttestationCollector._merge)
    PostgresLedger.claim = _timed("claim", lambda _, result: len(result))(  # type: ignore[method-assign]
        PostgresLedger.claim
    )
    PostgresLedger.mark_attested = _timed("attested", lambda args, _: len(args[1]))(  # type: ignore[method-assign]
        PostgresLedger.mark_attested
    )
    Core.accept = _timed("accept", lambda args, _: len(args[1]))(Core.accept)  # type: ignore[method-assign]

    collect = Core.collect_attestations

    async def collect_with_lag(self: Core, **kwargs: Any) -> None:
        async def lag() -> None:
            while True:
                before = time.monotonic()
                await asyncio.sleep(0.01)
                late = time.monotonic() - before - 0.01
                if late > 0.02:  # only oversleeps worth a look
                    _add("lag", time.time(), late)

        task = asyncio.create_task(lag(), name="trace:loop-lag")
        try:
            await collect(self, **kwargs)
        finally:
            task.cancel()

    Core.collect_attestations = collect_with_lag  # type: ignore[method-assign]


def _log_events(path: Path, names: set[str]) -> list[tuple[float, dict[str, Any]]]:
    out = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("event") in names:
            at = datetime.fromisoformat(entry["timestamp"]).timestamp()
            out.append((at, entry))
    return out


def _p50(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def describe(devnet: Path, traces: list[Path]) -> list[str]:
    """Where a block's attestations spent their time in the split deployment, per block and
    its median, in seconds after the watcher verified the block's first message: the second
    attester's ``block.attested`` (a quorum published and acknowledged by the broker), the
    block's notices at the workers' MQTT client (first, last), taken by the collector (last),
    written to the checkpoint store, and the workers' ``message.attested`` (first, last)."""
    block_of: dict[str, tuple[str, int]] = {}
    start: dict[tuple[str, int], float] = {}
    for at, entry in _log_events(devnet / "watcher.log", {"message.verified"}):
        block = (entry["chain"], entry["block"])
        block_of[entry["message_id"][2:]] = block
        start[block] = min(at, start.get(block, at))
    quorum: dict[tuple[str, int], list[float]] = {}
    for log in devnet.glob("att-*.log"):
        for at, entry in _log_events(log, {"block.attested"}):
            quorum.setdefault((entry["chain"], entry["block"]), []).append(at)
    records: dict[str, list[Any]] = {kind: [] for kind in _records}
    for trace in traces:
        for kind, rows in json.loads(trace.read_text()).items():
            records[kind] += rows
    stages: dict[str, dict[tuple[str, int], list[float]]] = {
        "received": {},
        "taken": {},
        "attested": {},
    }
    for at, mid, *_ in records["received"]:
        if mid in block_of:
            stages["received"].setdefault(block_of[mid], []).append(at)
    for at, mid, *_ in records["taken"]:
        if mid in block_of:
            stages["taken"].setdefault(block_of[mid], []).append(at)
    for log in devnet.glob("worker-*.log"):
        for at, entry in _log_events(log, {"message.attested"}):
            mid = entry["message_id"][2:]
            if mid in block_of:
                stages["attested"].setdefault(block_of[mid], []).append(at)
    merges = sorted(records["merged"])
    columns = ("quorum", "recv 1st", "recv last", "taken last", "stored", "att 1st", "att last")
    lines = ["  block           msgs " + " ".join(f"{c:>10}" for c in columns)]
    table: list[list[float]] = []
    for block in sorted(start, key=start.__getitem__):
        t0 = start[block]
        signed = sorted(quorum.get(block, []))
        received = stages["received"].get(block, [])
        taken = stages["taken"].get(block, [])
        attested = stages["attested"].get(block, [])
        if len(signed) < 2 or not received or not taken or not attested:
            continue
        stored = min((end for begin, end, _ in merges if begin >= max(taken)), default=math.nan)
        row = [
            signed[1],
            min(received),
            max(received),
            max(taken),
            stored,
            min(attested),
            max(attested),
        ]
        table.append([at - t0 for at in row])
        n = sum(1 for b in block_of.values() if b == block)
        lines.append(
            f"  {block[0]} {block[1]:>5} {n:>5} " + " ".join(f"{v:10.2f}" for v in table[-1])
        )
    lines.append(
        "  median              "
        + " ".join(f"{_p50([r[i] for r in table]):10.2f}" for i in range(len(columns)))
    )
    lags = [late for _, late in records["lag"]]
    lines.append(
        f"  workers' event loop: {len(lags)} oversleeps > 20 ms, {sum(lags):.1f} s in all, "
        f"longest {max(lags, default=0):.2f} s"
    )
    for kind, label in (
        ("accept", "verify + record observations (Core.accept)"),
        ("claim", "collector claim (Postgres)"),
        ("attested", "mark_attested (Postgres)"),
        ("merged", "checkpoint store write"),
    ):
        spans = [end - begin for begin, end, _ in records[kind]]
        lines.append(
            f"  {label}: {len(spans)} calls, p50 {_p50(spans) * 1000:.0f} ms, "
            f"max {max(spans, default=0) * 1000:.0f} ms, {sum(spans):.1f} s in all"
        )
    return lines


def _dump() -> None:
    path = os.environ.get("RELAYER_TRACE")
    if path:
        with _lock:
            text = json.dumps(_records)
        with open(path, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    _install()
    atexit.register(_dump)
    from relayer.cli import main

    main()
