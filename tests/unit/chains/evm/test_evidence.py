"""chains.evm.evidence on synthetic, consensus-valid Prague blocks: the watcher finds exactly the
Gateway's Dispatch logs, the verifier accepts them, and every forgery is an EvidenceRejectedError.

The blocks are built here the way anvil answers ``eth_getBlockByNumber`` / ``eth_getBlockReceipts``:
``receiptsRoot`` is the root of the receipts given, ``hash`` is keccak of the RLP header.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
import rlp
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chains.evm.evidence import (
    DISPATCH_TOPIC,
    EvmEvidence,
    abi_bytes,
    build_observations,
    verify_evidence,
)
from proofs import HashMismatchError, ProofError
from proofs.ethereum import encode_header, header_hash, receipt_trie, receipts_root
from proofs.hashing import keccak256
from relayer.errors import EvidenceRejectedError
from relayer.message import Message
from relayer.plugin import Observation
from tests.unit.proofs.test_mpt import Mutation, _mutation, mutate

CHAIN = "chain-a"
DOMAIN = 1000
DEST_DOMAIN = 2000
GATEWAY = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
OTHER = bytes.fromhex("e7f1725e7734ce288f8367e1bb143e90bb3f0512")  # a second deployment
TOKEN = bytes.fromhex("9fe46736679d2d9a65f0992f2272de9f3c7fa6e0")
TRANSFER_TOPIC = keccak256(b"Transfer(address,address,uint256)")
_ZERO32 = "0x" + "00" * 32
_EMPTY_ROOT = "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421"


def _h(value: bytes) -> str:
    return "0x" + value.hex()


def word(value: int) -> bytes:
    return value.to_bytes(32, "big")


# --- synthetic chain data ---------------------------------------------------------------------


def make_message(
    nonce: int = 0,
    *,
    origin: int = DOMAIN,
    destination: int = DEST_DOMAIN,
    body: bytes = b"hello",
) -> bytes:
    return Message(
        nonce=nonce,
        origin=origin,
        sender=b"\x00" * 12 + bytes.fromhex("70997970c51812dc3a010c7d01b50e0d17dc79c8"),
        destination=destination,
        recipient=b"\x00" * 12 + TOKEN,
        body=body,
    ).encode()


def dispatch_log(
    message: bytes,
    *,
    address: bytes = GATEWAY,
    destination: int | None = None,
    id_topic: bytes | None = None,
    data: bytes | None = None,
) -> dict[str, Any]:
    """A Gateway ``Dispatch(bytes32 indexed id, uint32 indexed destination, bytes message)``."""
    if destination is None:
        destination = Message.decode(message).destination
    return {
        "address": _h(address),
        "topics": [
            _h(DISPATCH_TOPIC),
            _h(keccak256(message) if id_topic is None else id_topic),
            _h(word(destination)),
        ],
        "data": _h(abi_encode(["bytes"], [message]) if data is None else data),
    }


def transfer_log(amount: int = 1) -> dict[str, Any]:
    return {
        "address": _h(TOKEN),
        "topics": [_h(TRANSFER_TOPIC), _h(word(1)), _h(word(2))],
        "data": _h(word(amount)),
    }


def make_receipts(*logs_per_receipt: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Type-2 receipts as eth_getBlockReceipts returns them (block-wide logIndex included)."""
    receipts = []
    block_log_index = 0
    for tx_index, logs in enumerate(logs_per_receipt):
        full_logs = []
        for log in logs:
            full_logs.append(
                {
                    **log,
                    "logIndex": hex(block_log_index),
                    "transactionIndex": hex(tx_index),
                    "removed": False,
                }
            )
            block_log_index += 1
        receipts.append(
            {
                "type": "0x2",
                "status": "0x1",
                "cumulativeGasUsed": hex(21_000 * (tx_index + 1) + 5_000 * block_log_index),
                "logsBloom": "0x" + "00" * 256,
                "logs": full_logs,
                "transactionIndex": hex(tx_index),
                "transactionHash": _h(keccak256(b"tx %d" % tx_index)),
                "gasUsed": "0x5208",
                "effectiveGasPrice": "0x3b9aca00",
            }
        )
    return receipts


