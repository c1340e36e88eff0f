"""What an Ethereum node's errors mean: the one place the EVM family reads them.

``classify_rpc_error`` reads a node's JSON-RPC error text finely enough for the submitter to act
on each case (a "nonce too low" may mean our transaction was already mined; an "already known"
means it is in the pool). ``RpcError`` carries the kind, and whether trying again can help, to
``relayer.retry`` through ``RelayerError.retryable``. ``classify`` extends
``relayer.retry.classify`` to web3's exceptions, for tools and tests built on web3 (the daemon
does not use it).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from enum import Enum
from typing import Any

from relayer.errors import TransientChainError
from relayer.retry import Classification
from relayer.retry import classify as classify_generic

__all__ = [
    "TRANSIENT_RPC_KINDS",
    "RpcError",
    "RpcErrorKind",
    "classify",
    "classify_rpc_error",
    "rpc_error_kind",
    "rpc_error_message",
]


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


class RpcError(TransientChainError):
    """The node answered with a JSON-RPC error; ``kind`` says which, ``retryable`` whether
    trying again can help."""

    def __init__(self, endpoint: str, method: str, message: str, kind: RpcErrorKind) -> None:
        super().__init__(f"{endpoint} {method}: {message}")
        self.kind = kind
        self.rpc_message = message
        self.retryable = kind in TRANSIENT_RPC_KINDS

    @property
    def is_permanent(self) -> bool:
        return not self.retryable


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


# web3 exception class names (matched by name so this module does not import web3).
_WEB3_TRANSIENT = frozenset(
    {"ProviderConnectionError", "TooManyRequests", "TimeExhausted", "TransactionIndexingInProgress"}
)
_WEB3_PERMANENT = frozenset({"ContractLogicError", "MethodUnavailable", "InvalidTransaction"})


def classify(exc: BaseException) -> Classification:
    """``relayer.retry.classify``, also reading web3's exceptions and the node error a foreign
    exception carries (looked up only if web3 is imported: its exceptions cannot be raised
    otherwise)."""
    if isinstance(exc, Exception):
        web3 = sys.modules.get("web3.exceptions")
        kind = rpc_error_kind(exc)
        if kind is not None:
            return "transient" if kind in TRANSIENT_RPC_KINDS else "permanent"
        if web3 is not None and isinstance(exc, web3.Web3Exception):
            names = {cls.__name__ for cls in type(exc).__mro__}
            if names & _WEB3_PERMANENT:
                return "permanent"
            if names & _WEB3_TRANSIENT:
                return "transient"
    return classify_generic(exc)
