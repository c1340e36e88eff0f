"""JSON-RPC access to one EVM endpoint, with every library failure mapped to our errors.

Answers come back as the node's raw JSON (hex strings): evidence is hashed from exactly what the
node said, never from a library's re-formatting of it. JSON-RPC over aiohttp directly (one
keep-alive session per endpoint, msgspec for JSON): web3's provider stack cost a tenth of the
daemon's CPU in a burst, and the relayer uses nothing of it but the transport.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, cast

import aiohttp
import msgspec
import structlog

from chains.endpoints import EndpointPool, urls_of
from chains.evm.errors import RpcError, RpcErrorKind, classify_rpc_error
from relayer.errors import PermanentChainError, TransientChainError
from relayer.keys import redact_url
from relayer.plugin import rpc_call
from relayer.retry import retrying_transient

__all__ = ["EvmRpc", "RpcError"]


_IDEMPOTENT = frozenset(
    {
        "eth_chainId",
        "eth_blockNumber",
        "eth_getBlockByNumber",
        "eth_getBlockReceipts",
        "eth_getLogs",
        "eth_call",
        "eth_estimateGas",
        "eth_createAccessList",
        "eth_simulateV1",
        "eth_getTransactionCount",
        "eth_getTransactionReceipt",
        "eth_getBalance",
    }
)


class _Endpoint:
    """One endpoint. Every call has a timeout; failures raise Transient/PermanentChainError."""

    def __init__(self, url: str, *, timeout: float, attempts: int) -> None:
        self.url = url
        self.endpoint = redact_url(url)
        self._timeout = timeout
        self._attempts = attempts
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)
        self._log = structlog.get_logger().bind(endpoint=self.endpoint)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop (aiohttp binds a session to it).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"Content-Type": "application/json"},
            )
        return self._session

    async def _post(self, payload: Any) -> Any:
        """One HTTP exchange; the decoded JSON answer."""
        async with self._client().post(self.url, data=_json_encoder.encode(payload)) as answer:
            body = await answer.read()
            status = answer.status
        try:
            decoded = _json_decoder.decode(body)
        except msgspec.DecodeError:
            if status != 200:
                raise TransientChainError(f"{self.endpoint}: HTTP {status}") from None
            raise
        if status != 200 and not (isinstance(decoded, dict) and "error" in decoded):
            # A JSON-RPC error may come with any status (some nodes answer 429 or 500 with
            # one); anything else from a non-200 answer is the endpoint being unwell.
            raise TransientChainError(f"{self.endpoint}: HTTP {status}")
        return decoded

    @contextmanager
    def _mapped(self, method: str) -> Iterator[None]:
        try:
            yield
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientChainError(
                f"{self.endpoint} {method}: {type(exc).__name__}: {exc}"
            ) from None
        except ValueError as exc:  # undecodable answer (not JSON, not JSON-RPC)
            raise TransientChainError(f"{self.endpoint} {method}: bad answer: {exc}") from None

    async def request(self, method: str, *params: Any) -> Any:
        if method not in _IDEMPOTENT or self._attempts == 1:
            return await self._request_once(method, params)
        # Reads are retried in place a few times (a dropped keep-alive connection, a node
        # restarting); longer outages surface to the caller, which backs off and logs them once.
        # (With several endpoints there is one attempt each: the next endpoint is the retry.)
        async for attempt in retrying_transient(
            attempts=self._attempts, max_delay=1.0, initial=0.1, log=self._log, level="debug"
        ):
            with attempt:
                return await self._request_once(method, params)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _request_once(self, method: str, params: tuple[Any, ...]) -> Any:
        request = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        with rpc_call(self.endpoint, method):
            with self._mapped(method):
                async with asyncio.timeout(self._timeout):
                    response = await self._post(request)
            return self._result(method, response)

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one HTTP round trip; results in call order."""
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        requests = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": p}
            for i, (m, p) in zip(ids, calls, strict=True)
        ]
        with rpc_call(self.endpoint, "batch"), self._mapped("batch"):
            async with asyncio.timeout(self._timeout * 2):
                responses = await self._post(requests)
        if not isinstance(responses, list) or len(responses) != len(calls):
            raise TransientChainError(f"{self.endpoint} batch: answer does not match the request")
        # A batch's answers may come in any order: matched by id.
        by_id = {r.get("id"): r for r in responses if isinstance(r, dict)}
        if sorted(by_id, key=str) != sorted(ids, key=str):
            raise TransientChainError(f"{self.endpoint} batch: answer ids do not match the request")
        return [self._result(m, by_id[i]) for i, (m, _) in zip(ids, calls, strict=True)]

    def _result(self, method: str, response: Any) -> Any:
        if not isinstance(response, dict):
            raise TransientChainError(f"{self.endpoint} {method}: answer is not a JSON object")
        error = response.get("error")
        if error is not None:
            message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
            data = error.get("data") if isinstance(error, dict) else None
            if data:
                message = f"{message} (data: {data})"
            raise RpcError(self.endpoint, method, message, classify_rpc_error(message))
        if "result" not in response:
            raise TransientChainError(f"{self.endpoint} {method}: answer has no result")
        return response["result"]


