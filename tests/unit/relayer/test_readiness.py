"""relayer.readiness (what /readyz answers) and the follower's head-subscription watchdog."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from relayer.config import load_config
from relayer.errors import ConfigError
from relayer.follower import Follower
from relayer.metrics import LedgerSnapshot, RelayerMetrics
from relayer.readiness import Backlog, Balances, ChainHeads, ChainLimits, problems

EXAMPLE_CONFIG = Path(__file__).resolve().parents[3] / "config.toml"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _problems(
    heads: ChainHeads,
    *,
    balances: Balances | None = None,
    backlog: dict[str, Backlog] | None = None,
    slo: float = 0.0,
    limit: ChainLimits | None = None,
) -> list[tuple[str, str]]:
    found = problems(
        heads=heads,
        balances=balances or Balances(),
        limits={"a": limit or ChainLimits(block_time=2.0, stall_after_blocks=5, min_balance=None)},
        backlog=backlog or {},
        backlog_slo=slo,
        now=5000.0,
    )
    return [(p.check, p.subject) for p in found]


def test_a_head_that_stops_advancing_is_a_problem_until_it_moves_again() -> None:
    clock = Clock()
    heads = ChainHeads(["a"], clock=clock)
    heads.seen("a", 7)
    clock.now += 10.0  # 5 block times of 2 s: the limit itself is still fine
    assert _problems(heads) == []
    clock.now += 0.5
    assert _problems(heads) == [("head", "a")]
    assert not heads.seen("a", 7), "the same head again is no progress"
    assert _problems(heads) == [("head", "a")]
    assert heads.seen("a", 8)
    assert _problems(heads) == []


def test_a_chain_never_heard_from_is_stalled_from_the_start() -> None:
    clock = Clock()
    heads = ChainHeads(["a"], clock=clock)
    clock.now += 11.0
    found = problems(
        heads=heads,
        balances=Balances(),
        limits={"a": ChainLimits(block_time=2.0, stall_after_blocks=5, min_balance=None)},
        backlog={},
        backlog_slo=0,
        now=0,
    )
    assert len(found) == 1
    assert "no head seen yet" in found[0].reason


def test_a_chain_without_block_time_has_no_head_check() -> None:
    clock = Clock()
    heads = ChainHeads(["a"], clock=clock)
    clock.now += 1e6
    limit = ChainLimits(block_time=None, stall_after_blocks=5, min_balance=None)
    assert _problems(heads, limit=limit) == []


def test_a_balance_below_its_floor_is_a_problem_and_an_unknown_one_is_not() -> None:
    heads = ChainHeads([])
    limit = ChainLimits(block_time=None, stall_after_blocks=5, min_balance=1000)
    balances = Balances()
    assert _problems(heads, balances=balances, limit=limit) == []
    balances.seen("a", "0xabc", 999, "wei")
    assert _problems(heads, balances=balances, limit=limit) == [("balance", "a")]
    balances.seen("a", "0xabc", 1000, "wei")
    assert _problems(heads, balances=balances, limit=limit) == []


def test_a_backlog_older_than_its_slo_is_a_problem_per_route() -> None:
    heads = ChainHeads([])
    limit = ChainLimits(block_time=None, stall_after_blocks=5, min_balance=None)
    backlog = {
        "a->b": Backlog(size=3, oldest_at=5000.0 - 61),
        "b->a": Backlog(size=1, oldest_at=5000.0 - 59),
        "a->c": Backlog(size=0, oldest_at=None),
    }
    assert _problems(heads, backlog=backlog, slo=60.0, limit=limit) == [("backlog", "a->b")]
    assert _problems(heads, backlog=backlog, slo=0.0, limit=limit) == [], "0 turns it off"


def test_readiness_comes_from_the_config_of_every_chain() -> None:
    metrics = RelayerMetrics(
        limits={"a": ChainLimits(block_time=1.0, stall_after_blocks=1, min_balance=None)}
    )
    metrics.heads = ChainHeads(["a"], clock=lambda: 0.0)
    metrics.head_seen("a", 3)
    assert metrics.ready(LedgerSnapshot()) == []


# --- the head-subscription watchdog --------------------------------------------------------------


class SilentStream:
    """A reader whose head subscription says nothing until told to."""

    endpoint = "memory://chain"
    poll_interval = 0.01

    def __init__(self) -> None:
        self.idle = 0.0
        self.restarts = 0

    def head_stream_idle(self) -> float | None:
        return self.idle

    def restart_head_stream(self) -> None:
        self.restarts += 1
        self.idle = 0.0


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def bind(self, **_: Any) -> Log:
        return self

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.events.append((level, event, kw))


async def test_the_watchdog_restarts_a_silent_head_stream_counts_it_and_logs_once() -> None:
    stream = SilentStream()
    log = Log()
    metrics = RelayerMetrics()
    follower = Follower(
        chain="a",
        reader=stream,  # type: ignore[arg-type]
        cursor=None,  # type: ignore[arg-type]
        log=log,
        metrics=metrics,
        block_time=0.1,
        stall_after_blocks=2,
    )
    task = asyncio.create_task(follower.watchdog(0.2))
    try:
        stream.idle = 5.0  # silent far beyond the threshold
        while stream.restarts < 1:
            await asyncio.sleep(0.01)
        stream.idle = 5.0  # still silent after the restart
        while stream.restarts < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        stream.idle = 0.0  # a head arrived
        while not any(e == "heads.stream_recovered" for _, e, _ in log.events):
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    restarted = [
        (level, kw) for level, event, kw in log.events if event == "heads.stream_restarted"
    ]
    assert [level for level, _ in restarted] == ["warning", "debug"], "an outage is said once"
    assert restarted[0][1]["threshold_s"] == 0.2
    text = metrics.exposition(LedgerSnapshot()).decode()
    (family,) = [
        f for f in text_string_to_metric_families(text) if f.name == "relayer_stream_reconnects"
    ]
    assert [(s.labels, s.value) for s in family.samples if s.name.endswith("_total")] == [
        ({"chain": "a"}, 2.0)
    ]


def test_the_readiness_settings_load_from_the_example_config() -> None:
    config = load_config(EXAMPLE_CONFIG, env={})
    metrics = RelayerMetrics.for_config(config)
    assert metrics.limits["chain-a"] == ChainLimits(
        block_time=1.0, stall_after_blocks=10, min_balance=10**17
    )
    assert metrics.limits["dot-a"].block_time is None
    assert metrics.backlog_slo == config.relayer.backlog_slo == 600.0
    assert config.relayer.balance_interval == 60.0


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("block_time", '"1.0"', "not a string"),
        ("block_time", "0", "greater than 0"),
        ("stall_after_blocks", "2.5", "integer"),
        ("min_balance", "-1", "greater than or equal to 0"),
        ("min_balance", '"100"', "not a string"),
    ],
)
def test_a_readiness_setting_of_the_wrong_type_or_range_is_refused_naming_it(
    tmp_path: Path, key: str, value: str, why: str
) -> None:
    text = EXAMPLE_CONFIG.read_text().replace(
        'finality = "sync-committee"', f'finality = "sync-committee"\n{key} = {value}', 1
    )
    text = text.replace("block_time = 1.0 ", "", 1).replace("stall_after_blocks = 10 ", "", 1)
    text = text.replace("min_balance = 100000000000000000 ", "", 1)
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert f'chains[name="chain-a"].{key}' in str(info.value)
    assert why in str(info.value)
