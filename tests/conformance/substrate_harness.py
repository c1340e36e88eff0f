"""The conformance kit's Substrate chain: chopsticks (a block per extrinsic, finalized at once)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from chains.substrate.config import SubstrateChainConfig
from chains.substrate.devnet import SUBMITTER_URI, SubstrateDevChain
from proofs.hashing import keccak256
from relayer.config import ChainConfig
from relayer.keys import KeyRef
from relayer.message import Message
from relayer.plugin import Delivery
from tests.conformance.harness import ORIGIN_DOMAIN, PEER_DOMAIN
from tests.e2e.proxy import TcpProxy
from tests.integration.chopsticks import require_chopsticks
from tests.integration.substrate_proxy import WsRpcProxy

_NAME = "kit-substrate"
_KEY_ENV = "KIT_SUBSTRATE_SUBMITTER_KEY"


def _forge_block(result: Any) -> Any:
    """One hex digit of the block's last extrinsic changed: a body the header did not seal."""
    extrinsics = result["block"]["extrinsics"]
    last = extrinsics[-1]
    extrinsics[-1] = last[:-1] + ("0" if last[-1] != "0" else "1")
    return result


class SubstrateHarness:
    kind = "substrate"

    def __init__(self) -> None:
        require_chopsticks()
        self.dev = SubstrateDevChain(_NAME, ORIGIN_DOMAIN)
        try:
            self.proxy = TcpProxy(self.dev.node.port)
        except BaseException:
            self.dev.stop()
            raise
        self._nonce = 0

    def _config(self, url: str) -> ChainConfig:
        plugin = SubstrateChainConfig(
            rpc=url,
            system_chain=_NAME,
            dev=True,
            extrinsics_commitment="dev-concat",
            poll_interval=0.2,
            submitter_key=self.submitter_key(),
        )
        return ChainConfig(
            name=_NAME,
            type="substrate",
            domain=ORIGIN_DOMAIN,
            finality="confirmations",
            committee=None,
            plugin=plugin,
        )

    def chain(self) -> ChainConfig:
        return self._config(f"ws://127.0.0.1:{self.proxy.port}")

    @contextlib.asynccontextmanager
    async def lying_chain(self) -> AsyncIterator[ChainConfig]:
        async with WsRpcProxy(self.dev.ws_url) as proxy:
            proxy.lie("chain_getBlock", _forge_block)
            yield self._config(proxy.url)

    def drop(self) -> None:
        self.proxy.drop()

    def restore(self) -> None:
        self.proxy.restore()

    async def send(self, count: int) -> list[bytes]:
        bodies = [f"kit {self._nonce + i}".encode() for i in range(count)]
        self._nonce += count
        sent = await self.dev.send(PEER_DOMAIN, b"\x0b" * 32, bodies)
        return [mid for mid, _ in sent]

    async def advance(self) -> None:
        return None  # chopsticks finalizes every block as it makes it

    def submitter_key(self) -> KeyRef:
        return KeyRef(env=_KEY_ENV)

    def key_env(self) -> dict[str, str]:
        return {_KEY_ENV: SUBMITTER_URI}

    def deliveries(self, count: int) -> list[Delivery]:
        out = []
        for _ in range(count):
            self._nonce += 1
            message = Message(
                nonce=self._nonce,
                origin=PEER_DOMAIN,
                sender=b"\x0a" * 32,
                destination=ORIGIN_DOMAIN,
                recipient=b"\x0c" * 32,
                body=b"kit delivery %d" % self._nonce,
            )
            out.append(
                Delivery(
                    message_id=message.id,
                    message=message.encode(),
                    origin_block_hash=keccak256(b"peer block %d" % self._nonce),
                    signatures=(),  # no pallet checks them (README: Substrate chains)
                )
            )
        return out

    async def delivered(self, message_ids: Sequence[bytes]) -> list[int]:
        counts = await self.dev.deliveries()
        return [counts[mid] for mid in message_ids]

    def close(self) -> None:
        self.proxy.close()
        self.dev.stop()


def start() -> SubstrateHarness:
    return SubstrateHarness()
