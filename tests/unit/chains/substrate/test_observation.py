"""chains.substrate.observation: a dispatch remark's evidence verifies from its bytes alone, and
no change to the message, the block number or hash, or any byte of the evidence verifies."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chains.substrate.config import SubstrateChainConfig
from chains.substrate.extrinsic import batch_all_call, remark_call, signed_extrinsic
from chains.substrate.observation import block_evidence, build_observation, verify_observation
from chains.substrate.remark import encode_delivery, encode_dispatch
from relayer.errors import EvidenceRejectedError
from relayer.message import Message
from relayer.plugin import Observation
from tests.unit.chains.substrate.test_evidence import ALICE, BOB, CONTEXT, INHERENT, _block

DOMAIN = 3000
CONFIG = SubstrateChainConfig(
    rpc="ws://127.0.0.1:9944",
    system_chain="dot-a",
    dev=True,
    extrinsics_commitment="dev-concat",
)


def _message(nonce: int, sender: bytes = ALICE.public_key, origin: int = DOMAIN) -> Message:
    return Message(nonce, origin, sender, 1000, b"\x0c" * 32, b"body %d" % nonce)


def _observation(
    remarks: list[bytes], *, index: int = 0, signer: object = ALICE, message: Message | None = None
) -> Observation:
    calls = [remark_call(CONTEXT, r) for r in remarks]
    call = calls[0] if len(calls) == 1 else batch_all_call(CONTEXT, calls)
    extrinsic = signed_extrinsic(signer, call, 0, CONTEXT)  # type: ignore[arg-type]
    block_hash, header = _block([INHERENT, extrinsic])
    chosen = message or _message(index)
    return build_observation(
        chain_name="dot-a",
        message=chosen.encode(),
        block_number=header.number,
        block_hash=block_hash,
        block=block_evidence(header.scale(), [INHERENT, extrinsic]),
        extrinsic_index=1,
        remark_index=index,
    )


def _other_hash(value: bytes) -> bool:
    return value != GOOD.block_hash


def _verify(observation: Observation) -> None:
    verify_observation(observation, config=CONFIG, domain=DOMAIN)


GOOD = _observation([encode_dispatch(_message(i)) for i in range(3)], index=1)


def test_a_dispatch_remark_in_a_batch_verifies() -> None:
    verified = verify_observation(GOOD, config=CONFIG, domain=DOMAIN)
    assert verified.message == _message(1).encode()
    assert (verified.block_number, verified.block_hash) == (GOOD.block_number, GOOD.block_hash)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_no_single_byte_change_of_the_evidence_verifies(data: st.DataObject) -> None:
    field = data.draw(st.sampled_from(["evidence", "block_evidence"]))
    mutated = bytearray(getattr(GOOD, field))
    at = data.draw(st.integers(0, len(mutated) - 1))
    mutated[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(EvidenceRejectedError):
        _verify(msgspec.structs.replace(GOOD, **{field: bytes(mutated)}))


def test_an_observation_without_its_block_is_refused() -> None:
    with pytest.raises(EvidenceRejectedError, match="no block evidence"):
        _verify(msgspec.structs.replace(GOOD, block_evidence=b""))


def test_the_messages_of_a_block_share_one_block_evidence() -> None:
    remarks = [encode_dispatch(_message(i)) for i in range(3)]
    extrinsic = signed_extrinsic(
        ALICE, batch_all_call(CONTEXT, [remark_call(CONTEXT, r) for r in remarks]), 0, CONTEXT
    )
    block_hash, header = _block([INHERENT, extrinsic])
    shared = block_evidence(header.scale(), [INHERENT, extrinsic])
    for i in range(3):
        observation = build_observation(
            chain_name="dot-a",
            message=_message(i).encode(),
            block_number=header.number,
            block_hash=block_hash,
            block=shared,
            extrinsic_index=1,
            remark_index=i,
        )
        assert observation.block_evidence is shared
        assert len(observation.evidence) < 40, "a message's own evidence is only its place"
        assert _verify_message(observation) == _message(i).encode()


def _verify_message(observation: Observation) -> bytes:
    return verify_observation(observation, config=CONFIG, domain=DOMAIN).message


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_no_other_message_block_number_or_hash_verifies(data: st.DataObject) -> None:
    message = bytearray(GOOD.message)
    at = data.draw(st.integers(0, len(message) - 1))
    message[at] ^= data.draw(st.integers(1, 255))
    changes = [
        {"message": bytes(message)},
        {"block_number": GOOD.block_number + data.draw(st.integers(1, 2**20))},
        {
            "block_hash": data.draw(
                st.binary(min_size=32, max_size=32).filter(lambda h: h != GOOD.block_hash)
            )
        },
    ]
    for change in changes:
        fields = {
            "origin_chain": GOOD.origin_chain,
            "message": GOOD.message,
            "block_number": GOOD.block_number,
            "block_hash": GOOD.block_hash,
            "evidence": GOOD.evidence,
            "block_evidence": GOOD.block_evidence,
            **change,
        }
        with pytest.raises(EvidenceRejectedError):
            _verify(Observation(**fields))  # type: ignore[arg-type]


def test_a_sender_field_that_is_not_the_signer_is_refused() -> None:
    forged = _message(0, sender=BOB.public_key)
    with pytest.raises(EvidenceRejectedError, match="signed by"):
        _verify(_observation([encode_dispatch(forged)], message=forged))


def test_a_message_from_another_origin_domain_is_refused() -> None:
    other = _message(0, origin=4000)
    with pytest.raises(EvidenceRejectedError, match="origin domain 4000"):
        _verify(_observation([encode_dispatch(other)], message=other))


def test_a_delivery_remark_is_not_a_dispatch() -> None:
    message = _message(0)
    with pytest.raises(EvidenceRejectedError, match="delivery, not a dispatch"):
        _verify(_observation([encode_delivery(message)], message=message))


def test_dev_concat_evidence_is_refused_under_the_real_schemes() -> None:
    for scheme in ("ordered-trie-v0", "ordered-trie-v1"):
        config = CONFIG.model_copy(update={"extrinsics_commitment": scheme})
        with pytest.raises(EvidenceRejectedError, match="proof rejected"):
            verify_observation(GOOD, config=config, domain=DOMAIN)


def test_dev_concat_needs_a_dev_chain() -> None:
    with pytest.raises(ValueError, match="dev = true"):
        SubstrateChainConfig(
            rpc="ws://127.0.0.1:9944", system_chain="x", extrinsics_commitment="dev-concat"
        )
