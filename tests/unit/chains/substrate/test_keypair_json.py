"""polkadot-js keypair JSON as written here: checked against published vectors, round trips for
sr25519 and ed25519, and the errors an operator meets."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import bip39
import nacl.signing
import pytest
import sr25519
from scalecodec.utils.ss58 import ss58_encode

from chains.substrate.keys import (
    _PKCS8_DIVIDER,
    _PKCS8_HEADER,
    DEV_PHRASE,
    KEY_FORMAT,
    Ed25519Keypair,
    Sr25519Keypair,
    _decrypt_keypair_json,
    load_sr25519_signer,
)
from chains.substrate.plugin import PLUGIN
from relayer.errors import ConfigError
from relayer.keydir import OffersKeyFormat
from relayer.keys import KeyFormat, KeyRef, ResolvedKey, Secret, WrongPasswordError, write_key_file

PASSWORD = "correct horse battery staple"

# Published by subxt (signer/src/polkadot_js_compat.rs, test_get_keypair_sr25519): //Alice,
# exported from polkadot-js apps with the password "whoisalice".
SUBXT_ALICE = {
    "encoded": "DumgApKCTqoCty1OZW/8WS+sgo6RdpHhCwAkA2IoDBMAgAAAAQAAAAgAAAB6IG/q24EeVf0JqWqcBd5m2"
    "tKq5BlyY84IQ8oamLn9DZe9Ouhgunr7i36J1XxUnTI801axqL/ym1gil0U8440Qvj0lFVKwGuxq38zuifgoj0B3Yru0"
    "CI6QKEvQPU5xxj4MpyxdSxP+2PnTzYao0HDH0fulaGvlAYXfqtU89xrx2/z9z7IjSwS3oDFPXRQ9kAdDebtyCVreZ9"
    "Otw9v3",
    "encoding": {
        "content": ["pkcs8", "sr25519"],
        "type": ["scrypt", "xsalsa20-poly1305"],
        "version": "3",
    },
    "address": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
    "meta": {"genesisHash": "", "name": "Alice", "whenCreated": 1718265838755},
}

# Published by polkadot-js (keyring/src/pair/toJson.spec.ts): the testing pair "alice" of type
# ed25519 (seed "Alice" padded with spaces to 32 bytes), exported without a passphrase: the
# plaintext we encrypt, byte for byte, and its address; with one, "encoded" is 268 characters.
POLKADOT_JS_ED25519_ALICE_PLAIN = (
    "MFMCAQEwBQYDK2VwBCIEIEFsaWNlICAgICAgICAgICAgICAgICAgICAgICAgICAg0XKnTNpMhlkSwyugqApXrmmrrkE"
    "OXMtZ3uhOL0Qy20+hIwMhANFyp0zaTIZZEsMroKgKV65pq65BDlzLWd7oTi9EMttP"
)
POLKADOT_JS_ED25519_ALICE_ADDRESS = "5GoKvZWG5ZPYL1WUovuHW3zJBWBP5eT8CbqjdRY4Q6iMaQua"
POLKADOT_JS_ENCRYPTED_LENGTH = 268


def _resolved(document: dict[str, Any], password: str) -> ResolvedKey:
    return ResolvedKey(
        where="keystore file k.json",
        identity="keystore:k.json",
        keystore=document,
        password=Secret(password),
        password_source="environment variable PW",
    )


def test_the_substrate_plugin_offers_its_key_format() -> None:
    assert isinstance(PLUGIN, OffersKeyFormat)
    assert isinstance(PLUGIN.key_format, KeyFormat)
    assert PLUGIN.key_format.schemes[0] == "sr25519"


def test_a_keypair_json_exported_by_polkadot_js_decrypts_to_its_account() -> None:
    keypair = _decrypt_keypair_json(_resolved(SUBXT_ALICE, "whoisalice"))
    assert isinstance(keypair, Sr25519Keypair)
    assert keypair.address == Sr25519Keypair.from_uri("//Alice").address
    info = KEY_FORMAT.describe(SUBXT_ALICE)
    assert info is not None and info.address == SUBXT_ALICE["address"]


def test_the_ed25519_plaintext_is_polkadot_js_byte_for_byte() -> None:
    seed = b"Alice".ljust(32, b" ")
    keypair = Ed25519Keypair(seed)
    # What encrypt_keypair_json puts in the box: header | seed | public | divider | public.
    plain = _PKCS8_HEADER + seed + keypair.address + _PKCS8_DIVIDER + keypair.address
    assert base64.b64encode(plain).decode() == POLKADOT_JS_ED25519_ALICE_PLAIN
    assert keypair.printable_address == POLKADOT_JS_ED25519_ALICE_ADDRESS
    document = KEY_FORMAT.create(Secret("0x" + seed.hex()), Secret(PASSWORD), scheme="ed25519")
    assert document["address"] == POLKADOT_JS_ED25519_ALICE_ADDRESS
    assert len(document["encoded"]) == POLKADOT_JS_ENCRYPTED_LENGTH
    decrypted = _decrypt_keypair_json(_resolved(document, PASSWORD))
    assert isinstance(decrypted, Ed25519Keypair) and decrypted.address == keypair.address


@pytest.mark.parametrize("scheme", ["sr25519", "ed25519"])
def test_a_generated_key_round_trips_and_signs_as_its_account(scheme: str) -> None:
    document = KEY_FORMAT.create(None, Secret(PASSWORD), scheme=scheme)
    assert document["encoding"] == {
        "content": ["pkcs8", scheme],
        "type": ["scrypt", "xsalsa20-poly1305"],
        "version": "3",
    }
    assert len(document["encoded"]) == POLKADOT_JS_ENCRYPTED_LENGTH
    # polkadot-js's default scrypt cost: N = 2^15, p = 1, r = 8, after the 32-byte salt.
    params = base64.b64decode(document["encoded"])[32:44]
    assert params == (1 << 15).to_bytes(4, "little") + (1).to_bytes(4, "little") + (8).to_bytes(
        4, "little"
    )
    keypair = _decrypt_keypair_json(_resolved(document, PASSWORD))
    assert keypair.printable_address == document["address"]
    signature = keypair.sign(b"payload")
    if scheme == "sr25519":
        assert sr25519.verify(signature, b"payload", keypair.address)
    else:
        nacl.signing.VerifyKey(keypair.address).verify(b"payload", signature)
    again = KEY_FORMAT.create(None, Secret(PASSWORD), scheme=scheme)
    assert again["address"] != document["address"]


# A BIP-39 test vector (Trezor's): a mnemonic of nobody's, unlike the dev phrase.
MNEMONIC = "legal winner thank year wave sausage worth useful legal winner thank yellow"


def _sr25519(uri: str) -> bytes:
    return Sr25519Keypair.from_uri(uri).address


@pytest.mark.parametrize(
    ("secret", "scheme", "dev", "expected"),
    [
        ("//Alice", "sr25519", True, _sr25519("//Alice")),
        (DEV_PHRASE, "sr25519", True, _sr25519(DEV_PHRASE)),
        (f"{MNEMONIC}//relayer", "sr25519", False, _sr25519(f"{MNEMONIC}//relayer")),
        ("0x" + "11" * 32, "sr25519", False, bytes(sr25519.pair_from_seed(b"\x11" * 32)[0])),
        (
            "0x" + "11" * 32,
            "ed25519",
            False,
            bytes(nacl.signing.SigningKey(b"\x11" * 32).verify_key),
        ),
    ],
    ids=["dev-uri", "dev-phrase", "mnemonic-path", "sr25519-seed", "ed25519-seed"],
)
def test_an_imported_secret_becomes_the_account_it_names(
    secret: str, scheme: str, dev: bool, expected: bytes
) -> None:
    document = KEY_FORMAT.create(Secret(secret), Secret(PASSWORD), scheme=scheme, dev=dev)
    assert document["address"] == ss58_encode(expected, 42)


# The dev phrase's BIP-39 mini secret: as public as the phrase (subkey inspect //Alice shows the
# phrase; this is its seed).
DEV_SEED = "0x" + bytes(bip39.bip39_to_mini_secret(DEV_PHRASE, "")).hex()


@pytest.mark.parametrize(
    ("secret", "scheme"),
    [
        ("//relayer", "sr25519"),  # VAR="$MNEMONIC//relayer" with MNEMONIC unset
        ("  //Alice", "sr25519"),
        ("//", "sr25519"),
        (DEV_PHRASE, "sr25519"),
        (f"{DEV_PHRASE}//Bob", "sr25519"),
        (DEV_PHRASE.replace(" ", "  "), "sr25519"),
        (DEV_SEED, "sr25519"),
        (DEV_PHRASE, "ed25519"),
    ],
)
def test_a_secret_anyone_can_derive_is_refused_unless_dev(secret: str, scheme: str) -> None:
    with pytest.raises(ConfigError, match="--dev") as info:
        KEY_FORMAT.create(Secret(secret), Secret(PASSWORD), scheme=scheme)
    if len(secret.strip()) > 2:
        assert secret.strip() not in str(info.value)
    document = KEY_FORMAT.create(Secret(secret), Secret(PASSWORD), scheme=scheme, dev=True)
    assert KEY_FORMAT.describe(document) is not None


def test_verify_decrypts_and_checks_the_address_a_keypair_file_claims() -> None:
    document = KEY_FORMAT.create(Secret(f"{MNEMONIC}//relayer"), Secret(PASSWORD), scheme="sr25519")
    info = KEY_FORMAT.verify(document, Secret(PASSWORD), where="key file k", password_source="PW")
    assert info.address == document["address"] and info.scheme == "sr25519"
    assert info.weak_kdf is None
    with pytest.raises(WrongPasswordError, match="PW"):
        KEY_FORMAT.verify(document, Secret("guess"), where="key file k", password_source="PW")
    # The address field is outside the ciphertext: anyone who can write the file can change it.
    claimed = document | {"address": ss58_encode(Sr25519Keypair.from_uri("//Eve").address, 42)}
    described = KEY_FORMAT.describe(claimed)
    assert described is not None and described.address == claimed["address"]
    with pytest.raises(ConfigError, match="names another account"):
        KEY_FORMAT.verify(claimed, Secret(PASSWORD), where="key file k", password_source="PW")


@pytest.mark.parametrize(
    ("secret", "scheme"),
    [("not a mnemonic at all", "sr25519"), ("//Alice", "ed25519"), ("0x1234", "ed25519")],
)
def test_an_unusable_secret_is_refused_without_being_shown(secret: str, scheme: str) -> None:
    with pytest.raises(ConfigError) as info:
        KEY_FORMAT.create(Secret(secret), Secret(PASSWORD), scheme=scheme)
    assert secret not in str(info.value)


def test_a_wrong_password_is_its_own_error_naming_where_the_password_came_from() -> None:
    with pytest.raises(WrongPasswordError, match="environment variable PW") as info:
        _decrypt_keypair_json(_resolved(SUBXT_ALICE, "whoisbob"))
    assert "whoisbob" not in str(info.value)


def test_an_ed25519_file_is_refused_as_a_delivery_signer_with_the_fix(tmp_path: Path) -> None:
    write_key_file(tmp_path / "k.json", KEY_FORMAT.create(None, Secret(PASSWORD), scheme="ed25519"))
    ref = KeyRef(keystore=Path("k.json"), password_env="PW")
    with pytest.raises(ConfigError, match="--scheme sr25519"):
        load_sr25519_signer(ref, tmp_path, env={"PW": PASSWORD}, dev=False)


def test_a_written_sr25519_file_loads_through_the_plugin_from_a_password_file(
    tmp_path: Path,
) -> None:
    document = KEY_FORMAT.create(Secret(f"{MNEMONIC}//relayer"), Secret(PASSWORD), scheme="sr25519")
    write_key_file(tmp_path / "k.json", document)
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "pw").chmod(0o600)
    ref = KeyRef(keystore=Path("k.json"), password_file=Path("pw"))
    signer = load_sr25519_signer(ref, tmp_path, env={}, dev=False)
    assert signer.address == Sr25519Keypair.from_uri(f"{MNEMONIC}//relayer").address
    assert PASSWORD not in repr(signer)
    assert json.loads((tmp_path / "k.json").read_text())["address"] == signer.printable_address


def test_describe_ignores_other_formats_and_refuses_a_damaged_file() -> None:
    assert KEY_FORMAT.describe({"version": 3, "crypto": {}}) is None
    with pytest.raises(ConfigError, match="not a valid SS58 address"):
        KEY_FORMAT.describe(SUBXT_ALICE | {"address": "nope"})
