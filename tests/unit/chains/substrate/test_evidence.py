from __future__ import annotations

import pytest
import sr25519
from hypothesis import given
from hypothesis import strategies as st

from chains.substrate.evidence import (
    RemarkCalls,
    RemarkNotFoundError,
    decode_remark_extrinsic,
    dev_concat_root,
    extract_remark,
    verify_body,
    verify_header,
)
from chains.substrate.extrinsic import (
    Extension,
    SigningContext,
    UnsupportedExtensionError,
    batch_all_call,
    extra_layout,
    remark_call,
    signed_extrinsic,
)
from chains.substrate.keys import Sr25519Keypair
from chains.substrate.rpc import Header
from proofs.errors import HashMismatchError, MalformedEncodingError
from proofs.hashing import blake2_256
from proofs.substrate import extrinsics_root

ALICE = Sr25519Keypair.from_uri("//Alice")
BOB = Sr25519Keypair.from_uri("//Bob")


def _ext(name: str, extra: bool = True, additional: bool = True) -> Extension:
    return Extension(identifier=name, extra_empty=extra, additional_empty=additional)


# The Kusama Local Testnet runtime's extensions, as its metadata lists them.
CONTEXT = SigningContext(
    genesis_hash=b"\x45" * 32,
    spec_version=1_000_000,
    transaction_version=24,
    extensions=(
        _ext("CheckNonZeroSender"),
        _ext("CheckSpecVersion", additional=False),
        _ext("CheckTxVersion", additional=False),
        _ext("CheckGenesis", additional=False),
        _ext("CheckMortality", extra=False, additional=False),
        _ext("CheckNonce", extra=False),
        _ext("CheckWeight"),
        _ext("ChargeTransactionPayment", extra=False),
    ),
    remark_with_event=(0, 7),
    batch_all=(24, 2),
)
LAYOUT = extra_layout(CONTEXT)
CALLS = RemarkCalls(remark_with_event=(0, 7), batch_all=(24, 2))
# The timestamp inherent as chopsticks serves it: unsigned, so never a remark.
INHERENT = bytes.fromhex("280402000b36e73931a201")


def _block(extrinsics: list[bytes], number: int = 5) -> tuple[bytes, Header]:
    header = Header(
        parent_hash=b"\x01" * 32,
        number=number,
        state_root=b"\x00" * 32,
        extrinsics_root=dev_concat_root(extrinsics),
        digest_logs=(bytes.fromhex("0642414245") + bytes([8]) + b"\x02" * 2,),
    )
    return blake2_256(header.scale()), header


def test_dev_uris_derive_the_well_known_accounts() -> None:
    assert ALICE.public_key.hex() == (
        "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
    )
    assert BOB.public_key.hex() == (
        "8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48"
    )
    assert "secret=<redacted>" in repr(ALICE)


def test_signed_extrinsic_signature_covers_call_extra_and_additional() -> None:
    call = remark_call(CONTEXT, b"hi")
    extrinsic = signed_extrinsic(ALICE, call, 3, CONTEXT)
    # compact length (2 bytes here) | 0x84 | 0x00 | AccountId32 | 0x01 | signature
    signature = extrinsic[2 + 1 + 1 + 32 + 1 :][:64]
    extra = b"\x00" + bytes([3 << 2]) + b"\x00"
    additional = (1_000_000).to_bytes(4, "little") + (24).to_bytes(4, "little") + b"\x45" * 64
    assert sr25519.verify(signature, call + extra + additional, ALICE.public_key)
    assert extrinsic.endswith(extra + call)


def test_unknown_extension_with_data_is_refused() -> None:
    context = SigningContext(
        genesis_hash=b"\x00" * 32,
        spec_version=1,
        transaction_version=1,
        extensions=(_ext("ChargeSomethingNew", extra=False),),
        remark_with_event=(0, 7),
        batch_all=None,
    )
    with pytest.raises(UnsupportedExtensionError, match="ChargeSomethingNew"):
        signed_extrinsic(ALICE, remark_call(context, b""), 0, context)


