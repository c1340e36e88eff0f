"""Ethereum execution-layer evidence: headers, receipts, logs, accounts and storage.

Inputs are JSON-RPC objects (hex strings, as ``eth_getBlockByNumber`` and
``eth_getBlockReceipts`` return them) or raw proof nodes; outputs are decoded, verified values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proofs import rlpcodec
from proofs.errors import HashMismatchError, MalformedEncodingError, ProofError
from proofs.hashing import keccak256
from proofs.mpt import verify_proof
from proofs.mpt_build import TrieBuild

__all__ = [
    "Account",
    "Log",
    "Receipt",
    "bloom_may_contain",
    "decode_header",
    "decode_receipt",
    "encode_header",
    "encode_receipt",
    "header_hash",
    "receipt_trie",
    "receipts_root",
    "verify_account_proof",
    "verify_header",
    "verify_log",
    "verify_receipt_proof",
    "verify_storage_proof",
]


@dataclass(frozen=True, slots=True)
class Log:
    address: bytes
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class Receipt:
    """A decoded transaction receipt.

    ``status`` is 1 or 0 from Byzantium on; older receipts record an intermediate state root
    instead (``post_state``), and their ``status`` is -1 because they never said.
    """

    tx_type: int
    status: int
    cumulative_gas_used: int
    logs_bloom: bytes
    logs: tuple[Log, ...]
    post_state: bytes | None = None


@dataclass(frozen=True, slots=True)
class Account:
    nonce: int
    balance: int
    storage_root: bytes
    code_hash: bytes


# --- JSON-RPC field parsing -------------------------------------------------------------------


def _hex_bytes(obj: Mapping[str, Any], field: str, length: int | None = None) -> bytes:
    value = obj.get(field)
    if not isinstance(value, str) or not value.startswith("0x"):
        raise MalformedEncodingError(f"field {field!r} must be a 0x-prefixed hex string")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise MalformedEncodingError(f"field {field!r} is not valid hex") from None
    if length is not None and len(raw) != length:
        raise MalformedEncodingError(f"field {field!r} must be {length} bytes, got {len(raw)}")
    return raw


def _hex_int(obj: Mapping[str, Any], field: str) -> int:
    value = obj.get(field)
    if not isinstance(value, str) or not value.startswith("0x") or len(value) < 3:
        raise MalformedEncodingError(f"field {field!r} must be a 0x-prefixed hex quantity")
    try:
        return int(value[2:], 16)
    except ValueError:
        raise MalformedEncodingError(f"field {field!r} is not a hex quantity") from None


# --- headers ------------------------------------------------------------------------------------

# (JSON-RPC key, kind, length) in RLP order. Kinds: "b" fixed-length bytes, "i" integer,
# "v" variable bytes.
_BASE_FIELDS: tuple[tuple[str, str, int | None], ...] = (
    ("parentHash", "b", 32),
    ("sha3Uncles", "b", 32),
    ("miner", "b", 20),
    ("stateRoot", "b", 32),
    ("transactionsRoot", "b", 32),
    ("receiptsRoot", "b", 32),
    ("logsBloom", "b", 256),
    ("difficulty", "i", None),
    ("number", "i", None),
    ("gasLimit", "i", None),
    ("gasUsed", "i", None),
    ("timestamp", "i", None),
    ("extraData", "v", None),
    ("mixHash", "b", 32),
    ("nonce", "b", 8),
)
# Fields each fork appended, in order: London, Shanghai, Cancun (three), Prague.
_FORK_FIELDS: tuple[tuple[str, str, int | None], ...] = (
    ("baseFeePerGas", "i", None),
    ("withdrawalsRoot", "b", 32),
    ("blobGasUsed", "i", None),
    ("excessBlobGas", "i", None),
    ("parentBeaconBlockRoot", "b", 32),
    ("requestsHash", "b", 32),
)


def _header_fields(block: Mapping[str, Any]) -> list[bytes | int]:
    # The fork is read off which keys are present, never off the block number or chain id (a
    # local anvil chain is Prague from block 0). Present fields are encoded in their canonical
    # order, as clients do: forks only append, and a client that leaves a field out (anvil's
    # pre-Cancun genesis carries the two blob fields and nothing else of the later forks) still
    # hashes exactly the fields it shows. The hash binds every field either way, and RLP is
    # prefix-free, so no other field set can produce the same bytes.
    fields: list[bytes | int] = []
    for name, kind, length in _BASE_FIELDS + _FORK_FIELDS:
        if name not in block and (name, kind, length) in _FORK_FIELDS:
            continue
        if kind == "i":
            fields.append(_hex_int(block, name))
        else:
            fields.append(_hex_bytes(block, name, length))
    return fields


def encode_header(block: Mapping[str, Any]) -> bytes:
    """The RLP header of a JSON-RPC block object, with the fields its fork defines."""
    encoded: bytes = rlpcodec.encode(_header_fields(block))
    return encoded


def decode_header(encoded: bytes) -> dict[str, str]:
    """A raw RLP header (``debug_getRawHeader``) as a JSON-RPC block object, strictly.

    Strict means that ``encode_header(decode_header(x)) == x`` for every accepted ``x``: field
    counts of a real fork, exact lengths, canonical integers. ``hash`` is added, computed.
    RLP carries no field names, so the fields are named by position as each fork appends them.
    """
    fields = _as_list(_rlp_decode(encoded, "header"), "header")
    layout = _BASE_FIELDS + _FORK_FIELDS
    valid_counts = {len(_BASE_FIELDS) + n for n in (0, 1, 2, 5, 6)}
    if len(fields) not in valid_counts:
        raise MalformedEncodingError(
            f"header has {len(fields)} fields; forks define {sorted(valid_counts)}"
        )
    block: dict[str, str] = {}
    for (name, kind, length), item in zip(layout, fields, strict=False):
        if kind == "i":
            block[name] = hex(_as_int(item, name))
        else:
            block[name] = "0x" + _as_bytes(item, name, length).hex()
    block["hash"] = "0x" + keccak256(encoded).hex()
    return block


def header_hash(block: Mapping[str, Any]) -> bytes:
    """keccak256 of the RLP header: the block hash the header really commits to."""
    return keccak256(encode_header(block))


def verify_header(block: Mapping[str, Any]) -> None:
    """Raise unless the block's own fields hash to its claimed ``hash``."""
    claimed = _hex_bytes(block, "hash", 32)
    actual = header_hash(block)
    if actual != claimed:
        raise HashMismatchError(
            f"block {block.get('number')!s} claims hash 0x{claimed.hex()} "
            f"but its header hashes to 0x{actual.hex()}"
        )


