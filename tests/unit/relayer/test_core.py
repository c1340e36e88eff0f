"""relayer.core: observations are believed only once verified, and attested only by a quorum of
distinct committee members signing the digest the destination Gateway checks.

Real parts throughout: a ledger in tmp_path, a directory checkpoint store, a config loaded from
TOML, the installed ``evm`` plugin, synthetic but consensus-valid blocks (see test_evidence).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from chains.evm.config import EvmChainConfig
from chains.evm.plugin import EvmPlugin
from relayer.checkpoints import Attestation, DirectoryCheckpointStore
from relayer.config import Config, load_config
from relayer.core import Core
from relayer.message import Message
from relayer.plugin import Observation
from relayer.store import Ledger, MessageRecord, State
from tests.unit.chains.evm.test_evidence import (
    busy_block,
    dispatch_log,
    make_block,
    make_message,
    make_receipts,
    observe,
    transfer_log,
    with_evidence,
)

# anvil's dev accounts (public test keys): #5-#7 form the committee, #0 is a stranger.
STRANGER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
COMMITTEE_KEYS = (
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",  # 0x9965...
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",  # 0x976E...
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",  # 0x14dC...
)
COMMITTEE = [Account.from_key(k).address for k in COMMITTEE_KEYS]

CONFIG = """
[relayer]
database = "relayer.db"
checkpoints = "checkpoints"

[[chains]]
name = "chain-a"
type = "evm"
domain = 1000
chain_id = 31337
rpc = "http://127.0.0.1:8545"
gateway = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
submitter_key = {{ env = "RELAYER_KEY_CHAIN_A" }}
  [chains.committee]
  attesters = [{committee}]
  threshold = 2

[[chains]]
name = "chain-b"
type = "evm"
domain = 2000
chain_id = 31338
rpc = "http://127.0.0.1:8546"
gateway = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
submitter_key = {{ env = "RELAYER_KEY_CHAIN_B" }}
  [chains.committee]
  attesters = [{committee}]
  threshold = 2
"""


def sign(key: str, digest: bytes) -> bytes:
    """An attester's signature: EIP-191 over the 32-byte digest, as ``relayer attest`` signs."""
    return bytes(Account.sign_message(encode_defunct(primitive=digest), private_key=key).signature)


def make_id(message: bytes) -> bytes:
    return Message.decode(message).id


class RecordingLog:
    """A structlog stand-in that keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def _record(self, level: str, event: str, **fields: Any) -> None:
        self.events.append((level, event, fields))

    def debug(self, event: str, **fields: Any) -> None:
        self._record("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._record("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._record("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._record("error", event, **fields)

    def bind(self, **_: Any) -> RecordingLog:
        return self

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for _, name, fields in self.events if name == event]


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        path = tmp_path / "relayer.toml"
        committee = ", ".join(f'"{a}"' for a in COMMITTEE)
        path.write_text(CONFIG.format(committee=committee), encoding="utf-8")
        self.config: Config = load_config(path, plugin_models={"evm": EvmChainConfig})
        self.ledger = Ledger.open(self.config.relayer.database)
        self.store = DirectoryCheckpointStore(self.config.relayer.checkpoints)
        self.log = RecordingLog()
        self.core = Core(self.config, self.ledger, self.store, self.log)
        # What each (claimed) signer has published per block: a block's file holds all of it.
        self.published: dict[tuple[bytes, bytes], list[Attestation]] = {}

    def record(self, message_id: bytes) -> MessageRecord:
        record = self.ledger.get(message_id)
        assert record is not None
        return record

    def state(self, message_id: bytes) -> State | None:
        record = self.ledger.get(message_id)
        return None if record is None else record.state

    def digest(self, message_id: bytes, block_hash: bytes, destination: str = "chain-b") -> bytes:
        return EvmPlugin().attestation_digest(
            self.config.chain(destination), 1000, message_id, block_hash
        )

    def attest(
        self,
        key: str,
        record: MessageRecord,
        *,
        signed_block_hash: bytes | None = None,
        claimed_block_hash: bytes | None = None,
        claimed_signer: bytes | None = None,
        destination: str = "chain-b",
    ) -> bytes:
        """Publish ``key``'s EIP-191 signature over the message's attestation digest."""
        account = Account.from_key(key)
        digest = self.digest(
            record.id,
            record.block_hash if signed_block_hash is None else signed_block_hash,
            destination,
        )
        signature = sign(key, digest)
        self.publish(
            Attestation(
                signer=bytes.fromhex(account.address[2:])
                if claimed_signer is None
                else claimed_signer,
                signature=signature,
                origin_domain=1000,
                message_id=record.id,
                origin_block_hash=record.block_hash
                if claimed_block_hash is None
                else claimed_block_hash,
                destination_domain=self.config.chain(destination).domain,
            )
        )
        return signature

    def publish(self, attestation: Attestation) -> None:
        """Add ``attestation`` to its signer's file for its block, as an attester would."""
        key = (attestation.signer, attestation.origin_block_hash)
        batch = self.published.setdefault(key, [])
        batch.append(attestation)
        self.store.put_block(1000, attestation.origin_block_hash, attestation.signer, batch)

    def folder(self, block_hash: bytes) -> Path:
        return self.config.relayer.checkpoints / "1000" / block_hash.hex()


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        harness.ledger.close()


