"""Verifications per second of proofs/ on real vectors, and the MPT walk against py-trie.

Run: ``make bench`` or ``.venv/bin/python bench/proofs.py [--seconds S]``. Prints one line per
verifier and the ratio ours/reference for the MPT walk, both measured in this run. Needs
../shared/vectors (read in place).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import rlp
from eth_account import Account
from eth_account.messages import encode_defunct
from trie import HexaryTrie

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proofs.committee import attestation_digest, verify_attestation
from proofs.ethereum import header_hash, verify_receipt_proof
from proofs.mpt import verify_proof

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"


def _hx(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second, timed over batches until ``seconds`` have passed."""
    fn()
    calls = 0
    batch = 1
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(batch):
            fn()
        calls += batch
        batch = min(batch * 2, 4096)
    return calls / elapsed


def grandpa_case() -> Callable[[], object] | None:
    try:
        from bench.grandpa_case import build  # noqa: PLC0415
    except ImportError:
        return None
    return build(VECTORS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    if not VECTORS.is_dir():
        sys.exit(f"bench/proofs.py needs the shared vectors at {VECTORS}")

    block = json.loads((VECTORS / "eth_el/helios_rpc/block.json").read_text())
    ready = json.loads((VECTORS / "eth_el/helios_verifiable_api/receipt.json").read_text())
    root = _hx(block["receiptsRoot"])
    index = int(ready["receipt"]["transactionIndex"], 16)
    proof = [_hx(n) for n in ready["receiptProof"]]
    key = rlp.encode(index)

    accounts = [Account.from_key(bytes([i + 1]) * 32) for i in range(5)]
    attesters = [_hx(a.address) for a in accounts]
    digest = attestation_digest(31338, b"\x42" * 20, 1000, b"\x11" * 32, b"\x22" * 32)
    sigs = [bytes(a.sign_message(encode_defunct(primitive=digest)).signature) for a in accounts[:3]]

    cases: list[tuple[str, Callable[[], object]]] = [
        (
            "receipt proof (mainnet block 21925176, 3 nodes)",
            lambda: verify_receipt_proof(root, index, proof),
        ),
        ("header hash (Cancun mainnet header)", lambda: header_hash(block)),
        ("committee attestation 3-of-5", lambda: verify_attestation(digest, sigs, attesters, 3)),
    ]
    grandpa = grandpa_case()
    if grandpa is not None:
        cases.append(("GRANDPA justification (vector authority set)", grandpa))

    print(f"{'verifier':<52} {'per second':>12} {'µs each':>10}")
    for name, fn in cases:
        per_s = rate(fn, args.seconds)
        print(f"{name:<52} {per_s:>12,.0f} {1e6 / per_s:>10.1f}")

    ours = rate(lambda: verify_proof(root, key, proof), args.seconds)
    # py-trie takes decoded nodes; decoding is part of verifying raw proof bytes, so it is timed.
    ref = rate(
        lambda: HexaryTrie.get_from_proof(root, key, [rlp.decode(n) for n in proof]), args.seconds
    )
    assert verify_proof(root, key, proof) == HexaryTrie.get_from_proof(
        root, key, [rlp.decode(n) for n in proof]
    )
    print(f"{'mpt.verify_proof (same receipt proof)':<52} {ours:>12,.0f} {1e6 / ours:>10.1f}")
    print(f"{'trie.HexaryTrie.get_from_proof (reference)':<52} {ref:>12,.0f} {1e6 / ref:>10.1f}")
    print(f"ratio ours/reference (verifications per second): {ours / ref:.2f}x")


if __name__ == "__main__":
    main()
