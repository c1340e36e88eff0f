"""The package runs on what it declares: every module of proofs/, relayer/ and chains/ imports in
a fresh venv holding only the runtime dependencies of pyproject.toml (at the versions pinned in
constraints.txt, and their own dependencies), with no test extra and nothing else.

A package imported by the code but reaching the dev venv only through a test-only package (as
aiohttp once came only with web3) passes every other test and fails on an operator's machine.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("proofs", "relayer", "chains")

# Imports every module of the packages and prints the failures, one per line; run by the fresh
# venv's interpreter with the repo as its only other path entry.
_IMPORT_ALL = """
import importlib, pkgutil, sys, traceback
failures = []
def failed(name):
    failures.append(f"{name}: {sys.exc_info()[1]!r}")
for package in sys.argv[1:]:
    try:
        root = importlib.import_module(package)
    except Exception:
        failed(package)
        continue
    for info in pkgutil.walk_packages(root.__path__, package + ".", onerror=failed):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            importlib.import_module(info.name)
        except Exception:
            failed(info.name)
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""

# pip's words for "the index could not be reached". "from versions: none" is one of them here:
# every pin of the closure is installed in the dev venv (``_closure`` checks), so it exists.
_OFFLINE = re.compile(
    r"NewConnectionError|Temporary failure in name resolution|Network is unreachable|"
    r"Max retries exceeded|ConnectTimeout|ProxyError|Name or service not known|"
    r"\(from versions: none\)"
)


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep:
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _runtime_requirements() -> list[Requirement]:
    with (REPO_ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    return [Requirement(text) for text in project["dependencies"]]


def _closure(requirements: list[Requirement], pins: dict[str, str]) -> dict[str, str]:
    """Every distribution the runtime requirements pull in, with its pinned version.

    Read from the metadata of the dev venv's copies, which ``make setup`` installed at exactly
    these pins (checked below), so the closure is the one pip would resolve from PyPI."""
    closure: dict[str, str] = {}
    pending = [(req, frozenset(req.extras)) for req in requirements]
    while pending:
        req, extras = pending.pop()
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is required (via {req}) but not pinned in constraints"
        installed = importlib.metadata.version(name)
        assert installed == pins[name], (
            f"{name} {installed} is installed, constraints.txt pins {pins[name]}: run make setup"
        )
        if name in closure and not extras:
            continue
        closure[name] = pins[name]
        for text in importlib.metadata.requires(name) or ():
            sub = Requirement(text)
            if sub.marker is not None and not any(
                sub.marker.evaluate({"extra": extra}) for extra in ("", *extras)
            ):
                continue
            pending.append((sub, frozenset(sub.extras)))
    return closure


def test_runtime_dependencies_are_pinned_and_exclude_test_tools() -> None:
    pins = _pins()
    for req in _runtime_requirements():
        assert str(req.specifier) == f"=={pins[canonicalize_name(req.name)]}", req
    closure = _closure(_runtime_requirements(), pins)
    for test_only in ("web3", "pytest", "hypothesis", "mypy", "ruff", "trie"):
        assert test_only not in closure, f"{test_only} is pulled into the runtime dependencies"


def _third_party_imports() -> set[str]:
    imported: set[str] = set()
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    imported.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    return imported - set(sys.stdlib_module_names) - set(PACKAGES)


def test_every_third_party_import_is_a_declared_runtime_dependency() -> None:
    """The fast half of the venv test below: each imported top-level module belongs to a
    distribution declared in ``dependencies`` (not merely one that a declared one pulls in)."""
    declared = {canonicalize_name(req.name) for req in _runtime_requirements()}
    providers = importlib.metadata.packages_distributions()
    undeclared = {
        module: providers.get(module, ["(not installed)"])
        for module in sorted(_third_party_imports())
        if not declared & {canonicalize_name(dist) for dist in providers.get(module, [])}
    }
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def _pip(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # Not run from the repo: its xrelayer.egg-info would be on the path of ``python -m``.
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=600,
    )


def test_every_module_imports_with_the_declared_dependencies_alone(tmp_path: Path) -> None:
    closure = _closure(_runtime_requirements(), _pins())
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    # The dev venv's pip installs into the new one (--python), from the index pip is configured
    # with, reusing its cache; --no-deps: exactly the closure, so nothing can sneak in.
    pins = [f"{name}=={version}" for name, version in sorted(closure.items())]
    # Not --quiet: pip says that the index could not be reached only in its warnings.
    install = _pip(
        "--python",
        str(python),
        "install",
        "--progress-bar",
        "off",
        "--no-deps",
        *pins,
        cwd=tmp_path,
    )
    if install.returncode != 0:
        if _OFFLINE.search(install.stderr) and os.environ.get("CI") != "true":
            pytest.skip(f"no package index reachable: {install.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"installing the runtime closure failed:\n{install.stderr}")
    result = subprocess.run(
        [str(python), "-s", "-c", _IMPORT_ALL, *PACKAGES],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        # The repo as source, on no other path: the venv's site-packages hold the closure alone.
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT)},
        timeout=300,
    )
    assert result.returncode == 0, (
        "modules that fail to import with the declared dependencies alone:\n"
        + result.stdout
        + result.stderr
    )
    # And the closure is complete: every requirement of every distribution in it is met.
    check = _pip("--python", str(python), "check", cwd=tmp_path)
    assert check.returncode == 0, check.stdout
