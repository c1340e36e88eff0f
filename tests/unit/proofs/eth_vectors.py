"""Loaders for the Ethereum execution-layer vectors in ../shared/vectors/eth_el."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from tests.vectors import vectors_dir


def hx(value: str) -> bytes:
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


def load(relative: str) -> Any:
    return json.loads((vectors_dir() / "eth_el" / relative).read_text())


@dataclass(frozen=True)
class ReceiptVector:
    block: dict[str, Any]
    receipts_root: bytes
    tx_index: int
    proof: tuple[bytes, ...]
    receipt: dict[str, Any]


@cache
def receipt_vector() -> ReceiptVector:
    block = load("helios_rpc/block.json")
    ready = load("helios_verifiable_api/receipt.json")
    return ReceiptVector(
        block=block,
        receipts_root=hx(block["receiptsRoot"]),
        tx_index=int(ready["receipt"]["transactionIndex"], 16),
        proof=tuple(hx(n) for n in ready["receiptProof"]),
        receipt=ready["receipt"],
    )
