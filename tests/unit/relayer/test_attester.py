"""relayer.attester: every observation is verified and signed as before, and each origin block
is published once, as one file holding all of its messages, after all of them are signed.

Real parts: the installed ``evm`` plugin on synthetic consensus-valid blocks, ``EcdsaKey`` with
anvil's dev keys, a directory checkpoint store, and the core reading what the attesters wrote.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from eth_account import Account

from chains.evm.anvil import DEV_KEYS
from chains.evm.config import EvmChainConfig
from proofs.committee import eth_signed_message_hash, recover_signer
from relayer.attester import Attester
from relayer.config import load_config
from relayer.ecdsa_key import EcdsaKey
from relayer.message import Message
from relayer.plugin import Observation
from relayer.store import State
from tests.unit.chains.evm.test_evidence import (
    dispatch_log,
    make_block,
    make_message,
    make_receipts,
    observe,
)
from tests.unit.relayer.test_core import COMMITTEE, CONFIG, Harness, RecordingLog, genuine

ATTESTERS = """
[[attesters]]
name = "att-1"
key = { env = "ATTESTER_KEY_1" }
origins = ["chain-a"]

[[attesters]]
name = "att-2"
key = { env = "ATTESTER_KEY_2" }
origins = ["chain-a"]
"""


class World:
    """The harness's core and store, and two attesters (dev keys #5, #6) publishing to it."""

    def __init__(self, tmp_path: Path) -> None:
        self.h = Harness(tmp_path)
        path = tmp_path / "attesters.toml"
        committee = ", ".join(f'"{a}"' for a in COMMITTEE)
        path.write_text(CONFIG.format(committee=committee) + ATTESTERS, encoding="utf-8")
        config = load_config(path, plugin_models={"evm": EvmChainConfig})
        self.keys = [EcdsaKey(Account.from_key(DEV_KEYS[i]), f"dev key #{i}") for i in (5, 6)]
        self.logs = [RecordingLog(), RecordingLog()]
        self.attesters = [
            Attester(
                config=config,
                name=f"att-{n + 1}",
                key=key,
                ledger=self.h.ledger,
                checkpoints=self.h.store,
                log=log,
            )
            for n, (key, log) in enumerate(zip(self.keys, self.logs, strict=True))
        ]
        self.origin = config.chain("chain-a")

    async def attest(self, n: int, observations: Sequence[Observation]) -> None:
        await self.attesters[n]._sink(self.origin)(observations)

    def file(self, n: int, block_hash: bytes) -> Path:
        return self.h.folder(block_hash) / (self.keys[n].address.hex() + ".msgpack")


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    try:
        yield world
    finally:
        world.h.ledger.close()


def next_block(parent: bytes, *nonces: int) -> list[Observation]:
    receipts = make_receipts(*([dispatch_log(make_message(n, body=b"next"))] for n in nonces))
    return observe(make_block(receipts, number=0x2B, parent=parent), receipts)


async def test_a_block_is_published_as_one_file_of_all_its_signed_messages(w: World) -> None:
    observations = genuine()
    block_hash = observations[0].block_hash
    await w.attest(0, observations)
    assert [p.name for p in w.h.folder(block_hash).iterdir()] == [w.file(0, block_hash).name]
    published = w.h.store.get_block(1000, block_hash)
    assert [a.message_id for a in published] == [Message.decode(o.message).id for o in observations]
    for att in published:
        assert (att.signer, att.origin_domain, att.origin_block_hash, att.destination_domain) == (
            w.keys[0].address,
            1000,
            block_hash,
            2000,
        )
        digest = w.h.digest(att.message_id, block_hash)
        assert recover_signer(eth_signed_message_hash(digest), att.signature) == w.keys[0].address


async def test_one_file_per_block_when_a_call_covers_two_blocks(w: World) -> None:
    first = genuine()
    second = next_block(first[0].block_hash, 4, 5)
    await w.attest(0, [*first, *second])
    for block, count in ((first, 3), (second, 2)):
        assert w.file(0, block[0].block_hash).is_file()
        assert len(w.h.store.get_block(1000, block[0].block_hash)) == count
    blocks = w.logs[0].named("block.attested")
    assert [(b["block"], b["messages"]) for b in blocks] == [
        (first[0].block_number, 3),
        (second[0].block_number, 2),
    ]