def genuine() -> list[Observation]:
    return observe(*busy_block())


async def verified(h: Harness) -> MessageRecord:
    """One genuine message, accepted and VERIFIED."""
    obs = genuine()[0]
    await h.core.accept([obs])
    record = h.ledger.in_state(State.VERIFIED)[0]
    assert record.message == obs.message
    return record


def signer_of(record: MessageRecord, signature: bytes, h: Harness) -> str:
    digest = h.digest(record.id, record.block_hash)
    return str(Account.recover_message(encode_defunct(primitive=digest), signature=signature))


# --- intake ------------------------------------------------------------------------------------


def test_config_loads_two_evm_chains_with_a_two_of_three_committee(h: Harness) -> None:
    assert [c.name for c in h.config.chains] == ["chain-a", "chain-b"]
    committee = h.config.chain("chain-a").committee
    assert committee is not None
    assert committee.threshold == 2
    assert list(committee.attesters) == COMMITTEE
    assert set(h.core.plugins) == {"chain-a", "chain-b"}


async def test_verified_observations_reach_verified(h: Harness) -> None:
    observations = genuine()
    await h.core.accept(observations)
    assert h.core.verified_event.is_set()
    for obs in observations:
        record = h.record(make_id(obs.message))
        assert record.state is State.VERIFIED
        assert record.origin_chain == "chain-a"
        assert record.destination_chain == "chain-b"
        assert record.route == "chain-a->chain-b"
        assert record.message == obs.message
        assert record.block_hash == obs.block_hash
        assert record.block_number == obs.block_number
        assert h.ledger.evidence(record.id) == obs.evidence
        assert record.last_error is None
        assert record.finality == "committee", "the origin chain's finality mode, for explain"
    assert [r.nonce for r in h.ledger.in_state(State.VERIFIED)] == [1, 2, 3]
    assert len(h.log.named("message.verified")) == 3
    assert h.log.named("proof.rejected") == []


async def test_forged_observation_is_rejected_with_its_reason(h: Harness) -> None:
    good, forged_source, _ = genuine()
    forged = msgspec.structs.replace(forged_source, block_number=forged_source.block_number + 1)
    await h.core.accept([good, forged])
    assert h.state(make_id(good.message)) is State.VERIFIED
    record = h.record(make_id(forged.message))
    assert record.state is State.REJECTED
    assert record.last_error is not None
    assert "block number" in record.last_error
    (logged,) = h.log.named("proof.rejected")
    assert logged["message_id"] == "0x" + record.id.hex()
    assert logged["reason"] == record.last_error


async def test_rejected_message_never_moves_on(h: Harness) -> None:
    source = genuine()[0]
    forged = with_evidence(source, log_index=0)  # the same Dispatch, of another contract
    await h.core.accept([forged])
    record = h.record(make_id(forged.message))
    assert record.state is State.REJECTED
    assert record.last_error is not None
    assert "not the gateway" in record.last_error
    # A quorum of signatures in the store does not attest it ...
    h.attest(COMMITTEE_KEYS[0], record)
    h.attest(COMMITTEE_KEYS[1], record)
    await run_collector(h, until=_never, rounds=20)
    # ... and neither does seeing it again.
    await h.core.accept([forged])
    assert h.record(record.id).state is State.REJECTED
    assert h.ledger.due(State.VERIFIED) == []
    assert h.record(record.id).signatures == ()


