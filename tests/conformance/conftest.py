"""The conformance kit's families: each runs the whole kit against a chain of its own.

``FAMILIES`` names a ``start() -> ChainHarness`` per family; a family added to the relayer
adds one line here (or runs the kit with ``--family module:start``)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest

from tests.conformance.harness import ChainHarness

FAMILIES = {
    "evm": "tests.conformance.evm_harness:start",
    "substrate": "tests.conformance.substrate_harness:start",
    "fake": "tests.conformance.fake.harness:start",
}


def _start(target: str) -> ChainHarness:
    module, _, function = target.partition(":")
    harness: ChainHarness = getattr(importlib.import_module(module), function)()
    return harness


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def harness(request: pytest.FixtureRequest) -> Iterator[ChainHarness]:
    """One running chain of the family, shared by the module's tests (chains take seconds to
    start); every test sends messages of its own."""
    fake = request.param == "fake"
    if fake:
        from tests.conformance.fake import register  # noqa: PLC0415

        register()  # its entry point lives in its own folder, not in pyproject.toml
    try:
        started = _start(FAMILIES[request.param])
        try:
            yield started
        finally:
            started.close()
    finally:
        if fake:
            from tests.conformance.fake import unregister  # noqa: PLC0415

            unregister()  # later tests see the installed families only
