"""secp256k1 keys: the committee attestation scheme's, which is the relayer's own.

An attester signs attestation digests (EIP-191) with one; the EVM plugin uses the same curve and
key files for its accounts and loads its delivery signer here too. ``load_ecdsa_key`` decodes
what ``relayer.keys.resolve_key`` read: a hex private key (``{ env = ... }``) or an Ethereum V3
keystore (``{ keystore = ..., password_env | password_file = ... }``). ``EcdsaKey``'s ``repr``
and ``str`` show the address and where the key came from, never the key.

``V3KeystoreFormat`` writes and describes V3 keystores (scrypt, as geth and eth-account write
them) for ``relayer keys``; the families that sign with secp256k1 accounts offer it.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import coincurve
from eth_utils.address import to_checksum_address

from proofs.hashing import keccak256
from relayer.errors import ConfigError
from relayer.keys import KeyFileInfo, KeyRef, Secret, WrongPasswordError, resolve_key

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

__all__ = ["EcdsaKey", "V3KeystoreFormat", "load_ecdsa_key"]

_HEX_KEY = re.compile(r"(?:0[xX])?[0-9a-fA-F]{64}")
_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# The costs a keystore may ask for. The file chooses them and they are paid before the password
# is checked, so a crafted file could otherwise ask for gigabytes; the ceilings are geth's
# "standard" scrypt (N = 2^18, r = 8: 256 MiB) and a generous PBKDF2 count.
_MAX_SCRYPT_MEMORY = 128 * 8 * (1 << 18)
_MAX_SCRYPT_P = 16
_MAX_PBKDF2_ROUNDS = 1 << 22
# What every V3 writer derives: 32 bytes (the AES key and the MAC key) through HMAC-SHA256.
_V3_DKLEN = 32
_V3_PRF = "hmac-sha256"
# The standard costs (geth's StandardScryptN/R, what eth-account writes by default; eth-keyfile's
# PBKDF2 default): `relayer keys list` marks a file below them weak-kdf.
_STANDARD_SCRYPT_N = 1 << 18
_STANDARD_SCRYPT_R = 8
_STANDARD_PBKDF2_ROUNDS = 1 << 18
# N of the keystores written with light_kdf (tests only): 2^12 is milliseconds, not a second.
_LIGHT_SCRYPT_N = 1 << 12


class EcdsaKey:
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

    @property
    def printable_address(self) -> str:
        return self.checksum_address

    def __repr__(self) -> str:
        return f"EcdsaKey(address={self.checksum_address}, source={self.source}, key=<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Pickling would write the key to wherever the pickle goes (a queue, a cache, a log).
        raise TypeError("EcdsaKey holds key material and cannot be pickled")


def load_ecdsa_key(
    ref: KeyRef, base_dir: Path | None = None, *, env: Mapping[str, str] = os.environ
) -> EcdsaKey:
    """The secp256k1 key ``ref`` names; a relative keystore path is taken relative to
    ``base_dir``.

    Raises ``KeyUnavailableError`` when the variable or keystore file is absent, ``ConfigError``
    when it is there but unusable. Messages name the variable or file, never a value."""
    found = resolve_key(
        ref,
        base_dir,
        env=env,
        holding="a hex private key",
        keystore_kind="an Ethereum V3 keystore",
    )
    if found.text is not None:
        return _key_from_hex(found.text.reveal(), found.where, found.identity)
    assert found.keystore is not None and found.password is not None  # resolve_key
    assert found.password_source is not None  # resolve_key, with a password
    return _decrypt_v3(
        found.keystore,
        found.password,
        where=found.where,
        source=found.identity,
        password_source=found.password_source,
    )


def _decrypt_v3(
    keystore: Mapping[str, Any], password: Secret, *, where: str, source: str, password_source: str
) -> EcdsaKey:
    """The key of V3 keystore ``keystore`` (the file ``where``), its address checked against
    the one the file claims."""
    if keystore.get("version") != 3:
        raise ConfigError(
            f'{where} is not an Ethereum V3 keystore (it has no "version": 3); '
            "`relayer keys list` shows which family each key file is for"
        )
    _check_kdf_cost(keystore, where)
    # Imported here only: eth-account costs a second of CPU at import (py_ecc's BLS tables).
    from eth_account import Account  # noqa: PLC0415

    try:
        secret_bytes = Account.decrypt(dict(keystore), password.reveal())
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise WrongPasswordError(
                f"{where} does not decrypt with the password in {password_source} "
                "(wrong password, or a damaged file)"
            ) from None
        raise ConfigError(f"{where} is not a usable V3 keystore") from None
    except (KeyError, TypeError, NotImplementedError):
        raise ConfigError(f"{where} is not a usable V3 keystore") from None
    key = _key_from_bytes(bytes(secret_bytes), where, source)
    claimed = keystore.get("address")
    if isinstance(claimed, str) and claimed.lower().removeprefix("0x") != key.address.hex():
        raise ConfigError(
            f"{where} names address {claimed} but its key belongs to "
            f"{key.checksum_address}; the file has been tampered with or mixed up"
        )
    return key


def _check_kdf_cost(keystore: Mapping[str, Any], where: str) -> None:
    crypto = keystore.get("crypto", keystore.get("Crypto"))
    params = crypto.get("kdfparams") if isinstance(crypto, Mapping) else None
    if not isinstance(params, Mapping):
        return  # eth-account refuses it with its own error, mapped by the caller
    kdf = crypto.get("kdf") if isinstance(crypto, Mapping) else None
    if kdf not in ("scrypt", "pbkdf2"):
        return  # eth-account refuses it as unsupported
    # dklen and prf are costs too: scrypt and PBKDF2 pay for every block of output (a dklen of
    # 2^30 is 2^25 PBKDF2 runs of c rounds each), and a prf other than the one every V3 writer
    # uses is no keystore of ours. Every V3 keystore derives 32 bytes with hmac-sha256.
    dklen = params.get("dklen")
    if type(dklen) is not int or dklen != _V3_DKLEN:
        raise ConfigError(
            f"{where} asks for kdfparams.dklen {dklen!r}; V3 keystores derive {_V3_DKLEN} "
            "bytes, and another length is refused rather than run (it decides the time "
            "decryption takes)"
        )
    if kdf == "pbkdf2" and params.get("prf") != _V3_PRF:
        raise ConfigError(
            f"{where} asks for kdfparams.prf {params.get('prf')!r}; V3 keystores use "
            f"{_V3_PRF!r}, and another is refused"
        )
    try:
        if kdf == "scrypt":
            n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
            too_costly = n < 1 or r < 1 or p < 1 or 128 * n * r > _MAX_SCRYPT_MEMORY
            too_costly = too_costly or p > _MAX_SCRYPT_P
        else:
            too_costly = not 1 <= int(params["c"]) <= _MAX_PBKDF2_ROUNDS
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{where} has malformed {kdf} parameters") from None
    if too_costly:
        raise ConfigError(
            f"{where} asks for {kdf} parameters {dict(params)!r} beyond what "
            "geth writes; refused rather than run (they decide the memory and time decryption "
            "takes)"
        )


def _weak_kdf(document: Mapping[str, Any]) -> str | None:
    """Why the keystore's key derivation is below the standard cost, or None (also for
    parameters too malformed to tell: loading the file refuses those)."""
    crypto = document.get("crypto", document.get("Crypto"))
    params = crypto.get("kdfparams") if isinstance(crypto, Mapping) else None
    if not isinstance(crypto, Mapping) or not isinstance(params, Mapping):
        return None
    try:
        if crypto.get("kdf") == "scrypt":
            n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
            if n * r * p >= _STANDARD_SCRYPT_N * _STANDARD_SCRYPT_R:
                return None
            standard = f"n={_STANDARD_SCRYPT_N} r={_STANDARD_SCRYPT_R} p=1"
            return f"scrypt n={n} r={r} p={p}, below {standard}"
        if crypto.get("kdf") == "pbkdf2":
            rounds = int(params["c"])
            if rounds >= _STANDARD_PBKDF2_ROUNDS:
                return None
            return f"pbkdf2 c={rounds}, below c={_STANDARD_PBKDF2_ROUNDS}"
    except (KeyError, TypeError, ValueError):
        return None
    return None


class V3KeystoreFormat:
    """Ethereum V3 keystores (scrypt + aes-128-ctr), as eth-account and geth write them."""

    schemes: tuple[str, ...] = ("secp256k1",)
    importable = "a 32-byte private key in hex (64 hex digits, 0x optional)"

    def describe(self, document: Mapping[str, Any]) -> KeyFileInfo | None:
        if document.get("version") != 3 or not (
            isinstance(document.get("crypto"), Mapping)
            or isinstance(document.get("Crypto"), Mapping)
        ):
            return None
        claimed = document.get("address")
        weak = _weak_kdf(document)
        if claimed is None:
            return KeyFileInfo(scheme="secp256k1", address=None, weak_kdf=weak)
        if not isinstance(claimed, str) or not re.fullmatch(r"(?:0x)?[0-9a-fA-F]{40}", claimed):
            raise ConfigError(f"its address field {claimed!r} is not a 20-byte hex address")
        return KeyFileInfo(
            scheme="secp256k1",
            address=to_checksum_address("0x" + claimed[-40:].lower()),
            weak_kdf=weak,
        )

    def verify(
        self, document: Mapping[str, Any], password: Secret, *, where: str, password_source: str
    ) -> KeyFileInfo:
        key = _decrypt_v3(
            document, password, where=where, source=where, password_source=password_source
        )
        return KeyFileInfo(
            scheme="secp256k1", address=key.checksum_address, weak_kdf=_weak_kdf(document)
        )

    def create(
        self,
        secret: Secret | None,
        password: Secret,
        *,
        scheme: str,
        light_kdf: bool = False,
        dev: bool = False,
    ) -> dict[str, Any]:
        # dev changes nothing here: a secp256k1 key carries no mark of where it came from (the
        # anvil accounts are plain keys), so there is no development key to tell apart.
        del dev
        if scheme not in self.schemes:
            raise ConfigError(f"V3 keystores hold secp256k1 keys, not {scheme}")
        if secret is None:
            key = _key_from_bytes(_random_secret(), "a new key", "a new key")
        else:
            key = _key_from_hex(secret.reveal(), "the secret given", "the secret given")
        from eth_account import Account  # noqa: PLC0415  (see load_ecdsa_key)

        document: dict[str, Any] = Account.encrypt(
            key._secret,
            password.reveal(),
            kdf="scrypt",
            iterations=_LIGHT_SCRYPT_N if light_kdf else None,
        )
        return document


def _random_secret() -> bytes:
    while True:
        candidate = secrets.token_bytes(32)
        if 0 < int.from_bytes(candidate, "big") < _SECP256K1_ORDER:
            return candidate


def _key_from_hex(secret: str, where: str, source: str) -> EcdsaKey:
    secret = secret.strip()
    if not _HEX_KEY.fullmatch(secret):
        raise ConfigError(f"{where} does not hold a 32-byte hex private key (64 hex digits)")
    return _key_from_bytes(bytes.fromhex(secret[-64:]), where, source)


def _key_from_bytes(secret: bytes, where: str, source: str) -> EcdsaKey:
    try:
        return EcdsaKey(secret, source)
    except ValueError:
        # Zero, or not below the secp256k1 group order: no such private key exists.
        raise ConfigError(f"{where} does not hold a valid secp256k1 private key") from None
