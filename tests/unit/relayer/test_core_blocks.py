"""relayer.core collects quorums from per-block checkpoint files: one read per origin block for
all of its waiting messages, and the same rules as ever over what it finds (only signatures over
this block and destination, distinct committee members, exactly the threshold).

Real parts: a directory checkpoint store, signatures made with ``EcdsaKey`` the way an attester
makes them, anvil's dev keys #5-#7 as the committee (threshold 2), #0 as a stranger.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from chains.evm.anvil import DEV_KEYS
from proofs.committee import eth_signed_message_hash, recover_signer
from relayer import core as core_module
from relayer.checkpoints import Attestation
from relayer.ecdsa_key import EcdsaKey
from relayer.store import MessageRecord, State
from tests.unit.chains.evm.test_evidence import (
    dispatch_log,
    make_block,
    make_message,
    make_receipts,
    observe,
)
from tests.unit.relayer.test_core import COMMITTEE, Harness, genuine

MEMBERS = [EcdsaKey(Account.from_key(k), f"anvil dev key #{i}") for i, k in enumerate(DEV_KEYS)]
A, B, C = MEMBERS[5], MEMBERS[6], MEMBERS[7]
STRANGER = MEMBERS[0]
OTHER_BLOCK = b"\x33" * 32


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        harness.ledger.close()


def test_the_committee_is_anvils_dev_keys_five_to_seven() -> None:
    assert [k.checksum_address for k in (A, B, C)] == COMMITTEE


def publish(
    h: Harness,
    key: EcdsaKey,
    records: Sequence[MessageRecord],
    *,
    filed_under: bytes | None = None,
    signed_over: bytes | None = None,
    destination: str = "chain-b",
    claimed_destination: str | None = None,
) -> None:
    """``key``'s block file: its signatures over ``records`` (all of one block), as the
    attester signs them, filed under ``filed_under`` (default: their block)."""
    block = records[0].block_hash if filed_under is None else filed_under

    def signature(record: MessageRecord) -> bytes:
        over = record.block_hash if signed_over is None else signed_over
        return key.sign_hash(eth_signed_message_hash(h.digest(record.id, over, destination)))

    attestations = [
        Attestation(
            signer=key.address,
            signature=signature(r),
            origin_domain=1000,
            message_id=r.id,
            origin_block_hash=block,
            destination_domain=h.config.chain(claimed_destination or destination).domain,
        )
        for r in records
    ]
    h.store.put_block(1000, block, key.address, attestations)


async def one_block(h: Harness) -> list[MessageRecord]:
    """The three VERIFIED messages of one origin block."""
    await h.core.accept(genuine())
    records = h.ledger.in_state(State.VERIFIED)
    assert len(records) == 3
    assert len({r.block_hash for r in records}) == 1
    return records


async def two_blocks(h: Harness) -> tuple[list[MessageRecord], list[MessageRecord]]:
    """Three VERIFIED messages of one block and two of the next."""
    first = await one_block(h)
    receipts = make_receipts(*([dispatch_log(make_message(n, body=b"later"))] for n in (4, 5)))
    block = make_block(receipts, number=0x2B, parent=first[0].block_hash)
    await h.core.accept(observe(block, receipts))
    second = [r for r in h.ledger.in_state(State.VERIFIED) if r.block_hash != first[0].block_hash]
    assert len(second) == 2
    return first, second


def ready_ids(h: Harness, records: Sequence[MessageRecord]) -> set[bytes]:
    return {record.id for record, _ in h.core._quorums(records)}


class CountingStore:
    """The harness's store, counting block reads."""

    def __init__(self, h: Harness) -> None:
        self.inner = h.store
        self.reads: list[tuple[int, bytes]] = []

    def put_block(self, *args: Any) -> None:
        self.inner.put_block(*args)

    def get_block(self, origin_domain: int, block_hash: bytes) -> list[Attestation]:
        self.reads.append((origin_domain, block_hash))
        return self.inner.get_block(origin_domain, block_hash)


async def test_a_block_of_messages_reaches_quorum_exactly_at_the_threshold(h: Harness) -> None:
    records = await one_block(h)
    publish(h, A, records)
    assert ready_ids(h, records) == set()
    publish(h, B, records[:2])  # B's file for this block holds two of its three messages
    assert ready_ids(h, records) == {r.id for r in records[:2]}
    publish(h, C, records)
    ready = h.core._quorums(records)
    assert [r.id for r, _ in ready] == [r.id for r in records]
    for record, signatures in ready:
        signed = eth_signed_message_hash(h.digest(record.id, record.block_hash))
        signers = [recover_signer(signed, s) for s in signatures]
        # Exactly the threshold, distinct members, ascending: what the Gateway checks.
        assert len(signers) == 2
        assert signers == sorted(set(signers))
        assert set(signers) <= {A.address, B.address, C.address}


async def test_each_waiting_block_is_read_once_per_pass(h: Harness) -> None:
    first, second = await two_blocks(h)
    counting = CountingStore(h)
    h.core.checkpoints = counting
    assert h.core._quorums([*first, *second]) == []
    assert sorted(counting.reads) == sorted({(1000, r.block_hash) for r in (first[0], second[0])})
    for key in (A, B):
        publish(h, key, first)
        publish(h, key, second)
    counting.reads.clear()
    assert len(h.core._quorums([*first, *second])) == 5
    assert len(counting.reads) == 2


