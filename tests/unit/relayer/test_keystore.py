"""Encrypted key files: V3 keystores (eth-account as the oracle), password files, and key files
written owner-only and never over another."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

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


@pytest.mark.parametrize(
    ("kdf", "change", "field"),
    [
        # Each one decrypted fine before dklen was checked: PBKDF2's first 32 output bytes do
        # not depend on dklen, so a long dklen only costs time (2^20 bytes: 32768 blocks).
        ("scrypt", {"dklen": 1 << 20}, "kdfparams.dklen"),
        ("scrypt", {"dklen": 64}, "kdfparams.dklen"),
        ("pbkdf2", {"dklen": 1 << 20}, "kdfparams.dklen"),
        ("scrypt", {"dklen": None}, "kdfparams.dklen"),
        ("pbkdf2", {"prf": "hmac-sha512"}, "kdfparams.prf"),
    ],
)
def test_a_keystore_asking_for_another_dklen_or_prf_is_refused_before_decrypting(
    tmp_path: Path, kdf: Literal["scrypt", "pbkdf2"], change: dict[str, Any], field: str
) -> None:
    document = Account.encrypt(bytes.fromhex(SECRET), PASSWORD, kdf=kdf, iterations=1 << 10)
    document["crypto"]["kdfparams"].update(change)
    _keystore(tmp_path, document)
    with pytest.raises(ConfigError, match=re.escape(field)) as info:
        load_ecdsa_key(
            KeyRef(keystore=Path("k.json"), password_env="PW"), tmp_path, env={"PW": PASSWORD}
        )
    assert not isinstance(info.value, WrongPasswordError)


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


def test_a_v3_keystore_below_the_standard_cost_is_described_as_weak() -> None:
    light = V3.create(Secret(SECRET), Secret(PASSWORD), scheme="secp256k1", light_kdf=True)
    info = V3.describe(light)
    assert info is not None and info.weak_kdf is not None and "n=4096" in info.weak_kdf
    # What eth-account and geth write by default (read, not run: describe decrypts nothing).
    standard = json.loads(json.dumps(light))
    standard["crypto"]["kdfparams"]["n"] = 1 << 18
    info = V3.describe(standard)
    assert info is not None and info.weak_kdf is None
    pbkdf2 = Account.encrypt(bytes.fromhex(SECRET), PASSWORD, kdf="pbkdf2", iterations=1000)
    info = V3.describe(pbkdf2)
    assert info is not None and info.weak_kdf == "pbkdf2 c=1000, below c=262144"


def test_verify_decrypts_and_checks_the_address_a_v3_file_claims() -> None:
    document = V3.create(Secret(SECRET), Secret(PASSWORD), scheme="secp256k1", light_kdf=True)
    info = V3.verify(document, Secret(PASSWORD), where="key file k", password_source="PW")
    assert info.address == ADDRESS and info.scheme == "secp256k1"
    with pytest.raises(WrongPasswordError, match="PW"):
        V3.verify(document, Secret("guess"), where="key file k", password_source="PW")
    document["address"] = "11" * 20
    with pytest.raises(ConfigError, match="tampered with or mixed up"):
        V3.verify(document, Secret(PASSWORD), where="key file k", password_source="PW")


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


# The uid of the shipped image's user (docker/Dockerfile), and a group it is in, as Kubernetes
# adds one with fsGroup.
RELAYER_UID = 10001
FS_GROUP = 10001
as_root_only = pytest.mark.skipif(
    os.geteuid() != 0, reason="files of another owner need root to make and to change users"
)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    # pytest's tmp_path is root's alone (0700): a directory the relayer's user can reach.
    path = Path(tempfile.mkdtemp(prefix="relayer-pw-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@contextlib.contextmanager
def _running_as(uid: int, groups: list[int]) -> Iterator[None]:
    """This process as ``uid`` in ``groups`` (effective ids only, so root can come back)."""
    saved = os.getgroups()
    os.setgroups(groups)
    os.setegid(groups[0])
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(saved)


def _owned(path: Path, uid: int, gid: int, mode: int) -> Path:
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


@contextlib.contextmanager
def _as_relayer_user(path: Path) -> Iterator[None]:
    """``path`` owned by the user reading it: the image's user when run as root."""
    if os.geteuid() != 0:
        yield
        return
    os.chown(path, RELAYER_UID, RELAYER_UID)
    with _running_as(RELAYER_UID, [RELAYER_UID]):
        yield


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o602, 0o440])
def test_a_password_file_of_the_relayers_user_with_group_or_other_bits_is_refused(
    shared_dir: Path, mode: int
) -> None:
    path = _password_file(shared_dir / "pw", "secret-password", mode)
    with (
        _as_relayer_user(path),
        pytest.raises(UnsafePermissionsError, match=f"chmod 600 {path}") as info,
    ):
        read_password_file(path)
    assert f"{mode:04o}" in str(info.value)
    assert "secret-password" not in str(info.value)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_password_file_of_the_relayers_user_alone_is_read(shared_dir: Path, mode: int) -> None:
    path = _password_file(shared_dir / "pw", "secret-password\n", mode)
    with _as_relayer_user(path):
        assert read_password_file(path).reveal() == "secret-password"


