"""``relayer keys add|list|show-address|remove``, and ``config check`` with the files they make."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from eth_account import Account

from relayer.cli import main
from relayer.keydir import keys_dir_for
from tests.unit.relayer.test_config import BASE, DEV_ENV

SECRET = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
PASSWORD = "pass phrase of the relayer"
ENV = {"KEY_HEX": SECRET, "KEY_PASSWORD": PASSWORD}


def _run(
    config: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> Result:
    result = CliRunner().invoke(
        main,
        ["keys", args[0], "-c", str(config), *args[1:]],
        env={**ENV, **(env or {})},
        input=stdin,
    )
    # Every outcome is an exit code and a message, never a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    for secret in (SECRET, SECRET.upper(), PASSWORD):
        assert secret not in result.output
    return result


def _add(config: Path, name: str, *extra: str, env: dict[str, str] | None = None) -> Result:
    return _run(config, "add", "--name", name, "--light-kdf", *extra, env=env)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return tmp_path / "config.toml"


def test_an_imported_evm_key_is_a_v3_keystore_eth_account_opens(config: Path) -> None:
    result = _add(
        config,
        "submitter-a",
        "--type",
        "evm",
        "--from-env",
        "KEY_HEX",
        "--password-env",
        "KEY_PASSWORD",
    )
    assert result.exit_code == 0, result.output
    path = config.parent / "keys" / "submitter-a.json"
    assert ADDRESS in result.output
    assert '{ keystore = "keys/submitter-a.json", password_env = "KEY_PASSWORD" }' in result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bytes(Account.decrypt(json.loads(path.read_text()), PASSWORD)).hex() == SECRET


def test_list_and_show_address_need_no_password(config: Path) -> None:
    _add(config, "a", "--type", "evm", "--from-env", "KEY_HEX", "--password-env", "KEY_PASSWORD")
    _add(config, "dot", "--type", "substrate", "--generate", "--password-env", "KEY_PASSWORD")
    _add(
        config,
        "dot-ed",
        "--type",
        "substrate",
        "--scheme",
        "ed25519",
        "--generate",
        "--password-env",
        "KEY_PASSWORD",
    )
    listed = _run(config, "list", env={"KEY_PASSWORD": ""})
    assert listed.exit_code == 0, listed.output
    rows = [line.split() for line in listed.output.splitlines()]
    assert [row[:3] for row in rows] == [
        ["a", "evm", "secp256k1"],
        ["dot", "substrate", "sr25519"],
        ["dot-ed", "substrate", "ed25519"],
    ]
    assert rows[0][3] == ADDRESS
    shown = _run(config, "show-address", "a", env={"KEY_PASSWORD": ""})
    assert shown.exit_code == 0 and shown.output == ADDRESS + "\n"
    dot = json.loads((config.parent / "keys" / "dot.json").read_text())
    shown = _run(config, "show-address", "dot")
    assert shown.output == dot["address"] + "\n"


def test_a_key_is_never_overwritten(config: Path) -> None:
    _add(config, "a", "--type", "evm", "--generate", "--password-env", "KEY_PASSWORD")
    before = (config.parent / "keys" / "a.json").read_text()
    again = _add(
        config, "a", "--type", "evm", "--from-env", "KEY_HEX", "--password-env", "KEY_PASSWORD"
    )
    assert again.exit_code == 1
    assert "already exists" in again.output and "relayer keys remove a" in again.output
    assert (config.parent / "keys" / "a.json").read_text() == before


def test_remove_asks_first_unless_told_yes(config: Path) -> None:
    _add(config, "a", "--type", "evm", "--generate", "--password-env", "KEY_PASSWORD")
    path = config.parent / "keys" / "a.json"
    declined = _run(config, "remove", "a", stdin="n\n")
    assert declined.exit_code == 1 and path.exists()
    assert "cannot be recovered" in declined.output
    accepted = _run(config, "remove", "a", stdin="y\n")
    assert accepted.exit_code == 0 and not path.exists()
    _add(config, "b", "--type", "evm", "--generate", "--password-env", "KEY_PASSWORD")
    assert _run(config, "remove", "b", "--yes").exit_code == 0
    assert _run(config, "list").output.startswith("no keys in")


def test_a_password_file_others_may_read_is_refused_and_an_owner_only_one_is_used(
    config: Path,
) -> None:
    password_file = config.parent / "pw"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o644)
    refused = _add(
        config, "a", "--type", "evm", "--from-env", "KEY_HEX", "--password-file", str(password_file)
    )
    assert refused.exit_code == 1
    assert f"chmod 600 {password_file}" in refused.output
    assert not (config.parent / "keys" / "a.json").exists()
    password_file.chmod(0o600)
    added = _add(
        config, "a", "--type", "evm", "--from-env", "KEY_HEX", "--password-file", str(password_file)
    )
    assert added.exit_code == 0, added.output
    # The reference printed is relative to the config file, as the config reads it.
    assert '{ keystore = "keys/a.json", password_file = "pw" }' in added.output
    document = json.loads((config.parent / "keys" / "a.json").read_text())
    # The trailing newline is not part of the password.
    assert bytes(Account.decrypt(document, PASSWORD)).hex() == SECRET


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["--type", "nope", "--generate", "--password-env", "KEY_PASSWORD"],
            2,
            "offered: evm, substrate",
        ),
        (
            [
                "--type",
                "evm",
                "--scheme",
                "ed25519",
                "--generate",
                "--password-env",
                "KEY_PASSWORD",
            ],
            2,
            "secp256k1",
        ),
        (
            ["--type", "evm", "--password-env", "KEY_PASSWORD"],
            2,
            "--from-env VAR (import a key) and --generate",
        ),
        (
            [
                "--type",
                "evm",
                "--generate",
                "--from-env",
                "KEY_HEX",
                "--password-env",
                "KEY_PASSWORD",
            ],
            2,
            "one of",
        ),
        (["--type", "evm", "--generate"], 2, "--password-env VAR and --password-file PATH"),
        (
            ["--type", "evm", "--from-env", "UNSET_VAR", "--password-env", "KEY_PASSWORD"],
            1,
            "UNSET_VAR is not set",
        ),
        (["--type", "evm", "--generate", "--password-env", "UNSET_VAR"], 1, "UNSET_VAR is not set"),
        (
            ["--type", "evm", "--generate", "--password-file", "/nonexistent/pw"],
            1,
            "does not exist",
        ),
        (
            ["--type", "evm", "--from-env", "BAD_KEY", "--password-env", "KEY_PASSWORD"],
            1,
            "64 hex digits",
        ),
    ],
)
def test_add_says_what_is_wrong(config: Path, args: list[str], code: int, message: str) -> None:
    result = _add(config, "k", *args, env={"BAD_KEY": "0x1234"} if "BAD_KEY" in args else None)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (config.parent / "keys" / "k.json").exists()


@pytest.mark.parametrize("name", ["../escape", ".hidden", "a/b", "k.json", ""])
def test_a_name_that_is_not_a_plain_file_name_is_refused(config: Path, name: str) -> None:
    result = _add(config, name, "--type", "evm", "--generate", "--password-env", "KEY_PASSWORD")
    assert result.exit_code == 1
    assert "is not usable" in result.output


def test_an_unknown_name_is_a_clear_error(config: Path) -> None:
    for command in ("show-address", "remove"):
        result = _run(config, command, "ghost")
        assert result.exit_code == 1
        assert "no key named 'ghost'" in result.output


def test_a_damaged_key_file_is_listed_as_unreadable(config: Path) -> None:
    keys = config.parent / "keys"
    keys.mkdir()
    (keys / "junk.json").write_text("not json")
    listed = _run(config, "list")
    assert listed.exit_code == 0
    assert "junk  unreadable: key file" in listed.output
    assert _run(config, "show-address", "junk").exit_code == 1


def test_the_keys_dir_is_beside_the_config_unless_the_config_names_one(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert keys_dir_for(config) == tmp_path / "keys"
    config.write_text('[relayer]\nkeys_dir = "secrets/keys"\n')
    assert keys_dir_for(config) == tmp_path / "secrets" / "keys"
    other = tmp_path / "elsewhere"
    result = _run(
        config,
        "add",
        "--keys-dir",
        str(other),
        "--name",
        "a",
        "--type",
        "evm",
        "--generate",
        "--password-env",
        "KEY_PASSWORD",
        "--light-kdf",
    )
    assert result.exit_code == 0, result.output
    assert (other / "a.json").exists()


# --- config check with the files `keys add` makes ------------------------------------------------


def _config_with_keystores(config: Path, ref_a: str) -> None:
    text = BASE.replace(
        'submitter_key = { env = "RELAYER_KEY_CHAIN_A" }', f"submitter_key = {ref_a}", 1
    )
    config.write_text('[relayer]\ndatabase = "ledger.db"\n' + text)


def test_config_check_loads_keystores_with_a_password_file_or_variable(config: Path) -> None:
    password_file = config.parent / "pw"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    _add(
        config, "a", "--type", "evm", "--from-env", "KEY_HEX", "--password-file", str(password_file)
    )
    for ref in (
        '{ keystore = "keys/a.json", password_file = "pw" }',
        '{ keystore = "keys/a.json", password_env = "KEY_PASSWORD" }',
    ):
        _config_with_keystores(config, ref)
        result = CliRunner().invoke(
            main, ["config", "check", "-c", str(config)], env={**DEV_ENV, **ENV}
        )
        assert result.exit_code == 0, result.output
        assert "key not checked" not in result.output
    result = CliRunner().invoke(
        main, ["config", "check", "-c", str(config)], env={**DEV_ENV, "KEY_PASSWORD": "wrong guess"}
    )
    assert result.exit_code == 1
    assert (
        "wrong password" in result.output and "environment variable KEY_PASSWORD" in result.output
    )
    assert "wrong guess" not in result.output


@pytest.mark.parametrize(
    "ref",
    [
        f'{{ hex = "{SECRET}" }}',
        f'{{ env = "0x{SECRET}" }}',
        f'{{ keystore = "keys/a.json", password_env = "KEY_PASSWORD", private_key = "{SECRET}" }}',
    ],
)
def test_config_check_refuses_a_raw_key_without_showing_it(config: Path, ref: str) -> None:
    _config_with_keystores(config, ref)
    result = CliRunner().invoke(
        main, ["config", "check", "-c", str(config)], env={**DEV_ENV, **ENV}
    )
    assert result.exit_code == 1
    assert "raw private keys are not allowed" in result.output
    assert SECRET not in result.output
