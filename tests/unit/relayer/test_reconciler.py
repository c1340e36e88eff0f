"""relayer.reconciler: what the event stream missed is found by re-reading final blocks and
healed only through the core's verification; the ledger and the destinations are compared
without racing the delivery worker.

Real parts: the ledger, the core and the ``evm`` plugin's verification over synthetic but
consensus-valid blocks (``tests.unit.relayer.test_core``); the reader and the destination are
stand-ins, so that a test says exactly what the chain holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from chains.evm.config import EvmChainConfig
from chains.evm.plugin import EvmPlugin
from chains.evm.reconcile import EvmMessageLister
from relayer.config import load_config
from relayer.errors import ConfigError, TransientChainError, UnknownChainError
from relayer.metrics import RelayerMetrics
from relayer.plugin import CursorView, ListsMessages, MessageLister, Observation, Span
from relayer.reconciler import (
    Reconciler,
    ReconcileReport,
    reconcile_route,
    reconcile_settings,
)
from relayer.store import State
from tests.unit.chains.evm.test_evidence import (
    GATEWAY,
    dispatch_log,
    make_block,
    make_message,
    make_receipts,
    observe,
    single,
)
from tests.unit.relayer.test_core import COMMITTEE, CONFIG, Harness, genuine, make_id

BLOCK = 42  # the synthetic blocks' height


class FakeReader:
    """A chain whose final blocks hold ``observations``; records the ranges read."""

    endpoint = "http://fake"
    start_block = 0
    poll_interval = 1.0
    max_span = 4
    depth: int | str = 2

    def __init__(self, observations: Sequence[Observation], *, final: int = 100) -> None:
        self.observations = list(observations)
        self.final = final
        self.reads: list[tuple[int, int]] = []
        self.failures: list[Exception] = []
        self.closed = False

    async def background(self, cursor: CursorView) -> None:
        return None

    async def wait_for_head(self, timeout: float) -> None:
        return None

    async def confirmed_head(self) -> int:
        return self.final

    async def hash_at(self, number: int) -> bytes | None:
        return number.to_bytes(32, "big")

    async def read(self, start: int, end: int, *, after: bytes) -> Span:
        assert end <= self.final, "read above the final head"
        if self.failures:
            raise self.failures.pop(0)
        self.reads.append((start, end))
        found = [o for o in self.observations if start <= o.block_number <= end]
        return Span(
            observations=found,
            blocks=sorted({(o.block_number, o.block_hash) for o in found}),
            end_hash=end.to_bytes(32, "big"),
        )

    async def latest_head(self) -> int:
        return self.final + 2

    def head_stream_idle(self) -> float | None:
        return None

    def restart_head_stream(self) -> None:
        return None

    async def close(self) -> None:
        self.closed = True


class FakeLister:
    """Lists what ``reader``'s chain holds, and ``extra`` (what an endpoint may claim)."""

    def __init__(self, reader: FakeReader, extra: Sequence[tuple[int, bytes]] = ()) -> None:
        self.reader = reader
        self.extra = list(extra)
        self.lists: list[tuple[int, int]] = []

    async def list_messages(self, start: int, end: int) -> Sequence[tuple[int, bytes]]:
        self.lists.append((start, end))
        listed = [(o.block_number, o.message) for o in self.reader.observations]
        return [(n, m) for n, m in [*listed, *self.extra] if start <= n <= end]


class FakeDestination:
    """A destination whose ``delivered`` ids are delivered; records what it was asked."""

    endpoint = "http://fake-destination"
    unit = "wei"

    def __init__(self, delivered: set[bytes] | None = None) -> None:
        self.delivered = set(delivered or ())
        self.asked: list[list[bytes]] = []
        self.started = False
        self.closed = False

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def delivered_flags(self, message_ids: Sequence[bytes]) -> list[bool]:
        self.asked.append(list(message_ids))
        return [mid in self.delivered for mid in message_ids]


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        harness.ledger.close()


