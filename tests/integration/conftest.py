"""Fixtures for tests against real local chains (anvil from the repo's node_modules).

- ``anvil_factory``: call it (``anvil_factory(31338, block_time=1)``) to start chains; all of them
  are stopped when the test ends.
- ``module_anvil_factory``: the same, shared by a module; its chains stop after the module.
"""

from __future__ import annotations

from tests.integration.anvil import anvil_factory_fixture

anvil_factory = anvil_factory_fixture("function")
module_anvil_factory = anvil_factory_fixture("module")
