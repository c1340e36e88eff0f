"""Signing keys for Substrate accounts: encrypted keypair JSON files (as polkadot-js and
substrate-interface export them, sr25519 or ed25519) and, on dev chains only, ``//Alice`` style
dev URIs and mnemonics.

``KEY_FORMAT`` writes and describes the keypair JSON for ``relayer keys``: polkadot-js keyring
JSON version 3, so that a key made here imports into polkadot-js apps and back.

Built on the same Rust bindings (schnorrkel) that substrate-interface uses, without that
library: every substrate-interface release requires eth-utils<6, which web3 8 (through
eth-account 0.14) cannot share an environment with.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import bip39
import nacl.bindings
import nacl.exceptions
import nacl.secret
import nacl.signing
import sr25519
from scalecodec.utils.ss58 import ss58_decode, ss58_encode

from proofs.hashing import blake2_256
from proofs.substrate.scale import encode_compact
from relayer.errors import ConfigError
from relayer.keys import (
    KeyFileInfo,
    KeyRef,
    ResolvedKey,
    Secret,
    WrongPasswordError,
    resolve_key,
)

__all__ = [
    "DEV_PHRASE",
    "KEY_FORMAT",
    "Ed25519Keypair",
    "Sr25519Keypair",
    "SubstrateKeyFormat",
    "dev_account_name",
    "encrypt_keypair_json",
    "load_sr25519_signer",
]

# Substrate's well-known development mnemonic: //Alice, //Bob... derive from it. Public on
# purpose; an account derived from it holds nothing anywhere but a dev chain.
DEV_PHRASE = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
_CHAIN_CODE_LEN = 32
# The generic Substrate prefix: what an address is printed with when the chain's own is unknown.
_SS58_GENERIC = 42

# polkadot-js keyring JSON, version 3 ("encoding.type" scrypt + xsalsa20-poly1305):
#   encoded = salt(32) | N u32 LE | p u32 LE | r u32 LE | nonce(24) | secretbox ciphertext
#   plaintext = PKCS8 header | secret(64) | PKCS8 divider | public key(32)
_SALT_LEN = 32
_SCRYPT_PARAMS_LEN = _SALT_LEN + 3 * 4
_NONCE_LEN = nacl.secret.SecretBox.NONCE_SIZE
_PKCS8_HEADER = bytes((48, 83, 2, 1, 1, 48, 5, 6, 3, 43, 101, 112, 4, 34, 4, 32))
_PKCS8_DIVIDER = bytes((161, 35, 3, 33, 0))
_SECRET_LEN = 64
_PUBLIC_LEN = 32
_PLAINTEXT_LEN = len(_PKCS8_HEADER) + _SECRET_LEN + len(_PKCS8_DIVIDER) + _PUBLIC_LEN
# The scrypt costs polkadot-js writes and accepts (util-crypto scrypt/defaults.ts). A file
# asking for more is refused rather than run: N and r are read from the file before the
# password is checked, so an unbounded N would let a crafted keystore exhaust memory.
_ALLOWED_SCRYPT = frozenset(
    {(1 << 13, 10, 8), (1 << 14, 5, 8), (1 << 15, 3, 8), (1 << 15, 1, 8), (1 << 16, 2, 8),
     (1 << 17, 1, 8)}
)  # fmt: skip
# What polkadot-js writes (DEFAULT_PARAMS), and so what we write: about 0.1 s and 32 MiB.
_WRITE_SCRYPT = (1 << 15, 1, 8)
# 128 * r * N bytes at the largest allowed N, plus libsodium's own overhead.
_SCRYPT_MAXMEM = 128 * 8 * (1 << 17) + (32 << 20)
_SR25519, _ED25519 = "sr25519", "ed25519"
_DEV_NAMES = ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")
_HEX_SEED = re.compile(r"0[xX][0-9a-fA-F]{64}")


class Sr25519Keypair:
    """A signing key. ``repr`` shows the account and where the key came from, never the key;
    pickling refuses (a pickle would carry the secret to wherever it goes)."""

    __slots__ = ("_secret", "address", "source")

    #: the account's public key, which is its AccountId32 (``relayer.plugin.Signer``)
    address: bytes
    #: where the key came from, for messages ("environment variable X", "keystore file P")
    source: str

    def __init__(self, public_key: bytes, secret_key: bytes, *, source: str = "memory") -> None:
        self.address = bytes(public_key)
        self._secret = bytes(secret_key)
        self.source = source

    @classmethod
    def from_uri(cls, uri: str, *, source: str = "a key URI") -> Sr25519Keypair:
        """``[mnemonic]//hard//junctions``; the mnemonic defaults to the dev phrase.

        Soft junctions (``/x``) and passwords (``///pw``) are refused rather than guessed at:
        a wrong derivation silently signs with a different account.
        """
        phrase, _, path = uri.partition("//")
        phrase = phrase.strip() or DEV_PHRASE
        if "///" in uri or any("/" in junction for junction in path.split("//")):
            raise ValueError("only hard junctions (//name) are supported in a key URI")
        public, secret = sr25519.pair_from_seed(bytes(bip39.bip39_to_mini_secret(phrase, "")))
        public, secret = _hard_derive(public, secret, path)
        return cls(public, secret, source=source)

    @property
    def public_key(self) -> bytes:
        """The AccountId32 of an sr25519 account."""
        return self.address

    @property
    def printable_address(self) -> str:
        """SS58 with the generic prefix 42 (the same account on every chain)."""
        return str(ss58_encode(self.address, _SS58_GENERIC))

    def sign(self, payload: bytes) -> bytes:
        signature: bytes = sr25519.sign((self.address, self._secret), payload)
        return bytes(signature)

    def __repr__(self) -> str:
        return (
            f"Sr25519Keypair(address={self.printable_address}, source={self.source}, "
            "secret=<redacted>)"
        )

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("Sr25519Keypair holds key material and cannot be pickled")


class Ed25519Keypair:
    """An ed25519 account key (pynacl). ``repr`` shows the account and source, never the key;
    pickling refuses."""

    __slots__ = ("_key", "address", "source")

    #: the account's public key, which is its AccountId32
    address: bytes
    source: str

    def __init__(self, seed: bytes, *, source: str = "memory") -> None:
        """``seed``: the 32-byte ed25519 secret seed."""
        self._key = nacl.signing.SigningKey(bytes(seed))
        self.address = bytes(self._key.verify_key)
        self.source = source

    @property
    def public_key(self) -> bytes:
        return self.address

    @property
    def printable_address(self) -> str:
        return str(ss58_encode(self.address, _SS58_GENERIC))

    def sign(self, payload: bytes) -> bytes:
        return bytes(self._key.sign(payload).signature)

    def __repr__(self) -> str:
        return (
            f"Ed25519Keypair(address={self.printable_address}, source={self.source}, "
            "secret=<redacted>)"
        )

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("Ed25519Keypair holds key material and cannot be pickled")


def load_sr25519_signer(
    ref: KeyRef, base_dir: Path | None, *, env: Mapping[str, str], dev: bool
) -> Sr25519Keypair:
    """The sr25519 key ``ref`` names.

    ``{ keystore = ..., password_env | password_file = ... }``: an encrypted sr25519 keypair JSON
    (polkadot-js / substrate-interface export, version 3). ``{ env = ... }``: a dev URI
    (``//Alice``) or a mnemonic, accepted only on a chain marked ``dev = true``: a key kept in
    plain text in the environment is a dev convenience, and ``//Alice`` is everyone's key. For
    the same reason a keystore holding one of the well-known development accounts
    (``dev_account_name``) is refused on a chain not marked ``dev = true``.

    Raises ``KeyUnavailableError`` when the variable or file is absent, ``WrongPasswordError``
    when the file does not decrypt with its password, ``ConfigError`` when it is unusable
    (malformed, address mismatch, an ed25519 key); no message carries key material.
    """
    if ref.env is not None and not dev:
        raise ConfigError(
            f"submitter_key {{ env = {ref.env!r} }} would hold a dev URI or a mnemonic in plain "
            "text, which is refused on a chain not marked dev = true; use an encrypted keypair "
            "JSON: relayer keys add --type substrate --from-env VAR --password-file PATH, then "
            "{ keystore = ..., password_file = ... } as it prints"
        )
    resolved = resolve_key(
        ref,
        base_dir,
        env=env,
        holding="a dev URI (//Alice) or a mnemonic",
        keystore_kind="an encrypted sr25519 keypair JSON (polkadot-js / substrate-interface)",
    )
    if resolved.text is not None:
        try:
            return Sr25519Keypair.from_uri(resolved.text.reveal().strip(), source=resolved.where)
        # The bip39 binding raises ValueError for a bad phrase; never show the text itself.
        except (ValueError, TypeError):
            raise ConfigError(
                f"{resolved.where} holds neither a dev URI (//Name) nor a valid mnemonic "
                "with hard junctions only"
            ) from None
    keypair = _decrypt_keypair_json(resolved)
    if not isinstance(keypair, Sr25519Keypair):
        # The extrinsic encoder signs as MultiSignature::Sr25519; an ed25519 signature under
        # that variant is refused by the chain, so refuse the key here, where it is named.
        raise ConfigError(
            f"{resolved.where} holds an ed25519 key; deliveries to substrate chains are signed "
            "with sr25519 keys (make one: relayer keys add --type substrate --scheme sr25519)"
        )
    # The env rule above is about where a key is kept; this one is about which key it is. An
    # encrypted file can hold //Alice as well (an import of "$MNEMONIC//relayer" with MNEMONIC
    # unset derives from the dev phrase), and encryption does not make a public key private.
    dev_account = None if dev else dev_account_name(keypair.address)
    if dev_account is not None:
        raise ConfigError(
            f"{resolved.where} holds {dev_account} (account {keypair.printable_address}), "
            "derived from Substrate's public development phrase: anyone can sign for it, so "
            "it is refused on a chain not marked dev = true. Make a key of your own "
            "(relayer keys add --type substrate --generate, or --from-env with your own "
            "mnemonic) and fund it; mark the chain dev = true only if it is a development chain"
        )
    return keypair


def dev_account_name(account: bytes) -> str | None:
    """``//Alice``, ``//Bob//stash``... or "the dev phrase itself" when ``account`` (an sr25519
    public key) is one of the well-known development accounts derived from ``DEV_PHRASE``;
    None otherwise."""
    return _dev_accounts().get(bytes(account))


@functools.cache
def _dev_accounts() -> dict[bytes, str]:
    # Substrate's well-known accounts (sp_keyring: Alice, Bob, Charlie, Dave, Eve, Ferdie, and
    # each one's //stash), which every dev chain funds and every tool can derive.
    public, secret = sr25519.pair_from_seed(bytes(bip39.bip39_to_mini_secret(DEV_PHRASE, "")))
    accounts = {bytes(public): "the dev phrase itself (no derivation path)"}
    for name in _DEV_NAMES:
        for path in (name, f"{name}//stash"):
            derived, _ = _hard_derive(public, secret, path)
            accounts[bytes(derived)] = f"//{path}"
    return accounts


def _refuse(where: str, reason: str) -> NoReturn:
    # ``from None``: the library exception under it says nothing the operator can use.
    raise ConfigError(f"{where}: {reason}") from None


def _scheme_of(document: Mapping[str, Any], where: str) -> str:
    encoding = document.get("encoding")
    if not isinstance(encoding, Mapping):
        _refuse(where, 'no "encoding" object: not a polkadot-js keypair JSON')
    content = encoding.get("content")
    if str(encoding.get("version")) != "3":
        _refuse(where, f"keypair JSON version {encoding.get('version')!r}, only version 3 is read")
    if isinstance(content, list) and "pkcs8" in content:
        for scheme in (_SR25519, _ED25519):
            if scheme in content:
                return scheme
    _refuse(where, f'encoding.content is {content!r}, expected ["pkcs8", "sr25519" or "ed25519"]')


def _read_keypair_json(document: Mapping[str, Any], where: str) -> tuple[bytes, str, bytes]:
    """The encrypted blob, the address and the account it names, format checked."""
    _scheme_of(document, where)
    encoding = document["encoding"]
    kinds = encoding.get("type")
    if not isinstance(kinds, list) or "scrypt" not in kinds or "xsalsa20-poly1305" not in kinds:
        _refuse(where, f'encoding.type is {kinds!r}, expected ["scrypt", "xsalsa20-poly1305"]')
    address = document.get("address")
    if not isinstance(address, str):
        _refuse(where, 'no "address": the key cannot be checked against its account')
    try:
        account = bytes.fromhex(ss58_decode(address).removeprefix("0x"))
    except ValueError:
        _refuse(where, f"address {address!r} is not a valid SS58 address")
    if len(account) != _PUBLIC_LEN:
        _refuse(where, f"address {address!r} is not a 32-byte account")
    encoded = document.get("encoded")
    if not isinstance(encoded, str):
        _refuse(where, 'no "encoded" string')
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        _refuse(where, '"encoded" is not base64')
    if len(blob) < _SCRYPT_PARAMS_LEN + _NONCE_LEN:
        _refuse(where, f'"encoded" is {len(blob)} bytes, too short for scrypt and a nonce')
    return blob, address, account


def _decrypt_keypair_json(resolved: ResolvedKey) -> Sr25519Keypair | Ed25519Keypair:
    assert resolved.keystore is not None and resolved.password is not None  # resolve_key
    where = resolved.where
    scheme = _scheme_of(resolved.keystore, where)
    blob, address, account = _read_keypair_json(resolved.keystore, where)
    salt = blob[:_SALT_LEN]
    n, p, r = (
        int.from_bytes(blob[offset : offset + 4], "little")
        for offset in range(_SALT_LEN, _SCRYPT_PARAMS_LEN, 4)
    )
    if (n, p, r) not in _ALLOWED_SCRYPT:
        _refuse(
            where,
            f"scrypt parameters N={n}, p={p}, r={r} are not ones polkadot-js writes; refused "
            "rather than run (they decide how much memory and time decryption takes)",
        )
    key = _scrypt(resolved.password, salt, n, p, r)
    nonce = blob[_SCRYPT_PARAMS_LEN : _SCRYPT_PARAMS_LEN + _NONCE_LEN]
    try:
        plain = nacl.secret.SecretBox(key).decrypt(blob[_SCRYPT_PARAMS_LEN + _NONCE_LEN :], nonce)
    except nacl.exceptions.CryptoError:
        raise WrongPasswordError(
            f"{where}: cannot decrypt with the password in {resolved.password_source} "
            "(wrong password, or a damaged file)"
        ) from None
    divider_at = len(_PKCS8_HEADER) + _SECRET_LEN
    if (
        len(plain) != _PLAINTEXT_LEN
        or not plain.startswith(_PKCS8_HEADER)
        or plain[divider_at : divider_at + len(_PKCS8_DIVIDER)] != _PKCS8_DIVIDER
    ):
        _refuse(where, f"decrypted content is not a PKCS8 {scheme} keypair (64 + 32 bytes)")
    stored_public = plain[divider_at + len(_PKCS8_DIVIDER) :]
    secret_part = plain[len(_PKCS8_HEADER) : divider_at]
    keypair: Sr25519Keypair | Ed25519Keypair
    try:
        if scheme == _ED25519:
            # polkadot-js (tweetnacl) stores an ed25519 secret as seed || public key.
            keypair = Ed25519Keypair(secret_part[:32], source=where)
        else:
            # polkadot-js stores an sr25519 secret in schnorrkel's "ed25519 expanded" byte
            # order; the signing binding wants its native form.
            public, secret = sr25519.pair_from_ed25519_secret_key(secret_part)
            keypair = Sr25519Keypair(public, secret, source=where)
    except (ValueError, TypeError, nacl.exceptions.CryptoError):
        _refuse(where, f"the decrypted secret is not a valid {scheme} secret key")
    public = keypair.address
    if scheme == _ED25519 and secret_part[32:] != public:
        _refuse(where, "the decrypted ed25519 secret does not end with its own public key")
    if bytes(public) != stored_public:
        _refuse(where, "the public key stored in the file does not belong to its secret key")
    if stored_public != account:
        _refuse(
            where,
            f"the key in the file is account {ss58_encode(stored_public, _SS58_GENERIC)}, "
            f"its address field says {address}; refusing a file that names another account",
        )
    return keypair


def _scrypt(password: Secret, salt: bytes, n: int, p: int, r: int) -> bytes:
    """The secretbox key: the first 32 bytes of scrypt's 64 (polkadot-js derives 64 and
    uses the first half)."""
    derived = nacl.bindings.crypto_pwhash_scryptsalsa208sha256_ll(
        password.reveal().encode(), salt, n, r, p, dklen=64, maxmem=_SCRYPT_MAXMEM
    )
    return bytes(derived[:32])


def encrypt_keypair_json(
    keypair: Sr25519Keypair | Ed25519Keypair,
    password: Secret,
    *,
    name: str = "",
    ss58_format: int = _SS58_GENERIC,
) -> dict[str, Any]:
    """``keypair`` as polkadot-js keyring JSON version 3, encrypted with ``password``
    (scrypt at polkadot-js's default cost, then xsalsa20-poly1305)."""
    if isinstance(keypair, Ed25519Keypair):
        scheme = _ED25519
        secret = bytes(keypair._key) + keypair.address
    else:
        scheme = _SR25519
        secret = bytes(sr25519.convert_secret_key_to_ed25519(keypair._secret))
    plain = _PKCS8_HEADER + secret + _PKCS8_DIVIDER + keypair.address
    salt = secrets.token_bytes(_SALT_LEN)
    n, p, r = _WRITE_SCRYPT
    key = _scrypt(password, salt, n, p, r)
    box = nacl.secret.SecretBox(key).encrypt(plain)
    params = salt + b"".join(value.to_bytes(4, "little") for value in (n, p, r))
    return {
        "encoded": base64.b64encode(params + box.nonce + box.ciphertext).decode(),
        "encoding": {
            "content": ["pkcs8", scheme],
            "type": ["scrypt", "xsalsa20-poly1305"],
            "version": "3",
        },
        "address": ss58_encode(keypair.address, ss58_format),
        "meta": {"name": name, "whenCreated": int(time.time() * 1000)},
    }


class SubstrateKeyFormat:
    """polkadot-js keyring JSON (version 3, scrypt + xsalsa20-poly1305), sr25519 or ed25519."""

    schemes: tuple[str, ...] = (_SR25519, _ED25519)
    importable = (
        "a BIP-39 mnemonic (sr25519: with //hard junctions if wanted) or a 0x-prefixed 32-byte "
        "hex seed (a dev URI such as //Alice only with --dev)"
    )

    def describe(self, document: Mapping[str, Any]) -> KeyFileInfo | None:
        encoding = document.get("encoding")
        if not isinstance(encoding, Mapping) or "encoded" not in document:
            return None
        scheme = _scheme_of(document, "keypair JSON")
        blob, address, _ = _read_keypair_json(document, "keypair JSON")
        return KeyFileInfo(scheme=scheme, address=address, weak_kdf=_weak_scrypt(blob))

    def verify(
        self, document: Mapping[str, Any], password: Secret, *, where: str, password_source: str
    ) -> KeyFileInfo:
        resolved = ResolvedKey(
            where=where,
            identity=where,
            keystore=document,
            password=password,
            password_source=password_source,
        )
        # _decrypt_keypair_json refuses a file whose address is not its key's account, so the
        # address returned is the one the file claims, now checked.
        keypair = _decrypt_keypair_json(resolved)
        blob, address, _ = _read_keypair_json(document, where)
        scheme = _ED25519 if isinstance(keypair, Ed25519Keypair) else _SR25519
        return KeyFileInfo(scheme=scheme, address=address, weak_kdf=_weak_scrypt(blob))

    def create(
        self,
        secret: Secret | None,
        password: Secret,
        *,
        scheme: str,
        light_kdf: bool = False,
        dev: bool = False,
    ) -> dict[str, Any]:
        # light_kdf is not honoured: polkadot-js reads only its own scrypt costs, and those
        # are cheap enough (0.1 s) for tests.
        del light_kdf
        if scheme not in self.schemes:
            raise ConfigError(f"substrate keypair JSON holds sr25519 or ed25519 keys, not {scheme}")
        keypair = _keypair_from_secret(secret, scheme, dev=dev)
        return encrypt_keypair_json(keypair, password)


def _weak_scrypt(blob: bytes) -> str | None:
    n, p, r = (
        int.from_bytes(blob[offset : offset + 4], "little")
        for offset in range(_SALT_LEN, _SCRYPT_PARAMS_LEN, 4)
    )
    standard_n, standard_p, standard_r = _WRITE_SCRYPT
    if n * p * r >= standard_n * standard_p * standard_r:
        return None
    return f"scrypt N={n} p={p} r={r}, below N={standard_n} p={standard_p} r={standard_r}"


def _is_dev_secret(text: str) -> bool:
    """A URI without a mnemonic before its ``//`` (``from_uri`` takes the dev phrase for it),
    or the dev phrase itself: anyone can derive the key."""
    phrase = text.partition("//")[0]
    return not phrase.strip() or " ".join(phrase.split()) == DEV_PHRASE


def _keypair_from_secret(
    secret: Secret | None, scheme: str, *, dev: bool
) -> Sr25519Keypair | Ed25519Keypair:
    where = "the secret given"
    if secret is None:
        seed = secrets.token_bytes(32)
    else:
        text = secret.reveal().strip()
        if not dev and not _HEX_SEED.fullmatch(text) and _is_dev_secret(text):
            _refuse(
                where,
                "is a development key: it has no mnemonic before its //junctions (or is "
                "Substrate's public dev phrase), so it derives from the dev phrase and anyone "
                'can sign for it. If the variable was meant to hold "$MNEMONIC//path", the '
                "mnemonic part is empty: is MNEMONIC set? For a development chain only, add "
                "--dev (such a key loads only on chains marked dev = true)",
            )
        if _HEX_SEED.fullmatch(text):
            seed = bytes.fromhex(text[2:])
        elif scheme == _SR25519:
            try:
                return Sr25519Keypair.from_uri(text, source=where)
            except (ValueError, TypeError):
                _refuse(where, "is neither a 0x hex seed, a mnemonic nor a dev URI (//Name)")
        elif "/" in text:
            _refuse(where, "ed25519 keys are made from a mnemonic or a hex seed, without junctions")
        else:
            try:
                seed = bytes(bip39.bip39_to_mini_secret(text, ""))
            except (ValueError, TypeError):
                _refuse(where, "is neither a 0x hex seed nor a valid mnemonic")
    if scheme == _ED25519:
        return Ed25519Keypair(seed, source=where)
    public, secret_key = sr25519.pair_from_seed(seed)
    keypair = Sr25519Keypair(public, secret_key, source=where)
    # A hex seed can be the dev phrase's own (its mini secret is as public as the phrase).
    if not dev and dev_account_name(keypair.address) is not None:
        _refuse(
            where,
            "is the seed of a development account, which anyone can sign for; for a "
            "development chain only, add --dev",
        )
    return keypair


KEY_FORMAT = SubstrateKeyFormat()


def _hard_derive(public: bytes, secret: bytes, path: str) -> tuple[bytes, bytes]:
    """The keypair at ``path`` (``name//name2``: hard junctions, without the leading ``//``)
    below ``public``/``secret``."""
    for junction in filter(None, path.split("//") if path else ()):
        _, public, secret = sr25519.hard_derive_keypair(
            (_chain_code(junction), public, secret), b""
        )
    return public, secret


def _chain_code(junction: str) -> bytes:
    """A junction's chain code as Substrate derives it: the SCALE encoding of the junction
    (a number as u64, anything else as a string), padded or hashed to 32 bytes."""
    if junction.isdigit():
        encoded = int(junction).to_bytes(8, "little")
    else:
        raw = junction.encode()
        encoded = encode_compact(len(raw)) + raw
    if len(encoded) > _CHAIN_CODE_LEN:
        return blake2_256(encoded)
    return encoded.ljust(_CHAIN_CODE_LEN, b"\0")