def _reconciler(
    h: Harness,
    reader: FakeReader,
    destination: FakeDestination | None = None,
    *,
    metrics: RelayerMetrics | None = None,
    settle_after: float = 120.0,
    lister: MessageLister | None = None,
) -> Reconciler:
    # A stand-in: only ``delivered_flags`` (and start/close on demand) is ever called.
    submitters: dict[str, Any] = {}
    if destination is not None:
        submitters["chain-b"] = destination
    return Reconciler(
        config=h.config,
        chain=h.config.chain("chain-a"),
        reader=reader,
        ledger=h.ledger,
        sink=h.core.accept,
        submitters=submitters,
        log=h.log,
        metrics=metrics,
        settle_after=settle_after,
        lister=lister,
    )


def _cursor_at(h: Harness, number: int) -> None:
    h.ledger.set_cursor("chain-a", "relayer", number, number.to_bytes(32, "big"))


def _to_state(h: Harness, ids: Sequence[bytes], state: State) -> None:
    h.ledger.mark_attested([(mid, (), "test") for mid in ids])
    if state is not State.ATTESTED:
        h.ledger.transition_many(ids, state, expect=State.ATTESTED)


async def test_a_message_the_stream_missed_is_verified_recorded_and_logged(h: Harness) -> None:
    missed = genuine()
    _cursor_at(h, 60)
    metrics = RelayerMetrics()
    reconciler = _reconciler(h, FakeReader(missed), FakeDestination(), metrics=metrics)
    report = await reconciler.reconcile_window(50)
    assert report is not None
    assert (report.first_block, report.last_block) == (11, 60)
    assert (report.found, report.healed) == (3, 3)
    for obs in missed:
        assert h.state(make_id(obs.message)) is State.VERIFIED
    (healed,) = h.log.named("reconcile.healed")
    assert healed["route"] == "chain-a->chain-b"
    assert healed["messages"] == 3
    assert healed["blocks"] == [BLOCK]
    assert metrics.reconciled.labels("chain-a", "healed")._value.get() == 3


async def test_forged_evidence_found_by_the_reconciler_is_never_recorded_as_verified(
    h: Harness,
) -> None:
    obs = single()
    forged = msgspec.structs.replace(obs, message=make_message(1, body=b"forged"))
    _cursor_at(h, 60)
    report = await _reconciler(h, FakeReader([forged]), FakeDestination()).reconcile_window(50)
    assert report is not None
    assert (report.healed, report.rejected) == (0, 1)
    assert h.state(make_id(forged.message)) is not State.VERIFIED
    assert h.log.named("reconcile.healed") == []
    assert h.log.named("proof.rejected"), "the core did not refuse the forged evidence"


async def test_messages_the_ledger_holds_are_not_handed_over_again(h: Harness) -> None:
    known = genuine()
    await h.core.accept(known)
    _cursor_at(h, 60)
    handed: list[Sequence[Observation]] = []

    async def sink(observations: Sequence[Observation]) -> None:
        handed.append(observations)

    reconciler = _reconciler(h, FakeReader(known), FakeDestination())
    reconciler.sink = sink
    report = await reconciler.reconcile_window(50)
    assert report is not None
    assert (report.found, report.healed) == (3, 0)
    assert handed == []
    assert h.log.named("reconcile.healed") == []


async def test_the_window_ends_at_the_cursor_and_never_above_the_final_head(h: Harness) -> None:
    reader = FakeReader([], final=30)
    _cursor_at(h, 40)  # a cursor above what is final now (a light client that went back)
    await _reconciler(h, reader).reconcile_window(10)
    assert reader.reads == [(21, 24), (25, 28), (29, 30)]
    reader.final, reader.reads = 100, []
    await _reconciler(h, reader).reconcile_window(3)
    assert reader.reads == [(38, 40)]


