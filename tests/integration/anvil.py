"""Local anvil chains for integration tests (the processes are ``chains.evm.anvil``'s).

Without the binary the calling test is skipped, except in CI (``CI=true``), where a missing
binary is a failure. Use the fixtures of ``tests/integration/conftest.py`` (``anvil_factory``,
``module_anvil_factory``) or make a dedicated one with ``anvil_fixture``; they stop every chain
they started, whatever the test's outcome.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from chains.evm import anvil as _runtime
from chains.evm.anvil import DEV_KEYS, REPO_ROOT, AnvilError, AnvilNode, anvil_binary

__all__ = [
    "DEV_KEYS",
    "REPO_ROOT",
    "AnvilError",
    "AnvilFactory",
    "AnvilNode",
    "anvil_factory_fixture",
    "anvil_fixture",
    "require_anvil",
    "start_anvil",
]

Scope = Literal["session", "package", "module", "class", "function"]


def require_anvil() -> Path:
    """The anvil binary; skip the calling test without it (fail in CI, where it must be there)."""
    binary = anvil_binary()
    if binary is not None:
        return binary
    reason = "anvil not found in node_modules (run `npm ci` or `make setup`)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def start_anvil(
    chain_id: int = 31337, *, block_time: float | None = None, extra_args: Sequence[str] = ()
) -> AnvilNode:
    require_anvil()
    return _runtime.start_anvil(chain_id, block_time=block_time, extra_args=extra_args)


class AnvilFactory:
    """Starts anvil chains on demand and stops all of them in ``stop_all()``."""

    def __init__(self) -> None:
        self.nodes: list[AnvilNode] = []

    def __call__(
        self,
        chain_id: int = 31337,
        *,
        block_time: float | None = None,
        extra_args: Sequence[str] = (),
    ) -> AnvilNode:
        node = start_anvil(chain_id, block_time=block_time, extra_args=extra_args)
        self.nodes.append(node)
        return node

    def stop_all(self) -> None:
        while self.nodes:
            self.nodes.pop().stop()


def anvil_factory_fixture(scope: Scope = "function") -> Callable[..., Any]:
    """A pytest fixture (of ``scope``) yielding an ``AnvilFactory`` that is emptied at teardown."""

    @pytest.fixture(scope=scope)
    def _factory() -> Iterator[AnvilFactory]:
        factory = AnvilFactory()
        try:
            yield factory
        finally:
            factory.stop_all()

    return _factory


def anvil_fixture(
    chain_id: int = 31337, *, block_time: float | None = None, scope: Scope = "function"
) -> Callable[..., Any]:
    """A pytest fixture (of ``scope``) yielding one running ``AnvilNode``, stopped at teardown.

    Usage in a test module or conftest: ``chain_a = anvil_fixture(31337, scope="module")``.
    """

    @pytest.fixture(scope=scope)
    def _node() -> Iterator[AnvilNode]:
        node = start_anvil(chain_id, block_time=block_time)
        try:
            yield node
        finally:
            node.stop()

    return _node