async def test_unknown_destination_domain_is_rejected(h: Harness) -> None:
    message = make_message(7, destination=3000)
    receipts = make_receipts([transfer_log()], [dispatch_log(message)])
    (obs,) = observe(make_block(receipts), receipts)
    await h.core.accept([obs])
    record = h.record(make_id(message))
    assert record.state is State.REJECTED
    assert record.destination_chain == "domain-3000"
    assert record.last_error == "destination domain 3000 is not configured"


async def test_observation_that_is_not_a_message_is_not_recorded(h: Harness) -> None:
    obs = msgspec.structs.replace(genuine()[0], message=b"\x03 too short")
    await h.core.accept([obs])
    assert h.ledger.counts() == {}
    assert len(h.log.named("proof.rejected")) == 1
    assert not h.core.verified_event.is_set()


async def test_feeding_the_same_observations_twice_changes_nothing(h: Harness) -> None:
    good, source, _ = genuine()
    forged = msgspec.structs.replace(source, message=source.message + b"!")
    await h.core.accept([good, forged])
    ids = [make_id(good.message), make_id(forged.message)]
    before = [(h.record(i), h.ledger.history(i)) for i in ids]
    h.core.verified_event.clear()
    await h.core.accept([good, forged])
    assert [(h.record(i), h.ledger.history(i)) for i in ids] == before
    assert not h.core.verified_event.is_set()


async def test_feeding_an_attested_message_again_keeps_it_attested(h: Harness) -> None:
    record = await verified(h)
    h.attest(COMMITTEE_KEYS[0], record)
    h.attest(COMMITTEE_KEYS[1], record)
    assert h.core._try_attest(record)
    attested = h.record(record.id)
    await h.core.accept([genuine()[0]])
    assert h.record(record.id) == attested


async def test_message_reincluded_after_an_origin_reorg_is_verified_at_its_new_block(
    h: Harness,
) -> None:
    record = await verified(h)
    h.attest(COMMITTEE_KEYS[0], record)
    # The same Dispatch, mined again in a competing block at the same height.
    receipts = make_receipts([dispatch_log(record.message)])
    (moved,) = observe(make_block(receipts, parent=b"\x22" * 32), receipts)
    assert moved.block_hash != record.block_hash
    await h.core.accept([moved])
    again = h.record(record.id)
    assert again.state is State.VERIFIED
    assert again.block_hash == moved.block_hash
    # The old block's signature binds the old block hash: with one new one, no quorum.
    h.attest(COMMITTEE_KEYS[1], again)
    assert not h.core._try_attest(again)
    h.attest(COMMITTEE_KEYS[0], again)
    assert h.core._try_attest(again)


async def test_forged_observation_of_a_known_message_does_not_undo_its_verification(
    h: Harness,
) -> None:
    record = await verified(h)
    good = genuine()[0]
    # Same message bytes, a made-up block: the evidence cannot verify.
    forged = msgspec.structs.replace(good, block_hash=b"\xee" * 32, block_number=7)
    await h.core.accept([forged])
    after = h.record(record.id)
    assert after.state is State.VERIFIED
    assert after.block_hash == record.block_hash


# --- attestations ------------------------------------------------------------------------------


async def test_one_signature_leaves_the_message_verified(h: Harness) -> None:
    record = await verified(h)
    h.attest(COMMITTEE_KEYS[0], record)
    assert not h.core._try_attest(record)
    assert h.record(record.id).state is State.VERIFIED


async def test_no_signature_leaves_the_message_verified(h: Harness) -> None:
    record = await verified(h)
    assert not h.core._try_attest(record)
    assert h.record(record.id).state is State.VERIFIED


async def test_two_committee_signatures_attest_with_signatures_sorted_by_signer(
    h: Harness,
) -> None:
    record = await verified(h)
    # #5 (0x9965...) first, #7 (0x14dC...) second: the ledger must hold them the other way.
    first = h.attest(COMMITTEE_KEYS[0], record)
    second = h.attest(COMMITTEE_KEYS[2], record)
    assert h.core._try_attest(record)
    attested = h.record(record.id)
    assert attested.state is State.ATTESTED
    assert attested.signatures == (second, first)
    signers = [signer_of(record, s, h) for s in attested.signatures]
    assert signers == [COMMITTEE[2], COMMITTEE[0]]
    assert [int(s, 16) for s in signers] == sorted(int(s, 16) for s in signers)
    (logged,) = h.log.named("message.attested")
    assert logged["signers"] == 2


