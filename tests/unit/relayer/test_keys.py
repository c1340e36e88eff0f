"""relayer.keys: a reference is read without being decoded, and nothing read ever shows."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from relayer.errors import ConfigError
from relayer.keys import (
    KeyRef,
    KeyUnavailableError,
    Secret,
    UnsafePermissionsError,
    redact_url,
    resolve_key,
)

SECRET = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"


def test_an_env_reference_is_read_as_a_secret_that_never_shows() -> None:
    found = resolve_key(KeyRef(env="K"), env={"K": SECRET})
    assert found.text is not None and found.text.reveal() == SECRET
    assert found.where == "environment variable K"
    assert found.identity == "env:K"
    for shown in (repr(found), str(found), repr(found.text), f"{found.text}"):
        assert SECRET not in shown
    with pytest.raises(TypeError):
        pickle.dumps(found.text)


def test_a_keystore_reference_reads_the_document_and_its_password(tmp_path: Path) -> None:
    (tmp_path / "k.json").write_text(json.dumps({"version": 3, "crypto": {}}))
    found = resolve_key(
        KeyRef(keystore=Path("k.json"), password_env="PW"), tmp_path, env={"PW": "hunter2"}
    )
    assert found.keystore == {"version": 3, "crypto": {}}
    assert found.password is not None and found.password.reveal() == "hunter2"
    assert found.password_env == "PW"
    assert "hunter2" not in repr(found)


def test_absent_is_told_apart_from_broken(tmp_path: Path) -> None:
    with pytest.raises(KeyUnavailableError, match=r"K is not set \(it must hold a seed\)"):
        resolve_key(KeyRef(env="K"), env={}, holding="a seed")
    ref = KeyRef(keystore=tmp_path / "k.json", password_env="PW")
    with pytest.raises(KeyUnavailableError, match="does not exist"):
        resolve_key(ref, env={"PW": "x"})
    (tmp_path / "k.json").write_text("not json " + SECRET)
    with pytest.raises(ConfigError, match=r"is not JSON \(expected a keypair\)") as info:
        resolve_key(ref, env={"PW": "x"}, keystore_kind="a keypair")
    assert not isinstance(info.value, KeyUnavailableError)
    assert SECRET not in str(info.value)
    (tmp_path / "k.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="is not an encrypted key file"):
        resolve_key(ref, env={"PW": "x"})


@pytest.mark.parametrize("value", ["", "  \n"])
def test_a_variable_set_but_empty_is_said_to_be_empty_not_unset(value: str) -> None:
    with pytest.raises(KeyUnavailableError, match=r"K is empty \(it must hold a seed\)"):
        resolve_key(KeyRef(env="K"), env={"K": value}, holding="a seed")


def test_a_secret_compares_by_nothing_it_would_reveal() -> None:
    assert repr(Secret("a")) == repr(Secret("b")) == "Secret(<redacted>)"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://mainnet.infura.io/v3/0123abcd", "https://mainnet.infura.io"),
        ("https://user:s3cret@node.example:8545/path?apikey=k", "https://node.example:8545"),
        ("wss://rpc.example/ws?token=t", "wss://rpc.example"),
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("not a url", "not a url"),
    ],
)
def test_an_endpoint_url_is_logged_without_its_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_keystore_password_may_come_from_an_owner_only_file(tmp_path: Path) -> None:
    (tmp_path / "k.json").write_text(json.dumps({"version": 3, "crypto": {}}))
    (tmp_path / "pw").write_text("hunter2\n")
    (tmp_path / "pw").chmod(0o600)
    found = resolve_key(KeyRef(keystore=Path("k.json"), password_file=Path("pw")), tmp_path, env={})
    assert found.password is not None and found.password.reveal() == "hunter2"
    assert found.password_env is None
    assert found.password_source == f"password file {tmp_path / 'pw'}"
    # World-readable: refused whoever owns it (a root-owned file may be 0440, not 0644).
    (tmp_path / "pw").chmod(0o644)
    with pytest.raises(UnsafePermissionsError, match="chmod"):
        resolve_key(KeyRef(keystore=Path("k.json"), password_file=Path("pw")), tmp_path, env={})
    with pytest.raises(KeyUnavailableError, match=r"password file .* does not exist"):
        resolve_key(KeyRef(keystore=Path("k.json"), password_file=Path("nope")), tmp_path, env={})