async def test_a_block_nobody_published_yet_is_retried_on_the_next_pass(h: Harness) -> None:
    records = await one_block(h)
    short: dict[Any, Any] = {}
    assert h.core._quorums(records, short) == []
    publish(h, A, records)
    publish(h, C, records)
    assert {r.id for r, _ in h.core._quorums(records, short)} == {r.id for r in records}
    assert short == {}


async def test_signatures_over_another_block_hash_do_not_count(h: Harness) -> None:
    records = await one_block(h)
    publish(h, A, records)
    # Filed under this block, signed over another one.
    publish(h, B, records, signed_over=OTHER_BLOCK)
    assert ready_ids(h, records) == set()


async def test_a_file_that_claims_another_block_does_not_count_where_it_lies(
    h: Harness,
) -> None:
    records = await one_block(h)
    block_hash = records[0].block_hash
    publish(h, A, records)
    # B's genuine signatures, in a file that says it is for another block, moved into this
    # block's directory: the directory is no evidence, the file's claim does not match.
    publish(h, B, records, filed_under=OTHER_BLOCK)
    name = B.address.hex() + ".msgpack"
    (h.folder(OTHER_BLOCK) / name).rename(h.folder(block_hash) / name)
    assert len(h.store.get_block(1000, block_hash)) == 6
    assert ready_ids(h, records) == set()


async def test_signatures_for_another_destination_do_not_count(h: Harness) -> None:
    records = await one_block(h)
    publish(h, A, records)
    publish(h, B, records, destination="chain-a")
    assert ready_ids(h, records) == set()
    # Nor when the entry claims the right destination: the signature is over the other one.
    publish(h, B, records, destination="chain-a", claimed_destination="chain-b")
    assert ready_ids(h, records) == set()
    publish(h, B, records)
    assert ready_ids(h, records) == {r.id for r in records}


async def test_a_candidate_set_that_fell_short_is_not_recovered_again(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = await one_block(h)
    calls: list[bytes] = []
    real = core_module.select_quorum

    def counting(digest: bytes, *args: Any) -> Any:
        calls.append(digest)
        return real(digest, *args)

    monkeypatch.setattr(core_module, "select_quorum", counting)
    publish(h, A, records)
    publish(h, STRANGER, records)  # enough candidates, one valid member
    short: dict[Any, Any] = {}
    assert h.core._quorums(records, short) == []
    assert len(calls) == 3
    assert h.core._quorums(records, short) == []
    assert len(calls) == 3  # the short poll only read the block
    # A new candidate is a new set: checked, and the quorum is found.
    publish(h, B, records)
    assert len(h.core._quorums(records, short)) == 3
    assert len(calls) == 6
    assert short == {}


async def test_messages_no_longer_waiting_are_forgotten(h: Harness) -> None:
    first, second = await two_blocks(h)
    short: dict[Any, Any] = {}
    h.core._quorums([*first, *second], short)
    assert {mid for mid, _, _ in short} == {r.id for r in (*first, *second)}
    h.core._quorums(second, short)
    assert {mid for mid, _, _ in short} == {r.id for r in second}


async def collector(h: Harness, **intervals: float) -> asyncio.Task[None]:
    task = asyncio.create_task(h.core.collect_attestations(**intervals))
    await asyncio.sleep(0)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_collector_polls_quickly_while_messages_wait_for_signatures(h: Harness) -> None:
    records = await one_block(h)
    publish(h, A, records)
    # Nothing signals the collector when a file lands: only the short poll can see it.
    task = await collector(h, interval=60, waiting_interval=0.005)
    try:
        await asyncio.sleep(0.05)
        assert all(h.state(r.id) is State.VERIFIED for r in records)
        publish(h, B, records)

        async def attested() -> None:
            while any(h.state(r.id) is not State.ATTESTED for r in records):
                await asyncio.sleep(0.005)

        await asyncio.wait_for(attested(), timeout=5)
    finally:
        await stop(task)


async def test_collector_polls_slowly_when_nothing_is_due(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[State] = []
    real = h.ledger.due

    def due(state: State, **options: Any) -> list[MessageRecord]:
        passes.append(state)
        return real(state, **options)

    monkeypatch.setattr(h.ledger, "due", due)
    task = await collector(h, interval=60, waiting_interval=0.001)
    try:
        await asyncio.sleep(0.1)
        assert len(passes) == 1
        # A newly verified message wakes it at once.
        await h.core.accept(genuine())
        for _ in range(100):
            if len(passes) > 1:
                break
            await asyncio.sleep(0.005)
        assert len(passes) > 1
    finally:
        await stop(task)


@pytest.mark.parametrize(
    ("waiting", "spent", "expected"),
    [
        (False, 0.001, 0.25),  # nothing due: the long wait
        (True, 0.001, 0.05),  # a cheap pass: the short wait
        (True, 0.03, 0.12),  # a costly pass: polling stays at a fifth of the time
        (True, 0.2, 0.25),  # never slower than when nothing is due
    ],
)
def test_poll_wait_is_short_while_messages_wait_but_bounded_by_the_pass_cost(
    waiting: bool, spent: float, expected: float
) -> None:
    wait = core_module._poll_wait(
        waiting=waiting, spent=spent, interval=0.25, waiting_interval=0.05
    )
    assert wait == pytest.approx(expected)
