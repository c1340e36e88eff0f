"""Fuzz targets for every decoder in proofs/: each takes arbitrary bytes and must either return a
verified value or raise ProofError. Any other exception is a bug.

Run them for a while with ``python -m tests.fuzz.run --seconds 600`` (hypothesis, no extra
install) or under atheris: ``python -m tests.fuzz.run --atheris mpt_proof`` (``pip install
atheris`` first; it drives the same target functions with coverage feedback).
"""

from __future__ import annotations

from collections.abc import Callable

import rlp

from proofs import ProofError
from proofs.ethereum import decode_header, decode_receipt, encode_header
from proofs.hashing import keccak256
from proofs.mpt import verify_proof


def _split(data: bytes, parts: int) -> list[bytes]:
    """Cut the input into length-prefixed chunks so that one byte string drives several args."""
    out: list[bytes] = []
    pos = 0
    for _ in range(parts):
        if pos >= len(data):
            out.append(b"")
            continue
        size = data[pos]
        out.append(data[pos + 1 : pos + 1 + size * 4])
        pos += 1 + size * 4
    out.append(data[pos:])
    return out


def rlp_header(data: bytes) -> None:
    try:
        block = decode_header(data)
    except ProofError:
        return
    # Whatever the decoder accepts must re-encode to exactly the same bytes (and hash).
    assert encode_header(block) == data
    assert keccak256(data).hex() == block["hash"][2:]


def mpt_proof(data: bytes) -> None:
    key, *nodes = _split(data, 4)
    proof = [n for n in nodes if n]
    # Root the proof at its own first node so that the walk gets past the root check and into
    # the node decoding, which is where the interesting bugs would be.
    root = keccak256(proof[0]) if proof else keccak256(rlp.encode(b""))
    try:
        verify_proof(root, key, proof)
    except ProofError:
        return


def receipt(data: bytes) -> None:
    try:
        decode_receipt(data)
    except ProofError:
        return


TARGETS: dict[str, Callable[[bytes], None]] = {
    "rlp_header": rlp_header,
    "mpt_proof": mpt_proof,
    "receipt": receipt,
}


def _register_substrate() -> None:
    # The Substrate decoders live in their own module; register them when present.
    try:
        from tests.fuzz import fuzz_grandpa  # noqa: PLC0415
    except ImportError:
        return

    def scale_justification(data: bytes) -> None:
        try:
            fuzz_grandpa.fuzz_once(data)
        except ProofError:
            return

    TARGETS["scale_justification"] = scale_justification


_register_substrate()
