"""What is worth retrying, and how long to wait: the only place retry policy is decided.

``classify`` sorts any exception into transient (wait and try again) or permanent (trying again
cannot help). ``classify_rpc_error`` reads an Ethereum node's error text finely enough for the
submitter to act on each case (a "nonce too low" may mean our transaction was already mined; an
"already known" means it is in the pool). ``backoff_delay`` computes the ledger's retry schedule;
``retrying_transient`` is the tenacity policy for retrying a call in place.
"""

from __future__ import annotations

import errno
import random
import re
import socket
import sys
from collections.abc import Callable, Mapping
from enum import Enum
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
    "TRANSIENT_RPC_KINDS",
    "Classification",
    "RpcErrorKind",
    "backoff_delay",
    "classify",
    "classify_rpc_error",
    "describe_error",
    "is_transient",
    "retrying_transient",
    "rpc_error_kind",
    "rpc_error_message",
]

Classification = Literal["transient", "permanent"]


class RpcErrorKind(Enum):
    """What an Ethereum node's error message means for the submitter."""

    NONCE_TOO_LOW = "nonce_too_low"  # the nonce is used: maybe by our own tx, now mined
    REPLACEMENT_UNDERPRICED = "replacement_underpriced"  # same nonce in the pool; bump more
    ALREADY_KNOWN = "already_known"  # this very tx is in the pool: treat as sent
    UNDERPRICED = "underpriced"  # below the pool's minimum or the block's base fee
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"  # node lagging or overloaded: header not found, timeouts
    REVERTED = "reverted"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    OTHER = "other"


TRANSIENT_RPC_KINDS = frozenset(
    {
        RpcErrorKind.NONCE_TOO_LOW,
        RpcErrorKind.REPLACEMENT_UNDERPRICED,
        RpcErrorKind.ALREADY_KNOWN,
        RpcErrorKind.UNDERPRICED,
        RpcErrorKind.RATE_LIMITED,
        RpcErrorKind.UNAVAILABLE,
    }
)

# Checked in order, first match wins. Permanent patterns come first: a revert reason or an
# invalid-signature message may quote text ("timeout", "429") that would otherwise read as
# transient. Numbers match only as whole words, so "429" inside hex data or a hash does not.
_RPC_PATTERNS: tuple[tuple[re.Pattern[str], RpcErrorKind], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), kind)
    for pattern, kind in (
        (r"execution reverted|\breverted\b", RpcErrorKind.REVERTED),
        (r"insufficient funds", RpcErrorKind.INSUFFICIENT_FUNDS),
        (r"invalid signature|invalid sender|chain ?id", RpcErrorKind.OTHER),
        (r"nonce too low|oldnonce", RpcErrorKind.NONCE_TOO_LOW),
        (
            r"replacement transaction underpriced|replacement fee too low",
            RpcErrorKind.REPLACEMENT_UNDERPRICED,
        ),
        (
            r"already known|already imported|known transaction|alreadyknown",
            RpcErrorKind.ALREADY_KNOWN,
        ),
        (
            r"transaction underpriced|max fee per gas less than block base fee"
            r"|fee cap less than block base fee",
            RpcErrorKind.UNDERPRICED,
        ),
        (r"rate limit|ratelimit|too many requests|\b429\b", RpcErrorKind.RATE_LIMITED),
        (
            r"header not found|timeout|timed out|service unavailable|bad gateway",
            RpcErrorKind.UNAVAILABLE,
        ),
    )
)


def classify_rpc_error(message: str) -> RpcErrorKind:
    """Read an Ethereum node's error message (geth, erigon, reth, besu, nethermind, anvil)."""
    for pattern, kind in _RPC_PATTERNS:
        if pattern.search(message):
            return kind
    return RpcErrorKind.OTHER


def rpc_error_message(exc: BaseException) -> str | None:
    """The node's JSON-RPC error message carried by ``exc``, if it carries one: web3's
    ``Web3RPCError.rpc_response`` (``{"error": {"code", "message", "data"}}``) or an exception
    whose first argument is the error object itself (older web3 raised ``ValueError(dict)``)."""
    response = getattr(exc, "rpc_response", None)
    if isinstance(response, Mapping) and isinstance(response.get("error"), Mapping):
        return _error_text(response["error"])
    if exc.args and isinstance(exc.args[0], Mapping) and "message" in exc.args[0]:
        return _error_text(exc.args[0])
    return None


def _error_text(error: Mapping[str, Any]) -> str:
    text = str(error.get("message", ""))
    data = error.get("data")
    # Revert reasons often travel in `data` only ("execution reverted" + 0x08c379a0...).
    return f"{text} (data: {data})" if isinstance(data, str) and data else text


def rpc_error_kind(exc: BaseException) -> RpcErrorKind | None:
    """``classify_rpc_error`` of the JSON-RPC error ``exc`` carries; None if it carries none."""
    message = rpc_error_message(exc)
    return None if message is None else classify_rpc_error(message)


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
# web3 exception class names (matched by name so this module does not import web3).
_WEB3_TRANSIENT = frozenset(
    {"ProviderConnectionError", "TooManyRequests", "TimeExhausted", "TransactionIndexingInProgress"}
)
_WEB3_PERMANENT = frozenset({"ContractLogicError", "MethodUnavailable", "InvalidTransaction"})
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
    web3 = sys.modules.get("web3.exceptions")
    if web3 is not None and isinstance(exc, web3.Web3Exception):
        names = {cls.__name__ for cls in type(exc).__mro__}
        if names & _WEB3_PERMANENT:
            return "permanent"
        if names & _WEB3_TRANSIENT:
            return "transient"
    return None


def classify(exc: BaseException) -> Classification:
    """Transient (waiting and trying again can help) or permanent.

    Our own errors say so themselves (``RelayerError.retryable``); network failures (timeouts,
    refused or reset connections, closed websockets, HTTP 429/5xx) are transient; a node's error
    message is read by ``classify_rpc_error``. Anything not recognised is permanent: retrying
    what we do not understand only hides it."""
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
    message = rpc_error_message(exc)
    kind = classify_rpc_error(str(exc) if message is None else message)
    return "transient" if kind in TRANSIENT_RPC_KINDS else "permanent"


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
