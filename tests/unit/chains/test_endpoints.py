"""The endpoint pool: failover, the quorum rule, and unhealthy / recovered bookkeeping."""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from chains import endpoints
from chains.endpoints import EndpointPool, Endpoints, QuorumError
from relayer.errors import PermanentChainError, TransientChainError
from relayer.metrics import LedgerSnapshot, RelayerMetrics
from relayer.plugin import observing_rpc


@dataclass
class _Fake:
    endpoint: str
    height: int = 100
    hashes: dict[int, str] = field(default_factory=dict)
    down: bool = False
    calls: int = 0

    async def head(self) -> int:
        self.calls += 1
        if self.down:
            raise TransientChainError(f"{self.endpoint}: connection refused")
        return self.height

    async def hash_at(self, number: int) -> str | None:
        self.calls += 1
        if self.down:
            raise TransientChainError(f"{self.endpoint}: connection refused")
        return self.hashes.get(number)


def _pool(*members: _Fake, quorum: int = 1, max_lag: int = 4) -> EndpointPool[_Fake]:
    return EndpointPool(
        members,
        fails_over=lambda exc: isinstance(exc, TransientChainError),
        chain="chain-a",
        quorum=quorum,
        max_lag=max_lag,
    )


def _events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


async def test_a_read_fails_over_past_a_dead_endpoint_and_prefers_it_again_once_recovered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead, alive = _Fake("http://a", down=True), _Fake("http://b")
    pool = _pool(dead, alive)
    with structlog.testing.capture_logs() as logs:
        assert await pool.first(_Fake.head) == 100
        assert await pool.first(_Fake.head) == 100
    assert dead.calls == 1, "a failed endpoint sits out its backoff"
    (down,) = _events(logs, "endpoint.unhealthy")
    assert down["endpoint"] == "http://a" and "connection refused" in down["reason"]
    dead.down = False
    now = endpoints.time.monotonic()
    monkeypatch.setattr(endpoints.time, "monotonic", lambda: now + 60)
    with structlog.testing.capture_logs() as logs:
        await pool.first(_Fake.head)
    assert [e["endpoint"] for e in _events(logs, "endpoint.recovered")] == ["http://a"]
    assert pool.ordered()[0] is dead


async def test_an_answer_is_not_failed_over() -> None:
    async def refused(member: _Fake) -> int:
        raise PermanentChainError("execution reverted")

    pool = _pool(_Fake("http://a"), _Fake("http://b"))
    with pytest.raises(PermanentChainError):
        await pool.first(refused)
    assert all(pool.healthy(m) for m in pool.members)


async def test_quorum_rejects_a_hash_only_one_endpoint_gives() -> None:
    honest, liar = _Fake("http://a", hashes={5: "0xaa"}), _Fake("http://b", hashes={5: "0xbb"})
    pool = _pool(honest, liar, quorum=2)
    with pytest.raises(QuorumError, match="no 2 endpoints agree on block 5"):
        await pool.agreed(lambda m: m.hash_at(5), key=str, what="block 5")


async def test_quorum_accepts_the_agreed_hash_and_marks_the_liar_unhealthy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = _Fake("http://a", hashes={5: "0xaa"}), _Fake("http://b", hashes={5: "0xaa"})
    liar = _Fake("http://liar", hashes={5: "0xbb"})
    pool = _pool(liar, a, b, quorum=2)
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            assert await pool.agreed(lambda m: m.hash_at(5), key=str, what="block 5") == "0xaa"
    (event,) = _events(logs, "endpoint.unhealthy")  # once, however often it lies
    assert event["endpoint"] == "http://liar" and "0xbb" in event["reason"]
    assert pool.ordered()[-1] is liar, "reads prefer endpoints that agree"
    liar.hashes[5] = "0xaa"
    with structlog.testing.capture_logs() as logs:
        await pool.agreed(lambda m: m.hash_at(5), key=str, what="block 5")
    assert not _events(logs, "endpoint.recovered"), "not before its cooldown"
    now = endpoints.time.monotonic()
    monkeypatch.setattr(endpoints.time, "monotonic", lambda: now + 60)
    with structlog.testing.capture_logs() as logs:
        await pool.agreed(lambda m: m.hash_at(5), key=str, what="block 5")
    assert [e["endpoint"] for e in _events(logs, "endpoint.recovered")] == ["http://liar"]


async def test_a_block_nobody_has_is_none_but_one_only_some_have_is_not_agreed() -> None:
    a, b = _Fake("http://a"), _Fake("http://b")
    pool = _pool(a, b, quorum=2)
    assert await pool.agreed(lambda m: m.hash_at(9), key=str, what="block 9") is None
    a.hashes[9] = "0xaa"
    with pytest.raises(QuorumError):
        await pool.agreed(lambda m: m.hash_at(9), key=str, what="block 9")
    assert all(pool.healthy(m) for m in pool.members), "not having it yet is no lie"


async def test_head_is_what_quorum_endpoints_reached_and_a_laggard_is_marked() -> None:
    high, mid, low = _Fake("http://a", 1000), _Fake("http://b", 998), _Fake("http://c", 900)
    pool = _pool(high, mid, low, quorum=2, max_lag=4)
    with structlog.testing.capture_logs() as logs:
        assert await pool.reached(_Fake.head, what="head") == 998
    (event,) = _events(logs, "endpoint.unhealthy")
    assert event["endpoint"] == "http://c" and "98 behind" in event["reason"]


