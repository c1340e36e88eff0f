"""The dev beacon-API server against a real anvil chain, checked independently of its code.

Everything the server claims is re-derived here from the JSON alone: hash tree roots through
the tests' own ``remerkleable`` containers (``reference_ssz``, never the server's), Merkle
branches with a hand-written ``is_valid_merkle_branch`` (the consensus specs' loop), the signing
root with ``hashlib``, the aggregate signature with ``py_ecc`` (not the ``pyblst`` the server
signs with), and the execution headers against anvil's own ``eth_getBlockByNumber`` answers.
Each lying mode must fail exactly the check that is about its lie.
"""

import hashlib
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_typing import BLSPubkey, BLSSignature
from py_ecc.bls.ciphersuites import G2ProofOfPossession
from py_ecc.bls.g2_primitives import G1_to_pubkey, pubkey_to_G1
from py_ecc.optimized_bls12_381.optimized_curve import Z1, add
from remerkleable.basic import uint64, uint256
from remerkleable.byte_arrays import ByteList
from remerkleable.complex import List, Vector

from chains.evm.beacon_dev import BeaconDevNode, LieMode, start_beacon_dev
from tests.integration.anvil import AnvilFactory, AnvilNode
from tests.unit.proofs.ethereum_lc.reference_ssz import (
    BeaconBlockHeader,
    ExecutionPayloadHeaderDeneb,
    sync_committee_type,
)

pytestmark = pytest.mark.slow

LAG = 4
FIRST_SLOT = 40  # anvil block N is slot 40 + N: period 1 starts at block 24
SLOTS_PER_PERIOD = 64
ELECTRA_FORK_VERSION = bytes.fromhex("05000001")
DOMAIN_SYNC_COMMITTEE = bytes.fromhex("07000000")
DEV_ACCOUNT_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
DEV_ACCOUNT_1 = "0x70997970C51812dc3A010C8f709F6E8A8Bc8e0F8"


def _b(text: str) -> bytes:
    return bytes.fromhex(text[2:])


# --- the containers: remerkleable's, written from the consensus specs in the tests' reference
# (tests/unit/proofs/ethereum_lc/reference_ssz.py), sharing no code with the server ---------------

ExecutionPayloadHeader = ExecutionPayloadHeaderDeneb  # Electra's is Deneb's
SyncCommittee = sync_committee_type(32)  # minimal preset


Transactions = List[ByteList[2**30], 2**20]

_INTS = (uint64, uint256)


def from_json(kind: Any, data: dict[str, Any]) -> Any:
    """A container of ``kind`` from its beacon-API JSON (integers decimal, bytes 0x-hex)."""
    fields = {}
    for name, ftype in kind.fields().items():
        value = data[name]
        if issubclass(ftype, _INTS):
            fields[name] = ftype(int(value))
        elif issubclass(ftype, Vector):
            fields[name] = ftype(*(_b(v) for v in value))
        else:
            fields[name] = ftype(_b(value))
    return kind(**fields)


def beacon_root(data: dict[str, Any]) -> bytes:
    return bytes(from_json(BeaconBlockHeader, data).hash_tree_root())


def is_valid_merkle_branch(leaf: bytes, branch: list[str], gindex: int, root: bytes) -> bool:
    """The consensus specs' check, written out: ``branch[i]`` is the sibling at height i."""
    depth = gindex.bit_length() - 1
    if len(branch) != depth:
        return False
    index = gindex % 2**depth
    value = leaf
    for height, sibling in enumerate(branch):
        if index >> height & 1:
            value = hashlib.sha256(_b(sibling) + value).digest()
        else:
            value = hashlib.sha256(value + _b(sibling)).digest()
    return value == root


def signing_root(header_root: bytes, genesis_validators_root: bytes) -> bytes:
    """compute_signing_root(header, compute_domain(DOMAIN_SYNC_COMMITTEE, Electra, gvr))."""
    fork_data_root = hashlib.sha256(
        ELECTRA_FORK_VERSION + bytes(28) + genesis_validators_root
    ).digest()
    domain = DOMAIN_SYNC_COMMITTEE + fork_data_root[:28]
    return hashlib.sha256(header_root + domain).digest()


