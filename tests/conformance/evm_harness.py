"""The conformance kit's EVM chain: anvil (automine) with a Gateway and a TestRecipient."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from chains.evm.anvil import DEV_KEYS, AnvilNode
from chains.evm.config import EvmChainConfig
from chains.evm.devnet import ATTESTERS, _send, deploy_contracts
from chains.evm.rpc import EvmRpc
from proofs.committee import attestation_digest, eth_signed_message_hash
from proofs.hashing import keccak256
from relayer.config import ChainConfig
from relayer.ecdsa_key import EcdsaKey
from relayer.keys import KeyRef
from relayer.message import Message
from relayer.plugin import Delivery
from tests.conformance.harness import ORIGIN_DOMAIN, PEER_DOMAIN
from tests.e2e.proxy import JsonRpcProxy, TcpProxy
from tests.integration.anvil import start_anvil

_CHAIN_ID = 31377
_SENDER, _SUBMITTER = 3, 1
_DELIVERED_TOPIC = keccak256(b"Delivered(bytes32)")
_KEY_ENV = "KIT_EVM_SUBMITTER_KEY"


def _forge_receipts(method: str, params: Any, result: Any) -> Any:
    """One hex digit of every log's data changed: a message that was never sent, in receipts
    that no longer hash to the header's receipts root."""
    if method != "eth_getBlockReceipts" or not isinstance(result, list):
        return result
    for receipt in result:
        for entry in receipt.get("logs") or []:
            data = entry.get("data", "0x")
            if len(data) > 2:
                entry["data"] = data[:-1] + ("0" if data[-1] != "0" else "1")
    return result


class EvmHarness:
    kind = "evm"

    def __init__(self) -> None:
        self.node: AnvilNode = start_anvil(_CHAIN_ID)
        try:
            import asyncio  # noqa: PLC0415

            deployed = asyncio.run(deploy_contracts(self.node, ORIGIN_DOMAIN))
            self.gateway, self.recipient = deployed.gateway, deployed.recipient
            self.proxy = TcpProxy(self.node.port)
        except BaseException:
            self.node.stop()
            raise
        self._nonce = 0

    def _config(self, url: str) -> ChainConfig:
        plugin = EvmChainConfig(
            chain_id=_CHAIN_ID,
            rpc=url,
            gateway=self.gateway,
            confirmations=1,
            poll_interval=0.2,
            submitter_key=self.submitter_key(),
        )
        return ChainConfig(
            name="kit-evm",
            type="evm",
            domain=ORIGIN_DOMAIN,
            finality="confirmations",
            committee=None,
            plugin=plugin,
        )

    def chain(self) -> ChainConfig:
        return self._config(f"http://127.0.0.1:{self.proxy.port}")

    @contextlib.asynccontextmanager
    async def lying_chain(self) -> AsyncIterator[ChainConfig]:
        proxy = JsonRpcProxy(self.node.url)
        proxy.rewrite = _forge_receipts
        try:
            yield self._config(proxy.url)
        finally:
            proxy.close()

    def drop(self) -> None:
        self.proxy.drop()

    def restore(self) -> None:
        self.proxy.restore()

    async def send(self, count: int) -> list[bytes]:
        rpc = EvmRpc(self.node.url)
        try:
            config = self._config(self.node.url).plugin
            assert isinstance(config, EvmChainConfig)
            bodies = [f"kit {self._nonce + i}".encode() for i in range(count)]
            self._nonce += count
            sent = await _send(rpc, DEV_KEYS[_SENDER], config, PEER_DOMAIN, self.recipient, bodies)
        finally:
            await rpc.close()
        await self.advance()
        return [mid for mid, _ in sent]

    async def advance(self) -> None:
        for _ in range(2):  # one confirmation, and the block that makes it one
            self.node.rpc("evm_mine")

    def submitter_key(self) -> KeyRef:
        return KeyRef(env=_KEY_ENV)

    def key_env(self) -> dict[str, str]:
        return {_KEY_ENV: DEV_KEYS[_SUBMITTER]}

    def deliveries(self, count: int) -> list[Delivery]:
        keys = [EcdsaKey(bytes.fromhex(DEV_KEYS[i][2:]), f"dev key #{i}") for i in ATTESTERS[:2]]
        out = []
        for _ in range(count):
            self._nonce += 1
            message = Message(
                nonce=self._nonce,
                origin=PEER_DOMAIN,
                sender=b"\x0a" * 32,
                destination=ORIGIN_DOMAIN,
                recipient=bytes.fromhex(self.recipient[2:]).rjust(32, b"\0"),
                body=b"kit delivery %d" % self._nonce,
            )
            block_hash = keccak256(b"peer block %d" % self._nonce)
            digest = attestation_digest(
                _CHAIN_ID, bytes.fromhex(self.gateway[2:]), PEER_DOMAIN, message.id, block_hash
            )
            # The Gateway takes signatures in ascending signer order.
            signed = sorted(
                (key.address, key.sign_hash(eth_signed_message_hash(digest))) for key in keys
            )
            out.append(
                Delivery(
                    message_id=message.id,
                    message=message.encode(),
                    origin_block_hash=block_hash,
                    signatures=tuple(signature for _, signature in signed),
                )
            )
        return out

    async def delivered(self, message_ids: Sequence[bytes]) -> list[int]:
        rpc = EvmRpc(self.node.url)
        try:
            head = await rpc.block_number()
            logs = await rpc.logs(0, head, self.gateway, ["0x" + _DELIVERED_TOPIC.hex()])
        finally:
            await rpc.close()
        found = [bytes.fromhex(entry["topics"][1][2:]) for entry in logs]
        return [found.count(mid) for mid in message_ids]

    def close(self) -> None:
        self.proxy.close()
        self.node.stop()


def start() -> EvmHarness:
    return EvmHarness()
