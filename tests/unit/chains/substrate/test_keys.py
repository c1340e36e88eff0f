"""chains.substrate.keys: encrypted keypair JSON and dev URIs become a signer, or a clear error."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import nacl.secret
import pytest
import sr25519
from scalecodec.utils.ss58 import ss58_encode

from chains.substrate.keys import Sr25519Keypair, load_sr25519_signer
from relayer.errors import ConfigError
from relayer.keys import KeyRef, KeyUnavailableError, WrongPasswordError
from relayer.plugin import Signer

PASSWORD = "correct horse battery staple"
_HEADER = bytes((48, 83, 2, 1, 1, 48, 5, 6, 3, 43, 101, 112, 4, 34, 4, 32))
_DIVIDER = bytes((161, 35, 3, 33, 0))


def encrypt_keypair(pair: Sr25519Keypair, password: str, *, ss58_format: int = 2) -> dict[str, Any]:
    """The encrypt side, written from the format (polkadot-js keyring JSON v3)."""
    secret = sr25519.convert_secret_key_to_ed25519(pair._secret)
    plain = _HEADER + bytes(secret) + _DIVIDER + pair.address
    salt = os.urandom(32)
    n, p, r = 1 << 15, 1, 8
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 << 20, dklen=64)
    box = nacl.secret.SecretBox(key[:32]).encrypt(plain)
    params = salt + n.to_bytes(4, "little") + p.to_bytes(4, "little") + r.to_bytes(4, "little")
    return {
        "encoded": base64.b64encode(params + box.nonce + box.ciphertext).decode(),
        "encoding": {
            "content": ["pkcs8", "sr25519"],
            "type": ["scrypt", "xsalsa20-poly1305"],
            "version": "3",
        },
        "address": ss58_encode(pair.address, ss58_format),
        "meta": {"name": "relayer", "whenCreated": 0},
    }


def keystore(tmp_path: Path, document: dict[str, Any]) -> KeyRef:
    (tmp_path / "relayer.json").write_text(json.dumps(document))
    return KeyRef(keystore=Path("relayer.json"), password_env="KEY_PASSWORD")


@pytest.fixture(scope="module")
def account() -> Sr25519Keypair:
    # A key of nobody's: not one derived from the dev phrase, which only dev chains accept.
    public, secret = sr25519.pair_from_seed(bytes(range(32)))
    return Sr25519Keypair(public, secret)


def test_encrypted_keypair_json_loads_and_signs_as_its_account(
    tmp_path: Path, account: Sr25519Keypair
) -> None:
    ref = keystore(tmp_path, encrypt_keypair(account, PASSWORD))
    loaded = load_sr25519_signer(ref, tmp_path, env={"KEY_PASSWORD": PASSWORD}, dev=False)
    assert loaded.address == account.address
    assert isinstance(loaded, Signer)
    assert loaded.printable_address == ss58_encode(account.address, 42)
    signature = loaded.sign(b"payload")
    assert sr25519.verify(signature, b"payload", account.address)


def test_wrong_password_is_a_config_error_naming_the_variable(
    tmp_path: Path, account: Sr25519Keypair
) -> None:
    ref = keystore(tmp_path, encrypt_keypair(account, PASSWORD))
    with pytest.raises(
        WrongPasswordError, match="password in environment variable KEY_PASSWORD"
    ) as info:
        load_sr25519_signer(ref, tmp_path, env={"KEY_PASSWORD": "guess"}, dev=False)
    assert "guess" not in str(info.value)
    assert not isinstance(info.value, KeyUnavailableError)  # present but unusable


def test_a_file_whose_address_names_another_account_is_refused(
    tmp_path: Path, account: Sr25519Keypair
) -> None:
    document = encrypt_keypair(account, PASSWORD)
    document["address"] = ss58_encode(Sr25519Keypair.from_uri("//Alice").address, 2)
    ref = keystore(tmp_path, document)
    with pytest.raises(ConfigError, match="names another account"):
        load_sr25519_signer(ref, tmp_path, env={"KEY_PASSWORD": PASSWORD}, dev=False)


def test_a_tampered_ciphertext_is_refused(tmp_path: Path, account: Sr25519Keypair) -> None:
    document = encrypt_keypair(account, PASSWORD)
    blob = bytearray(base64.b64decode(document["encoded"]))
    blob[-1] ^= 1
    document["encoded"] = base64.b64encode(bytes(blob)).decode()
    with pytest.raises(ConfigError, match="cannot decrypt"):
        load_sr25519_signer(
            keystore(tmp_path, document), tmp_path, env={"KEY_PASSWORD": PASSWORD}, dev=False
        )


def test_scrypt_costs_polkadot_js_never_writes_are_refused_before_running(
    tmp_path: Path, account: Sr25519Keypair
) -> None:
    document = encrypt_keypair(account, PASSWORD)
    blob = bytearray(base64.b64decode(document["encoded"]))
    blob[32:36] = (1 << 30).to_bytes(4, "little")
    document["encoded"] = base64.b64encode(bytes(blob)).decode()
    with pytest.raises(ConfigError, match="scrypt parameters N=1073741824"):
        load_sr25519_signer(
            keystore(tmp_path, document), tmp_path, env={"KEY_PASSWORD": PASSWORD}, dev=False
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"encoding": {"content": ["pkcs8", "ecdsa"], "type": ["scrypt"], "version": "3"}},
         "expected \\[\"pkcs8\", \"sr25519\" or \"ed25519\"\\]"),
        ({"encoding": {"content": ["pkcs8", "sr25519"], "type": ["scrypt"], "version": "3"}},
         "expected \\[\"scrypt\", \"xsalsa20-poly1305\"\\]"),
        ({"encoding": {"content": ["pkcs8", "sr25519"], "type": ["none"], "version": "2"}},
         "only version 3"),
        ({"encoded": "!!!"}, "not base64"),
        ({"address": "not-an-address"}, "not a valid SS58 address"),
    ],
)  # fmt: skip
def test_malformed_keypair_json_is_a_config_error(
    tmp_path: Path, account: Sr25519Keypair, change: dict[str, Any], message: str
) -> None:
    document = encrypt_keypair(account, PASSWORD) | change
    with pytest.raises(ConfigError, match=message):
        load_sr25519_signer(
            keystore(tmp_path, document), tmp_path, env={"KEY_PASSWORD": PASSWORD}, dev=False
        )


def test_missing_keystore_file_or_password_is_unavailable(tmp_path: Path) -> None:
    ref = KeyRef(keystore=Path("absent.json"), password_env="KEY_PASSWORD")
    with pytest.raises(KeyUnavailableError, match="does not exist"):
        load_sr25519_signer(ref, tmp_path, env={"KEY_PASSWORD": PASSWORD}, dev=False)
    with pytest.raises(KeyUnavailableError, match="KEY_PASSWORD is not set"):
        load_sr25519_signer(ref, tmp_path, env={}, dev=False)


# Published addresses (subkey inspect, generic prefix 42) of well-known dev accounts.
ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
ALICE_STASH = "5GNJqTPyNqANBkUVMN1LPPrxXnFouWXoe2wNSmmEoLctxiZY"
FERDIE = "5CiPPseXPECbkjWCa6MnjNokrgYjMqmKndv2rSnekmSK2DjL"


@pytest.mark.parametrize(
    ("uri", "address"),
    [
        ("//Alice", ALICE),
        ("//Alice//stash", ALICE_STASH),
        ("//Ferdie", FERDIE),
        ("//Bob//stash", None),
        ("//Charlie", None),
        ("//Dave", None),
        ("//Eve//stash", None),
        ("", None),  # the dev phrase itself
    ],
)
def test_a_keystore_of_a_dev_account_is_refused_on_a_chain_not_marked_dev(
    tmp_path: Path, uri: str, address: str | None
) -> None:
    pair = Sr25519Keypair.from_uri(uri)
    if address is not None:
        assert pair.printable_address == address
    ref = keystore(tmp_path, encrypt_keypair(pair, PASSWORD))
    with pytest.raises(ConfigError, match="public development phrase") as info:
        load_sr25519_signer(ref, tmp_path, env={"KEY_PASSWORD": PASSWORD}, dev=False)
    message = str(info.value)
    assert "not marked dev = true" in message and "relayer keys add" in message
    assert (uri or "the dev phrase itself") in message
    loaded = load_sr25519_signer(ref, tmp_path, env={"KEY_PASSWORD": PASSWORD}, dev=True)
    assert loaded.address == pair.address


def test_a_keystore_of_a_key_derived_from_another_mnemonic_is_not_a_dev_account(
    tmp_path: Path,
) -> None:
    mnemonic = "legal winner thank year wave sausage worth useful legal winner thank yellow"
    pair = Sr25519Keypair.from_uri(f"{mnemonic}//Alice")
    ref = keystore(tmp_path, encrypt_keypair(pair, PASSWORD))
    loaded = load_sr25519_signer(ref, tmp_path, env={"KEY_PASSWORD": PASSWORD}, dev=False)
    assert loaded.address == pair.address


def test_dev_uri_is_refused_on_a_chain_not_marked_dev() -> None:
    ref = KeyRef(env="RELAYER_KEY")
    with pytest.raises(ConfigError, match="not marked dev = true") as info:
        load_sr25519_signer(ref, None, env={"RELAYER_KEY": "//Alice"}, dev=False)
    assert "Alice" not in str(info.value)


def test_dev_uri_and_mnemonic_load_on_a_dev_chain() -> None:
    ref = KeyRef(env="RELAYER_KEY")
    alice = load_sr25519_signer(ref, None, env={"RELAYER_KEY": "//Alice"}, dev=True)
    assert alice.printable_address == "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
    with pytest.raises(KeyUnavailableError):
        load_sr25519_signer(ref, None, env={}, dev=True)


def test_a_bad_mnemonic_is_a_config_error_that_does_not_echo_it() -> None:
    ref = KeyRef(env="RELAYER_KEY")
    with pytest.raises(ConfigError, match="neither a dev URI") as info:
        load_sr25519_signer(ref, None, env={"RELAYER_KEY": "secret words here"}, dev=True)
    assert "secret words" not in str(info.value)


def test_keypair_redacts_itself_and_refuses_pickling(account: Sr25519Keypair) -> None:
    text = repr(account)
    assert account._secret.hex() not in text
    assert "<redacted>" in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(account)
