"""relayer.retry: what is transient, backoff bounds, the tenacity policy."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable

import aiohttp
import pytest
import structlog
import yarl
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from structlog.testing import capture_logs
from tenacity import wait_exponential_jitter
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response

from relayer.errors import (
    ConfigError,
    EvidenceRejectedError,
    PermanentChainError,
    StoreError,
    TransientChainError,
)
from relayer.retry import (
    backoff_delay,
    classify,
    describe_error,
    is_transient,
    retrying_transient,
)


def _response_error(status: int) -> aiohttp.ClientResponseError:
    url = yarl.URL("https://rpc.example")
    info = aiohttp.RequestInfo(url, "POST", CIMultiDictProxy(CIMultiDict()), url)
    return aiohttp.ClientResponseError(info, (), status=status, message="status")


class _PermanentRpcError(TransientChainError):
    """Like chains.evm.rpc.RpcError: retryable decided per instance."""

    def __init__(self) -> None:
        super().__init__("execution reverted")
        self.retryable = False


TRANSIENT: list[BaseException] = [
    TransientChainError("endpoint timed out"),
    TimeoutError(),  # asyncio.TimeoutError is this class since 3.11
    ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
    ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    BrokenPipeError(errno.EPIPE, "Broken pipe"),
    OSError(errno.ECONNREFUSED, "Connection refused"),
    OSError(errno.EHOSTUNREACH, "No route to host"),
    OSError("Multiple exceptions: [Errno 111] Connect call failed ('127.0.0.1', 8545)"),
    socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
    aiohttp.ClientConnectionError("connection lost"),
    aiohttp.ClientOSError(errno.ECONNRESET, "reset"),
    aiohttp.ServerDisconnectedError(),
    aiohttp.ServerTimeoutError("read timeout"),
    aiohttp.ClientPayloadError("response payload is not completed"),
    _response_error(429),
    _response_error(503),
    ConnectionClosedError(Close(1006, ""), None),
    ConnectionClosedOK(Close(1000, ""), None),
    InvalidStatus(Response(429, "Too Many Requests", Headers())),
]

PERMANENT: list[BaseException] = [
    PermanentChainError("wrong chain id"),
    _PermanentRpcError(),
    StoreError("illegal transition"),
    ConfigError("threshold 0"),
    EvidenceRejectedError("header hash mismatch"),
    FileNotFoundError(errno.ENOENT, "No such file"),
    PermissionError(errno.EACCES, "Permission denied"),
    OSError("disk quota"),
    socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
    _response_error(400),
    _response_error(401),
    InvalidStatus(Response(403, "Forbidden", Headers())),
    # What a chain's node says is the chain family's to read; unread, it is not retried.
    RuntimeError("429 Too Many Requests"),
    ValueError("bad hex"),
    KeyError("result"),
    asyncio.CancelledError(),
    KeyboardInterrupt(),
]


@pytest.mark.parametrize("exc", TRANSIENT, ids=repr)
def test_transient_failures_are_retried(exc: BaseException) -> None:
    assert classify(exc) == "transient"
    assert is_transient(exc)


@pytest.mark.parametrize("exc", PERMANENT, ids=repr)
def test_permanent_failures_are_not_retried(exc: BaseException) -> None:
    assert classify(exc) == "permanent"
    assert not is_transient(exc)


# --- backoff --------------------------------------------------------------------------------------


def _fixed(value: float) -> Callable[[], float]:
    return lambda: value


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (9, 128.0, 256.0), (10, 150.0, 300.0)],
)
def test_backoff_doubles_from_base_with_jitter_in_the_upper_half(
    attempt: int, low: float, high: float
) -> None:
    assert backoff_delay(attempt, rng=_fixed(0.0)) == low
    assert backoff_delay(attempt, rng=_fixed(1.0)) == high
    assert low < backoff_delay(attempt, rng=_fixed(0.5)) < high


def test_backoff_is_capped_and_never_overflows() -> None:
    assert backoff_delay(60, rng=_fixed(1.0)) == 300.0
    assert backoff_delay(100_000, base=2.0, cap=10.0, rng=_fixed(1.0)) == 10.0
    assert backoff_delay(1, base=5.0, cap=2.0, rng=_fixed(1.0)) == 2.0


def test_backoff_treats_attempt_zero_as_the_first_and_refuses_negative_bounds() -> None:
    assert backoff_delay(0, rng=_fixed(1.0)) == backoff_delay(1, rng=_fixed(1.0))
    with pytest.raises(ValueError, match="negative"):
        backoff_delay(1, base=-1.0)
    with pytest.raises(ValueError, match="negative"):
        backoff_delay(1, cap=-1.0)


@given(
    attempt=st.integers(min_value=-10, max_value=100_000),
    base=st.floats(min_value=0, max_value=1e9),
    cap=st.floats(min_value=0, max_value=1e9),
    draw=st.floats(min_value=0, max_value=1),
)
def test_backoff_is_always_between_zero_and_the_cap(
    attempt: int, base: float, cap: float, draw: float
) -> None:
    delay = backoff_delay(attempt, base=base, cap=cap, rng=_fixed(draw))
    exponent = max(attempt, 1) - 1
    try:
        ceiling = min(cap, base * 2.0**exponent)
    except OverflowError:  # 2.0**exponent past the float range: the cap, whatever the base
        ceiling = cap
    assert 0.0 <= delay <= cap
    assert ceiling / 2 <= delay <= ceiling


# --- tenacity policy ------------------------------------------------------------------------------


def test_describe_error_keeps_no_secret_from_endpoint_urls() -> None:
    exc = aiohttp.ClientConnectionError(
        "cannot reach https://user:hunter2@mainnet.example.io/v3/SECRETKEY?apikey=abc and "
        "wss://node.example:8546/ws/KEY2"
    )
    text = describe_error(exc)
    assert text.startswith("ClientConnectionError: ")
    assert "https://mainnet.example.io" in text
    assert "wss://node.example:8546" in text
    for secret in ("hunter2", "user", "SECRETKEY", "apikey", "KEY2"):
        assert secret not in text
    assert len(describe_error(ValueError("x" * 5000))) == 300


def test_the_policy_waits_exponentially_and_caps_at_max_delay() -> None:
    policy = retrying_transient(attempts=5, max_delay=7.5, log=structlog.get_logger())
    assert isinstance(policy.wait, wait_exponential_jitter)
    assert policy.wait.max == 7.5


async def test_transient_errors_are_retried_and_logged_until_success() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TransientChainError(f"https://rpc.example/SECRET timed out (call {calls})")
        return "ok"

    with capture_logs() as logs:
        result: str = await retrying_transient(attempts=5, max_delay=0, log=structlog.get_logger())(
            flaky
        )

    assert (result, calls) == ("ok", 3)
    assert [(e["event"], e["attempt"], e["log_level"]) for e in logs] == [
        ("retry.scheduled", 1, "warning"),
        ("retry.scheduled", 2, "warning"),
    ]
    assert logs[0]["error"] == "TransientChainError: https://rpc.example timed out (call 1)"


async def test_permanent_errors_propagate_at_once_without_a_retry() -> None:
    calls = 0

    async def reverted() -> None:
        nonlocal calls
        calls += 1
        raise PermanentChainError("execution reverted")

    with capture_logs() as logs, pytest.raises(PermanentChainError):
        await retrying_transient(attempts=5, max_delay=0, log=structlog.get_logger())(reverted)
    assert calls == 1
    assert logs == []


async def test_the_last_transient_error_propagates_itself_when_attempts_run_out() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    with capture_logs(), pytest.raises(ConnectionRefusedError):
        async for attempt in retrying_transient(
            attempts=3, max_delay=0, log=structlog.get_logger()
        ):
            with attempt:
                await down()
    assert calls == 3
