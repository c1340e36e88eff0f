"""Encrypted key files: V3 keystores (eth-account as the oracle), password files, and key files
written owner-only and never over another."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from pydantic import ValidationError

from relayer.ecdsa_key import V3KeystoreFormat, load_ecdsa_key
from relayer.errors import ConfigError
from relayer.keydir import installed_key_formats
from relayer.keys import (
    KeyFileExistsError,
    KeyFormat,
    KeyRef,
    KeyUnavailableError,
    Secret,
    UnsafePermissionsError,
    WrongPasswordError,
    read_password_file,
    write_key_file,
)

# A well-known example key (web3.py's docs); never holds anything.
SECRET = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
PASSWORD = "correct horse battery staple"
V3 = V3KeystoreFormat()


@pytest.fixture
def umask_zero() -> Iterator[None]:
    # The most permissive umask: a file mode that survives it was asked for, not granted.
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _password_file(path: Path, text: str, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)  # whatever the umask left
    return path


def _keystore(tmp_path: Path, document: dict[str, Any], name: str = "k.json") -> Path:
    path = tmp_path / name
    write_key_file(path, document)
    return path


def test_the_v3_format_is_a_key_format_the_evm_plugin_offers() -> None:
    assert isinstance(V3, KeyFormat)
    formats = installed_key_formats()
    assert isinstance(formats["evm"], V3KeystoreFormat)
    assert formats["evm"].schemes == ("secp256k1",)


def test_a_v3_keystore_written_here_decrypts_with_eth_account(tmp_path: Path) -> None:
    document = V3.create(Secret(SECRET), Secret(PASSWORD), scheme="secp256k1", light_kdf=True)
    assert document["crypto"]["kdf"] == "scrypt"
    assert bytes(Account.decrypt(document, PASSWORD)).hex() == SECRET
    info = V3.describe(document)
    assert info is not None and info.address == ADDRESS and info.scheme == "secp256k1"


def test_a_v3_keystore_written_by_eth_account_loads_here(tmp_path: Path) -> None:
    document = Account.encrypt(bytes.fromhex(SECRET), PASSWORD, kdf="scrypt", iterations=1 << 12)
    _keystore(tmp_path, document)
    ref = KeyRef(keystore=Path("k.json"), password_env="PW")
    key = load_ecdsa_key(ref, tmp_path, env={"PW": PASSWORD})
    assert key.checksum_address == ADDRESS
    assert SECRET not in repr(key) and PASSWORD not in repr(key)


def test_a_generated_v3_key_is_new_each_time_and_round_trips(tmp_path: Path) -> None:
    first = V3.create(None, Secret(PASSWORD), scheme="secp256k1", light_kdf=True)
    second = V3.create(None, Secret(PASSWORD), scheme="secp256k1", light_kdf=True)
    assert first["address"] != second["address"]
    _keystore(tmp_path, first)
    key = load_ecdsa_key(
        KeyRef(keystore=Path("k.json"), password_env="PW"), tmp_path, env={"PW": PASSWORD}
    )
    info = V3.describe(first)
    assert info is not None and key.checksum_address == info.address


def test_the_default_v3_cost_is_eth_accounts_scrypt() -> None:
    document = V3.create(Secret(SECRET), Secret(PASSWORD), scheme="secp256k1")
    assert document["crypto"]["kdfparams"]["n"] == 1 << 18


def test_a_wrong_password_is_refused_with_its_own_error_naming_its_source(tmp_path: Path) -> None:
    _keystore(
        tmp_path, V3.create(Secret(SECRET), Secret(PASSWORD), scheme="secp256k1", light_kdf=True)
    )
    pw = _password_file(tmp_path / "pw", "guess\n")
    for ref, env, source in (
        (
            KeyRef(keystore=Path("k.json"), password_env="PW"),
            {"PW": "guess"},
            "environment variable PW",
        ),
        (KeyRef(keystore=Path("k.json"), password_file=Path("pw")), {}, f"password file {pw}"),
    ):
        with pytest.raises(WrongPasswordError, match="wrong password") as info:
            load_ecdsa_key(ref, tmp_path, env=env)
        assert source in str(info.value)
        assert "guess" not in str(info.value) and SECRET not in str(info.value)
        assert not isinstance(info.value, KeyUnavailableError)


def test_a_keystore_asking_for_an_unbounded_scrypt_cost_is_refused_before_running(
    tmp_path: Path,
) -> None:
    document = V3.create(Secret(SECRET), Secret(PASSWORD), scheme="secp256k1", light_kdf=True)
    document["crypto"]["kdfparams"]["n"] = 1 << 30
    _keystore(tmp_path, document)
    with pytest.raises(ConfigError, match="refused rather than run"):
        load_ecdsa_key(
            KeyRef(keystore=Path("k.json"), password_env="PW"), tmp_path, env={"PW": PASSWORD}
        )


def test_a_tampered_address_field_is_refused(tmp_path: Path) -> None:
    document = V3.create(Secret(SECRET), Secret(PASSWORD), scheme="secp256k1", light_kdf=True)
    document["address"] = "11" * 20
    _keystore(tmp_path, document)
    with pytest.raises(ConfigError, match="tampered with or mixed up"):
        load_ecdsa_key(
            KeyRef(keystore=Path("k.json"), password_env="PW"), tmp_path, env={"PW": PASSWORD}
        )


@pytest.mark.parametrize("bad", ["", "12", "zz" * 32, "00" * 32, "ff" * 32])
def test_a_secret_that_is_no_secp256k1_key_is_refused_without_being_shown(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        V3.create(Secret(bad), Secret(PASSWORD), scheme="secp256k1", light_kdf=True)
    assert bad == "" or bad not in str(info.value)


def test_the_v3_format_describes_only_v3_documents() -> None:
    assert V3.describe({"encoded": "x", "encoding": {}}) is None
    assert V3.describe({"version": 3, "crypto": {}, "address": None}) is not None
    with pytest.raises(ConfigError, match="not a 20-byte hex address"):
        V3.describe({"version": 3, "crypto": {}, "address": "nope"})


# --- password files ------------------------------------------------------------------------------


def test_a_password_file_loses_its_trailing_newline_only(tmp_path: Path) -> None:
    assert (
        read_password_file(_password_file(tmp_path / "a", "pass word \n")).reveal() == "pass word "
    )
    assert read_password_file(_password_file(tmp_path / "b", "pw\r\n")).reveal() == "pw"
    assert read_password_file(_password_file(tmp_path / "c", "pw")).reveal() == "pw"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o602])
def test_a_password_file_others_may_read_is_refused_with_the_chmod_to_run(
    tmp_path: Path, mode: int
) -> None:
    path = _password_file(tmp_path / "pw", "secret-password", mode)
    with pytest.raises(UnsafePermissionsError, match=f"chmod 600 {path}") as info:
        read_password_file(path)
    assert f"{mode:04o}" in str(info.value)
    assert "secret-password" not in str(info.value)


def test_an_absent_or_empty_password_file_is_told_apart(tmp_path: Path) -> None:
    with pytest.raises(KeyUnavailableError, match="does not exist"):
        read_password_file(tmp_path / "absent")
    with pytest.raises(ConfigError, match="is empty"):
        read_password_file(_password_file(tmp_path / "empty", "\n"))


def test_a_password_file_reference_is_relative_to_the_config_file(tmp_path: Path) -> None:
    ref = KeyRef.model_validate(
        {"keystore": "keys/k.json", "password_file": "secrets/pw"}, context={"base_dir": tmp_path}
    )
    assert ref.password_file == tmp_path / "secrets" / "pw"
    assert ref.identity == f"keystore:{tmp_path / 'keys' / 'k.json'}"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"keystore": "k.json"}, "password_env .* or password_file"),
        ({"keystore": "k.json", "password_env": "PW", "password_file": "pw"}, "not both"),
        ({"env": "K", "password_file": "pw"}, "not both"),
    ],
)
def test_a_keystore_needs_exactly_one_password_source(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KeyRef.model_validate(fields)


# --- key files -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("umask_zero")
def test_a_key_file_is_created_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    write_key_file(path, {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"a": 1}


def test_a_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    write_key_file(path, {"first": True})
    with pytest.raises(KeyFileExistsError, match="never overwritten"):
        write_key_file(path, {"second": True})
    assert json.loads(path.read_text()) == {"first": True}


def test_a_key_file_is_not_written_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "k.json").symlink_to(target)
    with pytest.raises(ConfigError):
        write_key_file(tmp_path / "k.json", {"a": 1})
    assert not target.exists()
