"""What is worth retrying, and how long to wait: the only place retry policy is decided.

``classify`` sorts any exception into transient (wait and try again) or permanent (trying again
cannot help); what a chain's node means by its error texts is the chain family's to read (its
plugin raises our errors with ``retryable`` set). ``backoff_delay`` computes the ledger's retry
schedule; ``retrying_transient`` is the tenacity policy for retrying a call in place.
"""

from __future__ import annotations

import errno
import random
import re
import socket
import sys
from collections.abc import Callable
from typing import Any, Literal, Protocol

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_never,
    wait_exponential_jitter,
)

from relayer.errors import RelayerError

__all__ = [
    "Classification",
    "backoff_delay",
    "classify",
    "describe_error",
    "is_transient",
    "retrying_transient",
]

Classification = Literal["transient", "permanent"]


# OSErrors that mean "the network path failed", as opposed to a missing file or a permission.
_TRANSIENT_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EPIPE,
    }
)
# asyncio's create_connection reports all failed addresses as one OSError without an errno.
_TRANSIENT_OSERROR_TEXT = re.compile(
    r"connect call failed|connection refused|connection reset|network is unreachable",
    re.IGNORECASE,
)
_HTTP_TRANSIENT = frozenset({408, 425, 429, 500, 502, 503, 504})


def _library_verdict(exc: BaseException) -> Classification | None:
    """Classify exceptions of the network libraries we use, looked up only if already imported
    (an exception of a library nobody imported cannot be raised)."""
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None:
        # ClientConnectionError covers ClientOSError and server disconnects and timeouts;
        # a payload error is a body cut short in transit.
        if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
            return "transient"
        if isinstance(exc, aiohttp.ClientResponseError):
            return "transient" if exc.status in _HTTP_TRANSIENT else "permanent"
    websockets = sys.modules.get("websockets.exceptions")
    if websockets is not None:
        if isinstance(exc, websockets.ConnectionClosed):
            return "transient"
        invalid_status = getattr(websockets, "InvalidStatus", None)
        if invalid_status is not None and isinstance(exc, invalid_status):
            status = getattr(getattr(exc, "response", None), "status_code", None)
            return "transient" if status in _HTTP_TRANSIENT else "permanent"
    return None


def classify(exc: BaseException) -> Classification:
    """Transient (waiting and trying again can help) or permanent.

    Our own errors say so themselves (``RelayerError.retryable``: chain plugins translate their
    libraries' and nodes' errors into ours); network failures (timeouts, refused or reset
    connections, closed websockets, HTTP 429/5xx) are transient. Anything not recognised is
    permanent: retrying what we do not understand only hides it."""
    if not isinstance(exc, Exception):  # cancellation, KeyboardInterrupt, SystemExit
        return "permanent"
    if isinstance(exc, RelayerError):
        return "transient" if exc.retryable else "permanent"
    verdict = _library_verdict(exc)
    if verdict is not None:
        return verdict
    if isinstance(exc, TimeoutError | ConnectionError):  # asyncio.TimeoutError is TimeoutError
        return "transient"
    if isinstance(exc, socket.gaierror):
        return "transient" if exc.errno == socket.EAI_AGAIN else "permanent"
    if isinstance(exc, OSError):
        transient = exc.errno in _TRANSIENT_ERRNOS or bool(_TRANSIENT_OSERROR_TEXT.search(str(exc)))
        return "transient" if transient else "permanent"
    return "permanent"


def is_transient(exc: BaseException) -> bool:
    """``classify(exc) == "transient"``: the predicate tenacity retries on."""
    return classify(exc) == "transient"


def backoff_delay(
    attempt: int,
    *,
    base: float = 1.0,
    cap: float = 300.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): the ceiling doubles from
    ``base`` and is capped at ``cap``, and the delay is drawn from [ceiling/2, ceiling].

    Jitter spreads the retries of many messages that failed together (one endpoint outage) so
    they do not return together; the lower half-bound keeps a retry from firing at once."""
    if base < 0 or cap < 0:
        raise ValueError(f"backoff base and cap must not be negative (base={base}, cap={cap})")
    exponent = max(attempt, 1) - 1
    try:
        ceiling = min(cap, base * 2.0**exponent)
    except OverflowError:
        ceiling = cap
    return ceiling * (0.5 + 0.5 * min(max(rng(), 0.0), 1.0))


class _Log(Protocol):
    def warning(self, event: str, **kw: Any) -> Any: ...


_URL = re.compile(r"\b([a-z][a-z0-9+.-]*://)(?:[^/\s@'\"]*@)?([^/\s?#'\"]+)[^\s'\"]*", re.I)
_MAX_ERROR_TEXT = 300


def describe_error(exc: BaseException) -> str:
    """``Type: message`` for a log line, without secrets: URLs are cut to scheme, host and port
    (endpoint URLs carry API keys in their path, query or userinfo), and long text is cut."""
    text = _URL.sub(r"\1\2", f"{type(exc).__name__}: {exc}")
    if len(text) > _MAX_ERROR_TEXT:
        text = text[: _MAX_ERROR_TEXT - 3] + "..."
    return text


def retrying_transient(
    *,
    attempts: int | None,
    max_delay: float,
    log: _Log,
    initial: float = 0.5,
    level: str = "warning",
) -> AsyncRetrying:
    """A tenacity policy that retries transient errors in place::

        async for attempt in retrying_transient(attempts=5, max_delay=30, log=log):
            with attempt:
                await rpc.block_number()

    ``attempts`` bounds the calls (None: until cancelled); each wait grows exponentially from
    ``initial`` with up to ``initial`` of jitter and is capped at ``max_delay``. Permanent errors
    and the last transient one propagate unchanged (``reraise=True``), never as RetryError.
    ``level`` is the log level of ``retry.scheduled`` ("debug" where an outage is already
    reported once by the caller, so that retries do not flood the log)."""

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        getattr(log, level)(
            "retry.scheduled",
            attempt=state.attempt_number,
            delay=round(state.upcoming_sleep, 3),
            error=describe_error(exc) if exc is not None else None,
        )

    return AsyncRetrying(
        stop=stop_never if attempts is None else stop_after_attempt(attempts),
        wait=wait_exponential_jitter(multiplier=initial, max=max_delay, jitter=initial),
        retry=retry_if_exception(is_transient),
        before_sleep=before_sleep,
        reraise=True,
    )
