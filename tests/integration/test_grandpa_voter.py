"""The dev GRANDPA voters on a real chopsticks chain, and the light client that follows them.

What chopsticks does with the runtime's GRANDPA state is pinned first (the voters are built on
it); then the client finalizes blocks through an authority-set change, and refuses every lie.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from structlog.testing import capture_logs

from chains.substrate.chopsticks import ChopsticksNode, start_chopsticks
from chains.substrate.finality_proof import (
    FinalityProof,
    GrandpaCheckpoint,
    decode_finality_proof,
    encode_finality_proof,
)
from chains.substrate.grandpa_finality import (
    FinalityProofRejectedError,
    GrandpaFinality,
    fetch_dev_checkpoint,
)
from chains.substrate.grandpa_voter import (
    AUTHORITIES_KEY,
    GrandpaVoterProcess,
    VoterSchedule,
    start_grandpa_voter,
    voter_keys,
)
from chains.substrate.rpc import SubstrateRpc
from chains.substrate.storage_keys import plain_storage_key
from proofs.errors import HashMismatchError, MalformedEncodingError, SignatureError
from proofs.hashing import blake2_256
from proofs.substrate import decode_digest, decode_header, decode_justification, grandpa_logs
from proofs.substrate.digest import ScheduledChange
from proofs.substrate.grandpa_store import GrandpaLightClient, PendingAuthorityChange
from proofs.substrate.scale import encode_compact
from tests.integration.chopsticks import require_chopsticks

pytestmark = pytest.mark.slow

CHAIN = "xrly-grandpa-dev"
DELAY = 4
SCHEDULE = VoterSchedule(voters=4, next_voters=3, set_id=7, change_delay=DELAY, every=2)


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _authorities(keys: list[SigningKey]) -> bytes:
    return encode_compact(len(keys)) + b"".join(
        bytes(key.verify_key) + (1).to_bytes(8, "little") for key in keys
    )


def test_storage_key_matches_frame() -> None:
    assert plain_storage_key("System", "Events").hex() == (
        "26aa394eea5630e07c48ae0c9558cef780d41e5e16056765bc8461851072c9d7"
    )


def test_finality_proof_round_trips_and_is_decoded_strictly() -> None:
    header = bytes(32) + encode_compact(9) + bytes(64) + encode_compact(0)
    proof = FinalityProof(block=b"\x01" * 32, justification=b"just", unknown_headers=(header,))
    encoded = encode_finality_proof(proof)
    assert encoded == b"\x01" * 32 + b"\x10just" + b"\x04" + header
    assert decode_finality_proof(encoded) == proof
    with pytest.raises(MalformedEncodingError):
        decode_finality_proof(encoded + b"\x00")
    with pytest.raises(MalformedEncodingError):
        decode_finality_proof(encoded[:-1])


def test_checkpoint_json_round_trips() -> None:
    keys = voter_keys("checkpoint", 0, 2)
    header = bytes(32) + encode_compact(3) + bytes(64) + encode_compact(0)
    checkpoint = GrandpaCheckpoint(
        header=header,
        authorities=tuple((bytes(k.verify_key), 1) for k in keys),
        set_id=4,
        pending_change=PendingAuthorityChange(
            next_authorities=((bytes(keys[0].verify_key), 2),), signal_number=3, delay=5
        ),
    )
    raw = checkpoint.to_json(block_hash=blake2_256(header), number=3)
    assert GrandpaCheckpoint.from_json(raw) == checkpoint
    assert checkpoint.light_client().pending_change == checkpoint.pending_change
    with pytest.raises(MalformedEncodingError):
        GrandpaCheckpoint.from_json({**raw, "set_id": -1})


def test_chopsticks_enacts_a_pending_change_but_keeps_its_log_out_of_the_header() -> None:
    """The runtime announces the change (System.Digest) and enacts it; chopsticks' header
    carries only its own BABE pre-digest, and CurrentSetId is not touched at enactment."""
    require_chopsticks()
    old, new = voter_keys("probe", 0, 3), voter_keys("probe", 1, 4)
    digest_key = _hex(plain_storage_key("System", "Digest"))
    set_id_key = _hex(plain_storage_key("Grandpa", "CurrentSetId"))
    with start_chopsticks(chain_name="xrly-grandpa-probe", block_mode="Manual") as node:
        head = int(node.rpc("chain_getHeader")["number"], 16)
        pending = (head + 1).to_bytes(4, "little") + (2).to_bytes(4, "little")
        pending += _authorities(new) + b"\x00"
        node.rpc(
            "dev_setStorage",
            [
                [
                    [_hex(AUTHORITIES_KEY), "0x01" + _authorities(old).hex()],
                    [set_id_key, _hex((5).to_bytes(8, "little"))],
                    [_hex(plain_storage_key("Grandpa", "PendingChange")), _hex(pending)],
                ]
            ],
        )
        assert bytes(old[0].verify_key).hex() in node.rpc(
            "state_call", ["GrandpaApi_grandpa_authorities", "0x"]
        )
        seen = []
        for _ in range(3):
            block_hash = node.rpc("dev_newBlock")
            header = node.rpc("chain_getHeader", [block_hash])
            raw_digest = node.rpc("state_getStorage", [digest_key, block_hash])
            header_logs = [bytes.fromhex(item[2:]) for item in header["digest"]["logs"]]
            seen.append(
                (
                    grandpa_logs(decode_digest(bytes.fromhex(raw_digest[2:]))),
                    [item[1:5] for item in header_logs],
                    bytes(new[0].verify_key).hex()
                    in node.rpc("state_getStorage", [_hex(AUTHORITIES_KEY), block_hash]),
                    node.rpc("state_getStorage", [set_id_key, block_hash]),
                )
            )
    logs, engines, enacted, _ = seen[0]
    assert len(logs) == 1
    assert isinstance(logs[0], ScheduledChange)
    assert logs[0].delay == 2
    assert len(logs[0].next_authorities) == 4
    assert engines == [b"BABE"]  # the runtime's FRNK log is not in the header
    assert not enacted
    assert seen[1][0] == ()
    assert not seen[1][2]
    assert seen[2][2]  # enacted at scheduled_at + delay
    assert {s[3] for s in seen} == {_hex((5).to_bytes(8, "little"))}


@pytest.fixture(scope="module")
def chain() -> Iterator[ChopsticksNode]:
    require_chopsticks()
    node = start_chopsticks(chain_name=CHAIN, block_mode="Manual")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def voter(
    chain: ChopsticksNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GrandpaVoterProcess]:
    log = Path(tmp_path_factory.mktemp("voter")) / "voter.log"
    process = start_grandpa_voter(chain.ws_url, schedule=SCHEDULE, log_path=log)
    try:
        yield process
    finally:
        process.stop()


def _build(chain: ChopsticksNode, voter: GrandpaVoterProcess, count: int) -> int:
    """Build ``count`` blocks and wait until the voters have seen them; the new head."""
    chain.rpc("dev_newBlock", [{"count": count}], timeout=60.0)
    head = int(chain.rpc("chain_getHeader")["number"], 16)
    deadline = time.monotonic() + 20.0
    while voter.rpc("dev_grandpaStatus")["seen"] < head:
        if time.monotonic() > deadline:
            raise AssertionError(f"voters did not reach #{head}:\n{voter.log_tail()}")
        time.sleep(0.05)
    return head


@contextlib.asynccontextmanager
async def _finality(
    chain: ChopsticksNode, voter: GrandpaVoterProcess
) -> AsyncIterator[tuple[GrandpaFinality, GrandpaCheckpoint, SubstrateRpc, SubstrateRpc]]:
    """A client bootstrapped from the voters' checkpoint: (client, checkpoint, chain, prover)."""
    async with (
        SubstrateRpc.connect(chain.ws_url, chain=CHAIN) as chain_rpc,
        SubstrateRpc.connect(voter.url, chain=CHAIN) as prover,
    ):
        checkpoint = await fetch_dev_checkpoint(prover)
        finality = GrandpaFinality(checkpoint.light_client(), chain=chain_rpc, prover=prover)
        yield finality, checkpoint, chain_rpc, prover


