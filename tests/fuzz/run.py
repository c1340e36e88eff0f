"""Run the fuzz targets for a while: ``python -m tests.fuzz.run [--seconds S] [TARGET...]``.

Without ``--atheris`` it drives each target with hypothesis (random and shrinking, no coverage
feedback) for the given time, split between targets. With ``--atheris TARGET`` it hands one
target to atheris' libFuzzer loop (coverage-guided; pass libFuzzer flags after ``--``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.targets import TARGETS


def _hypothesis(name: str, seconds: float) -> int:
    target = TARGETS[name]
    deadline = time.monotonic() + seconds
    runs = 0

    @settings(
        max_examples=10**9, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(st.binary(max_size=2048))
    def drive(data: bytes) -> None:
        nonlocal runs
        runs += 1
        target(data)
        if time.monotonic() > deadline:
            raise _TimeUp

    with contextlib.suppress(_TimeUp):
        drive()
    return runs


class _TimeUp(Exception):  # noqa: N818  (control flow, not an error)
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("targets", nargs="*", default=sorted(TARGETS))
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--atheris", metavar="TARGET")
    args, rest = parser.parse_known_args()
    if args.atheris:
        import atheris  # type: ignore[import-not-found]  # noqa: PLC0415

        target = TARGETS[args.atheris]
        atheris.Setup([sys.argv[0], *rest], target)
        atheris.Fuzz()
        return
    share = args.seconds / len(args.targets)
    for name in args.targets:
        runs = _hypothesis(name, share)
        print(f"fuzz {name}: {runs} inputs in {share:.0f}s, no failure")


if __name__ == "__main__":
    main()
