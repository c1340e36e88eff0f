"""What a test needs before it starts a chopsticks chain (as ``anvil.require_anvil`` for anvil)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from chains.substrate.chopsticks import (
    SHARED_SPEC,
    SHIPPED_SPEC,
    ChopsticksNode,
    chopsticks_binary,
    find_kusama_spec,
    start_chopsticks,
)

__all__ = ["require_chopsticks", "running_chopsticks"]


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


@contextlib.contextmanager
def running_chopsticks(chain_name: str) -> Iterator[ChopsticksNode]:
    """A chopsticks chain named ``chain_name`` for the block (``require_chopsticks`` first),
    stopped after it."""
    require_chopsticks()
    node = start_chopsticks(chain_name=chain_name)
    try:
        yield node
    finally:
        node.stop()
