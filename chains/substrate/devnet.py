"""A local Substrate chain for ``relayer devnet``, the end-to-end tests and the benchmarks:
chopsticks started from the Kusama spec, and messages sent on it as dispatch remarks.

``//Alice`` and the other dev accounts derive from Substrate's public development phrase:
anyone can sign for them; they exist only on development chains.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

from chains.substrate.chopsticks import ChopsticksNode, start_chopsticks
from chains.substrate.config import SubstrateChainConfig
from chains.substrate.evidence import decode_remark_extrinsic
from chains.substrate.grandpa_voter import VoterSchedule
from chains.substrate.keys import Sr25519Keypair
from chains.substrate.observation import decode_calls
from chains.substrate.remark import Delivery, RemarkError, decode_remark, encode_dispatch
from chains.substrate.rpc import SubstrateRpc
from proofs.errors import ProofError
from proofs.hashing import blake2_256
from relayer.message import Message

__all__ = [
    "RECIPIENT_URI",
    "SENDER_URI",
    "SUBMITTER_URI",
    "VOTER_CHANGE_DELAY",
    "SubstrateDevChain",
    "dev_voter_schedule",
]

#: the account messages are sent from on the devnet
SENDER_URI = "//Alice"
#: the relayer's delivery account on the devnet
SUBMITTER_URI = "//Bob"
#: the account messages to a devnet Substrate chain are addressed to (it has no contracts)
RECIPIENT_URI = "//Charlie"
# Dispatch remarks per Utility.batch_all extrinsic: chopsticks takes about 7 s for a block of
# 100 and 21-27 s for one of 1000 (one remark an extrinsic: 0.3-0.9 messages/s).
_PER_EXTRINSIC = 100
#: blocks after the GRANDPA checkpoint at which the dev voters' set changes: the first block of
#: traffic, so that every demo crosses the change (a demo builds only a few blocks there)
VOTER_CHANGE_DELAY = 1


def dev_voter_schedule(change_delay: int | None = None) -> VoterSchedule:
    """The devnet's GRANDPA voters (``relayer devnet``'s and ``relayer-dev grandpa-voters``'),
    their set changing ``change_delay`` blocks after the checkpoint: None for
    ``VOTER_CHANGE_DELAY``, 0 for no change."""
    delay = VOTER_CHANGE_DELAY if change_delay is None else change_delay
    return VoterSchedule(change_delay=delay or None)


class SubstrateDevChain:
    """One chopsticks chain; ``stop()`` ends it (idempotent)."""

    def __init__(self, name: str, domain: int, config: SubstrateChainConfig | None = None) -> None:
        self.name = name
        self.domain = domain
        self.config = config
        self.node: ChopsticksNode = start_chopsticks(chain_name=name)
        self._next_nonce = 0
        #: when each sent message's extrinsic was seen finalized (benchmarks: origin final)
        self.finalized_at: dict[bytes, float] = {}
        # Delivery remarks counted so far, and the first block not scanned yet.
        self._deliveries: Counter[bytes] = Counter()
        self._scanned = 0

    @property
    def ws_url(self) -> str:
        return self.node.ws_url

    def stop(self) -> None:
        self.node.stop()

    async def send(
        self,
        destination: int,
        recipient: bytes,
        bodies: Sequence[bytes],
        *,
        sender_uri: str = SENDER_URI,
        per_extrinsic: int = _PER_EXTRINSIC,
    ) -> list[tuple[bytes, float]]:
        """One dispatch remark per body, ``per_extrinsic`` to a batch_all extrinsic, each
        extrinsic waited for until finalized: (message id, send time) per message."""
        signer = Sr25519Keypair.from_uri(sender_uri)
        word = recipient.rjust(32, b"\x00")
        sent: list[tuple[bytes, float]] = []
        async with SubstrateRpc.connect(self.ws_url, chain=self.name) as rpc:
            for start in range(0, len(bodies), per_extrinsic):
                messages = []
                for body in bodies[start : start + per_extrinsic]:
                    messages.append(
                        Message(
                            nonce=self._next_nonce,
                            origin=self.domain,
                            sender=signer.public_key,
                            destination=destination,
                            recipient=word,
                            body=body,
                        )
                    )
                    self._next_nonce += 1
                sent_at = time.time()
                await self._submit(rpc, signer, [encode_dispatch(m) for m in messages])
                final = time.time()
                self.finalized_at.update((m.id, final) for m in messages)
                sent.extend((m.id, sent_at) for m in messages)
        return sent

    async def send_remarks(self, remarks: Sequence[bytes], *, sender_uri: str = SENDER_URI) -> None:
        """Any remarks, in one extrinsic, waited for until finalized (tests of what the watcher
        must ignore)."""
        signer = Sr25519Keypair.from_uri(sender_uri)
        async with SubstrateRpc.connect(self.ws_url, chain=self.name) as rpc:
            await self._submit(rpc, signer, remarks)

    @staticmethod
    async def _submit(rpc: SubstrateRpc, signer: Sr25519Keypair, remarks: Sequence[bytes]) -> None:
        nonce = await rpc.account_nonce(signer.public_key)
        extrinsic = await rpc.remark_extrinsic(signer, remarks, nonce=nonce)
        await rpc.submit_and_watch(extrinsic, finalized=True, timeout=120.0)

    async def deliveries(self) -> Counter[bytes]:
        """How many delivery remarks each message id has on the chain, from any account (the
        exactly-once check): finalized blocks are scanned once each, in order."""
        layout, calls = decode_calls(
            self.config or SubstrateChainConfig(rpc=self.ws_url, system_chain=self.name)
        )
        async with SubstrateRpc.connect(self.ws_url, chain=self.name) as rpc:
            head = await rpc.header(await rpc.finalized_head())
            top = head.number if head is not None else -1
            while self._scanned <= top:
                block_hash = await rpc.block_hash(self._scanned)
                if block_hash is None:
                    break
                events = await rpc.remarked_events(block_hash)
                block = await rpc.block(block_hash) if events else None
                for event in events:
                    if block is None:
                        break
                    try:
                        extrinsic = decode_remark_extrinsic(
                            block.extrinsics[event.extrinsic_index], layout, calls
                        )
                    except (ProofError, IndexError):
                        continue
                    for remark in extrinsic.remarks:
                        if blake2_256(remark) != event.remark_hash:
                            continue
                        try:
                            parsed = decode_remark(remark)
                        except RemarkError:
                            continue
                        if isinstance(parsed, Delivery):
                            self._deliveries[parsed.message_id] += 1
                        break  # one event, one remark
                self._scanned += 1
        return Counter(self._deliveries)
