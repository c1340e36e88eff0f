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
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert [row[:3] for row in rows] == [
        ["a", "evm", "secp256k1"],
        ["dot", "substrate", "sr25519"],
        ["dot-ed", "substrate", "ed25519"],
    ]
    assert rows[0][3] == ADDRESS
    shown = _run(config, "show-address", "a", env={"KEY_PASSWORD": ""})
    # The address alone on stdout, for scripts; what it is worth on stderr.
    assert shown.exit_code == 0 and shown.stdout == ADDRESS + "\n"
    dot = json.loads((config.parent / "keys" / "dot.json").read_text())
    shown = _run(config, "show-address", "dot")
    assert shown.stdout == dot["address"] + "\n"


def test_an_address_read_without_the_password_is_labelled_as_claimed(config: Path) -> None:
    _add(config, "a", "--type", "evm", "--from-env", "KEY_HEX", "--password-env", "KEY_PASSWORD")
    path = config.parent / "keys" / "a.json"
    # Anyone who can write the file can change its address field: it is outside the ciphertext.
    document = json.loads(path.read_text())
    document["address"] = "11" * 20
    path.write_text(json.dumps(document))
    forged = "0x" + "11" * 20
    shown = _run(config, "show-address", "a")
    assert shown.exit_code == 0 and shown.stdout.lower() == forged + "\n"
    assert "claims, not checked against its key" in shown.stderr
    listed = _run(config, "list")
    assert forged in listed.stdout.lower()
    assert "as each file claims them, not checked" in listed.stderr
    for command in ("list", "show-address"):
        help_text = _run(config, command, "--help").stdout
        assert "claim" in help_text and "--verify" in help_text
    verified = _run(config, "show-address", "a", "--verify", "--password-env", "KEY_PASSWORD")
    assert verified.exit_code == 1
    assert "tampered with or mixed up" in verified.output and ADDRESS in verified.output


@pytest.mark.parametrize("kind", ["evm", "substrate"])
def test_show_address_verify_decrypts_the_file_and_prints_its_keys_address(
    config: Path, kind: str
) -> None:
    password_file = config.parent / "pw"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    _add(config, "k", "--type", kind, "--generate", "--password-file", str(password_file))
    claimed = json.loads((config.parent / "keys" / "k.json").read_text())["address"]
    verified = _run(config, "show-address", "k", "--verify", "--password-file", str(password_file))
    assert verified.exit_code == 0, verified.output
    # A V3 file stores its address as bare hex; shown checksummed, as `keys list` shows it.
    assert verified.stdout.lower().removeprefix("0x") == claimed.lower().removeprefix("0x") + "\n"
    assert "verified" in verified.stderr
    wrong = _run(
        config, "show-address", "k", "--verify", "--password-env", "OTHER", env={"OTHER": "guess"}
    )
    assert wrong.exit_code == 1 and "wrong password" in wrong.output
    assert "environment variable OTHER" in wrong.output
    assert _run(config, "show-address", "k", "--verify").exit_code == 2
    assert _run(config, "show-address", "k", "--password-env", "OTHER").exit_code == 2


def test_light_kdf_is_warned_about_and_listed_as_weak_kdf(config: Path) -> None:
    light = _add(config, "light", "--type", "evm", "--generate", "--password-env", "KEY_PASSWORD")
    assert light.exit_code == 0, light.output
    assert "warning: --light-kdf" in light.stderr
    # Written at polkadot-js's own cost whatever --light-kdf says, so not weak.
    _run(config, "add", "--name", "dot", "--type", "substrate", "--generate",
         "--password-env", "KEY_PASSWORD")  # fmt: skip
    rows = {line.split()[0]: line for line in _run(config, "list").stdout.splitlines()}
    assert "weak-kdf (scrypt n=4096" in rows["light"]
    assert "weak-kdf" not in rows["dot"]
    assert "--light-kdf" not in _run(config, "add", "--help").stdout


@pytest.mark.parametrize("secret", ["//relayer", "//Bob", "bottom drive obey lake curtain smoke "
                                    "basket hold race lonely fit walk"])  # fmt: skip
def test_importing_a_dev_key_needs_dev_and_is_warned_about(config: Path, secret: str) -> None:
    # What VAR="$MNEMONIC//relayer" holds when MNEMONIC is unset: a key anyone can derive.
    args = ("--type", "substrate", "--from-env", "DOT", "--password-env", "KEY_PASSWORD")
    refused = _add(config, "dot", *args, env={"DOT": secret})
    assert refused.exit_code == 1
    assert "--dev" in refused.output and "is MNEMONIC set?" in refused.output
    assert not (config.parent / "keys" / "dot.json").exists()
    added = _add(config, "dot", *args, "--dev", env={"DOT": secret})
    assert added.exit_code == 0, added.output
    assert "warning: --dev" in added.stderr
    # What `keys add` says may be imported offers a dev URI only with --dev.
    unset = _add(config, "other", *args)
    assert unset.exit_code == 1 and "DOT is not set" in unset.output
    assert "or a dev URI such as //Alice" not in unset.output and "--dev" in unset.output


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
            ["--type", "evm", "--from-env", "EMPTY_VAR", "--password-env", "KEY_PASSWORD"],
            1,
            "EMPTY_VAR is empty",
        ),
        (["--type", "evm", "--generate", "--password-env", "EMPTY_VAR"], 1, "EMPTY_VAR is empty"),
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
    result = _add(config, "k", *args, env={"BAD_KEY": "0x1234", "EMPTY_VAR": ""})
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
