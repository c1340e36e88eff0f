"""Evidence that a Gateway ``Dispatch`` happened: the block header, and the receipt proof.

Built by watchers from what an RPC endpoint answered, verified by the core (and by every
attester) with ``proofs/`` alone: keccak(header) is the block hash, the receipt is under the
header's ``receiptsRoot``, the log in it is the Gateway's ``Dispatch`` of exactly these bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import msgspec
import rlp

from proofs import MalformedEncodingError, ProofError
from proofs.ethereum import decode_header, encode_header, receipt_trie, verify_header, verify_log
from proofs.hashing import keccak256
from relayer.errors import EvidenceRejectedError
from relayer.message import Message, MessageFormatError
from relayer.plugin import Observation, VerifiedMessage

__all__ = [
    "DISPATCH_TOPIC",
    "EvmEvidence",
    "abi_bytes",
    "build_observations",
    "verify_evidence",
]

DISPATCH_TOPIC = keccak256(b"Dispatch(bytes32,uint32,bytes)")


class EvmEvidence(msgspec.Struct, frozen=True, kw_only=True):
    header_rlp: bytes
    tx_index: int
    # Position of the log inside its receipt (not the block-wide JSON-RPC logIndex).
    log_index: int
    proof: list[bytes]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(EvmEvidence)


def _hex(value: Any) -> bytes:
    """Hex from an endpoint's answer; anything else means the answer is not evidence."""
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise MalformedEncodingError(f"expected 0x-hex, got {value!r:.80}")


def abi_bytes(data: bytes) -> bytes:
    """The single ``bytes`` of an ABI-encoded ``(bytes)`` in canonical form (offset 32, exact
    length, zero padding), as Solidity emits it. Raises ``ValueError`` for anything else.

    Written out because eth_abi's general decoder cost as much as a receipt proof, per message.
    """
    if len(data) < 64 or int.from_bytes(data[:32], "big") != 32:
        raise ValueError("not one ABI-encoded bytes value (offset is not 32)")
    length = int.from_bytes(data[32:64], "big")
    end = 64 + length
    if len(data) != 64 + (length + 31) // 32 * 32:
        raise ValueError(f"ABI bytes of length {length} in {len(data)} bytes of data")
    if any(data[end:]):
        raise ValueError("ABI bytes padding is not zero")
    return data[64:end]


def build_observations(
    chain_name: str,
    gateway: bytes,
    block: Mapping[str, Any],
    receipts: Sequence[Mapping[str, Any]],
) -> list[Observation]:
    """Every Gateway Dispatch in one block, with its evidence.

    Checks what an honest node's answer must satisfy (header hash, receipts root), so that a
    lying endpoint is caught here, at the watcher, before anything is persisted as observed.
    Raises ``ProofError`` if the endpoint's answers do not hang together.
    """
    verify_header(block)
    trie = receipt_trie(receipts)
    receipts_root = _hex(block["receiptsRoot"])
    if trie.root != receipts_root:
        raise ProofError(
            f"block {int(block['number'], 16)}: its {len(receipts)} receipts give root "
            f"0x{trie.root.hex()}, the header says 0x{receipts_root.hex()}"
        )
    header_rlp = encode_header(block)
    block_hash = keccak256(header_rlp)
    number = int(block["number"], 16)
    out: list[Observation] = []
    for tx_index, receipt in enumerate(receipts):
        logs = receipt.get("logs") or []
        for log_index, log in enumerate(logs):
            topics = log.get("topics") or []
            if _hex(log["address"]) != gateway or not topics or _hex(topics[0]) != DISPATCH_TOPIC:
                continue
            try:
                message = abi_bytes(_hex(log["data"]))
            except ValueError as exc:
                # The Gateway only ever emits ABI-encoded bytes: this block is not what it says.
                raise ProofError(
                    f"block {number}: Dispatch log {log_index} of tx {tx_index} does not decode: "
                    f"{exc}"
                ) from None
            evidence = EvmEvidence(
                header_rlp=header_rlp,
                tx_index=tx_index,
                log_index=log_index,
                proof=trie.proof(rlp.encode(tx_index)),
            )
            out.append(
                Observation(
                    origin_chain=chain_name,
                    message=bytes(message),
                    block_number=number,
                    block_hash=block_hash,
                    evidence=_encoder.encode(evidence),
                )
            )
    return out


@lru_cache(maxsize=32)
def _header_facts(header_rlp: bytes) -> tuple[bytes, int, bytes]:
    """(hash, number, receiptsRoot) of an encoded header. Every message of a block carries
    the same header, so a block of many messages decodes and hashes it once."""
    header = decode_header(header_rlp)
    return (
        keccak256(header_rlp),
        int(header["number"], 16),
        bytes.fromhex(header["receiptsRoot"][2:]),
    )


def verify_evidence(observation: Observation, *, gateway: bytes, domain: int) -> VerifiedMessage:
    """Re-verify an observation from its evidence alone. Raises ``EvidenceRejectedError``."""
    try:
        evidence = _decoder.decode(observation.evidence)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EvidenceRejectedError(f"evidence does not decode: {exc}") from None
    try:
        block_hash, number, receipts_root = _header_facts(evidence.header_rlp)
        if block_hash != observation.block_hash:
            raise ProofError("header does not hash to the observed block hash")
        if number != observation.block_number:
            raise ProofError("header number differs from the observed block number")
        log = verify_log(
            receipts_root,
            evidence.tx_index,
            evidence.log_index,
            evidence.proof,
        )
    except ProofError as exc:
        raise EvidenceRejectedError(f"proof rejected: {exc}") from None
    message = observation.message
    if log.address != gateway:
        raise EvidenceRejectedError(
            f"log was emitted by 0x{log.address.hex()}, not the gateway 0x{gateway.hex()}"
        )
    if len(log.topics) != 3 or log.topics[0] != DISPATCH_TOPIC:
        raise EvidenceRejectedError("proven log is not a Dispatch event")
    if log.topics[1] != keccak256(message):
        raise EvidenceRejectedError("Dispatch id topic is not keccak256 of the message")
    try:
        logged = abi_bytes(log.data)
    except ValueError as exc:
        raise EvidenceRejectedError(f"Dispatch data does not decode: {exc}") from None
    if bytes(logged) != message:
        raise EvidenceRejectedError("Dispatch carries other message bytes than observed")
    try:
        decoded = Message.decode(message)
    except MessageFormatError as exc:
        raise EvidenceRejectedError(str(exc)) from None
    if decoded.origin != domain:
        raise EvidenceRejectedError(
            f"message claims origin domain {decoded.origin}, the chain's domain is {domain}"
        )
    if log.topics[2] != decoded.destination.to_bytes(32, "big"):
        raise EvidenceRejectedError("Dispatch destination topic differs from the message")
    return VerifiedMessage(
        message=message, block_number=observation.block_number, block_hash=observation.block_hash
    )