async def _build_async(chain: ChopsticksNode, voter: GrandpaVoterProcess, count: int) -> int:
    # Off the event loop: the open WebSockets must keep answering while the chain builds.
    return await asyncio.to_thread(_build, chain, voter, count)


async def test_client_finalizes_through_the_authority_set_change(
    chain: ChopsticksNode, voter: GrandpaVoterProcess
) -> None:
    async with _finality(chain, voter) as (finality, checkpoint, chain_rpc, prover):
        start = decode_header(checkpoint.header).number
        assert checkpoint.set_id == 7
        assert checkpoint.pending_change is not None
        enactment = checkpoint.pending_change.enactment_number
        assert enactment == start + DELAY
        head = await _build_async(chain, voter, DELAY + 5)

        # A request for a block of the old set is answered with the set's last block, with
        # the headers after the requested block, as sc-consensus-grandpa does.
        served = decode_finality_proof(
            bytes.fromhex(voter.rpc("grandpa_proveFinality", [start + 1])[2:])
        )
        justification = decode_justification(served.justification)
        assert justification.target_number == enactment
        assert [decode_header(h).number for h in served.unknown_headers] == list(
            range(start + 2, enactment + 1)
        )
        assert blake2_256(served.unknown_headers[-1]) == served.block

        first = await finality.advance()
        assert first is not None
        assert first.finalized.number == enactment
        assert first.set_changed
        assert finality.set_id == 8
        assert finality.store.authorities == tuple(
            (bytes(key.verify_key), 1) for key in voter_keys(SCHEDULE.seed, 1, 3)
        )
        final = await finality.sync()
        # every=2 from the checkpoint: the last even offset at or below the head.
        assert final.number == head - (head - start) % 2
        assert final.number > enactment
        last = await chain_rpc.header_by_number(final.number)
        assert last is not None
        assert final.hash == last[0]
        assert await finality.is_final(final.number, final.hash)
        middle = await chain_rpc.header_by_number(enactment - 1)
        assert middle is not None
        assert await finality.is_final(enactment - 1, middle[0])
        assert not await finality.is_final(enactment - 1, b"\x00" * 32)
        assert not await finality.is_final(final.number + 1, final.hash)

        # A store restored from its bytes (the ledger) links ancestors through the chain node.
        restored = GrandpaFinality(
            GrandpaLightClient.from_bytes(finality.store.to_bytes()), chain=chain_rpc, prover=prover
        )
        assert await restored.is_final(enactment - 1, middle[0])
        assert await restored.is_final(start, blake2_256(checkpoint.header))
        assert not await restored.is_final(start, b"\x00" * 32)

        # Blocks after the change are signed by the new set only, and the chain agrees.
        new_keys = {bytes(key.verify_key) for key in voter_keys(SCHEDULE.seed, 1, 3)}
        latest = decode_finality_proof(
            bytes.fromhex(voter.rpc("grandpa_proveFinality", [final.number])[2:])
        )
        signers = {p.authority_id for p in decode_justification(latest.justification).precommits}
        assert signers == new_keys
        on_chain = chain.rpc("state_call", ["GrandpaApi_grandpa_authorities", "0x"])
        assert all(key.hex() in on_chain for key in new_keys)


