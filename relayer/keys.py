"""Where keys live, and how they are read without ever being shown.

A config names a key by where it lives: ``{ env = "VAR" }`` (the key's text in an environment
variable) or ``{ keystore = "path.json", password_env = "VAR" }`` /
``{ keystore = "path.json", password_file = "path" }`` (an encrypted key file, and the variable
or the owner-only file holding its password). ``resolve_key`` reads what a reference names,
without decoding it: what the text or file means (a secp256k1 hex key, a V3 keystore, a
polkadot-js keypair JSON, a dev URI) is the business of whoever signs with it, a chain plugin or
the committee scheme (``relayer.ecdsa_key``). Everything read is held in ``Secret``, which never
shows itself.

``KeyFormat`` is what a chain family offers ``relayer keys`` to create and describe its key
files; ``write_key_file`` writes one owner-only, never over another.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from relayer.errors import ConfigError

__all__ = [
    "KeyFileExistsError",
    "KeyFileInfo",
    "KeyFormat",
    "KeyRef",
    "KeyUnavailableError",
    "ResolvedKey",
    "Secret",
    "UnsafePermissionsError",
    "WrongPasswordError",
    "read_password_file",
    "redact_url",
    "resolve_key",
    "write_key_file",
]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class KeyUnavailableError(ConfigError):
    """The key's variable or keystore file is absent here (it may live on another machine).

    Distinct from a plain ``ConfigError`` (the key is there but malformed, or the password is
    wrong) so that ``relayer config check`` can tell "not on this host" from "broken"."""


class WrongPasswordError(ConfigError):
    """An encrypted key file does not decrypt with the password given for it (or the file's
    ciphertext was damaged: both fail the same authentication check)."""


class UnsafePermissionsError(ConfigError):
    """A password file that is not private (``read_password_file`` says which files are):
    refused, with the chmod or chown to run."""


class KeyFileExistsError(ConfigError):
    """``write_key_file`` found a file where it would write: keys are never overwritten."""


class KeyRef(BaseModel):
    """Where a private key lives: exactly one of ``env`` or ``keystore``, a keystore with
    exactly one of ``password_env`` or ``password_file``."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    env: str | None = None
    """The environment variable holding the key itself (a hex key; a dev URI on dev chains)."""
    keystore: Path | None = None
    """An encrypted key file (`relayer keys add` makes them), relative to the config file."""
    password_env: str | None = None
    """The environment variable holding the keystore's password."""
    password_file: Path | None = None
    """A file holding the keystore's password (its trailing newline ignored), relative to the
    config file; refused unless private: the relayer's user's alone (chmod 600), or root's
    and at most group-readable (0440, as Kubernetes mounts a secret with fsGroup)."""

    @field_validator("env", "password_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError("must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
        return value

    @field_validator("keystore", "password_file")
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
        has_password = self.password_env is not None or self.password_file is not None
        if self.env is not None:
            if self.keystore is not None or has_password:
                raise ValueError(
                    "give either { env = ... } or { keystore = ..., password_env = ... }, not both"
                )
        elif self.keystore is None:
            raise ValueError(
                'a key reference needs { env = "VAR" } or '
                '{ keystore = "path.json", password_env = "VAR" } or '
                '{ keystore = "path.json", password_file = "path" }'
            )
        elif not has_password:
            raise ValueError(
                "a keystore needs its password: password_env (the variable holding it) or "
                "password_file (an owner-only file holding it)"
            )
        elif self.password_env is not None and self.password_file is not None:
            raise ValueError("give one of password_env and password_file, not both")
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
    #: the variable that held ``password`` (None when it came from a file)
    password_env: str | None = None
    #: where ``password`` came from, for a "wrong password" message: "environment variable X"
    #: or "password file P"
    password_source: str | None = None


def resolve_key(
    ref: KeyRef,
    base_dir: Path | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    holding: str = "a private key",
    keystore_kind: str = "an encrypted key file",
) -> ResolvedKey:
    """Read what ``ref`` names; a relative keystore path is taken relative to ``base_dir``.

    Raises ``KeyUnavailableError`` when the variable, keystore file or password file is absent,
    ``UnsafePermissionsError`` for a password file group or others may read, ``ConfigError``
    when the keystore is there but not a JSON object. ``holding`` and ``keystore_kind`` say
    what the variable or file should hold, for those messages, which name the variable or file
    and never a value."""
    if ref.env is not None:
        text = _require_env(env, ref.env, holding)
        return ResolvedKey(
            where=f"environment variable {ref.env}", identity=ref.identity, text=Secret(text)
        )
    assert ref.keystore is not None  # KeyRef._one_source
    path = _under(ref.keystore, base_dir)
    if ref.password_env is not None:
        password = _require_env(env, ref.password_env, f"the password of keystore {path}")
        password_source = f"environment variable {ref.password_env}"
    else:
        assert ref.password_file is not None  # KeyRef._one_source
        password_path = _under(ref.password_file, base_dir)
        password = read_password_file(password_path).reveal()
        password_source = f"password file {password_path}"
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
        password_source=password_source,
    )