async def test_no_pass_before_the_watcher_handed_anything_over(h: Harness) -> None:
    reader = FakeReader(genuine())
    assert await _reconciler(h, reader).reconcile_window(50) is None
    assert reader.reads == []


async def test_a_message_the_destination_delivered_already_is_not_recorded(h: Harness) -> None:
    obs = single()
    mid = make_id(obs.message)
    _cursor_at(h, 60)
    report = await _reconciler(h, FakeReader([obs]), FakeDestination({mid})).reconcile_window(50)
    assert report is not None
    assert (report.healed, report.skipped_delivered) == (0, 1)
    assert h.state(mid) is None


async def test_a_failed_message_the_destination_delivered_is_marked_delivered(h: Harness) -> None:
    obs = single()
    mid = make_id(obs.message)
    await h.core.accept([obs])
    _to_state(h, [mid], State.FAILED)
    _cursor_at(h, 60)
    report = await _reconciler(h, FakeReader([obs]), FakeDestination({mid})).reconcile_window(50)
    assert report is not None
    assert report.marked_delivered == 1
    assert h.state(mid) is State.DELIVERED
    history = h.ledger.history(mid)
    assert "destination had delivered it" in (history[-1].detail or "")


async def test_attested_messages_are_left_to_the_delivery_worker(h: Harness) -> None:
    obs = single()
    mid = make_id(obs.message)
    await h.core.accept([obs])
    _to_state(h, [mid], State.ATTESTED)
    _cursor_at(h, 60)
    destination = FakeDestination({mid})
    await _reconciler(h, FakeReader([obs]), destination).reconcile_window(50)
    assert h.state(mid) is State.ATTESTED
    assert destination.asked == []


async def test_a_delivery_the_destination_does_not_know_is_reported_not_requeued(
    h: Harness,
) -> None:
    obs = single()
    mid = make_id(obs.message)
    await h.core.accept([obs])
    _to_state(h, [mid], State.DELIVERED)
    _cursor_at(h, 60)
    metrics = RelayerMetrics()
    reader = FakeReader([obs])
    # Delivered moments ago: the destination's endpoint may lag, so nothing is said yet.
    report = await _reconciler(h, reader, FakeDestination(), metrics=metrics).reconcile_window(50)
    assert report is not None
    assert report.delivery_missing == 0
    report = await _reconciler(
        h, reader, FakeDestination(), metrics=metrics, settle_after=0.0
    ).reconcile_window(50)
    assert report is not None
    assert report.delivery_missing == 1
    (missing,) = h.log.named("reconcile.delivery_missing")
    assert missing["message_id"] == "0x" + mid.hex()
    assert "not re-queued" in missing["hint"]
    assert h.state(mid) is State.DELIVERED
    assert metrics.reconciled.labels("chain-a", "delivery_missing")._value.get() == 1


async def test_without_a_delivering_key_the_destination_is_not_asked_and_gaps_still_heal(
    h: Harness,
) -> None:
    missed = genuine()
    _cursor_at(h, 60)
    report = await _reconciler(h, FakeReader(missed)).reconcile_window(50)
    assert report is not None
    assert report.healed == 3
    assert report.unchecked == ("chain-b",)


async def test_a_failed_pass_is_logged_and_the_next_one_heals(h: Harness) -> None:
    missed = genuine()
    _cursor_at(h, 60)
    reader = FakeReader(missed)
    reader.failures.append(TransientChainError("endpoint refused"))
    reconciler = _reconciler(h, reader, FakeDestination())
    healed = asyncio.Event()
    accept = h.core.accept

    async def sink(observations: Sequence[Observation]) -> None:
        await accept(observations)
        healed.set()

    reconciler.sink = sink
    task = asyncio.create_task(reconciler.run(interval=0.01, window=50))
    try:
        async with asyncio.timeout(10):
            await healed.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    (failed,) = h.log.named("reconcile.failed")
    assert "endpoint refused" in failed["error"]
    assert h.log.named("reconcile.recovered") == [{"failed_passes": 1}]
    assert reader.closed
    assert all(h.state(make_id(o.message)) is State.VERIFIED for o in missed)