class EvmRpc:
    """A chain's endpoints (one, or several with failover and a quorum; see
    ``chains.endpoints``). Every call has a timeout; failures raise Transient/PermanentChainError.

    ``url`` is one URL, a sequence of them, or the config's ``Endpoints``. With one endpoint
    every call goes straight to it, as fast as before endpoints were pooled."""

    def __init__(self, url: str | Sequence[str], *, timeout: float = 10.0) -> None:
        urls = urls_of(url)
        single = len(urls) == 1
        self._members = [_Endpoint(u, timeout=timeout, attempts=3 if single else 1) for u in urls]
        self._only = self._members[0] if single else None
        self.urls = urls
        self.url = urls[0]
        self.endpoint = (
            self._members[0].endpoint
            if single
            else f"{self._members[0].endpoint} (+{len(urls) - 1} more)"
        )
        self.pool = EndpointPool(self._members, fails_over=_fails_over)

    def require(self, *, chain: str, quorum: int, max_lag: int, log: Any = None) -> None:
        """Ask ``quorum`` endpoints to agree on heads, finalized heights and block hashes."""
        self.pool.require(chain=chain, quorum=quorum, max_lag=max_lag, log=log)

    async def close(self) -> None:
        for member in self._members:
            await member.close()

    async def request(self, method: str, *params: Any) -> Any:
        if self._only is not None:
            return await self._only.request(method, *params)
        # A write goes to one endpoint: sent again elsewhere after a timeout it may be in two
        # pools at once; the submitter's own schedule decides when to send it again.
        return await self.pool.first(
            lambda member: member.request(method, *params), failover=method in _IDEMPOTENT
        )

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one HTTP round trip; results in call order."""
        if self._only is not None:
            return await self._only.batch(calls)
        return await self.pool.first(
            lambda member: member.batch(calls),
            failover=all(method in _IDEMPOTENT for method, _ in calls),
        )

    # --- typed helpers -------------------------------------------------------------------------

    async def chain_id(self) -> int:
        return _quantity(await self.request("eth_chainId"), "eth_chainId")

    async def block_number(self) -> int:
        """The head; with a quorum, the highest block ``quorum`` endpoints have all reached."""
        if self.pool.quorum == 1:
            return await _block_number(self)
        return await self.pool.reached(_block_number, what="head block number")

    async def block(self, number: int | str) -> dict[str, Any] | None:
        """The block (without transactions) at a height or tag. With a quorum, a height's block
        is the one ``quorum`` endpoints agree on by hash, and "finalized" / "safe" the one at
        the height ``quorum`` endpoints have all finalized; "latest" and "pending" (fees, not
        finality) come from the preferred endpoint."""
        if self.pool.quorum == 1 or number in ("latest", "pending"):
            return await _block(self, number)
        if isinstance(number, str):
            height = await self.pool.reached(
                lambda member: _tagged_number(member, number), what=f"{number} block number"
            )
            return None if height < 0 else await self.block(height)
        return await self.pool.agreed(
            lambda member: _block(member, number),
            key=lambda block: block.get("hash"),
            what=f"block {number}'s hash",
        )

    async def block_receipts(self, number: int) -> list[dict[str, Any]]:
        result = await self.request("eth_getBlockReceipts", hex(number))
        if not isinstance(result, list):
            raise TransientChainError(f"{self.endpoint} eth_getBlockReceipts: not a list")
        return result

    async def logs(
        self, from_block: int, to_block: int, address: str, topics: list[Any]
    ) -> list[dict[str, Any]]:
        result = await self.request(
            "eth_getLogs",
            {
                "fromBlock": hex(from_block),
                "toBlock": hex(to_block),
                "address": address,
                "topics": topics,
            },
        )
        if not isinstance(result, list):
            raise TransientChainError(f"{self.endpoint} eth_getLogs: not a list")
        return result

    async def call(self, to: str, data: bytes, *, sender: str | None = None) -> bytes:
        tx: dict[str, Any] = {"to": to, "data": "0x" + data.hex()}
        if sender:
            tx["from"] = sender
        return _data(await self.request("eth_call", tx, "latest"), "eth_call")

    async def estimate_gas(self, sender: str, to: str, data: bytes) -> int:
        tx = {"from": sender, "to": to, "data": "0x" + data.hex()}
        return _quantity(await self.request("eth_estimateGas", tx), "eth_estimateGas")

    async def gas_used(self, sender: str, to: str, data: bytes) -> int:
        """Gas one execution of the call uses (``eth_createAccessList``): a single run, where
        ``eth_estimateGas`` bisects over a dozen of them."""
        tx = {"from": sender, "to": to, "data": "0x" + data.hex()}
        result = await self.request("eth_createAccessList", tx, "latest")
        if not isinstance(result, dict) or "gasUsed" not in result:
            raise PermanentChainError(f"eth_createAccessList answered {result!r:.80}")
        if result.get("error"):
            raise RpcError(
                self.endpoint,
                "eth_createAccessList",
                str(result["error"]),
                classify_rpc_error(str(result["error"])),
            )
        return _quantity(result["gasUsed"], "eth_createAccessList")

    async def simulate_call(self, sender: str, to: str, data: bytes) -> tuple[bytes, int]:
        """(return data, gas used) of one call, from a single execution (``eth_simulateV1``);
        a revert raises ``RpcError`` of kind REVERTED, as ``eth_call`` would."""
        call = {"from": sender, "to": to, "data": "0x" + data.hex()}
        result = await self.request(
            "eth_simulateV1", {"blockStateCalls": [{"calls": [call]}]}, "latest"
        )
        try:
            (outcome,) = result[0]["calls"]
            status, gas = outcome["status"], outcome["gasUsed"]
        except (TypeError, KeyError, IndexError, ValueError):
            raise PermanentChainError(f"eth_simulateV1 answered {result!r:.120}") from None
        if _quantity(status, "eth_simulateV1") != 1:
            error = outcome.get("error") or {}
            message = str(error.get("message", "execution reverted"))
            if error.get("data"):
                message = f"{message} (data: {error['data']})"
            raise RpcError(self.endpoint, "eth_simulateV1", message, RpcErrorKind.REVERTED)
        return _data(outcome.get("returnData"), "eth_simulateV1"), _quantity(gas, "eth_simulateV1")

    async def balance(self, address: str, tag: str = "latest") -> int:
        """The account's balance in wei."""
        return _quantity(await self.request("eth_getBalance", address, tag), "eth_getBalance")

    async def nonce(self, address: str, tag: str = "pending") -> int:
        return _quantity(
            await self.request("eth_getTransactionCount", address, tag), "eth_getTransactionCount"
        )

    async def send_raw(self, raw_tx: bytes) -> bytes:
        return _data(
            await self.request("eth_sendRawTransaction", "0x" + raw_tx.hex()),
            "eth_sendRawTransaction",
        )

    async def receipt(self, tx_hash: bytes) -> dict[str, Any] | None:
        result = await self.request("eth_getTransactionReceipt", "0x" + tx_hash.hex())
        if result is not None and not isinstance(result, dict):
            raise TransientChainError(f"{self.endpoint} eth_getTransactionReceipt: not an object")
        return cast("dict[str, Any] | None", result)