def make_block(
    receipts: Sequence[dict[str, Any]], *, number: int = 0x2A, parent: bytes = b"\x11" * 32
) -> dict[str, Any]:
    """A Prague header as anvil serves it, committing to ``receipts``; ``hash`` is computed."""
    block: dict[str, Any] = {
        "parentHash": _h(parent),
        "sha3Uncles": "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347",
        "miner": "0x" + "00" * 20,
        "stateRoot": _h(keccak256(b"state %d" % number)),
        "transactionsRoot": _h(keccak256(b"txs %d" % number)),
        "receiptsRoot": _h(receipts_root(receipts)),
        "logsBloom": "0x" + "00" * 256,
        "difficulty": "0x0",
        "number": hex(number),
        "gasLimit": "0x1c9c380",
        "gasUsed": hex(21_000 * len(receipts)),
        "timestamp": hex(1_700_000_000 + number),
        "extraData": "0x",
        "mixHash": _h(keccak256(b"prevrandao")),
        "nonce": "0x0000000000000000",
        "baseFeePerGas": "0x3b9aca00",
        "withdrawalsRoot": _EMPTY_ROOT,
        "blobGasUsed": "0x0",
        "excessBlobGas": "0x0",
        "parentBeaconBlockRoot": _ZERO32,
        "requestsHash": "0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        # Not header fields: the encoder must ignore them.
        "size": "0x400",
        "uncles": [],
        "transactions": [r["transactionHash"] for r in receipts],
        "withdrawals": [],
    }
    block["hash"] = _h(header_hash(block))
    return block


MSG_1 = make_message(1, body=b"first")
MSG_2 = make_message(2, body=b"second")
MSG_3 = make_message(3, body=b"third" * 40)