async def test_one_endpoint_claiming_a_far_head_cannot_move_the_agreed_head() -> None:
    liar, a, b = _Fake("http://liar", 10**9), _Fake("http://a", 50), _Fake("http://b", 50)
    pool = _pool(liar, a, b, quorum=2)
    assert await pool.reached(_Fake.head, what="head") == 50
    assert pool.healthy(a) and pool.healthy(b)


async def test_quorum_is_not_met_with_one_endpoint_down() -> None:
    pool = _pool(_Fake("http://a"), _Fake("http://b", down=True), quorum=2)
    with pytest.raises(QuorumError, match="1 endpoint"):
        await pool.reached(_Fake.head, what="head")


def test_quorum_above_the_endpoint_count_is_refused() -> None:
    with pytest.raises(ValueError, match="quorum = 3"):
        _pool(_Fake("http://a"), _Fake("http://b"), quorum=3)


def test_endpoints_are_a_string_of_the_first_and_survive_a_copy() -> None:
    value = Endpoints(["http://a", "http://b"])
    assert value == "http://a"
    assert pickle.loads(pickle.dumps(value)).urls == ("http://a", "http://b")
    assert copy.deepcopy(value).urls == value.urls


async def test_every_endpoint_failing_is_one_retryable_error_naming_each() -> None:
    pool = _pool(_Fake("http://a", down=True), _Fake("http://b", down=True))
    with pytest.raises(endpoints.EndpointsFailedError) as raised:
        await pool.first(_Fake.head)
    assert raised.value.retryable
    assert str(raised.value).startswith(
        "chain `chain-a`: all 2 endpoints failed (http://a, http://b); check that they are up"
    )
    assert "http://b: TransientChainError: http://b: connection refused" in str(raised.value)


async def test_one_endpoint_failing_keeps_its_own_error() -> None:
    pool = _pool(_Fake("http://a", down=True))
    with pytest.raises(TransientChainError) as raised:
        await pool.first(_Fake.head)
    assert type(raised.value) is TransientChainError


async def test_endpoints_that_all_fail_for_good_keep_the_permanent_error() -> None:
    async def wrong_chain(member: _Fake) -> int:
        raise PermanentChainError(f"{member.endpoint} serves another chain")

    pool = EndpointPool(
        [_Fake("http://a"), _Fake("http://b")],
        fails_over=lambda exc: isinstance(exc, TransientChainError | PermanentChainError),
        chain="chain-a",
    )
    with pytest.raises(PermanentChainError, match="http://b serves another chain"):
        await pool.first(wrong_chain)


async def test_health_lists_each_endpoint_with_its_reason_until_it_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead, alive = _Fake("http://a", down=True), _Fake("http://b")
    pool = _pool(dead, alive)
    assert [(h.endpoint, h.healthy) for h in pool.health()] == [
        ("http://a", True),
        ("http://b", True),
    ]
    await pool.first(_Fake.head)
    down, up = pool.health()
    assert not down.healthy and down.failures == 1 and 0 < down.retry_in <= 30
    assert down.reason is not None and "connection refused" in down.reason
    assert up.healthy and up.reason is None and up.retry_in == 0
    dead.down = False
    now = endpoints.time.monotonic()
    monkeypatch.setattr(endpoints.time, "monotonic", lambda: now + 60)
    await pool.first(_Fake.head)
    assert all(h.healthy and h.failures == 0 for h in pool.health())


async def test_the_daemons_gauge_and_readyz_follow_each_endpoints_health() -> None:
    metrics = RelayerMetrics()
    with observing_rpc(metrics):
        dead, alive = _Fake("http://a", down=True), _Fake("http://b")
        pool = _pool(dead, alive)

        def gauge() -> dict[str, float]:
            text = metrics.exposition(LedgerSnapshot()).decode()
            return {
                sample.labels["endpoint"]: sample.value
                for family in text_string_to_metric_families(text)
                if family.name == "relayer_rpc_endpoint_healthy"
                for sample in family.samples
                if sample.labels["chain"] == "chain-a"
            }

        assert gauge() == {"http://a": 1.0, "http://b": 1.0}  # shown from the start
        assert await pool.first(_Fake.head) == 100
        assert gauge() == {"http://a": 0.0, "http://b": 1.0}
        assert metrics.ready(LedgerSnapshot()) == []  # failover covers a partial loss

        alive.down = True
        with pytest.raises(TransientChainError):
            await pool.first(_Fake.head)
        assert gauge() == {"http://a": 0.0, "http://b": 0.0}
        [problem] = metrics.ready(LedgerSnapshot())
        assert problem["check"] == "endpoints"
        assert "every endpoint of chain-a is unhealthy" in problem["reason"]
        assert "http://a (" in problem["reason"] and "http://b (" in problem["reason"]

        # Another pool of the chain (a submitter's) finding b fine does not hide the reader's
        # verdict: b is healthy only once no pool has it marked.
        other = _pool(_Fake("http://b"))
        assert gauge()["http://b"] == 0.0
        del other

        alive.down = dead.down = False
        for state in pool._state.values():
            state.down_until = 0.0
        assert await pool.first(_Fake.head) == 100
        assert gauge()["http://a"] == 1.0
        assert metrics.ready(LedgerSnapshot()) == []
