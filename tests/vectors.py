"""Where the shared real-world vectors live, and what a test does when they are not there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]
_VECTORS = _REPO.parent / "shared" / "vectors"


def vectors_dir() -> Path:
    """../shared/vectors; skip without it, except in CI where its absence is a failure."""
    if _VECTORS.is_dir():
        return _VECTORS
    reason = f"shared vectors not found at {_VECTORS} (they are read in place, never copied)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)
