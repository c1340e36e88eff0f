"""chains.evm.errors: what an Ethereum node's error texts and web3's exceptions mean."""

from __future__ import annotations

import pytest
import web3.exceptions as w3

from chains.evm.errors import (
    TRANSIENT_RPC_KINDS,
    RpcError,
    RpcErrorKind,
    classify,
    classify_rpc_error,
    rpc_error_kind,
    rpc_error_message,
)
from relayer.retry import is_transient


def _rpc(message: str, code: int = -32000) -> w3.Web3RPCError:
    return w3.Web3RPCError(
        f"{{'code': {code}, 'message': '{message}'}}",
        rpc_response={"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": message}},
    )


TRANSIENT: list[BaseException] = [
    _rpc("nonce too low: next nonce 5, tx nonce 4"),
    _rpc("replacement transaction underpriced"),
    _rpc("already known"),
    _rpc("header not found"),
    _rpc("limit exceeded: rate limit", code=-32005),
    w3.TooManyRequests("slow down"),
    w3.ProviderConnectionError("cannot connect"),
    w3.TimeExhausted("no receipt after 120 seconds"),
    # Older web3 raised ValueError carrying the JSON-RPC error object.
    ValueError({"code": -32000, "message": "transaction underpriced"}),
]

PERMANENT: list[BaseException] = [
    _rpc("execution reverted: Gateway: already delivered", code=3),
    _rpc("insufficient funds for gas * price + value: balance 0, tx cost 21000"),
    _rpc("invalid sender"),
    _rpc("the method eth_foo does not exist/is not available", code=-32601),
    w3.ContractLogicError("execution reverted: no", data="0x"),
    w3.MethodUnavailable("eth_getBlockReceipts is not available"),
    ValueError({"code": -32000, "message": "execution reverted"}),
    ValueError("bad hex"),
]


@pytest.mark.parametrize("exc", TRANSIENT, ids=repr)
def test_transient_node_errors_are_retried(exc: BaseException) -> None:
    assert classify(exc) == "transient"


@pytest.mark.parametrize("exc", PERMANENT, ids=repr)
def test_permanent_node_errors_are_not_retried(exc: BaseException) -> None:
    assert classify(exc) == "permanent"


@pytest.mark.parametrize("kind", list(RpcErrorKind))
def test_an_rpc_error_tells_the_generic_policy_whether_to_retry(kind: RpcErrorKind) -> None:
    error = RpcError("http://node", "eth_sendRawTransaction", "says no", kind)
    assert is_transient(error) == (kind in TRANSIENT_RPC_KINDS)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("nonce too low", RpcErrorKind.NONCE_TOO_LOW),
        ("nonce too low: next nonce 5, tx nonce 4", RpcErrorKind.NONCE_TOO_LOW),
        ("Nonce too low", RpcErrorKind.NONCE_TOO_LOW),
        ("OldNonce", RpcErrorKind.NONCE_TOO_LOW),
        ("replacement transaction underpriced", RpcErrorKind.REPLACEMENT_UNDERPRICED),
        ("already known", RpcErrorKind.ALREADY_KNOWN),
        ("transaction already imported", RpcErrorKind.ALREADY_KNOWN),  # anvil's wording
        ("known transaction: 0x4a5b", RpcErrorKind.ALREADY_KNOWN),
        ("transaction underpriced: tip needed 1, tip permitted 0", RpcErrorKind.UNDERPRICED),
        (
            "max fee per gas less than block base fee: address 0xf39F, maxFeePerGas: 1, baseFee: 7",
            RpcErrorKind.UNDERPRICED,
        ),
        ("rate limit exceeded", RpcErrorKind.RATE_LIMITED),
        ("429 Too Many Requests", RpcErrorKind.RATE_LIMITED),
        ("HTTP 429", RpcErrorKind.RATE_LIMITED),
        ("header not found", RpcErrorKind.UNAVAILABLE),
        ("request timeout", RpcErrorKind.UNAVAILABLE),
        ("execution reverted", RpcErrorKind.REVERTED),
        ("execution reverted: Gateway: bad signature", RpcErrorKind.REVERTED),
        # A revert reason that quotes a transient word is still a revert.
        ("execution reverted: timeout", RpcErrorKind.REVERTED),
        ("execution reverted (data: 0x08c379a0)", RpcErrorKind.REVERTED),
        ("insufficient funds for gas * price + value", RpcErrorKind.INSUFFICIENT_FUNDS),
        ("invalid signature", RpcErrorKind.OTHER),
        ("invalid chain id for signer", RpcErrorKind.OTHER),
        # "429" inside hex data is not a rate limit.
        ("unknown block 0xab429cd", RpcErrorKind.OTHER),
        ("method not found", RpcErrorKind.OTHER),
        ("", RpcErrorKind.OTHER),
    ],
)
def test_node_error_messages_are_read_finely(message: str, kind: RpcErrorKind) -> None:
    assert classify_rpc_error(message) is kind


def test_the_transient_rpc_kinds_are_the_ones_worth_retrying() -> None:
    assert frozenset(RpcErrorKind) - TRANSIENT_RPC_KINDS == {
        RpcErrorKind.REVERTED,
        RpcErrorKind.INSUFFICIENT_FUNDS,
        RpcErrorKind.OTHER,
    }


def test_the_rpc_error_is_taken_from_web3s_response_with_its_data() -> None:
    exc = w3.Web3RPCError(
        "An RPC error was returned",
        rpc_response={
            "jsonrpc": "2.0",
            "id": 7,
            "error": {"code": 3, "message": "execution reverted", "data": "0x08c379a0"},
        },
    )
    assert rpc_error_message(exc) == "execution reverted (data: 0x08c379a0)"
    assert rpc_error_kind(exc) is RpcErrorKind.REVERTED
    assert rpc_error_kind(ValueError({"code": -32000, "message": "already known"})) is (
        RpcErrorKind.ALREADY_KNOWN
    )
    assert rpc_error_message(ValueError("plain")) is None
    assert rpc_error_kind(TimeoutError()) is None