async def test_exactly_a_threshold_of_signatures_is_kept_in_signer_order(h: Harness) -> None:
    # More than the threshold would only cost gas on chain (each signature is recovered there).
    record = await verified(h)
    for key in COMMITTEE_KEYS:
        h.attest(key, record)
    assert h.core._try_attest(record)
    signatures = h.record(record.id).signatures
    signers = [int(signer_of(record, s, h), 16) for s in signatures]
    assert len(signers) == 2
    assert signers == sorted(signers)


async def test_strangers_signature_does_not_count(h: Harness) -> None:
    record = await verified(h)
    h.attest(COMMITTEE_KEYS[0], record)
    h.attest(STRANGER_KEY, record)
    assert not h.core._try_attest(record)
    assert h.record(record.id).state is State.VERIFIED


async def test_stranger_claiming_a_members_address_does_not_count(h: Harness) -> None:
    record = await verified(h)
    h.attest(COMMITTEE_KEYS[0], record)
    h.attest(STRANGER_KEY, record, claimed_signer=bytes.fromhex(COMMITTEE[1][2:]))
    assert not h.core._try_attest(record)


async def test_duplicate_signature_of_one_member_counts_once(h: Harness) -> None:
    record = await verified(h)
    h.attest(COMMITTEE_KEYS[0], record)
    # The same member's signature again, filed under another (claimed) signer's name.
    h.attest(COMMITTEE_KEYS[0], record, claimed_signer=b"\x42" * 20)
    assert len(list(h.folder(record.block_hash).iterdir())) == 2
    assert not h.core._try_attest(record)
    assert h.record(record.id).state is State.VERIFIED


async def test_signature_over_another_block_hash_does_not_count(h: Harness) -> None:
    record = await verified(h)
    h.attest(COMMITTEE_KEYS[0], record)
    # Filed as if for this block, but signed over another one.
    h.attest(COMMITTEE_KEYS[1], record, signed_block_hash=b"\x33" * 32)
    assert not h.core._try_attest(record)
    assert h.record(record.id).state is State.VERIFIED


async def test_attestation_filed_for_another_block_hash_does_not_count(h: Harness) -> None:
    record = await verified(h)
    h.attest(COMMITTEE_KEYS[0], record)
    other = b"\x33" * 32
    h.attest(COMMITTEE_KEYS[1], record, signed_block_hash=other, claimed_block_hash=other)
    assert not h.core._try_attest(record)


async def test_signature_for_another_destination_does_not_count(h: Harness) -> None:
    record = await verified(h)
    h.attest(COMMITTEE_KEYS[0], record)
    h.attest(COMMITTEE_KEYS[1], record, destination="chain-a")
    assert not h.core._try_attest(record)


@pytest.mark.parametrize(
    "signature",
    [b"", b"\x01" * 64, b"\x01" * 64 + b"\x00", b"\x00" * 65, b"\xff" * 65, b"\x01" * 66],
    ids=["empty", "64-bytes", "v-0", "zero", "out-of-range", "66-bytes"],
)
async def test_malformed_signature_is_ignored(h: Harness, signature: bytes) -> None:
    record = await verified(h)
    h.attest(COMMITTEE_KEYS[0], record)
    h.publish(
        Attestation(
            signer=bytes.fromhex(COMMITTEE[1][2:]),
            signature=signature,
            origin_domain=1000,
            message_id=record.id,
            origin_block_hash=record.block_hash,
            destination_domain=2000,
        )
    )
    assert not h.core._try_attest(record)
    assert h.record(record.id).state is State.VERIFIED


async def test_high_s_twin_of_a_members_signature_does_not_count(h: Harness) -> None:
    record = await verified(h)
    h.attest(COMMITTEE_KEYS[0], record)
    genuine_signature = sign(COMMITTEE_KEYS[1], h.digest(record.id, record.block_hash))
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = int.from_bytes(genuine_signature[32:64], "big")
    twin = (
        genuine_signature[:32] + (n - s).to_bytes(32, "big") + bytes([55 - genuine_signature[64]])
    )
    h.publish(
        Attestation(
            signer=bytes.fromhex(COMMITTEE[1][2:]),
            signature=twin,
            origin_domain=1000,
            message_id=record.id,
            origin_block_hash=record.block_hash,
            destination_domain=2000,
        )
    )
    assert not h.core._try_attest(record)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"[]",
        b'{"signer": "0x00"}',
        b"\xff\xfe\x00",
        msgspec.msgpack.encode({"format": "attestations.block.v1", "signer": 5}),
        msgspec.msgpack.encode({"format": "attestations.block.v9", "messages": []}),
        msgspec.msgpack.encode([1, 2, 3]),
    ],
    ids=[
        "broken-json",
        "empty",
        "array",
        "wrong-schema",
        "binary",
        "msgpack-wrong-schema",
        "msgpack-unknown-format",
        "msgpack-array",
    ],
)
async def test_garbage_file_in_the_store_is_ignored(h: Harness, content: bytes) -> None:
    record = await verified(h)
    h.attest(COMMITTEE_KEYS[0], record)
    (h.folder(record.block_hash) / "garbage.msgpack").write_bytes(content)
    assert not h.core._try_attest(record)
    h.attest(COMMITTEE_KEYS[1], record)
    assert h.core._try_attest(record)
    assert len(h.record(record.id).signatures) == 2