def bits(hex_bits: str, size: int) -> list[bool]:
    raw = _b(hex_bits)
    return [bool(raw[i // 8] >> (i % 8) & 1) for i in range(size)]


@dataclass
class Chain:
    anvil: AnvilNode
    beacon: BeaconDevNode
    tx_block: int  # anvil block number
    head_slot: int
    gvr: bytes


def _get(node: BeaconDevNode, path: str) -> Any:
    return node.get(path)


def _status(node: BeaconDevNode, path: str) -> int:
    try:
        with urllib.request.urlopen(node.url + path, timeout=5):
            return 200
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response's socket
        return exc.code


@pytest.fixture(scope="module")
def chain(module_anvil_factory: AnvilFactory) -> Iterator[Chain]:
    anvil = module_anvil_factory(31490)
    # Blocks 1..40 (slots 41..80) empty, 41 (slot 81) with a transfer (a real receipts and
    # transactions root), 42..46 empty: period 1 (slots 64..127) holds the head, slot 86; the
    # latest update attests slot 85 (signed at 86), under which 85 - LAG = 81 is final.
    anvil.rpc("anvil_mine", [hex(40)])
    anvil.rpc("eth_sendTransaction", [{"from": DEV_ACCOUNT_0, "to": DEV_ACCOUNT_1, "value": "0x1"}])
    anvil.rpc("anvil_mine", [hex(5)])
    head = int(anvil.rpc("eth_blockNumber"), 16)
    tx_block = head - 5
    assert len(anvil.rpc("eth_getBlockByNumber", [hex(tx_block), False])["transactions"]) == 1
    head_slot = head + FIRST_SLOT
    beacon = start_beacon_dev(anvil.url, finality_lag=LAG, first_slot=FIRST_SLOT)
    try:
        deadline = time.monotonic() + 20
        while int(_get(beacon, "/dev/v1/mode")["data"]["head_slot"]) < head_slot:
            assert time.monotonic() < deadline, beacon.log_tail()
            time.sleep(0.1)
        gvr = _b(_get(beacon, "/eth/v1/beacon/genesis")["data"]["genesis_validators_root"])
        yield Chain(anvil=anvil, beacon=beacon, tx_block=tx_block, head_slot=head_slot, gvr=gvr)
    finally:
        beacon.stop()


def header_problems(header: dict[str, Any], anvil: AnvilNode) -> list[str]:
    """What is wrong with a LightClientHeader: its execution branch, or its execution header
    against the block anvil produced at that number."""
    problems = []
    execution = from_json(ExecutionPayloadHeader, header["execution"])
    if not is_valid_merkle_branch(
        execution.hash_tree_root(),
        header["execution_branch"],
        25,
        _b(header["beacon"]["body_root"]),
    ):
        problems.append("execution branch")
    number = int(header["execution"]["block_number"])
    block = anvil.rpc("eth_getBlockByNumber", [hex(number), False])
    ours = header["execution"]
    if (
        block is None
        or ours["block_hash"] != block["hash"]
        or ours["receipts_root"] != block["receiptsRoot"]
        or ours["state_root"] != block["stateRoot"]
        or ours["parent_hash"] != block["parentHash"]
        or int(ours["timestamp"]) != int(block["timestamp"], 16)
    ):
        problems.append("execution header is not anvil's")
    elif int(header["beacon"]["slot"]) != number + FIRST_SLOT:
        problems.append("slot is not the block's")
    return problems


def update_problems(
    update: dict[str, Any], committee: list[bytes], chain: Chain, *, verify_signature: bool = True
) -> list[str]:
    """Every check a light client makes on a finality update, plus the origin-chain check."""
    problems = []
    attested, finalized = update["attested_header"], update["finalized_header"]
    problems += ["attested " + p for p in header_problems(attested, chain.anvil)]
    problems += ["finalized " + p for p in header_problems(finalized, chain.anvil)]
    attested_slot = int(attested["beacon"]["slot"])
    signature_slot = int(update["signature_slot"])
    if not signature_slot == attested_slot + 1 > int(finalized["beacon"]["slot"]):
        problems.append("slots")
    if int(finalized["beacon"]["slot"]) > chain.head_slot - LAG:
        problems.append("finalized above head - lag")
    if not is_valid_merkle_branch(
        beacon_root(finalized["beacon"]),
        update["finality_branch"],
        169,
        _b(attested["beacon"]["state_root"]),
    ):
        problems.append("finality branch")
    participation = bits(update["sync_aggregate"]["sync_committee_bits"], len(committee))
    if 3 * sum(participation) < 2 * len(committee):
        problems.append("participation below 2/3")
    if verify_signature:
        message = signing_root(beacon_root(attested["beacon"]), chain.gvr)
        signers = [BLSPubkey(key) for key, bit in zip(committee, participation, strict=True) if bit]
        signature = BLSSignature(_b(update["sync_aggregate"]["sync_committee_signature"]))
        if not G2ProofOfPossession.FastAggregateVerify(signers, message, signature):
            problems.append("signature")
    return problems


def bootstrap_committee(chain: Chain, block_id: str = "finalized") -> tuple[list[bytes], int]:
    """The committee of a trusted block (by default the finalized one), proven by the
    bootstrap's branch; and the block's slot."""
    root = _b(_get(chain.beacon, f"/eth/v1/beacon/headers/{block_id}")["data"]["root"])
    answer = _get(chain.beacon, f"/eth/v1/beacon/light_client/bootstrap/0x{root.hex()}")
    assert answer["version"] == "electra"
    data = answer["data"]
    beacon = data["header"]["beacon"]
    assert beacon_root(beacon) == root
    assert header_problems(data["header"], chain.anvil) == []
    committee = from_json(SyncCommittee, data["current_sync_committee"])
    assert is_valid_merkle_branch(
        committee.hash_tree_root(),
        data["current_sync_committee_branch"],
        86,
        _b(beacon["state_root"]),
    )
    pubkeys = [bytes(k) for k in committee.pubkeys]
    total = Z1
    for key in pubkeys:
        total = add(total, pubkey_to_G1(BLSPubkey(key)))
    assert G1_to_pubkey(total) == bytes(committee.aggregate_pubkey)
    return pubkeys, int(beacon["slot"])


def test_finality_update_proves_anvils_blocks_under_a_committee_signature(chain: Chain) -> None:
    committee, trusted_slot = bootstrap_committee(chain)
    assert trusted_slot == chain.head_slot - LAG
    answer = _get(chain.beacon, "/eth/v1/beacon/light_client/finality_update")
    assert answer["version"] == "electra"
    update = answer["data"]
    assert update_problems(update, committee, chain) == []
    assert int(update["finalized_header"]["execution"]["block_number"]) == chain.tx_block
    # The transactions root too, recomputed from anvil's raw transactions.
    block = chain.anvil.rpc("eth_getBlockByNumber", [hex(chain.tx_block), False])
    raws = [_b(chain.anvil.rpc("eth_getRawTransactionByHash", [h])) for h in block["transactions"]]
    assert update["finalized_header"]["execution"]["transactions_root"] == (
        "0x" + Transactions(*raws).hash_tree_root().hex()
    )
    optimistic = _get(chain.beacon, "/eth/v1/beacon/light_client/optimistic_update")["data"]
    assert optimistic["attested_header"] == update["attested_header"]
    assert optimistic["sync_aggregate"] == update["sync_aggregate"]


def test_period_updates_hand_over_to_the_next_committee(chain: Chain) -> None:
    answer = _get(chain.beacon, "/eth/v1/beacon/light_client/updates?start_period=0&count=5")
    assert [u["version"] for u in answer] == ["electra", "electra"]  # periods 0 and 1 so far
    first, second = answer[0]["data"], answer[1]["data"]
    assert int(first["attested_header"]["beacon"]["slot"]) == SLOTS_PER_PERIOD - 2
    assert int(first["signature_slot"]) == SLOTS_PER_PERIOD - 1
    next_committee = from_json(SyncCommittee, first["next_sync_committee"])
    assert is_valid_merkle_branch(
        next_committee.hash_tree_root(),
        first["next_sync_committee_branch"],
        87,
        _b(first["attested_header"]["beacon"]["state_root"]),
    )
    # Period 1's committee, as period 0 announced it, is the one the period 1 update is signed
    # by and the one the bootstrap in period 1 proves.
    committee, _ = bootstrap_committee(chain)
    assert [bytes(k) for k in next_committee.pubkeys] == committee
    period_2 = from_json(SyncCommittee, second["next_sync_committee"])
    assert period_2.hash_tree_root() != next_committee.hash_tree_root()
    assert update_problems(second, committee, chain) == []
    # And period 0's update is signed by period 0's committee, the one a client bootstrapped
    # at the first block knows.
    committee_0, first_slot = bootstrap_committee(chain, "genesis")
    assert first_slot == FIRST_SLOT
    assert committee_0 != committee
    assert update_problems(first, committee_0, chain) == []


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            LieMode.FORGED_BLOCK,
            {
                "attested execution header is not anvil's",
                "finalized execution header is not anvil's",
            },
        ),
        (LieMode.MINORITY, {"participation below 2/3"}),
        (LieMode.WRONG_FINALITY_BRANCH, {"finality branch", "finalized above head - lag"}),
        (LieMode.WRONG_COMMITTEE, {"signature"}),
    ],
)
def test_a_lying_server_fails_the_check_about_its_lie(
    chain: Chain, mode: LieMode, expected: set[str]
) -> None:
    committee, _ = bootstrap_committee(chain)
    chain.beacon.set_mode(mode)
    try:
        assert _get(chain.beacon, "/dev/v1/mode")["data"]["mode"] == mode.value
        update = _get(chain.beacon, "/eth/v1/beacon/light_client/finality_update")["data"]
        # A forged block and a minority are validly signed: the signature check must pass
        # and only the check about the lie fail (py_ecc takes about a second a check, so the
        # wrong branch, which changes nothing signed, is not verified again).
        verify = mode is not LieMode.WRONG_FINALITY_BRANCH
        assert set(update_problems(update, committee, chain, verify_signature=verify)) == expected
    finally:
        chain.beacon.set_mode(LieMode.HONEST)
    honest = _get(chain.beacon, "/eth/v1/beacon/light_client/finality_update")["data"]
    assert update_problems(honest, committee, chain, verify_signature=False) == []