class _Requester(Protocol):
    endpoint: str

    async def request(self, method: str, *params: Any) -> Any: ...


async def _block_number(rpc: _Requester) -> int:
    return _quantity(await rpc.request("eth_blockNumber"), "eth_blockNumber")


async def _block(rpc: _Requester, number: int | str) -> dict[str, Any] | None:
    tag = hex(number) if isinstance(number, int) else number
    result = await rpc.request("eth_getBlockByNumber", tag, False)
    if result is not None and not isinstance(result, dict):
        raise TransientChainError(f"{rpc.endpoint} eth_getBlockByNumber: not an object")
    return cast("dict[str, Any] | None", result)


async def _tagged_number(rpc: _Requester, tag: str) -> int:
    block = await _block(rpc, tag)
    if block is None:
        return -1  # nothing finalized yet
    return _quantity(block.get("number"), "eth_getBlockByNumber")


def _fails_over(exc: Exception) -> bool:
    """Whether ``exc`` is the endpoint being unwell (ask another) rather than an answer."""
    if isinstance(exc, RpcError):
        return exc.kind in (RpcErrorKind.UNAVAILABLE, RpcErrorKind.RATE_LIMITED)
    return isinstance(exc, TransientChainError | PermanentChainError)


_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


def _quantity(value: Any, method: str) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise PermanentChainError(f"{method} answered {value!r}, not a hex quantity")
    try:
        return int(value, 16)
    except ValueError:
        raise PermanentChainError(f"{method} answered {value!r}, not a hex quantity") from None


def _data(value: Any, method: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise PermanentChainError(f"{method} answered {value!r}, not hex data")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise PermanentChainError(f"{method} answered {value!r}, not hex data") from None
