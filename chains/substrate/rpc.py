"""A thin, typed asyncio client for a Substrate node's JSON-RPC (WebSocket).

Raw JSON-RPC over ``websockets`` rather than substrate-interface: no substrate-interface
release can be installed next to web3 8 (it pins eth-utils<6, eth-account 0.14 needs >=6), and
its blocking calls would need a thread per chain anyway. Everything the relayer reads here is
raw bytes (headers, extrinsics, storage) except events, whose layout only the runtime metadata
knows: those are decoded with ``scalecodec`` (the codec under substrate-interface) off the event
loop, because decoding metadata costs about 2 s of CPU: events on a worker thread per client,
metadata once per runtime for the whole process, on one thread.

Library exceptions become ``relayer.errors`` exceptions in ``_map_errors`` and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Any

import websockets
from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
from scalecodec.type_registry import load_type_registry_preset
from scalecodec.utils.ss58 import ss58_decode, ss58_encode
from websockets.asyncio.client import ClientConnection, connect

from chains.substrate.extrinsic import (
    Extension,
    Signer,
    SigningContext,
    batch_all_call,
    remark_call,
    signed_extrinsic,
)
from chains.substrate.storage_keys import account_info_key
from proofs.errors import MalformedEncodingError
from proofs.hashing import blake2_256
from proofs.substrate.scale import ScaleReader, encode_compact
from relayer.errors import ChainError, PermanentChainError, TransientChainError
from relayer.keys import redact_url
from relayer.plugin import rpc_call

__all__ = [
    "Block",
    "ExtrinsicEvents",
    "FeePaidEvent",
    "Header",
    "Inclusion",
    "PoolRefusal",
    "RemarkedEvent",
    "RpcError",
    "SubstrateRpc",
    "extrinsic_events",
    "pool_refusal",
]

# twox128("System") ++ twox128("Events"): a storage key fixed by FRAME, so no hasher needed.
_SYSTEM_EVENTS_KEY = "0x26aa394eea5630e07c48ae0c9558cef780d41e5e16056765bc8461851072c9d7"
_DEFAULT_TIMEOUT_S = 10.0
# Metadata is about 300 KB of SCALE; websockets' 1 MiB default is too close for other runtimes.
_MAX_FRAME = 64 * 1024 * 1024
# JSON-RPC error codes of author_submitExtrinsic (sc-rpc-api author/error.rs).
_POOL_INVALID_TX = 1010
_POOL_UNKNOWN_VALIDITY = 1011
_POOL_TEMPORARILY_BANNED = 1012
_POOL_ALREADY_IMPORTED = 1013
_POOL_TOO_LOW_PRIORITY = 1014
_POOL_IMMEDIATELY_DROPPED = 1016
_TRANSIENT_POOL_CODES = frozenset(
    {_POOL_UNKNOWN_VALIDITY, _POOL_TEMPORARILY_BANNED, _POOL_IMMEDIATELY_DROPPED}
)


# Decoded runtimes by (genesis, runtime version, metadata hash), shared by every client in the
# process: a reader and a submitter of one chain, or a client after a reconnect, would each
# spend about 3 s of CPU decoding the same metadata. A few entries cover the chains of one
# process across a runtime upgrade.
_DECODED_RUNTIMES: dict[tuple[bytes, str, bytes], _Runtime] = {}
_DECODED_RUNTIMES_KEPT = 8
# Decodes under way, by the same key: the reader and the submitter of a chain connect at the
# same moment (every start), and each used to decode the same metadata. Two decoding threads
# starve the event loop for seconds (measured on chopsticks' metadata: 4.7 s wall with event
# loop stalls up to 330 ms, against 2.0 s and 190 ms for one decode), and the other chains'
# work waits behind them: ``relayer start`` -> first submission on the example config.
_DECODING: dict[tuple[bytes, str, bytes], Future[_Runtime]] = {}
# Clients on several event loops (tests, tools) share both tables.
_DECODING_LOCK = threading.Lock()
# One thread decodes metadata for every client: decoding is CPU-bound, so two at once finish
# no sooner under the GIL, and a client that closes must not cancel a decode others wait for.
_METADATA_DECODER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scale-metadata")


class PoolRefusal(Enum):
    """Why the transaction pool refused an extrinsic, as far as a submitter acts on it."""

    ALREADY_IMPORTED = "already_imported"  # 1013: the pool has this very extrinsic
    NONCE_USED = "nonce_used"  # 1010 Stale ("Transaction is outdated"): the nonce is spent
    PRIORITY_TOO_LOW = "priority_too_low"  # 1014: another extrinsic holds the nonce, higher tip
    INVALID = "invalid"  # any other 1010: bad signature, cannot pay, bad call...
    BANNED = "banned"  # 1012: this very hash is banned for now (the pool just included it)
    TEMPORARY = "temporary"  # 1011 unknown validity, 1016 dropped


class RpcError(ChainError):
    """An endpoint answered a JSON-RPC error; ``code`` and ``data`` as it sent them.
    ``refusal`` is set for the transaction pool's own codes (``author_submitExtrinsic``)."""

    def __init__(
        self, message: str, code: int, data: Any = None, refusal: PoolRefusal | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.data = data
        self.refusal = refusal


class TransientRpcError(RpcError, TransientChainError):
    pass


class PermanentRpcError(RpcError, PermanentChainError):
    pass


@dataclass(frozen=True, slots=True)
class Header:
    """A header's fields as bytes; ``digest_logs`` are the SCALE DigestItems as served."""

    parent_hash: bytes
    number: int
    state_root: bytes
    extrinsics_root: bytes
    digest_logs: tuple[bytes, ...]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Header:
        return cls(
            parent_hash=_unhex(raw["parentHash"]),
            number=int(raw["number"], 16),
            state_root=_unhex(raw["stateRoot"]),
            extrinsics_root=_unhex(raw["extrinsicsRoot"]),
            digest_logs=tuple(_unhex(log) for log in raw["digest"]["logs"]),
        )

    def scale(self) -> bytes:
        """The SCALE header whose blake2-256 is the block hash (``proofs.substrate.header``)."""
        return (
            self.parent_hash
            + encode_compact(self.number)
            + self.state_root
            + self.extrinsics_root
            + encode_compact(len(self.digest_logs))
            + b"".join(self.digest_logs)
        )


@dataclass(frozen=True, slots=True)
class Block:
    hash: bytes
    header: Header
    # Opaque extrinsics exactly as chain_getBlock serves them, each with its length prefix.
    extrinsics: tuple[bytes, ...]
    justifications: Any


@dataclass(frozen=True, slots=True)
class RemarkedEvent:
    """``System.Remarked``: who dispatched a ``remark_with_event`` and blake2-256 of its remark."""

    extrinsic_index: int
    sender: bytes
    remark_hash: bytes


@dataclass(frozen=True, slots=True)
class FeePaidEvent:
    """``TransactionPayment.TransactionFeePaid``: what an extrinsic's signer paid for it, in
    the chain's smallest unit (``actual_fee`` includes ``tip``)."""

    extrinsic_index: int
    who: bytes
    actual_fee: int
    tip: int


@dataclass(frozen=True, slots=True)
class ExtrinsicEvents:
    """The events of a block's extrinsics that the submitter reads."""

    remarked: tuple[RemarkedEvent, ...]
    #: empty on a runtime without the transaction payment pallet
    fees_paid: tuple[FeePaidEvent, ...]


def extrinsic_events(records: Sequence[Any]) -> ExtrinsicEvents:
    """The ``System.Remarked`` and ``TransactionPayment.TransactionFeePaid`` events among
    ``System.Events`` records as scalecodec decodes them (with the runtime's metadata)."""
    remarked = []
    fees_paid = []
    for record in records:
        # scalecodec renders the phase as its variant name and the index beside it; events
        # of block initialization and finalization belong to no extrinsic.
        if record["phase"] != "ApplyExtrinsic":
            continue
        event = record["event"]
        index = int(record["extrinsic_idx"])
        attributes = event["attributes"]
        match event["module_id"], event["event_id"]:
            case "System", "Remarked":
                remarked.append(
                    RemarkedEvent(
                        extrinsic_index=index,
                        sender=_account_bytes(attributes["sender"]),
                        remark_hash=_unhex(attributes["hash"]),
                    )
                )
            case "TransactionPayment", "TransactionFeePaid":
                fees_paid.append(
                    FeePaidEvent(
                        extrinsic_index=index,
                        who=_account_bytes(attributes["who"]),
                        actual_fee=int(attributes["actual_fee"]),
                        tip=int(attributes["tip"]),
                    )
                )
    return ExtrinsicEvents(remarked=tuple(remarked), fees_paid=tuple(fees_paid))


@dataclass(frozen=True, slots=True)
class Inclusion:
    """Where a submitted extrinsic landed."""

    extrinsic_hash: bytes
    block_hash: bytes
    finalized: bool


def _unhex(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


@contextlib.contextmanager
def _map_errors(chain: str, endpoint: str, what: str) -> Iterator[None]:
    """The one place where library exceptions become the relayer's."""
    try:
        yield
    except RpcError:
        raise
    except TimeoutError as exc:
        raise TransientChainError(
            f"chain `{chain}`: {endpoint} did not answer {what} in time; will retry"
        ) from exc
    except (OSError, websockets.exceptions.WebSocketException) as exc:
        raise TransientChainError(
            f"chain `{chain}`: connection to {endpoint} failed during {what} ({exc!r}); "
            "check that the node is up, will retry"
        ) from exc
    except (KeyError, ValueError, TypeError, IndexError, MalformedEncodingError) as exc:
        raise PermanentChainError(
            f"chain `{chain}`: {endpoint} answered {what} with something that does not decode "
            f"({exc!r}); it is not a compatible Substrate node"
        ) from exc


def pool_refusal(code: int, message: Any, data: Any) -> PoolRefusal | None:
    """The pool's reason behind a JSON-RPC error (sc-rpc-api ``author/error.rs``); None for an
    error that is not the pool's. The invalid-transaction reason is only in the text: a node
    sends ``data: "Transaction is outdated"`` for ``InvalidTransaction::Stale``, chopsticks
    the variant's name."""
    if code == _POOL_ALREADY_IMPORTED:
        return PoolRefusal.ALREADY_IMPORTED
    if code == _POOL_TOO_LOW_PRIORITY:
        return PoolRefusal.PRIORITY_TOO_LOW
    if code == _POOL_TEMPORARILY_BANNED:
        return PoolRefusal.BANNED
    if code in _TRANSIENT_POOL_CODES:
        return PoolRefusal.TEMPORARY
    if code == _POOL_INVALID_TX:
        said = (json.dumps(message) + json.dumps(data)).lower()
        if "outdated" in said or "stale" in said:
            return PoolRefusal.NONCE_USED
        return PoolRefusal.INVALID
    return None


class _Runtime:
    """What this client needs from one runtime version's metadata."""

    def __init__(self, metadata_hex: str, version: dict[str, Any], genesis: bytes) -> None:
        self._decoding = threading.Lock()
        config = RuntimeConfigurationObject()
        config.update_type_registry(load_type_registry_preset("core"))
        metadata = config.create_scale_object("MetadataVersioned", data=ScaleBytes(metadata_hex))
        metadata.decode()
        config.add_portable_registry(metadata)
        self._config = config
        self._metadata = metadata
        self.spec_version = int(version["specVersion"])
        body = next(iter(metadata.value[1].values()))
        types = {entry["id"]: entry["type"]["def"] for entry in body["types"]["types"]}
        pallets = {pallet["name"]: pallet for pallet in body["pallets"]}
        events_type = next(
            (
                entry["type"]["Plain"]
                for entry in pallets["System"]["storage"]["entries"]
                if entry["name"] == "Events"
            ),
            None,
        )
        # A StopIteration must not leave here: asyncio cannot carry it through a future, and
        # the await on this constructor would hang instead of failing.
        if events_type is None:
            raise ValueError("the runtime metadata has no System.Events storage entry")
        self._events_type = events_type

        def call_index(pallet: str, call: str) -> tuple[int, int] | None:
            if pallet not in pallets or not pallets[pallet].get("calls"):
                return None
            variants = types[pallets[pallet]["calls"]["ty"]]["variant"]["variants"]
            for variant in variants:
                if variant["name"] == call:
                    return int(pallets[pallet]["index"]), int(variant["index"])
            return None

        def is_empty(type_id: int) -> bool:
            definition = types[type_id]
            return definition in ({"tuple": []}, {"composite": {"fields": []}})

        remark = call_index("System", "remark_with_event")
        if remark is None:
            raise PermanentChainError("the runtime has no System.remark_with_event call")
        self.signing = SigningContext(
            genesis_hash=genesis,
            spec_version=self.spec_version,
            transaction_version=int(version["transactionVersion"]),
            extensions=tuple(
                Extension(
                    identifier=ext["identifier"],
                    extra_empty=is_empty(ext["ty"]),
                    additional_empty=is_empty(ext["additional_signed"]),
                )
                for ext in body["extrinsic"]["signed_extensions"]
            ),
            remark_with_event=remark,
            batch_all=call_index("Utility", "batch_all"),
        )

    def remarked_events(self, events_hex: str | None) -> list[RemarkedEvent]:
        return list(self.extrinsic_events(events_hex).remarked)

    def extrinsic_events(self, events_hex: str | None) -> ExtrinsicEvents:
        if events_hex is None:
            return ExtrinsicEvents(remarked=(), fees_paid=())
        # Clients share a decoded runtime (``_DECODED_RUNTIMES``), each decoding on its own
        # thread, and scalecodec fills its type registry lazily: one decode at a time.
        with self._decoding:
            records = self._config.create_scale_object(
                f"scale_info::{self._events_type}",
                data=ScaleBytes(events_hex),
                metadata=self._metadata,
            )
            records.decode()
            return extrinsic_events(records.value)


def _keep_decoded(key: tuple[bytes, str, bytes], decoding: Future[_Runtime]) -> None:
    """A decode ended (on the decoder's thread): keep its runtime for the next clients."""
    with _DECODING_LOCK:
        if _DECODING.get(key) is decoding:
            del _DECODING[key]
        if decoding.cancelled() or decoding.exception() is not None:
            return  # the callers have the error; the next one tries again
        _DECODED_RUNTIMES[key] = decoding.result()
        while len(_DECODED_RUNTIMES) > _DECODED_RUNTIMES_KEPT:
            del _DECODED_RUNTIMES[next(iter(_DECODED_RUNTIMES))]


def _partial_fee_from_scale(raw: bytes) -> int:
    """``RuntimeDispatchInfo { weight: Weight { ref_time: Compact<u64>, proof_size:
    Compact<u64> }, class: DispatchClass, partial_fee: u128 }``."""
    reader = ScaleReader(raw)
    reader.compact("weight ref_time")
    reader.compact("weight proof_size")
    reader.u8("dispatch class")
    fee = int.from_bytes(reader.fixed(16, "partial fee"), "little")
    reader.finish("RuntimeDispatchInfo")
    return fee


def _account_bytes(value: str) -> bytes:
    """scalecodec renders an AccountId32 as SS58 or as hex depending on its configuration."""
    if value.startswith("0x"):
        return _unhex(value)
    return _unhex(ss58_decode(value))


class SubstrateRpc:
    """One WebSocket connection to one node. Use ``async with SubstrateRpc.connect(...)``.

    Every method raises TransientChainError (timeouts, dropped connections, pool congestion)
    or PermanentChainError (invalid transactions, answers that do not decode).
    """

    def __init__(
        self, connection: ClientConnection, *, chain: str, endpoint: str, timeout: float
    ) -> None:
        self._ws = connection
        self.chain = chain
        self.endpoint = endpoint
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        # Subscription queues keyed by request id until the server names the subscription.
        self._sub_requests: dict[int, asyncio.Queue[Any]] = {}
        self._subs: dict[str, asyncio.Queue[Any]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"scale-{chain}")
        self._runtime: _Runtime | None = None
        self._genesis: bytes | None = None
        self._reader = asyncio.create_task(self._read(), name=f"substrate-rpc-{chain}")

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, url: str, *, chain: str, timeout: float = _DEFAULT_TIMEOUT_S
    ) -> AsyncIterator[SubstrateRpc]:
        # Every message names the endpoint without what may be an API key in the URL.
        endpoint = redact_url(url)
        with _map_errors(chain, endpoint, "connect"):
            async with asyncio.timeout(timeout):
                connection = await connect(url, max_size=_MAX_FRAME, ping_interval=None)
        client = cls(connection, chain=chain, endpoint=endpoint, timeout=timeout)
        try:
            yield client
        finally:
            await client.close()

    def reuse_runtime(self, other: SubstrateRpc) -> None:
        """Take the runtime another client of the same endpoint decoded (after a reconnect):
        decoding metadata costs seconds of CPU, and ``runtime()`` still checks the spec
        version on every call."""
        if self._runtime is None:
            self._runtime = other._runtime
        if self._genesis is None:
            self._genesis = other._genesis

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        try:
            await self._ws.close()
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _read(self) -> None:
        error: BaseException = ConnectionError("connection closed")
        try:
            async for frame in self._ws:
                self._dispatch(json.loads(frame))
        except websockets.exceptions.ConnectionClosed as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001  (a frame that is not JSON-RPC: the same end)
            # An endpoint that sends garbage is an endpoint gone: every waiting call fails now
            # (and the client reconnects), rather than the reader dying with the error and
            # close() re-raising it, which leaked the socket and the decoding thread.
            error = exc
        finally:
            failure = TransientChainError(
                f"chain `{self.chain}`: connection to {self.endpoint} closed ({error!r})"
            )
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(failure)
            for queue in self._subs.values():
                queue.put_nowait(failure)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message and message["id"] is not None:
            request_id = int(message["id"])
            queue = self._sub_requests.pop(request_id, None)
            if queue is not None and "result" in message:
                # Registered before the next frame is read: notifications follow the answer.
                self._subs[str(message["result"])] = queue
            future = self._pending.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result(message)
            return
        params = message.get("params") or {}
        queue = self._subs.get(str(params.get("subscription")))
        if queue is not None:
            queue.put_nowait(params.get("result"))

    async def request(
        self, method: str, params: Sequence[Any] = (), *, timeout: float | None = None
    ) -> Any:
        """One raw JSON-RPC call; the typed methods below are built on it."""
        return await self._call(method, params, timeout=timeout, queue=None)

    async def _call(
        self,
        method: str,
        params: Sequence[Any],
        *,
        timeout: float | None,
        queue: asyncio.Queue[Any] | None,
    ) -> Any:
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        if queue is not None:
            self._sub_requests[request_id] = queue
        payload = json.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}
        )
        try:
            with rpc_call(self.endpoint, method), _map_errors(self.chain, self.endpoint, method):
                async with asyncio.timeout(self.timeout if timeout is None else timeout):
                    await self._ws.send(payload)
                    answer = await future
        finally:
            self._pending.pop(request_id, None)
            self._sub_requests.pop(request_id, None)
        if "error" in answer:
            raise self._rpc_error(method, answer["error"])
        return answer["result"]

    def _rpc_error(self, method: str, error: dict[str, Any]) -> RpcError:
        code = int(error.get("code", 0))
        data = error.get("data")
        text = f"chain `{self.chain}`: {self.endpoint} refused {method}: {error.get('message')}"
        if data:
            text += f" ({data})"
        refusal = pool_refusal(code, error.get("message"), data)
        if refusal is PoolRefusal.INVALID:
            return PermanentRpcError(text, code, data, refusal)
        if refusal is PoolRefusal.NONCE_USED:
            # A race with our own earlier extrinsic: re-reading the nonce fixes it.
            return TransientRpcError(text + "; re-read the nonce, will retry", code, data, refusal)
        if refusal is PoolRefusal.ALREADY_IMPORTED:
            return TransientRpcError(
                text + "; already in the pool, wait for it", code, data, refusal
            )
        if refusal is not None:
            return TransientRpcError(text + "; will retry", code, data, refusal)
        return PermanentRpcError(text, code, data)

    async def _offload(self, what: str, function: Any, *args: Any) -> Any:
        # Bounded like every network call: decoding a runtime's metadata takes seconds, a
        # wedged decoder must not hold its caller for ever.
        with _map_errors(self.chain, self.endpoint, what):
            async with asyncio.timeout(max(self.timeout, 60.0)):
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._executor, function, *args)

    # -- reads ------------------------------------------------------------------------------

    async def system_chain(self) -> str:
        return str(await self.request("system_chain"))

    async def genesis_hash(self) -> bytes:
        if self._genesis is None:
            with _map_errors(self.chain, self.endpoint, "chain_getBlockHash"):
                self._genesis = _unhex(await self.request("chain_getBlockHash", [0]))
        return self._genesis

    async def finalized_head(self) -> bytes:
        with _map_errors(self.chain, self.endpoint, "chain_getFinalizedHead"):
            return _unhex(await self.request("chain_getFinalizedHead"))

    async def block_hash(self, number: int) -> bytes | None:
        answer = await self.request("chain_getBlockHash", [number])
        with _map_errors(self.chain, self.endpoint, "chain_getBlockHash"):
            return None if answer is None else _unhex(answer)

    async def header(self, block_hash: bytes | None = None) -> Header | None:
        answer = await self.request(
            "chain_getHeader", [] if block_hash is None else [_hex(block_hash)]
        )
        with _map_errors(self.chain, self.endpoint, "chain_getHeader"):
            return None if answer is None else Header.from_json(answer)

    async def header_by_number(self, number: int) -> tuple[bytes, Header] | None:
        block_hash = await self.block_hash(number)
        if block_hash is None:
            return None
        header = await self.header(block_hash)
        return None if header is None else (block_hash, header)

    async def block(self, block_hash: bytes) -> Block | None:
        answer = await self.request("chain_getBlock", [_hex(block_hash)])
        if answer is None:
            return None
        with _map_errors(self.chain, self.endpoint, "chain_getBlock"):
            return Block(
                hash=block_hash,
                header=Header.from_json(answer["block"]["header"]),
                extrinsics=tuple(_unhex(ext) for ext in answer["block"]["extrinsics"]),
                justifications=answer.get("justifications"),
            )

    async def runtime(self) -> _Runtime:
        """The runtime's metadata, decoded once per spec version (on the worker thread)."""
        version = await self.request("state_getRuntimeVersion")
        if self._runtime is None or self._runtime.spec_version != int(version["specVersion"]):
            metadata = await self.request("state_getMetadata")
            genesis = await self.genesis_hash()
            key = (genesis, json.dumps(version, sort_keys=True), blake2_256(metadata.encode()))
            runtime = _DECODED_RUNTIMES.get(key)
            if runtime is None:
                runtime = await self._decoded(key, metadata, version, genesis)
            self._runtime = runtime
        return self._runtime

    async def _decoded(
        self, key: tuple[bytes, str, bytes], metadata: str, version: dict[str, Any], genesis: bytes
    ) -> _Runtime:
        """The runtime of ``key``, decoded once however many clients ask for it at once."""
        with _DECODING_LOCK:
            decoding = _DECODING.get(key)
            if decoding is None:
                decoding = _METADATA_DECODER.submit(_Runtime, metadata, version, genesis)
                _DECODING[key] = decoding
                decoding.add_done_callback(functools.partial(_keep_decoded, key))
        # Bounded like every network call: a wedged decoder must not hold its caller for ever.
        with _map_errors(self.chain, self.endpoint, "state_getMetadata"):
            async with asyncio.timeout(max(self.timeout, 60.0)):
                # Shielded: one caller giving up must not cancel what the others wait for.
                return await asyncio.shield(asyncio.wrap_future(decoding))

    async def remarked_events(self, block_hash: bytes) -> list[RemarkedEvent]:
        """Every ``System.Remarked`` event of the block, with the extrinsic that emitted it.

        Decoded with the current runtime's metadata: fine for a local chain, wrong across a
        runtime upgrade (a plugin must pick the metadata of the block's own spec version).
        """
        runtime = await self.runtime()
        events = await self.request("state_getStorage", [_SYSTEM_EVENTS_KEY, _hex(block_hash)])
        result: list[RemarkedEvent] = await self._offload(
            "System.Events", runtime.remarked_events, events
        )
        return result

    async def extrinsic_events(self, block_hash: bytes) -> ExtrinsicEvents:
        """The block's ``System.Remarked`` and ``TransactionPayment.TransactionFeePaid``
        events, each with the extrinsic that emitted it; decoded as ``remarked_events`` is."""
        runtime = await self.runtime()
        events = await self.request("state_getStorage", [_SYSTEM_EVENTS_KEY, _hex(block_hash)])
        result: ExtrinsicEvents = await self._offload(
            "System.Events", runtime.extrinsic_events, events
        )
        return result

    async def account_nonce(self, account_id: bytes) -> int:
        """The next nonce, counting extrinsics already in the pool."""
        answer = await self.request("system_accountNextIndex", [ss58_encode(account_id)])
        with _map_errors(self.chain, self.endpoint, "system_accountNextIndex"):
            return int(answer)

    async def free_balance(self, account_id: bytes) -> int:
        """The account's free balance in the chain's smallest unit (``System.Account``'s
        ``data.free``: after nonce, consumers, providers and sufficients, four u32s); 0 for an
        account the chain does not hold."""
        answer = await self.request("state_getStorage", [_hex(account_info_key(account_id))])
        if answer is None:
            return 0
        with _map_errors(self.chain, self.endpoint, "System.Account"):
            raw = _unhex(answer)
            if len(raw) < 32:
                raise ValueError(f"AccountInfo of {len(raw)} bytes is too short")
            return int.from_bytes(raw[16:32], "little")

    async def fee_estimate(self, extrinsic: bytes, at: bytes | None = None) -> int:
        """``payment_queryInfo``'s partial fee (base + length + weight fee, no tip)."""
        params: list[Any] = [_hex(extrinsic)] + ([] if at is None else [_hex(at)])
        answer = await self.request("payment_queryInfo", params)
        with _map_errors(self.chain, self.endpoint, "payment_queryInfo"):
            # A node answers JSON; chopsticks answers the runtime API's raw SCALE
            # RuntimeDispatchInfo (its payment_queryInfo returns the state_call result as is).
            if isinstance(answer, str):
                return _partial_fee_from_scale(_unhex(answer))
            return int(answer["partialFee"])

    # -- subscriptions ----------------------------------------------------------------------

    async def finalized_heads(self) -> AsyncIterator[Header]:
        """Finalized headers as the node announces them (it may skip numbers under load)."""
        async for item in self._subscribe(
            "chain_subscribeFinalizedHeads", [], "chain_unsubscribeFinalizedHeads"
        ):
            with _map_errors(self.chain, self.endpoint, "chain_subscribeFinalizedHeads"):
                header = Header.from_json(item)
            yield header

    async def _subscribe(
        self, method: str, params: Sequence[Any], unsubscribe: str
    ) -> AsyncGenerator[Any, None]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        subscription = await self._call(method, params, timeout=None, queue=queue)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._subs.pop(str(subscription), None)
            if not self._reader.done():
                with contextlib.suppress(ChainError):
                    await self.request(unsubscribe, [subscription])

    # -- writes -----------------------------------------------------------------------------

    async def remark_extrinsic(
        self, signer: Signer, remarks: Sequence[bytes], nonce: int | None = None
    ) -> bytes:
        """One signed extrinsic: ``remark_with_event`` for one remark, ``batch_all`` of them
        for several."""
        if not remarks:
            raise ValueError("no remarks to sign")
        context = (await self.runtime()).signing
        if nonce is None:
            nonce = await self.account_nonce(signer.public_key)
        calls = [remark_call(context, remark) for remark in remarks]
        call = calls[0] if len(calls) == 1 else batch_all_call(context, calls)
        return signed_extrinsic(signer, call, nonce, context)

    async def submit(self, extrinsic: bytes) -> bytes:
        """Hand the extrinsic to the pool; returns its hash (blake2-256 of the body)."""
        answer = await self.request("author_submitExtrinsic", [_hex(extrinsic)])
        with _map_errors(self.chain, self.endpoint, "author_submitExtrinsic"):
            return _unhex(answer)

    async def submit_and_watch(
        self, extrinsic: bytes, *, finalized: bool = True, timeout: float = 60.0
    ) -> Inclusion:
        """Submit and follow ``author_submitAndWatchExtrinsic`` until in a block (or finalized).

        Raises PermanentChainError when the pool reports the extrinsic invalid or dropped, or
        when a usurping extrinsic (same nonce) replaces it.
        """
        extrinsic_hash = blake2_256(extrinsic)
        in_block: bytes | None = None
        with _map_errors(self.chain, self.endpoint, "author_submitAndWatchExtrinsic"):
            in_block = await self._watch(extrinsic, extrinsic_hash, finalized, timeout)
        if in_block is None:
            raise TransientChainError(
                f"chain `{self.chain}`: watch of 0x{extrinsic_hash.hex()} ended without a block"
            )
        return Inclusion(extrinsic_hash=extrinsic_hash, block_hash=in_block, finalized=finalized)

    async def _watch(
        self, extrinsic: bytes, extrinsic_hash: bytes, finalized: bool, timeout: float
    ) -> bytes | None:
        in_block: bytes | None = None
        async with asyncio.timeout(timeout):
            watch = self._subscribe(
                "author_submitAndWatchExtrinsic", [_hex(extrinsic)], "author_unwatchExtrinsic"
            )
            async with contextlib.aclosing(watch):
                async for status in watch:
                    if isinstance(status, dict):
                        if "inBlock" in status:
                            in_block = _unhex(status["inBlock"])
                            if not finalized:
                                break
                        elif "finalized" in status:
                            in_block = _unhex(status["finalized"])
                            break
                        elif {"dropped", "invalid", "usurped", "finalityTimeout"} & status.keys():
                            raise PermanentChainError(
                                f"chain `{self.chain}`: extrinsic 0x{extrinsic_hash.hex()} "
                                f"ended as {status}; re-read the nonce and submit again"
                            )
                    elif status in {"dropped", "invalid"}:
                        raise PermanentChainError(
                            f"chain `{self.chain}`: extrinsic 0x{extrinsic_hash.hex()} {status}"
                        )
        return in_block
