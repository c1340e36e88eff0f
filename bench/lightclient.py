"""Time to apply one mainnet sync-committee update, and one GRANDPA justification.

Run: ``.venv/bin/python bench/lightclient.py [--runs N] [--no-py-ecc]``. Needs ../shared/vectors
(read in place). The update is helios' ``updates[1]`` (period 863, 512 of 512 signing) applied
to the store that ``updates[0]`` left, so its signers are the committee the store learned as
"next": *cold* is that store fresh from its serialized form (every key still compressed, as
after a restart or at a period's first update), *warm* the same with the committee already
decompressed. Both include decoding the beacon-API JSON, the SSZ roots and both branches. The
same update through ``py_ecc`` (pure Python, one run) gives the ratio. The GRANDPA case is
bench/proofs.py's (Avail's ancestry justification).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eth_typing import BLSPubkey, BLSSignature
from py_ecc.bls import G2ProofOfPossession  # type: ignore[attr-defined]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proofs.ethereum_lc import BlsBackend, ChainSpec, LightClientStore

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"
CHECKPOINT = bytes.fromhex("5afc212a7924789b2bc86acad3ab3a6ffb1f6e97253ea50bee7f4f51422c9275")


class PyEccBackend:
    """``BlsBackend`` on py_ecc (the consensus specs' reference BLS), for the ratio only: it
    has no prepared-key form, so every verify decompresses and checks every key."""

    name = "py_ecc"

    def prepare_committee(self, pubkeys: Sequence[bytes]) -> object:
        return tuple(pubkeys)

    def fast_aggregate_verify(
        self, committee: object, participation: Sequence[bool], message: bytes, signature: bytes
    ) -> bool:
        assert isinstance(committee, tuple)
        keys = [BLSPubkey(k) for k, bit in zip(committee, participation, strict=True) if bit]
        return bool(G2ProofOfPossession.FastAggregateVerify(keys, message, BLSSignature(signature)))


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="timed runs per figure (median)")
    parser.add_argument("--no-py-ecc", action="store_true", help="skip the ~7 s py_ecc run")
    args = parser.parse_args()
    if not VECTORS.is_dir():
        sys.exit(f"bench/lightclient.py needs the shared vectors at {VECTORS}")

    helios = VECTORS / "eth_cl" / "helios"
    spec = ChainSpec.mainnet()
    bootstrap = json.loads((helios / "bootstrap.json").read_text())
    updates: list[dict[str, Any]] = json.loads((helios / "updates.json").read_text())
    update = updates[1]
    now = int(update["data"]["signature_slot"])

    base = LightClientStore.from_bootstrap(bootstrap, CHECKPOINT, spec)
    base.process_update(updates[0], now)
    saved = base.to_json()
    signers = sum(
        bin(b).count("1")
        for b in bytes.fromhex(update["data"]["sync_aggregate"]["sync_committee_bits"][2:])
    )

    def fresh(bls: BlsBackend | None = None) -> LightClientStore:
        return LightClientStore.from_json(saved, spec, bls=bls)

    def apply(store: LightClientStore) -> float:
        return _timed(lambda: store.process_update(update, now))

    cold = [apply(fresh()) for _ in range(max(3, args.runs // 3))]
    warm_base = fresh()
    warm_base.warm_up()
    warm = [apply(warm_base.copy()) for _ in range(args.runs * 4)]
    cold_s = statistics.median(cold)
    warm_s = statistics.median(warm)
    print(
        f"sync-committee update (mainnet period 863, {signers}/512 signing), pyblst: "
        f"cold {_ms(cold_s)}, warm {_ms(warm_s)} (median of {len(cold)} / {len(warm)}; "
        f"targets 60 ms / 5 ms)"
    )

    if not args.no_py_ecc:
        slow = apply(fresh(PyEccBackend()))
        print(
            f"same update with py_ecc: {slow:.2f} s = {slow / cold_s:,.0f}x pyblst cold, "
            f"{slow / warm_s:,.0f}x warm"
        )

    try:
        from bench.grandpa_case import build  # noqa: PLC0415 (needs the test helpers)
    except ImportError as exc:
        print(f"GRANDPA justification: skipped ({exc})")
        return
    verify = build(VECTORS)
    verify()
    grandpa = statistics.median(_timed(verify) for _ in range(args.runs * 20))
    print(f"GRANDPA justification (Avail ancestry vector, 4 authorities): {_ms(grandpa)}")


if __name__ == "__main__":
    main()
