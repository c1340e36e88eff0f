"""What a test needs before it starts a chopsticks chain (as ``anvil.require_anvil`` for anvil)."""

from __future__ import annotations

import os

import pytest

from chains.substrate.chopsticks import (
    SHARED_SPEC,
    SHIPPED_SPEC,
    chopsticks_binary,
    find_kusama_spec,
)

__all__ = ["require_chopsticks"]


def require_chopsticks() -> None:
    """Skip the calling test without chopsticks or a chain spec (fail in CI, where both must
    be there: chopsticks from ``npm ci``, the spec shipped in the project)."""
    reason = None
    if find_kusama_spec() is None:
        reason = f"no kusama chain spec at {SHARED_SPEC} or {SHIPPED_SPEC}"
    elif chopsticks_binary() is None:
        reason = "chopsticks is not in node_modules: run `make setup`"
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)
