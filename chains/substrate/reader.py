"""What a watcher reads from one Substrate chain: relayer dispatch remarks in finalized blocks.

``relayer.follower`` drives it (cursor, reorg alarm, fork point, outages); final here means
finalized (GRANDPA on a real chain; chopsticks finalizes every block at once). For each block
with ``System.Remarked`` events the reader fetches the body, checks header and body against the
block hash, decodes each remark's extrinsic strictly and builds an observation per dispatch
remark. Remarks that are not relayer messages, or are ill-formed, or whose sender field is not
the signer, are skipped with a logged reason: nothing of them is handed over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from chains.endpoints import EndpointPool, urls_of
from chains.substrate.compatibility import IncompatibleNodeError, check_node
from chains.substrate.config import SubstrateChainConfig
from chains.substrate.connection import NodeConnection
from chains.substrate.evidence import (
    decode_remark_extrinsic,
    verify_body,
    verify_header,
)
from chains.substrate.grandpa_mode import GrandpaSource
from chains.substrate.observation import block_evidence, build_observation, decode_calls
from chains.substrate.remark import (
    Dispatch,
    RemarkError,
    UnknownRemarkKindError,
    UnknownRemarkVersionError,
    decode_remark,
    is_ours,
)
from chains.substrate.rpc import Block, RemarkedEvent, SubstrateRpc
from proofs.errors import ProofError
from proofs.hashing import blake2_256
from relayer.errors import ChainError, TransientChainError
from relayer.keys import redact_url
from relayer.plugin import CursorView, Observation, Span
from relayer.retry import backoff_delay

__all__ = ["SubstrateReader"]

# Blocks read per span: chopsticks makes a block per extrinsic, so spans are mostly empty.
_SPAN = 64
# Seconds an answer may take (SubstrateRpc's own default).
_RPC_TIMEOUT_S = 10.0
# Blocks fetched at once while reading a span.
_CONCURRENCY = 8


class SubstrateReader:
    max_span = _SPAN
    depth = "finalized"

    def __init__(
        self,
        *,
        chain_name: str,
        domain: int,
        config: SubstrateChainConfig,
        url: str,
        log: Any = None,
        warm: Callable[[Sequence[Observation]], None] | None = None,
        grandpa: GrandpaSource | None = None,
    ) -> None:
        self.chain = chain_name
        self.domain = domain
        self.config = config
        urls = urls_of(url)
        self.url = urls[0]
        self.endpoint = redact_url(urls[0]) + (f" (+{len(urls) - 1} more)" if len(urls) > 1 else "")
        self.start_block = config.start_block
        self.poll_interval = config.poll_interval
        self.log = (log or structlog.get_logger()).bind(chain=chain_name)
        self.warm = warm
        # finality = "grandpa": our light client, not the node, says what is final
        self.grandpa = grandpa
        if grandpa is not None:
            self.depth = "grandpa"
        self._layout, self._calls = decode_calls(config)
        # The runtime version _check last approved: an upgrade while connected is checked too.
        self._checked_spec: int | None = None
        # The quorum is over the chain's own endpoints; an attester reading from an endpoint of
        # its own choosing (its operator's trust, not the chain's list) reads from that alone.
        self.quorum = config.quorum if urls == urls_of(config.rpc) else 1
        self._nodes = EndpointPool(
            [_Node(u, chain=chain_name, on_connect=self._check) for u in urls],
            fails_over=lambda exc: isinstance(exc, TransientChainError | IncompatibleNodeError),
            chain=chain_name,
            quorum=self.quorum,
            max_lag=config.max_lag,
            log=self.log,
        )
        self._head = asyncio.Event()
        self._limit = asyncio.Semaphore(_CONCURRENCY)
        # The head subscription: when it last announced a head (or was restarted), the task of
        # the current attempt, and whether the watchdog asked for a new one.
        self._last_head = time.monotonic()
        self._subscribed_at = 0.0
        self._subscription: asyncio.Task[None] | None = None
        self._restart = False
        self._retry_now = asyncio.Event()

    # --- the connection ------------------------------------------------------------------------

    async def _check(self, rpc: SubstrateRpc) -> None:
        self._checked_spec, _ = await check_node(
            rpc, chain=self.chain, endpoint=rpc.endpoint, config=self.config
        )

    async def _call(self, operation: Callable[[SubstrateRpc], Any]) -> Any:
        """``operation`` on the preferred endpoint, failing over to the next (see ``_Node``)."""
        return await self._nodes.first(lambda node: node.call(operation))

    async def _agreed_height(self, operation: Callable[[SubstrateRpc], Any], what: str) -> int:
        """``operation``'s height: from the preferred endpoint, or with a quorum the height
        ``quorum`` endpoints have all reached."""
        if self.quorum == 1:
            number: int = await self._call(operation)
            return number
        return await self._nodes.reached(lambda node: node.call(operation), what=what)

    async def close(self) -> None:
        if self.grandpa is not None:
            await self.grandpa.close()
        for node in self._nodes.members:
            await node.connection.close()

    # --- heads ---------------------------------------------------------------------------------

    async def background(self, cursor: CursorView) -> None:
        """Wake the follower on every finalized head; polling covers a lost subscription."""
        attempt = 0
        while True:
            self._subscription = asyncio.create_task(self._subscribe())
            try:
                await self._subscription
            except asyncio.CancelledError:
                running = asyncio.current_task()
                if not self._restart or (running is not None and running.cancelling()):
                    raise
                self._restart = False  # restart_head_stream: subscribe again at once
                continue
            except Exception as exc:  # noqa: BLE001  (any failure: poll until it is back)
                attempt = 1 if self._last_head > self._subscribed_at else attempt + 1
                if attempt == 1:
                    self.log.warning(
                        "heads.subscription_lost", error=f"{type(exc).__name__}: {exc}"
                    )
            self._retry_now.clear()
            try:
                async with asyncio.timeout(backoff_delay(max(attempt, 1), base=1.0, cap=30.0)):
                    await self._retry_now.wait()
            except TimeoutError:
                pass

    async def _subscribe(self) -> None:
        self._subscribed_at = time.monotonic()
        # The preferred endpoint's stream: a wake-up hint, every read still goes through _call.
        url = self._nodes.ordered()[0].url
        async with SubstrateRpc.connect(url, chain=self.chain) as rpc:
            async for _ in rpc.finalized_heads():
                self._last_head = time.monotonic()
                self._head.set()

    async def latest_head(self) -> int:
        async def head(rpc: SubstrateRpc) -> int:
            header = await rpc.header()
            if header is None:
                raise TransientChainError(f"chain `{self.chain}`: the node has no best header")
            return header.number

        return await self._agreed_height(head, "best block number")

    def head_stream_idle(self) -> float | None:
        return time.monotonic() - self._last_head

    def restart_head_stream(self) -> None:
        self._last_head = time.monotonic()
        if self._subscription is not None and not self._subscription.done():
            self._restart = True
            self._subscription.cancel()
        else:
            self._retry_now.set()

    async def wait_for_head(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._head.wait()
        except TimeoutError:
            pass
        self._head.clear()

    async def confirmed_head(self) -> int:
        if self.grandpa is not None:
            final: int = await self._call(self.grandpa.finalized)
            return final

        async def head(rpc: SubstrateRpc) -> int:
            header = await rpc.header(await rpc.finalized_head())
            if header is None:
                raise TransientChainError(f"chain `{self.chain}`: finalized head has no header")
            return header.number

        return await self._agreed_height(head, "finalized block number")

    async def hash_at(self, number: int) -> bytes | None:
        async def read(rpc: SubstrateRpc) -> bytes | None:
            return await rpc.block_hash(number)

        if self.quorum == 1:
            found: bytes | None = await self._call(read)
            return found
        return await self._nodes.agreed(
            lambda node: node.call(read),
            key=lambda h: "0x" + h.hex(),
            what=f"block {number}'s hash",
        )

    # --- reading -------------------------------------------------------------------------------

    async def read(self, start: int, end: int, *, after: bytes) -> Span:
        async def run(rpc: SubstrateRpc) -> Span:
            if (await rpc.runtime()).spec_version != self._checked_spec:
                await self._check(rpc)  # a runtime upgrade: still the one the config describes?
            found = await asyncio.gather(*(self._block(rpc, n) for n in range(start, end + 1)))
            end_hash = await rpc.block_hash(end)
            if end_hash is None:
                raise TransientChainError(f"node does not know block {end}, below its head")
            observations = [o for _, block in found for o in block]
            blocks = [(n, block[0].block_hash) for n, block in found if block]
            return Span(observations=observations, blocks=blocks, end_hash=end_hash)

        span: Span = await self._call(run)
        if self.quorum > 1:
            # Read from one endpoint: each block holding a message, and the end, must be the one
            # the quorum agrees on at its height.
            heights = [*span.blocks, (end, span.end_hash)]
            agreed = await asyncio.gather(*(self.hash_at(n) for n, _ in heights))
            for (number, seen), hash_ in zip(heights, agreed, strict=True):
                if seen != hash_:
                    raise TransientChainError(
                        f"chain `{self.chain}`: block {number} read from one endpoint is not "
                        f"the one {self.quorum} endpoints agree on; reading it again"
                    )
        if self.grandpa is not None:
            grandpa = self.grandpa
            linked = [*span.blocks, (end, span.end_hash)]
            problems: list[str] = await self._call(
                lambda rpc: grandpa.off_the_finalized_chain(rpc, linked)
            )
            if problems:
                raise ProofError(f"chain `{self.chain}`: " + "; ".join(problems))
            grandpa.forget_below(end)
        return span

    async def _block(self, rpc: SubstrateRpc, number: int) -> tuple[int, list[Observation]]:
        async with self._limit:
            block_hash = await rpc.block_hash(number)
            if block_hash is None:
                raise TransientChainError(f"node does not know block {number}, below its head")
            events = await rpc.remarked_events(block_hash)
            if not events:
                return number, []
            block = await rpc.block(block_hash)
            if block is None:
                raise TransientChainError(f"block {number} is missing at the node")
        # Hashing and decoding a body is CPU: off the event loop.
        observations = await asyncio.to_thread(self._observations, number, block, events)
        if observations and self.warm is not None:
            await asyncio.to_thread(self.warm, observations)
        return number, observations

    def _observations(
        self, number: int, block: Block, events: Sequence[RemarkedEvent]
    ) -> list[Observation]:
        header_scale = block.header.scale()
        header = verify_header(block.hash, header_scale)
        if header.number != number:
            raise ProofError(f"block at height {number} has a header of #{header.number}")
        verify_body(header, block.extrinsics, self.config.extrinsics_commitment)
        shared = block_evidence(header_scale, block.extrinsics)
        found: list[Observation] = []
        decoded: dict[int, Any] = {}
        for event in events:
            index = event.extrinsic_index
            if index not in decoded:
                try:
                    decoded[index] = decode_remark_extrinsic(
                        block.extrinsics[index], self._layout, self._calls
                    )
                except (ProofError, IndexError) as exc:
                    decoded[index] = None
                    self._ignored(number, index, f"its extrinsic is not a signed remark: {exc}")
            extrinsic = decoded[index]
            if extrinsic is None:
                continue
            position = next(
                (i for i, r in enumerate(extrinsic.remarks) if blake2_256(r) == event.remark_hash),
                None,
            )
            if position is None or extrinsic.signer != event.sender:
                self._ignored(number, index, "no remark of its extrinsic matches the event")
                continue
            remark = extrinsic.remarks[position]
            if not is_ours(remark):
                continue  # somebody else's remark: not ours to mention
            try:
                parsed = decode_remark(remark)
            except (UnknownRemarkVersionError, UnknownRemarkKindError) as exc:
                # Ours, from a newer sender: skipping it would lose it for good. The chain
                # waits here (retried, logged) until this relayer can read it.
                raise IncompatibleNodeError(f"chain `{self.chain}`: block {number}: {exc}") from exc
            except RemarkError as exc:
                self._ignored(number, index, str(exc))
                continue
            if not isinstance(parsed, Dispatch):
                continue  # a delivery to this chain: the submitter's business, not a message
            message = parsed.message
            if message.sender != extrinsic.signer:
                self._ignored(
                    number,
                    index,
                    f"message claims sender 0x{message.sender.hex()} but the extrinsic is "
                    f"signed by 0x{extrinsic.signer.hex()}",
                )
                continue
            if message.origin != self.domain:
                self._ignored(
                    number,
                    index,
                    f"message claims origin domain {message.origin}, this chain is domain "
                    f"{self.domain}",
                )
                continue
            found.append(
                build_observation(
                    chain_name=self.chain,
                    message=message.encode(),
                    block_number=number,
                    block_hash=block.hash,
                    block=shared,
                    extrinsic_index=index,
                    remark_index=position,
                )
            )
        return found

    def _ignored(self, number: int, index: int, reason: str) -> None:
        self.log.warning("remark.ignored", block=number, extrinsic=index, reason=reason)


class _Node:
    """One endpoint of the chain, with its own connection."""

    def __init__(
        self,
        url: str,
        *,
        chain: str,
        on_connect: Callable[[SubstrateRpc], Awaitable[None]],
    ) -> None:
        self.url = url
        self.endpoint = redact_url(url)
        self.chain = chain
        self.connection = NodeConnection(
            url,
            chain=chain,
            timeout=_RPC_TIMEOUT_S,
            on_connect=on_connect,
        )

    async def call(self, operation: Callable[[SubstrateRpc], Any]) -> Any:
        """``operation`` on a connected client. What the follower cannot tell apart from an
        endpoint failing (an error answer, an event list that does not decode) comes out as
        ``TransientChainError``, so that the chain waits and tries again, never stops the
        process; a proof failure stays a ``ProofError``."""
        rpc = await self.connection.client()
        try:
            return await operation(rpc)
        except (ProofError, KeyError, TypeError, ValueError, asyncio.CancelledError):
            raise
        except ChainError as exc:
            await self.connection.drop(rpc)
            if exc.retryable or isinstance(exc, IncompatibleNodeError):
                raise
            raise TransientChainError(f"chain `{self.chain}`: {exc}") from exc
        except Exception as exc:
            await self.connection.drop(rpc)
            raise TransientChainError(
                f"chain `{self.chain}`: {self.endpoint} answered something that does not decode "
                f"({type(exc).__name__}: {exc}); will retry"
            ) from exc