def test_unknown_roots_and_modes_are_refused(chain: Chain) -> None:
    assert _status(chain.beacon, "/eth/v1/beacon/light_client/bootstrap/0x" + "ab" * 32) == 404
    assert _status(chain.beacon, "/eth/v1/beacon/light_client/updates?start_period=x") == 400
    request = urllib.request.Request(
        chain.beacon.url + "/dev/v1/mode", data=b'{"mode": "sometimes-honest"}', method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    refused.value.close()
    assert refused.value.code == 400
    assert _get(chain.beacon, "/dev/v1/mode")["data"]["mode"] == "honest"


def test_blocks_anvil_replaced_are_rebuilt(anvil_factory: AnvilFactory) -> None:
    anvil = anvil_factory(31491)
    anvil.rpc("anvil_mine", [hex(6)])
    snapshot = anvil.rpc("evm_snapshot")
    anvil.rpc("anvil_mine", [hex(4)])
    with start_beacon_dev(anvil.url, finality_lag=LAG) as beacon:
        old = _wait_for_slot(beacon, 10)
        anvil.rpc("evm_revert", [snapshot])
        anvil.rpc("anvil_mine", [hex(6)])
        new = _wait_for_slot(beacon, 12)
        block_10 = anvil.rpc("eth_getBlockByNumber", [hex(10), False])
        assert new["execution"]["block_hash"] == block_10["hash"]
        assert new["execution"]["block_hash"] != old["execution"]["block_hash"]


def _wait_for_slot(beacon: BeaconDevNode, slot: int) -> Any:
    """The light-client header of slot 10 once the server's head is at ``slot``."""
    deadline = time.monotonic() + 10
    while int(_get(beacon, "/dev/v1/mode")["data"]["head_slot"]) != slot:
        assert time.monotonic() < deadline, beacon.log_tail()
        time.sleep(0.05)
    root = _get(beacon, "/eth/v1/beacon/headers/10")["data"]["root"]
    return _get(beacon, f"/eth/v1/beacon/light_client/bootstrap/{root}")["data"]["header"]