def _under(path: Path, base_dir: Path | None) -> Path:
    return base_dir / path if base_dir is not None and not path.is_absolute() else path


def read_password_file(path: Path) -> Secret:
    """The password in ``path``, its trailing newline (as editors and ``echo`` leave it)
    stripped. The file must be private, by libpq's rule for private key files: owned by the
    user the relayer runs as with no group or other permissions (chmod 600), or owned by root
    and at most group-readable (0640 or 0440: how Kubernetes mounts a secret volume with
    ``fsGroup``, for a group the relayer is in). A password others can read protects nothing.

    Raises ``KeyUnavailableError`` when it is absent, ``UnsafePermissionsError`` when it is not
    private by that rule, ``ConfigError`` when it is not a regular file, cannot be read or is
    empty."""
    # O_NONBLOCK: opening a FIFO for reading blocks until a writer comes, which would hang the
    # daemon before the check below could refuse it; on a regular file it changes nothing.
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        # One descriptor for the check and the read, so the file checked is the file read.
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise KeyUnavailableError(f"password file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read password file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise ConfigError(
                f"password file {path} is not a regular file (a FIFO, device or directory is "
                "refused: give the path of a file holding the password)"
            )
        _check_private(path, status)
        try:
            raw = handle.read()
        except OSError as exc:
            raise ConfigError(f"cannot read password file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"password file {path} is not UTF-8 text") from None
    text = text.rstrip("\r\n")
    if not text:
        raise ConfigError(f"password file {path} is empty")
    return Secret(text)


# Group write or execute, or any permission for others: what a root-owned password file may
# not have (libpq's rule: root may share it with a group, read-only).
_ROOT_FILE_FORBIDDEN = stat.S_IWGRP | stat.S_IXGRP | stat.S_IRWXO
_OWN_FILE_FORBIDDEN = stat.S_IRWXG | stat.S_IRWXO


def _check_private(path: Path, status: os.stat_result) -> None:
    euid = os.geteuid()
    mode = stat.S_IMODE(status.st_mode)
    if status.st_uid == euid and not mode & _OWN_FILE_FORBIDDEN:
        return
    if status.st_uid == 0 and not mode & _ROOT_FILE_FORBIDDEN:
        return
    if status.st_uid == 0:
        raise UnsafePermissionsError(
            f"password file {path} is owned by root with mode {mode:04o}: others may read it, "
            "or group may write it; a root-owned password file may be read by its group at "
            f"most: chmod 440 {path} (or chmod 600 {path}, owned by the user the relayer runs "
            "as)"
        )
    if status.st_uid == euid:
        raise UnsafePermissionsError(
            f"password file {path} may be read or written by group or others "
            f"(mode {mode:04o}); make it the owner's alone: chmod 600 {path}"
        )
    raise UnsafePermissionsError(
        f"password file {path} is owned by uid {status.st_uid}, neither the user the relayer "
        f"runs as (uid {euid}) nor root: chown {euid} {path} && chmod 600 {path}, or make it "
        "root's, group-readable at most (mode 0440), for a group the relayer is in"
    )


@dataclass(frozen=True, slots=True)
class KeyFileInfo:
    """What a key file says of itself without its password (``describe``: claims, not checked
    against the key), or what its key is once decrypted (``verify``)."""

    #: the signature scheme: "secp256k1", "sr25519", "ed25519"...
    scheme: str
    #: the account, as the chain's users write it (checksummed hex, SS58...); None when the
    #: file does not store it (only decrypting it would tell)
    address: str | None
    #: why the file's key derivation is cheaper than its format's standard cost ("scrypt
    #: n=4096 r=8 p=1, below n=262144 r=8 p=1"): a file made for tests, quick to brute-force;
    #: None at the standard cost or above
    weak_kdf: str | None = None


@runtime_checkable
class KeyFormat(Protocol):
    """A chain family's encrypted key files, for ``relayer keys``: created from a secret (or a
    new random one) and a password, described without the password and verified with it.
    Whoever loads a key to sign with it (``ChainPlugin.load_signer``) reads the same files. A
    chain plugin offers one as its ``key_format`` (``relayer.keydir.OffersKeyFormat``)."""

    #: signature schemes it writes, the default first
    schemes: tuple[str, ...]
    #: what ``--from-env`` may hold, for help and messages ("a 32-byte hex private key")
    importable: str

    def describe(self, document: Mapping[str, Any]) -> KeyFileInfo | None:
        """The scheme and account a key file claims, read without its password (so not
        checked against its key); None when the document is not of this format. Raises
        ``ConfigError`` when it is, but damaged."""
        ...

    def create(
        self,
        secret: Secret | None,
        password: Secret,
        *,
        scheme: str,
        light_kdf: bool = False,
        dev: bool = False,
    ) -> dict[str, Any]:
        """An encrypted key file (a JSON object) holding ``secret`` (in one of
        ``importable``), or a new random key when None. ``light_kdf``: a cheap key
        derivation, for tests only. ``dev``: accept a secret anyone can derive (a
        development key, such as Substrate's ``//Alice``); without it such a secret is
        refused. Raises ``ConfigError`` for a secret that is not a key of ``scheme`` (the
        message never shows it), a development key without ``dev``, or a scheme this format
        does not write."""
        ...

    def verify(
        self, document: Mapping[str, Any], password: Secret, *, where: str, password_source: str
    ) -> KeyFileInfo:
        """Decrypt ``document`` (the key file ``where``) with ``password`` and say what its
        key is: the address derived from the key itself. Raises ``WrongPasswordError`` when it
        does not decrypt (naming ``password_source``), ``ConfigError`` when the address the
        file claims is not its key's, or the file is unusable."""
        ...


def write_key_file(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` as JSON to a new file readable by its owner only.

    Created with mode 0600 in the same call that creates it (never chmod-ed after: the key
    would be readable in between), and never over an existing file, nor through a symlink.
    The file and then its directory are fsynced before returning, so that the key outlives a
    crash once its address has been shown. Raises ``KeyFileExistsError`` when ``path`` exists,
    ``ConfigError`` when it cannot be written (the partial file is removed)."""
    data = (json.dumps(document, indent=2) + "\n").encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileExistsError(
            f"{path} already exists; keys are never overwritten (remove it first with "
            "`relayer keys remove`, or choose another name)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot create key file {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # The file's own fsync does not make its name durable: after a crash the directory
        # could lack the entry, and a key whose address was printed (and funded) would be gone.
        _fsync_directory(path.parent)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise ConfigError(f"cannot write key file {path}: {exc.strerror}") from None


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems cannot sync a directory (EINVAL); what they keep is theirs to say.
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


def _require_env(env: Mapping[str, str], name: str, holding: str) -> str:
    value = env.get(name)
    if value is None:
        raise KeyUnavailableError(
            f"environment variable {name} is not set (it must hold {holding})"
        )
    if not value.strip():
        raise KeyUnavailableError(f"environment variable {name} is empty (it must hold {holding})")
    return value


def redact_url(url: str) -> str:
    """An endpoint URL as it may be logged: scheme, host and port. Endpoint URLs carry API keys
    in their path, query or userinfo (``https://user:key@host/v3/KEY?apikey=...``)."""
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    host = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    return f"{head}{sep}{host}"
