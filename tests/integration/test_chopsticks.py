"""A real chopsticks chain: a tagged remark from //Alice travels to a verified, decoded message."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from chains.substrate.chopsticks import (
    ChopsticksNode,
    start_chopsticks,
)
from chains.substrate.evidence import RemarkCalls, extract_remark, verify_body, verify_header
from chains.substrate.extrinsic import extra_layout
from chains.substrate.keys import Sr25519Keypair
from chains.substrate.remark import Dispatch, decode_remark, encode_dispatch
from chains.substrate.rpc import SubstrateRpc
from proofs.hashing import blake2_256
from relayer.message import Message
from tests.integration.chopsticks import require_chopsticks, running_chopsticks

pytestmark = pytest.mark.slow

CHAIN = "xrly-substrate-a"


@pytest.fixture(scope="session")
def chopsticks() -> Iterator[ChopsticksNode]:
    with running_chopsticks(CHAIN) as node:
        yield node


async def test_tagged_remark_is_found_verified_and_decoded(chopsticks: ChopsticksNode) -> None:
    alice = Sr25519Keypair.from_uri("//Alice")
    message = Message(7, 1000, b"\x11" * 32, 2000, b"\x22" * 32, b"hello substrate")
    remark = encode_dispatch(message)
    async with SubstrateRpc.connect(chopsticks.ws_url, chain=CHAIN, timeout=60) as rpc:
        assert await rpc.system_chain() == CHAIN
        runtime = await rpc.runtime()
        heads = rpc.finalized_heads()
        start = await anext(heads)
        extrinsic = await rpc.remark_extrinsic(alice, [remark])
        assert await rpc.fee_estimate(extrinsic) > 0
        inclusion = await rpc.submit_and_watch(extrinsic, timeout=60)

        # Follow finalized heads to the block, as a watcher would.
        head = start
        while head.number < start.number + 1:
            head = await anext(heads)
        await heads.aclose()
        block_hash = inclusion.block_hash
        assert await rpc.finalized_head() == block_hash

        events = [
            event
            for event in await rpc.remarked_events(block_hash)
            if event.remark_hash == blake2_256(remark)
        ]
        assert len(events) == 1
        block = await rpc.block(block_hash)
        assert block is not None
        header = verify_header(block_hash, block.header.scale())
        verify_body(header, block.extrinsics, "dev-concat")
        found = extract_remark(
            block.extrinsics,
            events[0].extrinsic_index,
            events[0].sender,
            events[0].remark_hash,
            extra_layout(runtime.signing),
            RemarkCalls(runtime.signing.remark_with_event, runtime.signing.batch_all),
        )
    assert events[0].sender == alice.public_key
    assert decode_remark(found) == Dispatch(message=message)


def test_stop_leaves_no_process_behind() -> None:
    require_chopsticks()
    node = start_chopsticks(chain_name="xrly-stop-check")
    assert node.started_in_s > 0
    assert node.rss_bytes() > 0
    workdir = node.workdir
    node.stop()
    assert node.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(node.process.pid, 0)
    assert not workdir.exists()
    node.stop()  # idempotent
