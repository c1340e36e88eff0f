"""A third, fake chain family, used only by tests: a tiny chain process (``node``), its plugin
(``plugin.PLUGIN``, kind ``fake``) and the conformance kit's harness for it (``harness``).

Nothing outside this folder names it. Its entry point lives in a dist-info folder of its own
(``dist/``), which ``register()`` puts on ``sys.path``: ``importlib.metadata`` then lists it
under ``relayer.chains`` as it lists an installed package's, without touching the project's
``pyproject.toml``.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["DIST", "register", "unregister"]

#: the folder holding the family's ``*.dist-info``
DIST = str(Path(__file__).resolve().parent / "dist")


def _forget_registry() -> None:
    # relayer.plugin caches what entry_points() said at its first look.
    from relayer.plugin import reload_plugins  # noqa: PLC0415

    reload_plugins()


def register() -> None:
    """Make ``relayer.plugin.load_plugin("fake")`` find this family (idempotent)."""
    if DIST not in sys.path:
        sys.path.append(DIST)
    _forget_registry()


def unregister() -> None:
    """Undo ``register()``: the installed families only, as before."""
    while DIST in sys.path:
        sys.path.remove(DIST)
    _forget_registry()
