"""Signing keys, named in the config and never written into it.

A config names a key by where it lives: ``{ env = "VAR" }`` (a hex private key in an environment
variable) or ``{ keystore = "path.json", password_env = "VAR" }`` (an Ethereum V3 keystore and the
variable holding its password). ``load_key`` turns a reference into a ``LocalKey``, whose ``repr``
and ``str`` show the address and where the key came from, never the key.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import coincurve
from eth_utils.address import to_checksum_address
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from proofs.hashing import keccak256
from relayer.errors import ConfigError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

__all__ = ["KeyRef", "KeyUnavailableError", "LocalKey", "load_key"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEX_KEY = re.compile(r"(?:0[xX])?[0-9a-fA-F]{64}")


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


class LocalKey:
    """A loaded private key. ``repr``/``str`` show the address and source, never the key."""

    __slots__ = ("_secret", "_signer", "address", "source")

    address: bytes
    source: str

    def __init__(self, key: bytes | LocalAccount, source: str) -> None:
        """``key``: the 32 secret bytes (or an eth-account account holding them). Raises
        ``ValueError`` when they are not a secp256k1 private key."""
        self._secret = key if isinstance(key, bytes) else bytes(key.key)
        self._signer = coincurve.PrivateKey(self._secret)
        self.address = keccak256(self._signer.public_key.format(compressed=False)[1:])[12:]
        self.source = source

    def sign_hash(self, digest: bytes) -> bytes:
        """A 65-byte r || s || v (v in {27, 28}, low s) signature of a 32-byte hash; the form
        ``ecrecover`` and ``proofs.committee`` take. libsecp256k1 directly: several times
        faster than eth-account's path, which matters to an attester signing every message."""
        if len(digest) != 32:
            raise ValueError("sign_hash signs 32-byte hashes only")
        signature = self._signer.sign_recoverable(digest, hasher=None)
        return signature[:64] + bytes([signature[64] + 27])

    @property
    def checksum_address(self) -> str:
        return to_checksum_address(self.address)

    def __repr__(self) -> str:
        return f"LocalKey(address={self.checksum_address}, source={self.source}, key=<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Pickling would write the key to wherever the pickle goes (a queue, a cache, a log).
        raise TypeError("LocalKey holds key material and cannot be pickled")


def load_key(
    ref: KeyRef, base_dir: Path | None = None, *, env: Mapping[str, str] = os.environ
) -> LocalKey:
    """The key ``ref`` names; a relative keystore path is taken relative to ``base_dir``.

    Raises ``KeyUnavailableError`` when the variable or keystore file is absent, ``ConfigError``
    when it is there but unusable. Messages name the variable or file, never a value."""
    if ref.env is not None:
        secret = _require_env(env, ref.env, "a hex private key")
        return _key_from_hex(secret, f"environment variable {ref.env}", ref.identity)

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
        keystore = json.loads(text)
    except ValueError:
        raise ConfigError(
            f"keystore file {path} is not JSON (expected an Ethereum V3 keystore)"
        ) from None
    if not isinstance(keystore, dict) or keystore.get("version") != 3:
        raise ConfigError(f"keystore file {path} is not an Ethereum V3 keystore")
    # Imported here only: eth-account costs a second of CPU at import (py_ecc's BLS tables).
    from eth_account import Account  # noqa: PLC0415

    try:
        secret_bytes = Account.decrypt(keystore, password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise ConfigError(
                f"keystore file {path} does not decrypt with the password in {ref.password_env} "
                "(wrong password)"
            ) from None
        raise ConfigError(f"keystore file {path} is not a usable V3 keystore") from None
    except (KeyError, TypeError, NotImplementedError):
        raise ConfigError(f"keystore file {path} is not a usable V3 keystore") from None
    key = _key_from_bytes(bytes(secret_bytes), f"keystore file {path}", ref.identity)
    claimed = keystore.get("address")
    if isinstance(claimed, str) and claimed.lower().removeprefix("0x") != key.address.hex():
        raise ConfigError(
            f"keystore file {path} names address {claimed} but its key belongs to "
            f"{key.checksum_address}; the file has been tampered with or mixed up"
        )
    return key


def _require_env(env: Mapping[str, str], name: str, holding: str) -> str:
    value = env.get(name)
    if value is None or not value.strip():
        raise KeyUnavailableError(
            f"environment variable {name} is not set (it must hold {holding})"
        )
    return value


def _key_from_hex(secret: str, where: str, source: str) -> LocalKey:
    secret = secret.strip()
    if not _HEX_KEY.fullmatch(secret):
        raise ConfigError(f"{where} does not hold a 32-byte hex private key (64 hex digits)")
    return _key_from_bytes(bytes.fromhex(secret[-64:]), where, source)


def _key_from_bytes(secret: bytes, where: str, source: str) -> LocalKey:
    try:
        return LocalKey(secret, source)
    except ValueError:
        # Zero, or not below the secp256k1 group order: no such private key exists.
        raise ConfigError(f"{where} does not hold a valid secp256k1 private key") from None
