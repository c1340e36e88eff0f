"""The keys directory that ``relayer keys`` manages: one encrypted key file per name.

``<keys dir>/<name>.json`` holds one key in its family's format (``relayer.keys.KeyFormat``),
which the chain plugin offering it reads back when a config names the file as a keystore. The
directory is ``[relayer] keys_dir`` of the config file when it sets one, else ``keys/`` beside
the config file. Nothing here decrypts a key: listing and addresses come from what the files
say of themselves, which is a claim (a file's address is not authenticated without its
password: ``KeyFormat.verify`` checks it).
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from relayer.errors import ConfigError
from relayer.keys import KeyFileInfo, KeyFormat, KeyUnavailableError
from relayer.plugin import ENTRY_POINT_GROUP, load_plugin

__all__ = [
    "DEFAULT_KEYS_DIR",
    "InvalidKeyNameError",
    "KeyEntry",
    "OffersKeyFormat",
    "describe_key_file",
    "installed_key_formats",
    "key_path",
    "keys_dir_for",
    "list_keys",
]

DEFAULT_KEYS_DIR = "keys"
# A name is a file name: no separators, no leading dot (hidden files, "..").
_KEY_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")


class InvalidKeyNameError(ConfigError):
    """A key name that is not a plain file name."""


@runtime_checkable
class OffersKeyFormat(Protocol):
    """A chain plugin whose family has key files ``relayer keys`` can create and list: an
    optional capability (a plugin without it is simply not offered by ``relayer keys``)."""

    @property
    def key_format(self) -> KeyFormat:
        """The family's encrypted key files; its ``load_signer`` reads them."""
        ...


def installed_key_formats() -> dict[str, KeyFormat]:
    """The key format of each installed chain plugin that offers one, by plugin ``kind``."""
    formats: dict[str, KeyFormat] = {}
    for name in sorted({entry.name for entry in entry_points(group=ENTRY_POINT_GROUP)}):
        family = load_plugin(name)
        if isinstance(family, OffersKeyFormat):
            formats[name] = family.key_format
    return formats


def keys_dir_for(config_path: Path) -> Path:
    """``[relayer] keys_dir`` of the config file (relative to the file), else ``keys/`` beside
    it. Read from the TOML alone, without decoding the rest: keys are made before a config
    is complete, and its ``${VAR}`` may not be set where the operator makes them.

    Raises ``ConfigError`` when the file exists but is not TOML or ``keys_dir`` is not a
    string."""
    base = config_path.resolve().parent
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return base / DEFAULT_KEYS_DIR
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {config_path}: {exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {config_path} is not valid TOML: {exc}") from None
    relayer = doc.get("relayer")
    configured = relayer.get("keys_dir") if isinstance(relayer, dict) else None
    if configured is None:
        return base / DEFAULT_KEYS_DIR
    if not isinstance(configured, str) or not configured or "${" in configured:
        raise ConfigError(
            f"config file {config_path}: relayer.keys_dir must be a plain path "
            "(relative to the config file)"
        )
    return base / configured


def key_path(keys_dir: Path, name: str) -> Path:
    """``<keys_dir>/<name>.json``. Raises ``InvalidKeyNameError`` for a name that is not a
    plain file name."""
    if not _KEY_NAME.fullmatch(name) or name.endswith(".json"):
        raise InvalidKeyNameError(
            f"key name {name!r} is not usable: letters, digits, '_', '-' and '.', not starting "
            "with '.', at most 100 characters, without the .json suffix"
        )
    return keys_dir / f"{name}.json"


def describe_key_file(path: Path, formats: Mapping[str, KeyFormat]) -> tuple[str, KeyFileInfo]:
    """The family (plugin ``kind``) and what the key file at ``path`` says of itself.

    Raises ``KeyUnavailableError`` when it does not exist, ``ConfigError`` when it is not
    JSON or of no installed family's format."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyUnavailableError(f"key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read key file {path}: {exc}") from None
    try:
        document: Any = json.loads(text)
    except ValueError:
        raise ConfigError(f"key file {path} is not JSON") from None
    if not isinstance(document, dict):
        raise ConfigError(f"key file {path} is not a JSON object")
    for kind, found in formats.items():
        try:
            info = found.describe(document)
        except ConfigError as exc:
            raise ConfigError(f"key file {path}: {exc}") from None
        if info is not None:
            return kind, info
    known = ", ".join(formats) or "none"
    raise ConfigError(f"key file {path} is in no format of the installed chain families ({known})")


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One file of the keys directory, as ``relayer keys list`` shows it."""

    name: str
    path: Path
    #: the family (plugin ``kind``); None when the file could not be read
    kind: str | None
    info: KeyFileInfo | None
    #: why the file could not be read, for the listing
    problem: str | None
    #: permission bits, to point out a file others may read
    mode: int


def list_keys(keys_dir: Path, formats: Mapping[str, KeyFormat]) -> list[KeyEntry]:
    """Every ``*.json`` of ``keys_dir`` by name; an absent directory holds none."""
    try:
        paths = sorted((p for p in keys_dir.iterdir() if p.suffix == ".json"), key=lambda p: p.stem)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot list keys directory {keys_dir}: {exc.strerror}") from None
    entries = []
    for path in paths:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            mode = 0
        try:
            kind, info = describe_key_file(path, formats)
        except ConfigError as exc:
            entries.append(KeyEntry(path.stem, path, None, None, str(exc), mode))
            continue
        entries.append(KeyEntry(path.stem, path, kind, info, None, mode))
    return entries