@pytest.mark.parametrize(
    ("lie", "error"),
    [
        ("flip-signature", SignatureError),
        ("outside-key", SignatureError),
        ("old-set", SignatureError),
        ("phantom-block", HashMismatchError),
    ],
)
async def test_lying_voters_are_refused_and_finality_does_not_advance(
    chain: ChopsticksNode, voter: GrandpaVoterProcess, lie: str, error: type[Exception]
) -> None:
    with capture_logs() as logs:
        async with _finality(chain, voter) as (finality, _, _, _):
            await _refused_then_followed_again(chain, voter, finality, lie, error)
    rejected = [entry for entry in logs if entry["event"] == "proof.rejected"]
    assert len(rejected) == 1
    assert rejected[0]["error"] == error.__name__
    assert rejected[0]["reason"]


async def _refused_then_followed_again(
    chain: ChopsticksNode,
    voter: GrandpaVoterProcess,
    finality: GrandpaFinality,
    lie: str,
    error: type[Exception],
) -> None:
    await finality.sync()
    if finality.set_id == 7:  # this test ran alone: pass the change first
        await _build_async(chain, voter, DELAY + 2)
        await finality.sync()
    assert finality.set_id == 8
    before = finality.finalized
    voter.rpc("dev_grandpaSetLie", [lie])
    try:
        await _build_async(chain, voter, 2)
        with pytest.raises(FinalityProofRejectedError) as refused:
            await finality.advance()
    finally:
        voter.rpc("dev_grandpaSetLie", ["honest"])
    assert isinstance(refused.value.reason, error)
    assert finality.finalized == before
    # The same endpoint, honest again, is followed again.
    assert (await finality.sync()).number > before.number


def test_voter_process_stops_cleanly(voter: GrandpaVoterProcess) -> None:
    voter.stop()
    assert voter.process.returncode == 0  # it ended on SIGTERM, it was not killed
    voter.stop()  # idempotent