def busy_block() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Twenty receipts (so proofs go through branch nodes) with three Gateway Dispatches among
    unrelated logs, a Dispatch of another contract and a non-Dispatch log of the Gateway."""
    logs: list[list[dict[str, Any]]] = [[transfer_log(i)] for i in range(20)]
    logs[1] = [dispatch_log(MSG_1, address=OTHER), dispatch_log(MSG_1)]
    logs[2] = []
    logs[7] = [
        dispatch_log(MSG_2),
        {"address": _h(GATEWAY), "topics": [_h(TRANSFER_TOPIC)], "data": "0x"},
        transfer_log(),
        dispatch_log(MSG_3),
    ]
    receipts = make_receipts(*logs)
    return make_block(receipts), receipts


def observe(
    block: dict[str, Any], receipts: Sequence[dict[str, Any]], gateway: bytes = GATEWAY
) -> list[Observation]:
    return build_observations(CHAIN, gateway, block, receipts)


# Built once for the property tests: they only re-encode its evidence.
_BUSY = busy_block()
_BUSY_OBSERVATIONS = observe(*_BUSY)


def single(message: bytes = MSG_1, **log_options: Any) -> Observation:
    """The one observation of a block whose only Gateway log is a Dispatch of ``message``."""
    receipts = make_receipts([transfer_log()], [dispatch_log(message, **log_options)])
    (obs,) = observe(make_block(receipts), receipts)
    return obs


def evidence_of(obs: Observation) -> EvmEvidence:
    return msgspec.msgpack.decode(obs.evidence, type=EvmEvidence)


def with_evidence(obs: Observation, **changes: Any) -> Observation:
    evidence = msgspec.structs.replace(evidence_of(obs), **changes)
    return msgspec.structs.replace(obs, evidence=msgspec.msgpack.encode(evidence))


def verify(obs: Observation, *, domain: int = DOMAIN) -> Message:
    verified = verify_evidence(obs, gateway=GATEWAY, domain=domain)
    assert verified.message == obs.message
    assert verified.block_hash == obs.block_hash
    assert verified.block_number == obs.block_number
    return Message.decode(verified.message)


def rejected(obs: Observation, match: str | None = None, *, domain: int = DOMAIN) -> str:
    with pytest.raises(EvidenceRejectedError, match=match) as info:
        verify_evidence(obs, gateway=GATEWAY, domain=domain)
    return str(info.value)


# --- the watcher side -------------------------------------------------------------------------


def test_synthetic_block_is_consensus_valid() -> None:
    block, receipts = busy_block()
    assert bytes.fromhex(block["hash"][2:]) == keccak256(encode_header(block))
    assert block["receiptsRoot"] == _h(receipt_trie(receipts).root)
    # Prague: 15 base fields + 6 fork fields.
    assert len(rlp.decode(encode_header(block))) == 21


def test_build_observations_finds_exactly_the_gateway_dispatches() -> None:
    block, receipts = busy_block()
    observations = observe(block, receipts)
    assert [o.message for o in observations] == [MSG_1, MSG_2, MSG_3]
    block_hash = bytes.fromhex(block["hash"][2:])
    for obs in observations:
        assert obs.origin_chain == CHAIN
        assert obs.block_hash == block_hash
        assert obs.block_number == 0x2A
        assert keccak256(evidence_of(obs).header_rlp) == block_hash


def test_log_index_is_the_position_inside_the_receipt_not_the_block_wide_index() -> None:
    block, receipts = busy_block()
    positions = [(e.tx_index, e.log_index) for e in map(evidence_of, observe(block, receipts))]
    assert positions == [(1, 1), (7, 0), (7, 3)]
    # The block-wide JSON-RPC logIndex of the last one is much larger.
    assert int(receipts[7]["logs"][3]["logIndex"], 16) > 3


def test_block_without_gateway_logs_gives_no_observations() -> None:
    receipts = make_receipts([transfer_log()], [dispatch_log(MSG_1, address=OTHER)], [])
    assert observe(make_block(receipts), receipts) == []


def test_empty_block_gives_no_observations() -> None:
    block = make_block([])
    assert block["receiptsRoot"] == _EMPTY_ROOT
    assert observe(block, []) == []


def test_watcher_for_another_gateway_sees_only_that_gateways_dispatches() -> None:
    block, receipts = busy_block()
    (obs,) = observe(block, receipts, gateway=OTHER)
    assert obs.message == MSG_1
    assert evidence_of(obs).log_index == 0
    # ... and that observation is not the relayed Gateway's.
    rejected(obs, "not the gateway")


def test_every_found_dispatch_verifies() -> None:
    block, receipts = busy_block()
    decoded = [verify(obs) for obs in observe(block, receipts)]
    assert [m.nonce for m in decoded] == [1, 2, 3]
    assert all(m.origin == DOMAIN and m.destination == DEST_DOMAIN for m in decoded)


def test_header_whose_hash_differs_from_the_claimed_one_is_refused_at_the_watcher() -> None:
    block, receipts = busy_block()
    block["hash"] = _h(keccak256(b"some other block"))
    with pytest.raises(HashMismatchError):
        observe(block, receipts)


def test_header_field_changed_after_hashing_is_refused_at_the_watcher() -> None:
    block, receipts = busy_block()
    block["timestamp"] = hex(int(block["timestamp"], 16) + 1)
    with pytest.raises(ProofError):
        observe(block, receipts)


@pytest.mark.parametrize("change", ["drop", "reorder", "alter_log", "add_dispatch"])
def test_receipts_not_matching_the_receipts_root_are_refused_at_the_watcher(change: str) -> None:
    block, receipts = busy_block()
    if change == "drop":
        del receipts[5]
    elif change == "reorder":
        receipts[3], receipts[4] = receipts[4], receipts[3]
    elif change == "alter_log":
        receipts[7]["logs"][0] = dispatch_log(make_message(2, body=b"forged"))
    else:
        receipts[2]["logs"] = [dispatch_log(make_message(9, body=b"injected"))]
    with pytest.raises(ProofError, match="receipts give root"):
        observe(block, receipts)


def test_undecodable_gateway_dispatch_is_refused_at_the_watcher_as_a_proof_error() -> None:
    # A lying endpoint can serve a self-consistent block (its own hash, its own receipts root)
    # with such a log: that must be a ProofError the watcher retries on, or skipped, not a crash.
    receipts = make_receipts([dispatch_log(MSG_1, data=b"\x00" * 31)])
    try:
        observations = observe(make_block(receipts), receipts)
    except ProofError:
        return
    assert observations == []


# --- the verifier side: forgeries ---------------------------------------------------------------


def test_forged_receipts_under_a_genuine_header_are_rejected() -> None:
    block, receipts = busy_block()
    forged_message = make_message(1, body=b"pay the attacker")
    forged = [dict(r) for r in receipts]
    forged[1] = {**receipts[1], "logs": [dispatch_log(forged_message)]}
    forged_trie = receipt_trie(forged)
    genuine = observe(block, receipts)[0]
    obs = msgspec.structs.replace(
        with_evidence(genuine, log_index=0, proof=forged_trie.proof(rlp.encode(1))),
        message=forged_message,
    )
    rejected(obs, "proof rejected")


def test_dispatch_from_another_address_is_rejected() -> None:
    block, receipts = busy_block()
    genuine = observe(block, receipts)[0]
    # Receipt 1's log 0 is the same Dispatch, emitted by another contract.
    rejected(with_evidence(genuine, log_index=0), "not the gateway")


def test_non_dispatch_log_of_the_gateway_is_rejected() -> None:
    block, receipts = busy_block()
    second = observe(block, receipts)[1]
    rejected(with_evidence(second, log_index=1), "not a Dispatch event")


def test_unrelated_log_is_rejected() -> None:
    block, receipts = busy_block()
    second = observe(block, receipts)[1]
    rejected(with_evidence(second, log_index=2), "not the gateway")


@pytest.mark.parametrize(
    "altered",
    [
        MSG_1[:-1],
        MSG_1 + b"!",
        MSG_1[:-1] + bytes([MSG_1[-1] ^ 1]),
        make_message(1, destination=3000, body=b"first"),
        MSG_2,
        b"",
    ],
    ids=["truncated", "extended", "bit-flip", "redirected", "another-dispatch", "empty"],
)
def test_altered_observation_message_is_rejected(altered: bytes) -> None:
    obs = observe(*busy_block())[0]
    rejected(msgspec.structs.replace(obs, message=altered), "id topic is not keccak256")


def test_observation_message_matching_the_id_but_not_the_logged_bytes_is_rejected() -> None:
    # A Gateway log whose id topic is keccak(MSG_1) but whose data carries MSG_2.
    obs = single(MSG_1, data=abi_encode(["bytes"], [MSG_2]))
    assert obs.message == MSG_2  # what the watcher read out of the data
    rejected(obs, "id topic is not keccak256")
    rejected(msgspec.structs.replace(obs, message=MSG_1), "other message bytes")


def test_undecodable_dispatch_data_is_rejected() -> None:
    receipts = make_receipts([dispatch_log(MSG_1, data=b"\x00" * 31)])
    block = make_block(receipts)
    trie = receipt_trie(receipts)
    evidence = EvmEvidence(
        header_rlp=encode_header(block), tx_index=0, log_index=0, proof=trie.proof(rlp.encode(0))
    )
    obs = Observation(
        origin_chain=CHAIN,
        message=MSG_1,
        block_number=0x2A,
        block_hash=header_hash(block),
        evidence=msgspec.msgpack.encode(evidence),
    )
    rejected(obs, "does not decode")


def test_block_hash_altered_is_rejected() -> None:
    obs = observe(*busy_block())[0]
    other = bytes(b ^ 0xFF for b in obs.block_hash)
    rejected(msgspec.structs.replace(obs, block_hash=other), "hash")


@pytest.mark.parametrize("delta", [-1, 1, 1000])
def test_block_number_altered_is_rejected(delta: int) -> None:
    obs = observe(*busy_block())[0]
    rejected(msgspec.structs.replace(obs, block_number=obs.block_number + delta), "number")


def test_header_of_another_block_is_rejected() -> None:
    obs = observe(*busy_block())[0]
    other_header = encode_header(make_block(make_receipts([transfer_log()]), number=0x2A))
    rejected(with_evidence(obs, header_rlp=other_header), "hash")


def test_forged_header_claiming_its_own_hash_with_a_foreign_proof_is_rejected() -> None:
    # The forger rehashes a header he changed, and claims that hash: the genuine proof no
    # longer hangs under the header's receiptsRoot.
    block, receipts = busy_block()
    obs = observe(block, receipts)[0]
    forged_block = make_block(make_receipts([dispatch_log(MSG_2)]))
    forged_header = encode_header(forged_block)
    forged = msgspec.structs.replace(
        with_evidence(obs, header_rlp=forged_header), block_hash=keccak256(forged_header)
    )
    rejected(forged, "proof rejected")


def test_message_claiming_another_origin_domain_is_rejected() -> None:
    obs = single(make_message(1, origin=DOMAIN + 1))
    rejected(obs, "origin domain")
    # The same evidence is fine for the chain that domain names.
    verify(obs, domain=DOMAIN + 1)


def test_destination_topic_differing_from_the_message_destination_is_rejected() -> None:
    obs = single(MSG_1, destination=DEST_DOMAIN + 1)
    rejected(obs, "destination topic")


def test_dispatch_without_the_destination_topic_is_rejected() -> None:
    receipts = make_receipts([{**dispatch_log(MSG_1), "topics": dispatch_log(MSG_1)["topics"][:2]}])
    (obs,) = observe(make_block(receipts), receipts)
    rejected(obs, "not a Dispatch event")


def test_message_not_in_the_version_3_format_is_rejected() -> None:
    raw = bytes([2]) + MSG_1[1:]
    obs = single(raw, destination=DEST_DOMAIN)
    rejected(obs, "version")
    short = b"\x03\x00"
    rejected(single(short, destination=DEST_DOMAIN), "shorter than its header")


@pytest.mark.parametrize(
    ("tx_index", "log_index"),
    [(0, 0), (2, 0), (7, 1), (1, 2), (1, -1), (-1, 1), (20, 0), (1000, 0), (1, 2**63 - 1)],
)
def test_wrong_tx_or_log_index_is_rejected(tx_index: int, log_index: int) -> None:
    obs = observe(*busy_block())[0]  # genuinely (1, 1)
    rejected(with_evidence(obs, tx_index=tx_index, log_index=log_index))


def test_proof_of_another_receipt_with_its_index_does_not_prove_this_message() -> None:
    block, receipts = busy_block()
    first, second, _ = observe(block, receipts)
    # Receipt 7's proof is genuine, its log 0 is a genuine Dispatch, but of MSG_2.
    rejected(with_evidence(first, tx_index=7, log_index=0, proof=evidence_of(second).proof))


def test_proof_of_another_receipt_under_this_index_is_rejected() -> None:
    block, receipts = busy_block()
    first, second, _ = observe(block, receipts)
    rejected(with_evidence(first, proof=evidence_of(second).proof), "proof rejected")


@pytest.mark.parametrize(
    "evidence",
    [
        b"",
        b"\x00",
        b"garbage",
        b"\xc0" * 40,
        msgspec.msgpack.encode({"header_rlp": b"x"}),
        msgspec.msgpack.encode(
            {"header_rlp": "not bytes", "tx_index": 0, "log_index": 0, "proof": []}
        ),
        msgspec.msgpack.encode({"header_rlp": b"", "tx_index": 0.5, "log_index": 0, "proof": []}),
        msgspec.msgpack.encode([1, 2, 3]),
    ],
)
def test_garbage_evidence_bytes_are_rejected(evidence: bytes) -> None:
    obs = observe(*busy_block())[0]
    rejected(msgspec.structs.replace(obs, evidence=evidence))


@settings(max_examples=300, deadline=None)
@given(evidence=st.binary(max_size=400))
def test_arbitrary_evidence_bytes_raise_only_evidence_rejected(evidence: bytes) -> None:
    obs = observe(*_BUSY)[0]
    rejected(msgspec.structs.replace(obs, evidence=evidence))


@settings(max_examples=400, deadline=None)
@given(which=st.integers(0, 2), mutation=_mutation)
def test_every_mutation_of_the_proof_nodes_is_rejected(which: int, mutation: Mutation) -> None:
    obs = _BUSY_OBSERVATIONS[which]
    nodes = mutate(tuple(evidence_of(obs).proof), mutation)
    if nodes is None:
        return
    rejected(with_evidence(obs, proof=nodes))


@settings(max_examples=300, deadline=None)
@given(
    header_rlp=st.one_of(st.binary(max_size=700), st.just(encode_header(_BUSY[0]))),
    tx_index=st.integers(-(2**63), 2**64 - 1),
    log_index=st.integers(-(2**63), 2**64 - 1),
    proof=st.lists(st.binary(max_size=300), max_size=4),
    number=st.integers(0, 2**64 - 1),
)
def test_structured_garbage_evidence_claiming_its_own_hash_raises_only_evidence_rejected(
    header_rlp: bytes, tx_index: int, log_index: int, proof: list[bytes], number: int
) -> None:
    # The observation claims exactly the hash of the header it carries, which gets the garbage
    # past the first check and into the header decoder and the trie walk.
    evidence = EvmEvidence(
        header_rlp=header_rlp, tx_index=tx_index, log_index=log_index, proof=proof
    )
    obs = Observation(
        origin_chain=CHAIN,
        message=MSG_1,
        block_number=number,
        block_hash=keccak256(header_rlp),
        evidence=msgspec.msgpack.encode(evidence),
    )
    rejected(obs)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200), destination=st.integers(0, 2**32 - 1))
def test_arbitrary_dispatch_payloads_of_the_gateway_raise_only_evidence_rejected(
    data: bytes, destination: int
) -> None:
    # A Gateway log with the right id topic but arbitrary data and destination topic.
    receipts = make_receipts([dispatch_log(MSG_1, data=data, destination=destination)])
    block = make_block(receipts)
    evidence = EvmEvidence(
        header_rlp=encode_header(block),
        tx_index=0,
        log_index=0,
        proof=receipt_trie(receipts).proof(rlp.encode(0)),
    )
    obs = Observation(
        origin_chain=CHAIN,
        message=MSG_1,
        block_number=0x2A,
        block_hash=header_hash(block),
        evidence=msgspec.msgpack.encode(evidence),
    )
    if data == abi_encode(["bytes"], [MSG_1]) and destination == DEST_DOMAIN:
        verify(obs)
    else:
        rejected(obs)


@given(st.binary(max_size=200))
def test_abi_bytes_reads_what_eth_abi_writes(value: bytes) -> None:
    assert abi_bytes(abi_encode(["bytes"], [value])) == value


@settings(max_examples=300)
@given(st.binary(max_size=120), st.data())
def test_abi_bytes_accepts_only_what_eth_abi_also_accepts(
    value: bytes, data: st.DataObject
) -> None:
    encoded = bytearray(abi_encode(["bytes"], [value]))
    position = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[position] = data.draw(st.integers(min_value=0, max_value=255))
    if data.draw(st.booleans()):
        encoded += bytes(data.draw(st.integers(min_value=1, max_value=40)))
    try:
        ours: bytes | None = abi_bytes(bytes(encoded))
    except ValueError:
        ours = None
    if ours is not None:
        # Stricter is allowed (exact length); accepting what eth_abi refuses is not, and where
        # both accept they agree.
        try:
            (theirs,) = abi_decode(["bytes"], bytes(encoded))
        except DecodingError:
            pytest.fail("abi_bytes accepted what eth_abi refuses")
        assert ours == theirs


@pytest.mark.parametrize(
    "data",
    [
        b"",
        (64).to_bytes(32, "big") + (0).to_bytes(32, "big"),
        (32).to_bytes(32, "big") + (5).to_bytes(32, "big") + b"hello" + b"\x01" + bytes(26),
        (32).to_bytes(32, "big") + (40).to_bytes(32, "big") + bytes(32),
    ],
    ids=["empty", "offset", "padding", "short"],
)
def test_abi_bytes_refuses_non_canonical_data(data: bytes) -> None:
    with pytest.raises(ValueError, match="ABI"):
        abi_bytes(data)