async def test_each_message_is_still_logged_at_debug_level_with_its_id(w: World) -> None:
    observations = genuine()
    await w.attest(0, observations)
    events = w.logs[0].events
    assert [level for level, event, _ in events if event == "message.attested"] == ["debug"] * 3
    assert [f["message_id"] for f in w.logs[0].named("message.attested")] == [
        "0x" + Message.decode(o.message).id.hex() for o in observations
    ]
    assert {f["route"] for f in w.logs[0].named("message.attested")} == {"chain-a->chain-b"}
    assert [event for level, event, _ in events if level == "info"] == ["block.attested"]


async def test_a_rejected_observation_is_left_out_of_its_blocks_file(w: World) -> None:
    good, source, _ = genuine()
    forged = msgspec.structs.replace(source, message=source.message + b"!")
    await w.attest(0, [good, forged])
    published = w.h.store.get_block(1000, good.block_hash)
    assert [a.message_id for a in published] == [Message.decode(good.message).id]
    assert len(w.logs[0].named("proof.rejected")) == 1


async def test_a_block_with_nothing_to_attest_writes_no_file(w: World) -> None:
    _, source, _ = genuine()
    forged = msgspec.structs.replace(source, message=source.message + b"!")
    await w.attest(0, [forged])
    assert not w.h.folder(source.block_hash).exists()
    assert w.logs[0].named("block.attested") == []


async def test_re_scanning_a_block_after_a_restart_rewrites_the_same_file(w: World) -> None:
    observations = genuine()
    await w.attest(0, observations)
    path = w.file(0, observations[0].block_hash)
    before = path.read_bytes()
    await w.attest(0, observations)
    assert path.read_bytes() == before
    assert len(list(path.parent.iterdir())) == 1


async def test_two_attesters_files_give_the_core_its_quorum(w: World) -> None:
    observations = genuine()
    await w.h.core.accept(observations)
    records = w.h.ledger.in_state(State.VERIFIED)
    await w.attest(0, observations)
    assert w.h.core._quorums(records) == []
    await w.attest(1, observations)
    ready = w.h.core._quorums(records)
    assert {r.id for r, _ in ready} == {r.id for r in records}
    for record, signatures in ready:
        signed = eth_signed_message_hash(w.h.digest(record.id, record.block_hash))
        assert sorted(recover_signer(signed, s) for s in signatures) == sorted(
            k.address for k in w.keys
        )


async def test_the_store_is_written_off_the_event_loop(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its fsyncs hold the thread for milliseconds; the other origins' watchers share the loop.
    writers: list[int] = []
    real = w.h.store.put_block

    def put_block(*args: Any) -> None:
        writers.append(threading.get_ident())
        real(*args)

    monkeypatch.setattr(w.h.store, "put_block", put_block)
    await w.attest(0, genuine())
    assert len(writers) == 1
    assert threading.get_ident() not in writers


async def test_signatures_made_ahead_are_published_only_once_the_final_block_verifies(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    observations = genuine()
    attester = w.attesters[0]
    presign = attester._presigner(w.origin)
    good, source, _ = observations
    forged = msgspec.structs.replace(source, message=source.message + b"!")
    presign([*observations, forged])  # a young block: nothing is published yet
    assert not w.h.folder(good.block_hash).exists()
    assert len(attester._presigned) == 4

    signed: list[bytes] = []
    real = attester._sign

    def sign(*args: Any) -> bytes:
        signed.append(args[2])
        return real(*args)

    monkeypatch.setattr(attester, "_sign", sign)
    await w.attest(0, [good, forged])  # final: only what verifies is taken, nothing re-signed
    assert signed == []
    published = w.h.store.get_block(1000, good.block_hash)
    assert [a.message_id for a in published] == [Message.decode(good.message).id]
    digest = w.h.digest(published[0].message_id, good.block_hash)
    assert recover_signer(eth_signed_message_hash(digest), published[0].signature) == (
        w.keys[0].address
    )
    # The forged one's stays unpublished in memory (until pushed out); the rest are waiting.
    assert len(attester._presigned) == 3


async def test_a_block_that_was_not_signed_ahead_is_signed_when_final(w: World) -> None:
    observations = genuine()
    w.attesters[0]._presigner(w.origin)(observations[:1])
    await w.attest(0, observations)
    published = w.h.store.get_block(1000, observations[0].block_hash)
    assert len(published) == 3
    for att in published:
        digest = w.h.digest(att.message_id, att.origin_block_hash)
        assert recover_signer(eth_signed_message_hash(digest), att.signature) == w.keys[0].address
    assert w.attesters[0]._presigned == {}