def _never() -> bool:
    return False


async def run_collector(
    h: Harness, *, until: Any, rounds: int = 200, timeout: float = 20.0
) -> None:
    """Run ``collect_attestations`` until ``until()``, for at least ``rounds`` loop turns and
    at most ``timeout`` seconds: the collector looks quorums up in a worker thread, which on a
    loaded machine takes more turns than an idle one (a bound in turns alone was flaky)."""
    task = asyncio.create_task(h.core.collect_attestations(interval=0.005))
    deadline = time.monotonic() + timeout
    try:
        turns = 0
        while turns < rounds or (time.monotonic() < deadline and until is not _never):
            if until():
                return
            turns += 1
            await asyncio.sleep(0 if turns < rounds else 0.005)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_collector_attests_every_message_with_a_quorum(h: Harness) -> None:
    await h.core.accept(genuine())
    records = h.ledger.in_state(State.VERIFIED)
    for record in records[:2]:
        h.attest(COMMITTEE_KEYS[1], record)
        h.attest(COMMITTEE_KEYS[2], record)
    h.attest(COMMITTEE_KEYS[0], records[2])

    def done() -> bool:
        return all(h.state(r.id) is State.ATTESTED for r in records[:2])

    await run_collector(h, until=done)
    assert done()
    assert h.state(records[2].id) is State.VERIFIED


async def test_messages_long_short_of_a_quorum_do_not_hide_newer_ones(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two per pass, and "long" is now: without postponing, the two oldest (never signed) would
    # be the whole of every pass and the third, signed, would wait forever.
    monkeypatch.setattr("relayer.core._DUE_PER_PASS", 2)
    monkeypatch.setattr("relayer.core._STALLED_AFTER", 0.0)
    await h.core.accept(genuine())
    stalled, signed = h.ledger.in_state(State.VERIFIED)[:2], h.ledger.in_state(State.VERIFIED)[2]
    h.attest(COMMITTEE_KEYS[1], signed)
    h.attest(COMMITTEE_KEYS[2], signed)

    await run_collector(h, until=lambda: h.state(signed.id) is State.ATTESTED)
    assert h.state(signed.id) is State.ATTESTED
    for record in stalled:
        after = h.record(record.id)
        assert after.state is State.VERIFIED
        assert after.next_attempt_at >= record.next_attempt_at + 9
        assert [e.to_state for e in h.ledger.history(record.id)] == [
            State.OBSERVED,
            State.VERIFIED,
        ]
    (warning,) = h.log.named("attestations.stalled")[:1]
    assert warning["messages"] == 2


async def test_messages_short_of_a_quorum_for_a_moment_are_not_postponed(h: Harness) -> None:
    await h.core.accept(genuine())
    records = h.ledger.in_state(State.VERIFIED)
    await run_collector(h, until=_never, rounds=50)
    assert [h.record(r.id).next_attempt_at for r in records] == [r.next_attempt_at for r in records]
    assert h.log.named("attestations.stalled") == []


async def test_collector_attests_once_the_second_signature_arrives(h: Harness) -> None:
    record = await verified(h)
    h.attest(COMMITTEE_KEYS[0], record)
    task = asyncio.create_task(h.core.collect_attestations(interval=0.005))
    try:
        for _ in range(20):
            await asyncio.sleep(0)
        assert h.state(record.id) is State.VERIFIED
        h.attest(COMMITTEE_KEYS[1], record)

        async def attested() -> None:
            while h.state(record.id) is not State.ATTESTED:
                await asyncio.sleep(0.005)

        await asyncio.wait_for(attested(), timeout=5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
