"""No key and no password ever leaves its keystore: the daemon and the attesters run at debug
level through a full relay (EVM <-> EVM and EVM <-> Substrate) with every key loaded from an
encrypted file made by ``relayer keys add``, passwords from owner-only files and from
variables; then every log line, the /metrics page and every file the processes wrote are
searched for the keys (hex with and without 0x, any case; raw bytes; base64), the seeds and the
passwords."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import sr25519
from eth_account import Account

from chains.evm.anvil import DEV_KEYS
from chains.evm.devnet import ATTESTERS, Devnet
from chains.evm.rpc import EvmRpc
from chains.substrate.devnet import SUBMITTER_URI
from chains.substrate.keys import Sr25519Keypair
from tests.e2e.substrate import config_with_dot_a
from tests.integration.anvil import REPO_ROOT
from tests.integration.chopsticks import require_chopsticks

pytestmark = pytest.mark.slow

MESSAGES = 5


class _Keys:
    """Makes the keys with the real CLI and remembers every secret that must not leak."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.config = base / "config-0.toml"  # where devnet_factory writes the first config
        self.secret_dir = base / "secrets"
        self.secret_dir.mkdir(mode=0o700)
        self.env: dict[str, str] = {}
        #: each key's --password-env / --password-file arguments
        self.password_args: dict[str, list[str]] = {}
        #: every secret, as text (searched case-insensitively) and as raw bytes
        self.texts: list[str] = []
        self.blobs: list[bytes] = []

    def _password(self, name: str, *, in_file: bool) -> tuple[list[str], str]:
        password = f"pw-{name}-{secrets.token_urlsafe(12)}"
        self.texts.append(password)
        if in_file:
            path = self.secret_dir / f"{name}.pw"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(password + "\n")
            return ["--password-file", str(path)], f'password_file = "secrets/{name}.pw"'
        variable = f"PASSWORD_{name.upper().replace('-', '_')}"
        self.env[variable] = password
        return ["--password-env", variable], f'password_env = "{variable}"'

    def add(
        self, name: str, kind: str, *, secret: str | None, in_file: bool, dev: bool = False
    ) -> str:
        """The key's config reference; ``secret`` None generates one; ``dev``: the secret is
        a development key (a dev URI), which ``keys add`` takes only with --dev."""
        password_args, password_ref = self._password(name, in_file=in_file)
        self.password_args[name] = password_args
        source = ["--generate"] if secret is None else ["--from-env", "IMPORTED_SECRET"]
        if dev:
            source.append("--dev")
        result = subprocess.run(
            [
                *(sys.executable, "-m", "relayer.cli", "keys", "add", "-c", str(self.config)),
                *("--type", kind, "--name", name, *source, *password_args),
            ],
            env={**os.environ, **self.env, "IMPORTED_SECRET": secret or ""},
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        self.check_clean(result.stdout + result.stderr, f"`keys add {name}` output")
        path = self.base / "keys" / f"{name}.json"
        document = json.loads(path.read_text())
        if kind == "evm":
            self._secp256k1(bytes(Account.decrypt(document, self._password_of(password_ref))))
        return f'{{ keystore = "keys/{name}.json", {password_ref} }}'

    def _password_of(self, ref: str) -> str:
        match = re.search(r'password_(env|file) = "([^"]+)"', ref)
        assert match is not None
        if match.group(1) == "env":
            return self.env[match.group(2)]
        return (self.base / match.group(2)).read_text().rstrip("\n")

    def _secp256k1(self, key: bytes) -> None:
        self.texts.append(key.hex())
        self.blobs.append(key)
        self.texts.append(base64.b64encode(key).decode())

    def sr25519(self, keypair: Sr25519Keypair) -> None:
        native = keypair._secret
        expanded = bytes(sr25519.convert_secret_key_to_ed25519(native))
        for secret in (native, expanded, native[:32], expanded[:32]):
            self.texts.append(secret.hex())
            self.blobs.append(secret)
            self.texts.append(base64.b64encode(secret).decode())

    def check_clean(self, text: str, where: str) -> None:
        lowered = text.lower()
        for secret in self.texts:
            # Hex in any case, with or without 0x: looked for in the lowercased text. Passwords
            # and base64 are case-sensitive: looked for as they are.
            haystack = lowered if re.fullmatch(r"[0-9a-f]+", secret) else text
            assert secret not in haystack, f"a secret ({len(secret)} characters) in {where}"

    def check_clean_bytes(self, data: bytes, where: str) -> None:
        for blob in self.blobs:
            assert blob not in data, f"a raw {len(blob)}-byte secret in {where}"
        self.check_clean(data.decode("latin-1"), where)


def _fund(url: str, address: str) -> None:
    async def run() -> None:
        rpc = EvmRpc(url)
        try:
            await rpc.request("anvil_setBalance", address, hex(10**21))
        finally:
            await rpc.close()

    asyncio.run(run())


def _show_address(keys: _Keys, name: str) -> str:
    """The address to fund, checked against the key (the file's own claim is not enough)."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "relayer.cli", "keys", "show-address", "-c", str(keys.config)),
            *(name, "--verify", *keys.password_args[name]),
        ],
        env={**os.environ, **keys.env},
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=True,
        timeout=60,
    )
    keys.check_clean(result.stdout + result.stderr, f"`keys show-address {name}` output")
    return result.stdout.strip()


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def test_no_key_or_password_reaches_a_log_line_a_metric_or_a_file(
    devnet_factory: Callable[..., Devnet], tmp_path: Path
) -> None:
    require_chopsticks()
    keys = _Keys(tmp_path)
    # Submitters: new keys (funded below), one password in a file, one in a variable.
    ref_a = keys.add("submitter-a", "evm", secret=None, in_file=True)
    ref_b = keys.add("submitter-b", "evm", secret=None, in_file=False)
    # dot-a's submitter: chopsticks funds only the dev accounts, so //Bob, imported (--dev:
    # dot-a is a dev chain, the only kind that loads a dev account).
    ref_dot = keys.add("submitter-dot-a", "substrate", secret=SUBMITTER_URI, in_file=True, dev=True)
    keys.sr25519(Sr25519Keypair.from_uri(SUBMITTER_URI))
    # Attesters: the committee the Gateways were deployed with (anvil accounts #5, #6, #7).
    ref_att = [
        keys.add(f"att-{n + 1}", "evm", secret=DEV_KEYS[i], in_file=n % 2 == 0)
        for n, i in enumerate(ATTESTERS)
    ]

    text = config_with_dot_a()
    text = _replace(text, 'log_level = "info"', 'log_level = "debug"')
    text = _replace(
        text, 'submitter_key = { env = "RELAYER_KEY_CHAIN_A" }', f"submitter_key = {ref_a}"
    )
    text = _replace(
        text, 'submitter_key = { env = "RELAYER_KEY_CHAIN_B" }', f"submitter_key = {ref_b}"
    )
    text = _replace(
        text, 'submitter_key = { env = "RELAYER_KEY_DOT_A" }', f"submitter_key = {ref_dot}"
    )
    for n, ref in enumerate(ref_att):
        text = _replace(text, f'key = {{ env = "ATTESTER_KEY_{n + 1}" }}', f"key = {ref}")
    assert not re.search(r"(?m)^[^#\n]*\{ env = ", text), "a key still named by a variable"

    # The search finds what it looks for (a check that cannot fail protects nothing).
    some_key = next(t for t in keys.texts if re.fullmatch(r"[0-9a-f]{64}", t))
    for disguised in (
        "0x" + some_key.upper(),
        some_key,
        "0X" + some_key[:10].upper() + some_key[10:],
    ):
        with pytest.raises(AssertionError):
            keys.check_clean(f'{{"event": "x", "key": "{disguised}"}}', "self-test")
    with pytest.raises(AssertionError):
        keys.check_clean_bytes(b"\x00" + keys.blobs[0] + b"\x00", "self-test")

    devnet = devnet_factory(config_text=text)
    assert devnet.config_path == keys.config
    # The dev keys the devnet exports for the example config stay out of every process: key
    # material reaches them through the keystores only.
    for variable in [v for v in devnet.env if v.startswith(("RELAYER_KEY_", "ATTESTER_KEY_"))]:
        del devnet.env[variable]
    devnet.env.update(keys.env)
    # A submitter pays for deliveries to its own chain.
    _fund(devnet.chain_a.url, _show_address(keys, "submitter-a"))
    _fund(devnet.chain_b.url, _show_address(keys, "submitter-b"))

    devnet.start_attesters()
    devnet.start_daemon()

    async def relay() -> dict[bytes, float]:
        a_to_b, b_to_a, a_to_dot, dot_to_a = await asyncio.gather(
            devnet.send("chain-a", "chain-b", MESSAGES),
            devnet.send("chain-b", "chain-a", MESSAGES),
            devnet.send("chain-a", "dot-a", MESSAGES, sender=8),
            devnet.send("dot-a", "chain-a", MESSAGES),
        )
        return await devnet.await_delivery(
            {"chain-b": a_to_b, "chain-a": b_to_a + dot_to_a, "dot-a": a_to_dot}, timeout=240
        )

    assert len(asyncio.run(relay())) == 4 * MESSAGES
    host_port = devnet.env["RELAYER_HEALTH"]
    pages = {}
    for page in ("metrics", "healthz", "readyz"):
        try:
            with urllib.request.urlopen(f"http://{host_port}/{page}", timeout=10) as answer:
                pages[page] = answer.read()
        except urllib.error.HTTPError as exc:  # /readyz may say 503: its body counts too
            pages[page] = exc.read()
    assert b"relayer_" in pages["metrics"]
    # Stopped cleanly, so that shutdown logging is searched too.
    for name in list(devnet.procs):
        assert devnet.kill(name, signal.SIGTERM) == 0, f"{name} did not stop cleanly"

    for page, body in pages.items():
        keys.check_clean_bytes(body, f"/{page}")
    logs = sorted(devnet.work.glob("*.log"))
    assert {"relayer.log", "att-1.log", "att-2.log", "att-3.log"} <= {p.name for p in logs}
    debug_lines = 0
    for log in logs:
        for number, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
            keys.check_clean(line, f"{log.name}:{number}")
            debug_lines += bool(re.search(r'"level":\s*"debug"', line))
    assert debug_lines > 0, "no debug line was logged: the test would prove nothing"
    # Everything else the processes wrote: ledgers, attestation checkpoints.
    searched = 0
    for path in devnet.work.rglob("*"):
        if path.is_file():
            keys.check_clean_bytes(path.read_bytes(), str(path.relative_to(tmp_path)))
            searched += 1
    assert searched > len(logs)