# --- receipts ------------------------------------------------------------------------------------

_TYPED_RECEIPTS = frozenset({1, 2, 3, 4})


def bloom_may_contain(bloom: bytes, item: bytes) -> bool:
    """Whether a log address or topic may be in a 2048-bit logs bloom (yellow paper, M3:2048).

    False is certain: a block whose (hash-verified) header bloom lacks the item has no such
    log, so its receipts need not be read. True may be a false positive.
    """
    if len(bloom) != 256:
        raise MalformedEncodingError(f"a logs bloom is 256 bytes, got {len(bloom)}")
    digest = keccak256(item)
    for i in (0, 2, 4):
        bit = ((digest[i] << 8) | digest[i + 1]) & 2047
        if not bloom[255 - bit // 8] & (1 << (bit % 8)):
            return False
    return True


def encode_receipt(receipt: Mapping[str, Any]) -> bytes:
    """The consensus encoding of a JSON-RPC receipt (EIP-2718 envelope for typed receipts)."""
    tx_type = _hex_int(receipt, "type") if "type" in receipt else 0
    if tx_type != 0 and tx_type not in _TYPED_RECEIPTS:
        raise MalformedEncodingError(f"unsupported receipt type {tx_type}")
    if "status" in receipt:
        status = _hex_int(receipt, "status")
        if status not in (0, 1):
            raise MalformedEncodingError(f"receipt status {status} is neither 0 nor 1")
        first: bytes | int = status
    elif "root" in receipt:
        first = _hex_bytes(receipt, "root", 32)
    else:
        raise MalformedEncodingError("receipt has neither status nor root")
    logs = receipt.get("logs")
    if not isinstance(logs, list):
        raise MalformedEncodingError("receipt logs must be a list")
    encoded_logs: list[rlpcodec.Encodable] = []
    for entry in logs:
        topics = entry.get("topics") if isinstance(entry, Mapping) else None
        if not isinstance(topics, list):
            raise MalformedEncodingError("log topics must be a list")
        encoded_logs.append(
            [
                _hex_bytes(entry, "address", 20),
                [_hex_bytes({"t": t}, "t", 32) for t in topics],
                _hex_bytes(entry, "data"),
            ]
        )
    payload: bytes = rlpcodec.encode(
        [
            first,
            _hex_int(receipt, "cumulativeGasUsed"),
            _hex_bytes(receipt, "logsBloom", 256),
            encoded_logs,
        ]
    )
    return payload if tx_type == 0 else bytes([tx_type]) + payload


def receipt_trie(receipts: Sequence[Mapping[str, Any]]) -> TrieBuild:
    """The receipts trie of a block (key rlp(index)), to take its root or cut a proof out of it."""
    return TrieBuild((rlpcodec.encode(i), encode_receipt(r)) for i, r in enumerate(receipts))


def receipts_root(receipts: Sequence[Mapping[str, Any]]) -> bytes:
    """The ``receiptsRoot`` a header must carry for exactly these receipts, in this order."""
    return receipt_trie(receipts).root


def _as_bytes(item: object, what: str, length: int | None = None) -> bytes:
    if not isinstance(item, bytes):
        raise MalformedEncodingError(f"{what} must be a byte string, got a list")
    if length is not None and len(item) != length:
        raise MalformedEncodingError(f"{what} must be {length} bytes, got {len(item)}")
    return item


def _as_int(item: object, what: str) -> int:
    raw = _as_bytes(item, what)
    if raw[:1] == b"\x00":
        raise MalformedEncodingError(f"{what} is an integer with leading zero bytes")
    return int.from_bytes(raw, "big")


def _as_list(item: object, what: str, length: int | None = None) -> list[object]:
    if not isinstance(item, list):
        raise MalformedEncodingError(f"{what} must be a list")
    if length is not None and len(item) != length:
        raise MalformedEncodingError(f"{what} must have {length} items, got {len(item)}")
    return item


def _rlp_decode(data: bytes, what: str) -> object:
    try:
        return rlpcodec.decode(data)
    except MalformedEncodingError as exc:
        raise MalformedEncodingError(f"{what} is not canonical RLP: {exc}") from None


def decode_receipt(encoded: bytes) -> Receipt:
    """Strict decoding of a consensus-encoded receipt (legacy or EIP-2718 typed)."""
    if not encoded:
        raise MalformedEncodingError("empty receipt")
    tx_type = 0
    body = encoded
    if encoded[0] < 0xC0:
        tx_type = encoded[0]
        if tx_type not in _TYPED_RECEIPTS:
            raise MalformedEncodingError(f"unsupported receipt type {tx_type}")
        body = encoded[1:]
    fields = _as_list(_rlp_decode(body, "receipt"), "receipt", 4)
    first = _as_bytes(fields[0], "receipt status")
    post_state: bytes | None = None
    if len(first) == 32:
        status, post_state = -1, first
    elif first in (b"", b"\x01"):
        status = len(first)
    else:
        raise MalformedEncodingError("receipt status is neither 0, 1 nor a 32-byte state root")
    logs = []
    for i, raw_log in enumerate(_as_list(fields[3], "receipt logs")):
        address, topics, data = _as_list(raw_log, f"log {i}", 3)
        logs.append(
            Log(
                address=_as_bytes(address, f"log {i} address", 20),
                topics=tuple(
                    _as_bytes(t, f"log {i} topic", 32) for t in _as_list(topics, "topics")
                ),
                data=_as_bytes(data, f"log {i} data"),
            )
        )
    return Receipt(
        tx_type=tx_type,
        status=status,
        cumulative_gas_used=_as_int(fields[1], "cumulativeGasUsed"),
        logs_bloom=_as_bytes(fields[2], "logsBloom", 256),
        logs=tuple(logs),
        post_state=post_state,
    )


def verify_receipt_proof(receipts_root: bytes, tx_index: int, proof: Sequence[bytes]) -> Receipt:
    """The receipt at ``tx_index`` under ``receipts_root``, proven by ``proof``."""
    if tx_index < 0:
        raise ProofError(f"transaction index {tx_index} is negative")
    value = verify_proof(receipts_root, rlpcodec.encode(tx_index), proof)
    if value is None:
        raise ProofError(f"the proof shows there is no receipt at index {tx_index}")
    return decode_receipt(value)


def verify_log(receipts_root: bytes, tx_index: int, log_index: int, proof: Sequence[bytes]) -> Log:
    """Log ``log_index`` of the receipt at ``tx_index`` (its position within that receipt)."""
    receipt = verify_receipt_proof(receipts_root, tx_index, proof)
    if not 0 <= log_index < len(receipt.logs):
        raise ProofError(
            f"receipt {tx_index} has {len(receipt.logs)} logs; there is no log {log_index}"
        )
    return receipt.logs[log_index]


# --- state ---------------------------------------------------------------------------------------


def verify_account_proof(
    state_root: bytes, address: bytes, proof: Sequence[bytes]
) -> Account | None:
    """The account at ``address`` under ``state_root``, or ``None`` if proven absent."""
    if len(address) != 20:
        raise ProofError(f"an address is 20 bytes, got {len(address)}")
    value = verify_proof(state_root, keccak256(address), proof)
    if value is None:
        return None
    nonce, balance, storage_root, code_hash = _as_list(_rlp_decode(value, "account"), "account", 4)
    return Account(
        nonce=_as_int(nonce, "account nonce"),
        balance=_as_int(balance, "account balance"),
        storage_root=_as_bytes(storage_root, "account storageRoot", 32),
        code_hash=_as_bytes(code_hash, "account codeHash", 32),
    )


def verify_storage_proof(storage_root: bytes, slot: bytes, proof: Sequence[bytes]) -> int:
    """The value of storage ``slot`` (up to 32 bytes, big-endian) under ``storage_root``.

    A proven-absent slot holds zero, as the EVM reads it.
    """
    if len(slot) > 32:
        raise ProofError(f"a storage slot is at most 32 bytes, got {len(slot)}")
    value = verify_proof(storage_root, keccak256(slot.rjust(32, b"\x00")), proof)
    if value is None:
        return 0
    number = _as_int(_rlp_decode(value, "storage value"), "storage value")
    if number == 0:
        raise MalformedEncodingError("a zero storage value is stored as absence, not as a leaf")
    return number