@as_root_only
@pytest.mark.parametrize("mode", [0o440, 0o640, 0o400])
def test_a_root_owned_password_file_readable_by_the_relayers_group_is_read(
    shared_dir: Path, mode: int
) -> None:
    # A Kubernetes secret volume with fsGroup: root-owned, group fsGroup, defaultMode 0440
    # (a 0400 there becomes 0440); the relayer (uid 10001) reads it through the group.
    path = _owned(_password_file(shared_dir / "pw", "secret-password\n"), 0, FS_GROUP, mode)
    with _running_as(RELAYER_UID, [RELAYER_UID, FS_GROUP]):
        if mode & stat.S_IRGRP:
            assert read_password_file(path).reveal() == "secret-password"
        else:  # root's alone: allowed, but the relayer cannot open it
            with pytest.raises(ConfigError, match="Permission denied"):
                read_password_file(path)


@as_root_only
@pytest.mark.parametrize("mode", [0o444, 0o644, 0o460, 0o450, 0o442])
def test_a_root_owned_password_file_beyond_group_read_is_refused(
    shared_dir: Path, mode: int
) -> None:
    path = _owned(_password_file(shared_dir / "pw", "secret-password"), 0, FS_GROUP, mode)
    with (
        _running_as(RELAYER_UID, [RELAYER_UID, FS_GROUP]),
        pytest.raises(UnsafePermissionsError, match=f"chmod 440 {path}") as info,
    ):
        read_password_file(path)
    assert f"{mode:04o}" in str(info.value)


@as_root_only
def test_a_password_file_owned_by_another_user_is_refused(shared_dir: Path) -> None:
    # Private to uid 10001, read by root: neither the reader's nor root's file.
    path = _owned(_password_file(shared_dir / "pw", "secret-password"), RELAYER_UID, 0, 0o600)
    with pytest.raises(UnsafePermissionsError, match=f"owned by uid {RELAYER_UID}") as info:
        read_password_file(path)
    assert "chown 0" in str(info.value)


def test_a_fifo_as_password_file_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pw"
    os.mkfifo(fifo, 0o600)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            read_password_file(fifo)
            outcome.append(None)
        except ConfigError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():
        # Release the blocked open (a writer arrives) before failing, so no thread is left.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=10)
        pytest.fail("reading a FIFO as a password file waited for a writer")
    assert len(outcome) == 1 and isinstance(outcome[0], ConfigError)
    assert "not a regular file" in str(outcome[0])


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


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to watch the syscalls")
def test_a_key_file_and_then_its_directory_are_fsynced(tmp_path: Path) -> None:
    # The syscalls of a real write, seen by strace: the file is created, written and synced,
    # then its directory is opened and synced, so that the new name survives a crash.
    keys = tmp_path / "keys"
    keys.mkdir()
    trace = tmp_path / "trace"
    script = (
        "from pathlib import Path; from relayer.keys import write_key_file; "
        f"write_key_file(Path({str(keys / 'k.json')!r}), {{'a': 1}})"
    )
    result = subprocess.run(
        [
            "strace",
            "-f",
            "-e",
            "trace=openat,fsync",
            "-o",
            str(trace),
            sys.executable,
            "-c",
            script,
        ],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0 and "ptrace" in result.stderr:
        pytest.skip(f"strace cannot trace here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    # Which path each fsync synced, following descriptors as they are opened (and reused).
    path_of: dict[str, str] = {}
    synced: list[str] = []
    for line in trace.read_text().splitlines():
        call = line.split(None, 1)[1]
        if opened := re.match(r'openat\(AT_FDCWD, "([^"]+)", .*\) = (\d+)$', call):
            path_of[opened.group(2)] = opened.group(1)
        elif fsynced := re.match(r"fsync\((\d+)\)\s+= 0$", call):
            synced.append(path_of.get(fsynced.group(1), "?"))
    assert synced == [str(keys / "k.json"), str(keys)]


def test_a_key_file_is_not_written_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "k.json").symlink_to(target)
    with pytest.raises(ConfigError):
        write_key_file(tmp_path / "k.json", {"a": 1})
    assert not target.exists()
