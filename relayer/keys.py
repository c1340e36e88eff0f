"""Where keys live, and how they are read without ever being shown.

A config names a key by where it lives: ``{ env = "VAR" }`` (the key's text in an environment
variable) or ``{ keystore = "path.json", password_env = "VAR" }`` (an encrypted key file and the
variable holding its password). ``resolve_key`` reads what a reference names, without decoding
it: what the text or file means (a secp256k1 hex key, a V3 keystore, an sr25519 keypair JSON, a
dev URI) is the business of whoever signs with it, a chain plugin or the committee scheme
(``relayer.ecdsa_key``). Everything read is held in ``Secret``, which never shows itself.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from relayer.errors import ConfigError

__all__ = ["KeyRef", "KeyUnavailableError", "ResolvedKey", "Secret", "redact_url", "resolve_key"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class KeyUnavailableError(ConfigError):
    """The key's variable or keystore file is absent here (it may live on another machine).

    Distinct from a plain ``ConfigError`` (the key is there but malformed, or the password is
    wrong) so that ``relayer config check`` can tell "not on this host" from "broken"."""


class KeyRef(BaseModel):
    """Where a private key lives: exactly one of ``env`` or ``keystore`` (+ ``password_env``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    keystore: Path | None = None
    password_env: str | None = None

    @field_validator("env", "password_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError("must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
        return value

    @field_validator("keystore")
    @classmethod
    def _resolve_keystore(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # load_config passes the config file's folder, so that a relative keystore path means
        # the same file whatever directory the daemon was started from.
        if value is None or value.is_absolute():
            return value
        base = info.context.get("base_dir") if isinstance(info.context, dict) else None
        return Path(base) / value if base is not None else value

    @model_validator(mode="after")
    def _one_source(self) -> KeyRef:
        if self.env is not None:
            if self.keystore is not None or self.password_env is not None:
                raise ValueError(
                    "give either { env = ... } or { keystore = ..., password_env = ... }, not both"
                )
        elif self.keystore is None:
            raise ValueError(
                'a key reference needs { env = "VAR" } or '
                '{ keystore = "path.json", password_env = "VAR" }'
            )
        elif self.password_env is None:
            raise ValueError("a keystore needs password_env: the variable holding its password")
        return self

    @property
    def identity(self) -> str:
        """``env:VAR`` or ``keystore:/abs/path``: two references to the same key compare equal."""
        if self.env is not None:
            return f"env:{self.env}"
        assert self.keystore is not None  # guaranteed by _one_source
        return f"keystore:{self.keystore.absolute()}"


class Secret:
    """Key material or a password: ``repr``/``str`` say ``<redacted>``, pickling refuses."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself, for the one call that decodes or decrypts it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Pickling would write the secret to wherever the pickle goes (a queue, a cache, a log).
        raise TypeError("Secret holds key material and cannot be pickled")


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    """What a ``KeyRef`` names, read but not decoded: either ``text`` (from ``env``) or a
    ``keystore`` document and its ``password``."""

    #: where the key came from, for messages: "environment variable X", "keystore file P"
    where: str
    #: ``KeyRef.identity``
    identity: str
    text: Secret | None = None
    keystore: Mapping[str, Any] | None = None
    keystore_path: Path | None = None
    password: Secret | None = None
    #: the variable that held ``password``, for a "wrong password" message
    password_env: str | None = None


def resolve_key(
    ref: KeyRef,
    base_dir: Path | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    holding: str = "a private key",
    keystore_kind: str = "an encrypted key file",
) -> ResolvedKey:
    """Read what ``ref`` names; a relative keystore path is taken relative to ``base_dir``.

    Raises ``KeyUnavailableError`` when the variable or keystore file is absent, ``ConfigError``
    when the file is there but not a JSON object. ``holding`` and ``keystore_kind`` say what
    the variable or file should hold, for those messages, which name the variable or file and
    never a value."""
    if ref.env is not None:
        text = _require_env(env, ref.env, holding)
        return ResolvedKey(
            where=f"environment variable {ref.env}", identity=ref.identity, text=Secret(text)
        )
    assert ref.keystore is not None and ref.password_env is not None  # KeyRef._one_source
    path = ref.keystore
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    password = _require_env(env, ref.password_env, f"the password of keystore {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyUnavailableError(f"keystore file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read keystore file {path}: {exc}") from None
    try:
        document = json.loads(text)
    except ValueError:
        raise ConfigError(f"keystore file {path} is not JSON (expected {keystore_kind})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"keystore file {path} is not {keystore_kind}")
    return ResolvedKey(
        where=f"keystore file {path}",
        identity=ref.identity,
        keystore=document,
        keystore_path=path,
        password=Secret(password),
        password_env=ref.password_env,
    )


def _require_env(env: Mapping[str, str], name: str, holding: str) -> str:
    value = env.get(name)
    if value is None or not value.strip():
        raise KeyUnavailableError(
            f"environment variable {name} is not set (it must hold {holding})"
        )
    return value


def redact_url(url: str) -> str:
    """An endpoint URL as it may be logged: scheme, host and port. Endpoint URLs carry API keys
    in their path, query or userinfo (``https://user:key@host/v3/KEY?apikey=...``)."""
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    host = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    return f"{head}{sep}{host}"