# --- with the origin family's cheap listing ------------------------------------------------------


def _in_block(number: int, message: bytes) -> Observation:
    receipts = make_receipts([dispatch_log(message)])
    (obs,) = observe(make_block(receipts, number=number), receipts)
    return obs


async def test_with_a_listing_only_blocks_holding_missing_messages_are_read_with_evidence(
    h: Harness,
) -> None:
    known = _in_block(50, make_message(9, body=b"known"))
    await h.core.accept([known])
    missed = genuine()  # block 42
    reader = FakeReader([known, *missed])
    lister = FakeLister(reader)
    _cursor_at(h, 60)
    report = await _reconciler(h, reader, FakeDestination(), lister=lister).reconcile_window(50)
    assert report is not None
    assert (report.found, report.healed) == (4, 3)
    assert lister.lists == [(11, 14), (15, 18), (19, 22)] + [
        (n, min(n + 3, 60)) for n in range(23, 61, 4)
    ]
    assert reader.reads == [(BLOCK, BLOCK)]
    assert all(h.state(make_id(o.message)) is State.VERIFIED for o in missed)


async def test_with_no_gap_a_listed_pass_reads_no_block_with_evidence(h: Harness) -> None:
    known = genuine()
    await h.core.accept(known)
    reader = FakeReader(known)
    _cursor_at(h, 60)
    report = await _reconciler(
        h, reader, FakeDestination(), lister=FakeLister(reader)
    ).reconcile_window(50)
    assert report is not None
    assert (report.found, report.healed) == (3, 0)
    assert reader.reads == []


async def test_a_listed_message_its_proven_block_does_not_hold_is_not_healed(h: Harness) -> None:
    claimed = make_message(5, body=b"claimed by the endpoint alone")
    reader = FakeReader([])
    lister = FakeLister(reader, extra=[(BLOCK, claimed)])
    _cursor_at(h, 60)
    report = await _reconciler(h, reader, FakeDestination(), lister=lister).reconcile_window(50)
    assert report is not None
    assert report.healed == 0
    assert reader.reads == [(BLOCK, BLOCK)]
    assert h.state(make_id(claimed)) is None
    (unproven,) = h.log.named("reconcile.unproven")
    assert unproven["message_id"] == "0x" + make_id(claimed).hex()


class _LogsRpc:
    def __init__(self, logs: list[dict[str, Any]]) -> None:
        self.logs_answer = logs
        self.asked: list[tuple[int, int, str, list[Any]]] = []

    async def logs(
        self, from_block: int, to_block: int, address: str, topics: list[Any]
    ) -> list[dict[str, Any]]:
        self.asked.append((from_block, to_block, address, topics))
        return self.logs_answer


async def test_the_evm_listing_decodes_gateway_dispatch_logs_and_skips_removed_ones() -> None:
    assert isinstance(EvmPlugin(), ListsMessages)
    first = make_message(1, body=b"one")
    second = make_message(2, body=b"two")
    logs = [
        {**dispatch_log(first), "blockNumber": "0x2a"},
        {**dispatch_log(second), "blockNumber": "0x2b", "removed": True},
    ]
    rpc = _LogsRpc(logs)
    reader: Any = type("Reader", (), {"rpc": rpc, "gateway_hex": "0x" + GATEWAY.hex()})()
    listed = await EvmMessageLister(reader).list_messages(40, 50)
    assert listed == [(42, first)]
    ((start, end, address, _),) = rpc.asked
    assert (start, end, address) == (40, 50, "0x" + GATEWAY.hex())


# --- on demand: `relayer clear --route ... --from-block N` --------------------------------------