@given(st.lists(st.binary(max_size=80), min_size=1, max_size=5), st.integers(0, 2**32 - 1))
def test_remarks_decode_back_from_a_signed_extrinsic(remarks: list[bytes], nonce: int) -> None:
    calls = [remark_call(CONTEXT, remark) for remark in remarks]
    call = calls[0] if len(calls) == 1 else batch_all_call(CONTEXT, calls)
    decoded = decode_remark_extrinsic(signed_extrinsic(ALICE, call, nonce, CONTEXT), LAYOUT, CALLS)
    assert decoded.signer == ALICE.public_key
    assert list(decoded.remarks) == remarks


def test_the_remark_an_event_names_is_extracted_and_checked() -> None:
    remark = b"xrly-payload"
    extrinsics = [INHERENT, signed_extrinsic(ALICE, remark_call(CONTEXT, remark), 0, CONTEXT)]
    block_hash, header = _block(extrinsics)
    decoded = verify_header(block_hash, header.scale())
    verify_body(decoded, extrinsics, "dev-concat")
    got = extract_remark(extrinsics, 1, ALICE.public_key, blake2_256(remark), LAYOUT, CALLS)
    assert got == remark


def test_header_that_does_not_hash_to_the_block_hash_is_refused() -> None:
    block_hash, header = _block([INHERENT])
    with pytest.raises(HashMismatchError, match="lying"):
        verify_header(block_hash[::-1], header.scale())


@given(st.data())
def test_any_altered_dropped_or_added_extrinsic_breaks_dev_concat(data: st.DataObject) -> None:
    extrinsics = [INHERENT, signed_extrinsic(ALICE, remark_call(CONTEXT, b"m"), 0, CONTEXT)]
    block_hash, header = _block(extrinsics)
    decoded = verify_header(block_hash, header.scale())
    choice = data.draw(st.sampled_from(["drop", "add", "flip"]))
    if choice == "drop":
        body = extrinsics[:1]
    elif choice == "add":
        body = [*extrinsics, INHERENT]
    else:
        index = data.draw(st.integers(0, len(extrinsics[1]) - 1))
        changed = bytearray(extrinsics[1])
        changed[index] ^= 1 << data.draw(st.integers(0, 7))
        body = [extrinsics[0], bytes(changed)]
    with pytest.raises((HashMismatchError, MalformedEncodingError)):
        verify_body(decoded, body, "dev-concat")


def test_ordered_trie_scheme_uses_the_proofs_verifier() -> None:
    extrinsics = [INHERENT]
    header = Header(
        parent_hash=b"\x01" * 32,
        number=1,
        state_root=b"\x00" * 32,
        extrinsics_root=extrinsics_root(extrinsics, 0),
        digest_logs=(),
    )
    decoded = verify_header(blake2_256(header.scale()), header.scale())
    verify_body(decoded, extrinsics, "ordered-trie-v0")
    with pytest.raises(HashMismatchError):
        verify_body(decoded, extrinsics, "dev-concat")


def test_remark_from_another_signer_is_not_the_events() -> None:
    extrinsics = [signed_extrinsic(BOB, remark_call(CONTEXT, b"m"), 0, CONTEXT)]
    with pytest.raises(RemarkNotFoundError, match="signed by"):
        extract_remark(extrinsics, 0, ALICE.public_key, blake2_256(b"m"), LAYOUT, CALLS)


def test_remark_with_another_hash_is_not_the_events() -> None:
    extrinsics = [signed_extrinsic(ALICE, remark_call(CONTEXT, b"m"), 0, CONTEXT)]
    with pytest.raises(RemarkNotFoundError, match="hashes to"):
        extract_remark(extrinsics, 0, ALICE.public_key, blake2_256(b"n"), LAYOUT, CALLS)


def test_unsigned_extrinsic_or_other_call_is_not_a_remark() -> None:
    with pytest.raises(RemarkNotFoundError, match="not a signed remark"):
        extract_remark([INHERENT], 0, ALICE.public_key, blake2_256(b""), LAYOUT, CALLS)
    transfer = signed_extrinsic(ALICE, bytes([4, 0]) + b"\x00" * 33, 0, CONTEXT)
    with pytest.raises(RemarkNotFoundError, match="not a remark"):
        extract_remark([transfer], 0, ALICE.public_key, blake2_256(b""), LAYOUT, CALLS)
    with pytest.raises(RemarkNotFoundError, match="block has 1"):
        extract_remark([transfer], 1, ALICE.public_key, blake2_256(b""), LAYOUT, CALLS)
