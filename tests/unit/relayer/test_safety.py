"""relayer.safety: the token bucket, the sliding fee window, the route limits in the config,
allowlist refusals in the core, and the circuit breaker pausing routes in a real ledger."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from chains.evm.config import EvmChainConfig
from relayer.checkpoints import DirectoryCheckpointStore
from relayer.config import Config, ConfigRefusedError, load_config
from relayer.core import Core
from relayer.errors import ConfigError
from relayer.metrics import RelayerMetrics, metrics_text
from relayer.safety import FeeWindow, Safety, TokenBucket
from relayer.store import Ledger, State
from tests.unit.relayer.test_core import COMMITTEE, CONFIG, RecordingLog, genuine, make_id

SENDER = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"  # the sender of genuine()'s messages


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the token bucket --------------------------------------------------------------------------


def test_a_bucket_lets_a_burst_through_then_paces_at_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(5.0, 3, clock=clock)
    assert bucket.take(10) == 3
    assert bucket.take(1) == 0
    assert bucket.wait() == pytest.approx(0.2)
    clock.now += 0.1
    assert bucket.take(1) == 0
    clock.now += 0.1
    assert bucket.take(5) == 1
    clock.now += 100
    assert bucket.available() == 3, "never more than its burst"
    assert bucket.wait() == 0.0


def test_a_bucket_refuses_a_rate_of_zero() -> None:
    with pytest.raises(ValueError, match="rate above 0"):
        TokenBucket(0.0, 1)


# --- the fee window ----------------------------------------------------------------------------


def test_fees_count_for_an_hour_and_the_budget_has_room_when_the_oldest_expire() -> None:
    clock = Clock()
    window = FeeWindow(100, signer="0xabc", unit="wei", clock=clock)
    window.add(60)
    clock.now += 1000
    window.add(50)
    assert window.spent() == 110
    assert window.exhausted()
    # Room once the first 60 leave the window: 3600 s after they were paid.
    assert window.room_in() == pytest.approx(2600)
    clock.now += 2600
    assert window.spent() == 50
    assert not window.exhausted()
    assert window.room_in() == 0.0
    clock.now += 1000
    assert window.spent() == 0


def test_a_fee_window_ignores_what_cost_nothing() -> None:
    window = FeeWindow(1, signer="0xabc", unit="wei")
    window.add(0)
    assert window.spent() == 0
    assert not window.exhausted()


def test_a_restored_window_counts_each_fee_from_when_it_was_paid() -> None:
    clock = Clock()  # monotonic: unrelated to the wall clock the ledger's times are on
    window = FeeWindow(100, signer="0xabc", unit="wei", clock=clock)
    wall_now = 1_700_000_000.0
    # Paid 3000 s and 600 s ago, and one from before the hour that the window leaves out.
    window.restore(
        [(wall_now - 4000, 500), (wall_now - 3000, 60), (wall_now - 600, 50)], now=wall_now
    )
    assert window.spent() == 110
    assert window.room_in() == pytest.approx(600), "the 60 leave the hour 600 s from now"
    window.add(5)
    clock.now += 600
    assert window.spent() == 55
    clock.now += 2400
    assert window.spent() == 5, "the restored fees expired, the one paid here did not"


def test_a_fee_stamped_ahead_of_the_clock_counts_as_paid_now() -> None:
    clock = Clock()
    window = FeeWindow(100, signer="0xabc", unit="wei", clock=clock)
    # The key's previous holder ran on a host whose clock was ahead of this one's.
    window.restore([(2_000.0 + 900, 100)], now=2_000.0)
    assert window.exhausted()
    assert window.room_in() == pytest.approx(3600), "no longer than a fee paid now"


# --- the config --------------------------------------------------------------------------------

ROUTE = 'routes."chain-a->chain-b"'


def _config(tmp_path: Path, extra: str = "", chain_extra: str = "") -> Config:
    path = tmp_path / "relayer.toml"
    committee = ", ".join(f'"{a}"' for a in COMMITTEE)
    text = CONFIG.format(committee=committee)
    if chain_extra:
        text = text.replace('name = "chain-b"\n', f'name = "chain-b"\n{chain_extra}\n')
    path.write_text(text + extra, encoding="utf-8")
    return load_config(path, plugin_models={"evm": EvmChainConfig})


def _problems(tmp_path: Path, extra: str = "", chain_extra: str = "") -> list[str]:
    with pytest.raises(ConfigRefusedError) as refused:
        _config(tmp_path, extra, chain_extra)
    return list(refused.value.problems)


def test_a_route_table_holds_allowlists_limits_and_the_breaker(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        f"""
[{ROUTE}]
senders = ["{SENDER.upper().replace("0X", "0x")}", "0x01"]
recipients = ["0x{"ab" * 32}"]
rate_limit = 2.5
pause_after_rejections = 3
""",
        chain_extra="fee_budget_per_hour = 1000000",
    )
    route = config.route("chain-a->chain-b")
    assert route.senders == ("0x" + "00" * 12 + SENDER[2:], "0x" + "00" * 31 + "01")
    assert route.recipients == ("0x" + "ab" * 32,)
    assert (route.rate_limit, route.bucket_size, route.pause_after_rejections) == (2.5, 3, 3)
    assert config.chain("chain-b").fee_budget_per_hour == 1000000
    # A route without a table has the defaults.
    other = config.route("chain-b->chain-a")
    assert (other.senders, other.rate_limit, other.pause_after_rejections) == ((), None, 10)
    assert config.route_names == ["chain-a->chain-b", "chain-b->chain-a"]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("senders", '"0x01"', "must be an array, not a string"),
        ("senders", '["0x1"]', "must be 0x and an even number of hex digits"),
        ("senders", f'["0x{"00" * 33}"]', "at most 64 (32 bytes)"),
        ("recipients", "[1]", "must be 0x and an even number of hex digits"),
        ("rate_limit", '"5"', "must be a number, not a string"),
        ("rate_limit", "0.0", "greater than 0"),
        ("burst", "1.5", "must be an integer, not a float"),
        ("burst", "0", "greater than 0"),
        ("pause_after_rejections", "true", "must be an integer, not a boolean"),
        ("pause_after_rejections", "-1", "greater than or equal to 0"),
        ("pause_after", "3", "unknown key; did you mean 'pause_after_rejections'?"),
    ],
)
def test_each_route_key_refuses_a_wrong_value_naming_it(
    tmp_path: Path, key: str, value: str, expected: str
) -> None:
    (problem,) = _problems(tmp_path, f"\n[{ROUTE}]\n{key} = {value}\n")
    assert problem.startswith(f"{ROUTE}.{key}"), problem
    assert expected in problem, problem


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("chain-a->chain-x", "unknown chain 'chain-x' (configured chains: chain-a, chain-b)"),
        ("chain-y->chain-b", "unknown chain 'chain-y'"),
        ("chain-a->chain-a", "origin and destination are the same chain"),
        ("chain-a=>chain-b", 'a route is written "origin->destination"'),
    ],
)
def test_a_route_key_must_name_two_configured_chains(
    tmp_path: Path, name: str, expected: str
) -> None:
    (problem,) = _problems(tmp_path, f'\n[routes."{name}"]\nrate_limit = 1.0\n')
    assert problem.startswith(f'routes."{name}": {expected}'), problem


def test_routes_must_be_tables(tmp_path: Path) -> None:
    path = tmp_path / "top.toml"
    committee = ", ".join(f'"{a}"' for a in COMMITTEE)
    path.write_text("routes = 3\n" + CONFIG.format(committee=committee), encoding="utf-8")
    with pytest.raises(ConfigRefusedError) as refused:
        load_config(path, plugin_models={"evm": EvmChainConfig})
    assert list(refused.value.problems) == [
        'routes: expected [routes."origin->destination"] tables'
    ]
    assert _problems(tmp_path, '\n[routes]\n"chain-a->chain-b" = 3\n') == [
        f"{ROUTE}: expected a table"
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1.5", "must be an integer, not a float"), ("0", "greater than 0"), ('"1"', "string")],
)
def test_a_fee_budget_is_a_positive_integer(tmp_path: Path, value: str, expected: str) -> None:
    (problem,) = _problems(tmp_path, chain_extra=f"fee_budget_per_hour = {value}")
    assert problem.startswith('chains[name="chain-b"].fee_budget_per_hour: '), problem
    assert expected in problem


def test_check_route_says_what_is_wrong(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert config.check_route("chain-b->chain-a") == ("chain-b", "chain-a")
    with pytest.raises(ConfigError, match="unknown chain 'nope'"):
        config.check_route("chain-a->nope")


# --- the core: allowlists and the breaker ------------------------------------------------------


class Setup:
    def __init__(self, tmp_path: Path, routes: str = "") -> None:
        self.config = _config(tmp_path, routes)
        self.ledger = Ledger.open(self.config.relayer.database)
        self.log = RecordingLog()
        self.metrics = RelayerMetrics()
        self.safety = Safety(
            self.config, self.ledger, metrics=self.metrics, log=self.log, by="relayer@test"
        )
        store = DirectoryCheckpointStore(self.config.relayer.checkpoints)
        self.core = Core(
            self.config, self.ledger, store, self.log, metrics=self.metrics, safety=self.safety
        )

    def metric(self, name: str, **labels: str) -> float:
        text = metrics_text(self.ledger, self.metrics)
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture
def setup_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Setup] = []

    def make(routes: str = "") -> Setup:
        setup = Setup(tmp_path / str(len(made)), routes)
        made.append(setup)
        return setup

    for i in range(3):
        (tmp_path / str(i)).mkdir()
    try:
        yield make
    finally:
        for setup in made:
            setup.ledger.close()


async def test_a_sender_off_the_allowlist_is_rejected_naming_it_and_never_trips_the_breaker(
    setup_factory: Any,
) -> None:
    s = setup_factory(f'\n[{ROUTE}]\nsenders = ["0x{"11" * 20}"]\npause_after_rejections = 1\n')
    observations = genuine()
    await s.core.accept(observations)
    for obs in observations:
        record = s.ledger.get(make_id(obs.message))
        assert record is not None
        assert record.state is State.REJECTED
        assert record.last_error is not None
        assert "is not on the senders allowlist of route chain-a->chain-b" in record.last_error
    assert len(s.log.named("message.refused")) == 3
    assert s.log.named("message.refused")[0]["rule"] == "sender"
    assert s.log.named("proof.rejected") == []
    assert s.metric("relayer_policy_refused_total", route="chain-a->chain-b", rule="sender") == 3
    assert s.metric("relayer_proof_failures_total") == 0
    assert s.ledger.paused_routes() == {}


async def test_a_recipient_off_the_allowlist_is_refused_and_one_on_it_verified(
    setup_factory: Any,
) -> None:
    refusing = setup_factory(f'\n[{ROUTE}]\nrecipients = ["0x{"11" * 32}"]\n')
    await refusing.core.accept(genuine())
    assert refusing.ledger.counts() == {("chain-a->chain-b", State.REJECTED): 3}
    assert refusing.log.named("message.refused")[0]["rule"] == "recipient"
    allowing = setup_factory(f'\n[{ROUTE}]\nsenders = ["{SENDER}"]\n')
    await allowing.core.accept(genuine())
    assert allowing.ledger.counts() == {("chain-a->chain-b", State.VERIFIED): 3}


async def test_verification_failures_in_a_row_pause_the_route_and_a_success_resets_them(
    setup_factory: Any,
) -> None:
    s = setup_factory(f"\n[{ROUTE}]\npause_after_rejections = 3\n")
    good, source, _ = genuine()

    def forged(n: int) -> Any:
        # Another block number than the evidence proves: the origin plugin refuses it.
        return msgspec.structs.replace(source, block_number=source.block_number + n)

    await s.core.accept([forged(1)])
    await s.core.accept([forged(2)])
    await s.core.accept([good])  # a verified message ends the streak
    await s.core.accept([forged(3)])
    await s.core.accept([forged(4)])
    assert s.ledger.paused_routes() == {}
    await s.core.accept([forged(5)])
    pause = s.ledger.paused_routes()["chain-a->chain-b"]
    assert pause.paused_by == "relayer@test"
    assert "3 verification failures in a row" in pause.reason
    (logged,) = s.log.named("route.paused")
    assert logged["hint"] == "resume with: relayer route resume chain-a->chain-b"
    assert s.metric("relayer_breaker_trips_total", reason="rejections") == 1
    assert s.metric("relayer_route_paused", route="chain-a->chain-b") == 1
    assert s.metric("relayer_route_paused", route="chain-b->chain-a") == 0
    assert s.safety.skip_routes("chain-b") == {"chain-a->chain-b"}
    # The pause shows in /readyz, naming the way out.
    problems = s.metrics.ready(_snapshot(s))
    assert [(p["check"], p["subject"]) for p in problems] == [("paused", "chain-a->chain-b")]
    assert "relayer route resume chain-a->chain-b" in problems[0]["reason"]


def _snapshot(s: Setup) -> Any:
    from relayer.metrics import LedgerSnapshot  # noqa: PLC0415

    return LedgerSnapshot.read(s.ledger)


async def test_a_breaker_set_to_zero_never_pauses(setup_factory: Any) -> None:
    s = setup_factory(f"\n[{ROUTE}]\npause_after_rejections = 0\n")
    for _ in range(20):
        await s.safety.rejected("chain-a->chain-b", "forged")
    assert s.ledger.paused_routes() == {}


async def test_read_failures_of_an_origin_pause_every_route_out_of_it(setup_factory: Any) -> None:
    s = setup_factory(f"\n[{ROUTE}]\npause_after_rejections = 2\n")
    s.metrics.add_proof_listener(
        lambda chain, stage, reason: (
            s.safety.read_failed(chain, reason) if stage == "read" else None
        )
    )
    s.metrics.proof_rejected("chain-a", "read", "ReceiptProofError")
    s.metrics.proof_rejected("chain-a", "verify", "not counted here")  # the core counts those
    assert s.ledger.paused_routes() == {}
    s.metrics.proof_rejected("chain-a", "read", "ReceiptProofError")
    for task in list(s.safety._tasks):
        await task
    assert set(s.ledger.paused_routes()) == {"chain-a->chain-b"}
    reason = s.ledger.paused_routes()["chain-a->chain-b"].reason
    assert "2 answers in a row from an endpoint of chain-a did not verify" in reason
    assert s.metric("relayer_breaker_trips_total", reason="read_failures") == 1


async def test_a_foreign_transaction_pauses_every_route_into_the_chain(setup_factory: Any) -> None:
    s = setup_factory()
    await s.safety.foreign_transaction("chain-b", "our key sent what we did not")
    assert set(s.ledger.paused_routes()) == {"chain-a->chain-b"}
    assert s.metric("relayer_breaker_trips_total", reason="foreign_transaction") == 1
    # Once: already paused, it is not paused (nor counted) again.
    await s.safety.foreign_transaction("chain-b", "again")
    assert s.metric("relayer_breaker_trips_total", reason="foreign_transaction") == 1


async def test_pauses_and_resumes_of_other_processes_are_seen_and_logged_once(
    setup_factory: Any,
) -> None:
    s = setup_factory()
    s.ledger.pause_route("chain-b->chain-a", reason="maintenance", by="cli:ops@host")
    await s.safety.refresh()
    await s.safety.refresh()
    (logged,) = s.log.named("route.paused")
    assert logged["by"] == "cli:ops@host"
    assert s.safety.skip_routes("chain-a") == {"chain-b->chain-a"}
    s.ledger.resume_route("chain-b->chain-a")
    await s.safety.refresh()
    assert s.log.named("route.resumed") == [{"route": "chain-b->chain-a"}]
    assert s.safety.skip_routes("chain-a") == set()


async def test_rate_limits_admit_what_the_bucket_holds_and_count_the_rest(
    setup_factory: Any,
) -> None:
    s = setup_factory(f"\n[{ROUTE}]\nrate_limit = 1.0\nburst = 2\n")
    await s.core.accept(genuine())
    records = s.ledger.in_state(State.VERIFIED)
    admitted, held = s.safety.admit(records)
    assert [r.id for r in admitted] == [r.id for r in records[:2]]
    assert [r.id for r in held] == [records[2].id]
    assert s.metric("relayer_rate_limited_total", route="chain-a->chain-b") == 1
    # Empty now: the route is not even claimed until a token is back.
    assert s.safety.skip_routes("chain-b") == {"chain-a->chain-b"}
    assert 0 < (s.safety.next_token("chain-b") or 0) <= 1.0
    assert s.safety.next_token("chain-a") is None


def test_a_spent_fee_budget_shows_in_the_metrics_and_turns_readyz_unready(
    setup_factory: Any,
) -> None:
    s = setup_factory()
    clock = Clock()
    window = FeeWindow(100, signer="0xabc", unit="wei", clock=clock)
    s.metrics.spending["chain-b"] = window
    window.add(40)
    assert s.metrics.ready(_snapshot(s)) == []
    assert s.metric("relayer_fee_spent_last_hour", chain="chain-b", signer="0xabc") == 40
    assert s.metric("relayer_fee_budget_exhausted", chain="chain-b") == 0
    window.add(60)
    (problem,) = s.metrics.ready(_snapshot(s))
    assert (problem["check"], problem["subject"]) == ("fee_budget", "chain-b")
    assert 'chains[name="chain-b"].fee_budget_per_hour' in problem["reason"]
    assert s.metric("relayer_fee_budget_exhausted", chain="chain-b") == 1
    clock.now += 3600
    assert s.metrics.ready(_snapshot(s)) == []


def test_a_worker_registers_its_fee_window_only_for_a_chain_with_a_budget(tmp_path: Path) -> None:
    config = _config(tmp_path, chain_extra="fee_budget_per_hour = 5")
    metrics = RelayerMetrics()
    with Ledger.open(config.relayer.database) as ledger:
        safety = Safety(config, ledger, metrics=metrics, log=RecordingLog(), by="test")
        assert safety.fee_window("chain-a", signer="0xa", unit="wei") is None
        window = safety.fee_window("chain-b", signer="0xb", unit="wei")
    assert window is not None
    assert window.budget == 5
    assert metrics.spending == {"chain-b": window}


async def test_a_full_bucket_is_no_reason_to_wake_the_worker_early(setup_factory: Any) -> None:
    s = setup_factory(f"\n[{ROUTE}]\nrate_limit = 1.0\n")
    # A limited route with nothing to send: the worker idles its whole poll interval rather
    # than spinning on a claim that finds nothing.
    assert s.safety.next_token("chain-b") is None