@pytest.fixture
def on_demand(h: Harness, monkeypatch: pytest.MonkeyPatch) -> tuple[FakeReader, FakeDestination]:
    to_b = single()
    to_a = single(make_message(7, destination=1000, body=b"to a"))
    to_a = msgspec.structs.replace(to_a, block_number=BLOCK + 20)  # only the block is read
    reader = FakeReader([to_b, to_a])
    destination = FakeDestination()
    monkeypatch.setattr("relayer.reconciler.origin_reader", lambda *_: reader)
    monkeypatch.setattr("relayer.reconciler._submitter", lambda *_: destination)
    return reader, destination


async def test_reconcile_route_heals_only_its_route_from_the_given_block(
    h: Harness, on_demand: tuple[FakeReader, FakeDestination]
) -> None:
    reader, destination = on_demand
    _cursor_at(h, 80)
    report = await reconcile_route(h.config, h.ledger, "chain-a->chain-b", 40, h.log)
    assert isinstance(report, ReconcileReport)
    assert (report.first_block, report.last_block) == (40, 80)
    assert (report.found, report.healed) == (1, 1)
    assert reader.reads[0][0] == 40
    (to_b, to_a) = reader.observations
    assert h.state(make_id(to_b.message)) is State.VERIFIED
    assert h.state(make_id(to_a.message)) is None  # another route
    assert destination.started and destination.closed and reader.closed


async def test_reconcile_route_without_a_cursor_reads_up_to_the_final_head(
    h: Harness, on_demand: tuple[FakeReader, FakeDestination]
) -> None:
    reader, _ = on_demand
    report = await reconcile_route(h.config, h.ledger, "chain-a->chain-b", 0, h.log)
    assert report.last_block == reader.final
    assert report.healed == 1


@pytest.mark.parametrize(
    ("route", "error"),
    [
        ("chain-a-chain-b", ConfigError),
        ("chain-a->", ConfigError),
        ("chain-a->chain-b->chain-a", ConfigError),
        ("chain-a->chain-z", UnknownChainError),
    ],
)
async def test_reconcile_route_refuses_a_route_that_is_not_configured(
    h: Harness, route: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await reconcile_route(h.config, h.ledger, route, 0, h.log)


# --- config ---------------------------------------------------------------------------------


def _config(tmp_path: Path, relayer: str = "", chain_a: str = "") -> Any:
    committee = ", ".join(f'"{a}"' for a in COMMITTEE)
    text = CONFIG.format(committee=committee)
    text = text.replace('checkpoints = "checkpoints"\n', f'checkpoints = "checkpoints"\n{relayer}')
    text = text.replace("domain = 1000\n", f"domain = 1000\n{chain_a}", 1)
    path = tmp_path / "relayer.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, plugin_models={"evm": EvmChainConfig})


def test_a_chains_own_reconcile_settings_override_the_relayers(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        relayer="reconcile_interval = 30.0\nreconcile_window = 500\n",
        chain_a="reconcile_interval = 0.0\n",
    )
    assert reconcile_settings(config, config.chain("chain-a")) == (0.0, 500)
    assert reconcile_settings(config, config.chain("chain-b")) == (30.0, 500)


def test_reconcile_settings_default_to_on(tmp_path: Path) -> None:
    config = _config(tmp_path)
    interval, window = reconcile_settings(config, config.chain("chain-a"))
    assert interval > 0 and window > 0


@pytest.mark.parametrize(
    ("relayer", "chain_a"),
    [
        ('reconcile_interval = "60"\n', ""),
        ("reconcile_interval = true\n", ""),
        ("reconcile_interval = -1.0\n", ""),
        ("reconcile_window = 10.0\n", ""),
        ('reconcile_window = "10"\n', ""),
        ("reconcile_window = 0\n", ""),
        ("", 'reconcile_window = "10"\n'),
        ("", "reconcile_interval = false\n"),
    ],
)
def test_reconcile_settings_of_the_wrong_type_are_refused(
    tmp_path: Path, relayer: str, chain_a: str
) -> None:
    with pytest.raises(ConfigError):
        _config(tmp_path, relayer=relayer, chain_a=chain_a)
