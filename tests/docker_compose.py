"""docker/compose.yaml as its services would run: reading it the way `docker compose` does
(``${VAR:-default}`` with nothing set, anchors merged), and each command of a service running
our image parsed against the console scripts pyproject.toml installs. Shared by the static
checks (tests/unit/test_docker_files.py) and the run of its topology without docker
(tests/e2e/test_compose_topology.py)."""

from __future__ import annotations

import importlib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

__all__ = [
    "COMPOSE",
    "DOCKER",
    "OUR_IMAGE",
    "REPO",
    "Invocation",
    "Mount",
    "compose_file",
    "compose_services",
    "console_scripts",
    "dev_services",
    "environment",
    "interpolate",
    "mounts_of",
    "our_commands",
    "our_services",
    "parse_command",
    "published",
]

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
OUR_IMAGE = "xrelayer:dev"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with nothing set in the environment: what `up` runs with
    on a fresh checkout. A variable without a default would make `up` need a setting."""

    def default(match: re.Match[str]) -> str:
        if match.group(2) is None:
            raise AssertionError(f"{match.group(0)} has no default: `up` would need it set")
        return match.group(2)

    return _VAR.sub(default, value)


def compose_file() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def compose_services(profile: str | None = None) -> dict[str, dict[str, Any]]:
    """The services `docker compose up` starts (those in no profile), or those of ``profile``."""
    services: dict[str, dict[str, Any]] = compose_file()["services"]
    return {
        name: s
        for name, s in services.items()
        if (profile in s.get("profiles", []) if profile is not None else "profiles" not in s)
    }


def our_services(profile: str | None = None) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose_services(profile).items() if s.get("image") == OUR_IMAGE}


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment", {})
    assert isinstance(raw, dict), "environment as a mapping, so that anchors can merge it"
    return {key: interpolate(str(value)) for key, value in raw.items()}


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool

    @property
    def is_bind(self) -> bool:
        return self.source.startswith((".", "/"))

    def host_path(self) -> Path:
        return (DOCKER / self.source).resolve()


def mounts_of(service: Mapping[str, Any]) -> list[Mount]:
    out = []
    for entry in service.get("volumes", []):
        parts = str(entry).split(":")
        assert len(parts) in {2, 3}, f"short volume syntax expected: {entry}"
        out.append(Mount(parts[0], parts[1], len(parts) == 3 and "ro" in parts[2].split(",")))
    return out


def published(service: Mapping[str, Any]) -> set[int]:
    """Container ports published on the host, each on its loopback only."""
    ports = set()
    for entry in service.get("ports", []):
        host_ip, host_port, container_port = str(entry).split(":")
        assert host_ip == "127.0.0.1", f"{entry}: publish on the host's loopback only"
        assert host_port == container_port, f"{entry}: the host port is the config's default"
        ports.add(int(container_port))
    return ports


def console_scripts() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    scripts: dict[str, str] = project["scripts"]
    return scripts


@dataclass(frozen=True)
class Invocation:
    path: tuple[str, ...]  # console script and subcommands: ("relayer", "attest")
    params: Mapping[str, Any]


def parse_command(argv: Sequence[str]) -> Invocation:
    """Parse a service's command as the image would run it: the console script's click command,
    down the subcommands, options checked (an unknown or missing one fails here)."""
    script, *rest = argv
    scripts = console_scripts()
    assert script in scripts, f"{script} is not a console script of pyproject.toml"
    module, _, attr = scripts[script].partition(":")
    command = getattr(importlib.import_module(module), attr)
    path = [script]
    while isinstance(command, click.Group):
        assert rest, f"{' '.join(path)} needs a subcommand"
        name, *rest = rest
        assert name in command.commands, f"{' '.join(path)} has no subcommand {name!r}"
        command = command.commands[name]
        path.append(name)
    assert isinstance(command, click.Command)
    context = command.make_context(" ".join(path), list(rest))
    return Invocation(tuple(path), dict(context.params))


def our_commands(profile: str | None = None) -> dict[str, Invocation]:
    return {
        name: parse_command(service["command"]) for name, service in our_services(profile).items()
    }


def dev_services(kind: str) -> dict[str, Invocation]:
    return {n: inv for n, inv in our_commands().items() if inv.path == ("relayer-dev", kind)}
