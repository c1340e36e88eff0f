"""proofs.ethereum on real mainnet data: header hashes, receipts roots, receipt/log/state proofs."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs import HashMismatchError, MalformedEncodingError, ProofError
from proofs.ethereum import (
    bloom_may_contain,
    decode_receipt,
    encode_header,
    encode_receipt,
    header_hash,
    receipt_trie,
    receipts_root,
    verify_account_proof,
    verify_header,
    verify_log,
    verify_receipt_proof,
    verify_storage_proof,
)
from proofs.hashing import keccak256
from proofs.mpt_build import TrieBuild
from tests.unit.proofs.eth_vectors import hx, load, receipt_vector
from tests.unit.proofs.test_mpt import Mutation, _mutation, mutate

# Mainnet's genesis block (public chain data): the one legacy, 15-field header everyone knows.
_ZERO32 = "0x" + "00" * 32
_EMPTY_ROOT = "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421"
MAINNET_GENESIS = {
    "hash": "0xd4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3",
    "parentHash": _ZERO32,
    "sha3Uncles": "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347",
    "miner": "0x" + "00" * 20,
    "stateRoot": "0xd7f8974fb5ac78d9ac099b9ad5018bedc2ce0a72dad1827a1709da30580f0544",
    "transactionsRoot": _EMPTY_ROOT,
    "receiptsRoot": _EMPTY_ROOT,
    "logsBloom": "0x" + "00" * 256,
    "difficulty": "0x400000000",
    "number": "0x0",
    "gasLimit": "0x1388",
    "gasUsed": "0x0",
    "timestamp": "0x0",
    "extraData": "0x11bbe8db4e347b4e8c937c1c8370e4b5ed33adb3db69cbdb7a38e1e50b1b82fa",
    "mixHash": _ZERO32,
    "nonce": "0x0000000000000042",
}


def test_cancun_mainnet_header_hashes_to_its_block_hash() -> None:
    block = load("helios_rpc/block.json")
    assert "0x" + header_hash(block).hex() == block["hash"]
    verify_header(block)


def test_legacy_pow_header_hashes_to_its_block_hash() -> None:
    verify_header(MAINNET_GENESIS)


@pytest.mark.parametrize(
    "field",
    [
        "parentHash",
        "stateRoot",
        "receiptsRoot",
        "number",
        "timestamp",
        "extraData",
        "baseFeePerGas",
        "withdrawalsRoot",
        "excessBlobGas",
        "parentBeaconBlockRoot",
    ],
)
def test_changing_any_header_field_breaks_the_hash(field: str) -> None:
    block = copy.deepcopy(load("helios_rpc/block.json"))
    value = block[field]
    block[field] = value[:-1] + ("1" if value[-1] != "1" else "2")
    with pytest.raises(HashMismatchError):
        verify_header(block)


def test_only_the_fork_fields_present_are_hashed_in_canonical_order() -> None:
    block = dict(load("helios_rpc/block.json"))
    del block["withdrawalsRoot"]  # what a client that omits a field would show
    fields = rlp.decode(encode_header(block))
    assert len(fields) == 19
    assert fields[15] == bytes.fromhex(block["baseFeePerGas"][2:])
    assert fields[16] == b""  # blobGasUsed 0x0, now directly after the base fee
    assert header_hash(block) != hx(block["hash"])


@pytest.mark.parametrize("value", [None, 5, "12", "0xzz", ""])
def test_a_present_fork_field_must_be_hex(value: object) -> None:
    block = dict(load("helios_rpc/block.json"), excessBlobGas=value)
    with pytest.raises(MalformedEncodingError):
        header_hash(block)


def test_prague_requests_hash_is_hashed_when_present() -> None:
    block = dict(load("helios_rpc/block.json"))
    plain = header_hash(block)
    block["requestsHash"] = "0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert header_hash(block) != plain
    assert len(rlp.decode(encode_header(block))) == 21


@settings(max_examples=300, deadline=None)
@given(
    block=st.dictionaries(
        st.sampled_from(
            [
                "hash",
                "number",
                "parentHash",
                "miner",
                "nonce",
                "baseFeePerGas",
                "logsBloom",
                "extraData",
            ]
        ),
        st.one_of(st.text(max_size=12), st.integers(), st.none(), st.just("0x"), st.just("0xzz")),
    )
)
def test_garbage_block_objects_raise_only_proof_error(block: dict[str, Any]) -> None:
    full = {**MAINNET_GENESIS, **block}
    try:
        verify_header(full)
    except ProofError:
        return


def test_receipts_root_of_all_202_receipts_matches_the_header() -> None:
    block = load("helios_rpc/block.json")
    receipts = load("helios_rpc/receipts.json")
    assert len(receipts) == 202
    assert "0x" + receipts_root(receipts).hex() == block["receiptsRoot"]


def test_reordered_or_dropped_receipts_give_another_root() -> None:
    block = load("helios_rpc/block.json")
    receipts = load("helios_rpc/receipts.json")
    root = hx(block["receiptsRoot"])
    assert receipts_root(receipts[1:]) != root
    assert receipts_root([receipts[1], receipts[0], *receipts[2:]]) != root


def test_receipt_without_type_key_is_legacy_and_pre_byzantium_carries_a_root() -> None:
    receipt = dict(load("helios_rpc/receipts.json")[0])
    del receipt["type"]
    legacy = decode_receipt(encode_receipt(receipt))
    assert legacy.tx_type == 0
    assert legacy.status == 1
    del receipt["status"]
    receipt["root"] = "0x" + "ab" * 32
    old = decode_receipt(encode_receipt(receipt))
    assert old.post_state == b"\xab" * 32
    assert old.status == -1


@pytest.mark.parametrize("tx_type", [1, 2, 3, 4])
def test_typed_receipts_round_trip(tx_type: int) -> None:
    receipt = dict(load("helios_rpc/receipts.json")[0], type=hex(tx_type))
    assert decode_receipt(encode_receipt(receipt)).tx_type == tx_type


def test_real_receipt_proof_decodes_the_deposit_event() -> None:
    vec = receipt_vector()
    receipt = verify_receipt_proof(vec.receipts_root, vec.tx_index, vec.proof)
    assert receipt.tx_type == 2
    assert receipt.status == 1
    assert receipt.cumulative_gas_used == int(vec.receipt["cumulativeGasUsed"], 16)
    log = verify_log(vec.receipts_root, vec.tx_index, 0, vec.proof)
    expected = vec.receipt["logs"][0]
    assert log.address == hx(expected["address"])
    assert log.topics == tuple(hx(t) for t in expected["topics"])
    assert log.data == hx(expected["data"])


def test_our_receipt_proof_equals_the_one_the_node_served() -> None:
    vec = receipt_vector()
    trie = receipt_trie(load("helios_rpc/receipts.json"))
    assert trie.root == vec.receipts_root
    assert tuple(trie.proof(rlp.encode(vec.tx_index))) == vec.proof


def test_every_log_of_a_real_block_is_in_its_header_bloom() -> None:
    block = load("helios_rpc/block.json")
    bloom = hx(block["logsBloom"])
    items = {
        hx(item)
        for receipt in load("helios_rpc/receipts.json")
        for log in receipt["logs"]
        for item in (log["address"], *log["topics"])
    }
    assert len(items) > 50
    assert all(bloom_may_contain(bloom, item) for item in items)
    assert not bloom_may_contain(bytes(256), items.pop())


def _bloom_of(items: list[bytes]) -> bytes:
    """The bloom as the yellow paper builds it, written independently of the checker."""
    bits = 0
    for item in items:
        digest = keccak256(item)
        for i in (0, 2, 4):
            bits |= 1 << (int.from_bytes(digest[i : i + 2], "big") & 2047)
    return bits.to_bytes(256, "big")


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=30), st.binary(max_size=40))
def test_bloom_has_no_false_negatives(items: list[bytes], other: bytes) -> None:
    bloom = _bloom_of(items)
    assert all(bloom_may_contain(bloom, item) for item in items)
    # An item is only reported when all three of its bits are set.
    own = int.from_bytes(_bloom_of([other]), "big")
    assert bloom_may_contain(bloom, other) == (own & ~int.from_bytes(bloom, "big") == 0)


def test_bloom_of_the_wrong_size_is_malformed() -> None:
    with pytest.raises(MalformedEncodingError):
        bloom_may_contain(bytes(255), b"x")


def test_every_log_in_the_block_is_provable_from_rebuilt_receipts() -> None:
    receipts = load("helios_rpc/receipts.json")
    trie = receipt_trie(receipts)
    for index in (0, 1, 15, 16, 127, 128, 201):
        proof = trie.proof(rlp.encode(index))
        receipt = verify_receipt_proof(trie.root, index, proof)
        assert len(receipt.logs) == len(receipts[index]["logs"])


def test_log_index_past_the_receipts_logs_is_refused() -> None:
    vec = receipt_vector()
    with pytest.raises(ProofError):
        verify_log(vec.receipts_root, vec.tx_index, 1, vec.proof)


def test_proof_for_another_index_is_refused() -> None:
    vec = receipt_vector()
    for other in (0, vec.tx_index - 1, vec.tx_index + 1, 1000):
        with pytest.raises(ProofError):
            verify_receipt_proof(vec.receipts_root, other, vec.proof)


def test_changed_log_topic_is_refused() -> None:
    vec = receipt_vector()
    topic = hx(vec.receipt["logs"][0]["topics"][0])
    leaf = vec.proof[-1]
    at = leaf.index(topic)
    forged = leaf[:at] + bytes([topic[0] ^ 1]) + leaf[at + 1 :]
    with pytest.raises(HashMismatchError):
        verify_log(vec.receipts_root, vec.tx_index, 0, (*vec.proof[:-1], forged))


def test_forged_receipt_under_a_consistent_fake_root_is_caught_by_the_header() -> None:
    # An RPC that forges a receipt must also forge receiptsRoot, and then the header's hash moves.
    block = dict(load("helios_rpc/block.json"))
    receipts = [dict(r) for r in load("helios_rpc/receipts.json")]
    receipts[39] = dict(receipts[39], cumulativeGasUsed="0x1")
    block["receiptsRoot"] = "0x" + receipts_root(receipts).hex()
    with pytest.raises(HashMismatchError):
        verify_header(block)


@settings(max_examples=1000, deadline=None)
@given(mutation=_mutation)
def test_every_mutation_of_the_real_receipt_proof_fails_verify_log(mutation: Mutation) -> None:
    vec = receipt_vector()
    nodes = mutate(vec.proof, mutation)
    if nodes is None:
        return
    with pytest.raises(ProofError):
        verify_log(vec.receipts_root, vec.tx_index, 0, nodes)


def _state_vector() -> tuple[bytes, dict[str, Any]]:
    return hx(load("helios_rpc/block.json")["stateRoot"]), load("helios_rpc/proof.json")


def test_real_account_and_storage_proofs() -> None:
    state_root, answer = _state_vector()
    account = verify_account_proof(
        state_root, hx(answer["address"]), [hx(n) for n in answer["accountProof"]]
    )
    assert account is not None
    assert account.nonce == int(answer["nonce"], 16)
    assert account.balance == int(answer["balance"], 16)
    assert account.storage_root == hx(answer["storageHash"])
    assert account.code_hash == hx(answer["codeHash"])
    for entry in answer["storageProof"]:
        value = verify_storage_proof(
            account.storage_root, hx(entry["key"]), [hx(n) for n in entry["proof"]]
        )
        assert value == int(entry["value"], 16)


def test_account_proof_for_another_address_is_refused() -> None:
    state_root, answer = _state_vector()
    other = bytes.fromhex("00000000219ab540356cbb839cbe05303d7705fb")
    with pytest.raises(ProofError):
        verify_account_proof(state_root, other, [hx(n) for n in answer["accountProof"]])


def test_absent_account_and_slot_are_proven_absent() -> None:
    trie = TrieBuild({b"\x01" * 32: rlp.encode([1, 2, b"\x00" * 32, b"\x00" * 32])})
    address = b"\x22" * 20
    assert verify_account_proof(trie.root, address, trie.proof(keccak256(address))) is None
    slot_trie = TrieBuild({keccak256(b"\x00" * 31 + b"\x01"): rlp.encode(7)})
    assert (
        verify_storage_proof(
            slot_trie.root, b"\x01", slot_trie.proof(keccak256(b"\x00" * 31 + b"\x01"))
        )
        == 7
    )
    assert (
        verify_storage_proof(
            slot_trie.root, b"\x02", slot_trie.proof(keccak256(b"\x00" * 31 + b"\x02"))
        )
        == 0
    )


@settings(max_examples=800, deadline=None)
@given(mutation=_mutation, which=st.sampled_from(["account", "storage"]))
def test_every_mutation_of_the_real_state_proofs_raises(mutation: Mutation, which: str) -> None:
    state_root, answer = _state_vector()
    account_proof = tuple(hx(n) for n in answer["accountProof"])
    address = hx(answer["address"])
    if which == "account":
        nodes = mutate(account_proof, mutation)
        if nodes is None:
            return
        with pytest.raises(ProofError):
            verify_account_proof(state_root, address, nodes)
        return
    entry = answer["storageProof"][0]
    nodes = mutate(tuple(hx(n) for n in entry["proof"]), mutation)
    if nodes is None:
        return
    with pytest.raises(ProofError):
        verify_storage_proof(hx(answer["storageHash"]), hx(entry["key"]), nodes)


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=300))
def test_garbage_receipts_raise_only_proof_error(data: bytes) -> None:
    try:
        decode_receipt(data)
    except ProofError:
        return
