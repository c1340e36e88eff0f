"""chains.evm.txsign against eth-account: the same bytes and hash for any type-2 transaction,
a signature that recovers to the key, and refusals of what is not a transaction."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from chains.evm.txsign import DynamicFeeTx, sign_dynamic_fee_tx
from proofs.committee import recover_signer
from proofs.hashing import keccak256
from proofs.rlpcodec import decode, encode
from relayer.ecdsa_key import EcdsaKey

# anvil's dev account #1: a public test key.
DEV_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
KEY = EcdsaKey(bytes.fromhex(DEV_KEY[2:]), "anvil dev key #1")
ACCOUNT = Account.from_key(DEV_KEY)
UINT256 = st.integers(min_value=0, max_value=2**256 - 1)


def reference(tx: DynamicFeeTx) -> tuple[bytes, bytes]:
    signed = ACCOUNT.sign_transaction(
        {
            "type": 2,
            "chainId": tx.chain_id,
            "nonce": tx.nonce,
            "to": to_checksum_address(tx.to),
            "value": tx.value,
            "data": tx.data,
            "gas": tx.gas,
            "maxFeePerGas": tx.max_fee,
            "maxPriorityFeePerGas": tx.max_priority_fee,
        }
    )
    return bytes(signed.raw_transaction), bytes(signed.hash)


@st.composite
def transactions(draw: st.DrawFn) -> DynamicFeeTx:
    max_fee = draw(st.integers(min_value=0, max_value=2**256 - 1))
    return DynamicFeeTx(
        chain_id=draw(st.integers(min_value=1, max_value=2**64 - 1)),
        nonce=draw(st.integers(min_value=0, max_value=2**64 - 2)),
        max_priority_fee=draw(st.integers(min_value=0, max_value=max_fee)),
        max_fee=max_fee,
        gas=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        to=draw(st.binary(min_size=20, max_size=20)),
        value=draw(UINT256),
        data=draw(st.binary(max_size=300)),
    )


@settings(max_examples=150, deadline=None)
@given(transactions())
def test_the_same_bytes_and_hash_as_eth_account(tx: DynamicFeeTx) -> None:
    signed = sign_dynamic_fee_tx(tx, KEY)
    assert (signed.raw, signed.hash) == reference(tx)


def test_a_batch_sized_transaction_matches_and_recovers_to_the_key() -> None:
    tx = DynamicFeeTx(
        chain_id=31337,
        nonce=7,
        max_priority_fee=10**8,
        max_fee=3 * 10**9,
        gas=7_000_000,
        to=bytes.fromhex("5FbDB2315678afecb367f032d93F642f64180aa3"),
        value=0,
        data=bytes(range(256)) * 120,  # ~30 kB, a 100-message deliverBatch
    )
    signed = sign_dynamic_fee_tx(tx, KEY)
    assert (signed.raw, signed.hash) == reference(tx)
    assert signed.raw[0] == 2 and signed.hash == keccak256(signed.raw)
    fields = decode(signed.raw[1:])
    assert isinstance(fields, list) and len(fields) == 12
    y_parity, r, s = fields[9:]
    assert isinstance(y_parity, bytes) and isinstance(r, bytes) and isinstance(s, bytes)
    signature = r.rjust(32, b"\0") + s.rjust(32, b"\0") + bytes([int.from_bytes(y_parity) + 27])
    unsigned = keccak256(b"\x02" + encode(fields[:9]))
    assert recover_signer(unsigned, signature) == KEY.address


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"to": b"\x01" * 19}, "20 bytes"),
        ({"nonce": -1}, "not a uint256"),
        ({"value": 2**256}, "not a uint256"),
        ({"max_priority_fee": 2, "max_fee": 1}, "priority fee"),
    ],
)
def test_what_is_not_a_transaction_is_refused(change: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "chain_id": 1,
        "nonce": 0,
        "max_priority_fee": 1,
        "max_fee": 2,
        "gas": 21_000,
        "to": b"\x01" * 20,
        "value": 0,
        "data": b"",
    }
    fields.update(change)
    with pytest.raises(ValueError, match=message):
        sign_dynamic_fee_tx(DynamicFeeTx(**fields), KEY)  # type: ignore[arg-type]
