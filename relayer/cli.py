"""The ``relayer`` command line."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Coroutine
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel

from relayer.config import (
    Config,
    check_config,
    config_schema,
    config_skeleton,
    installed_chain_models,
    load_config,
)
from relayer.errors import RelayerError
from relayer.explain import ExplainError, resolve, why
from relayer.keydir import (
    describe_key_file,
    installed_key_formats,
    key_path,
    keys_dir_for,
    list_keys,
)
from relayer.keys import KeyFormat, Secret, read_password_file, write_key_file
from relayer.log import configure_logging, get_logger
from relayer.plugin import load_plugin
from relayer.store import Ledger, State

_config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="config.toml",
    show_default=True,
    help="Path to the TOML configuration.",
)


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except RelayerError as exc:
        raise click.ClickException(str(exc)) from None


async def _until_signalled(coro: Coroutine[Any, Any, None]) -> bool:
    """Run ``coro`` until it ends or SIGTERM / SIGINT arrives; True when a signal stopped it.

    Handled in the loop rather than left to Python's KeyboardInterrupt: a process started in
    the background by a shell inherits SIGINT *ignored*, and service managers send SIGTERM.
    Stopping is cancellation, which every await point is written to survive."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await task
    except asyncio.CancelledError:
        if not stopped:
            raise
    return stopped


def _leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups: what actually went wrong."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _run_until_stopped(coro: Coroutine[Any, Any, None], log: Any, role: str) -> None:
    """Run a role's TaskGroup; SIGTERM / SIGINT is a clean stop, a RelayerError a fatal one."""
    try:
        if asyncio.run(_until_signalled(coro)):
            log.info(f"{role}.stopped")
    except KeyboardInterrupt:
        log.info(f"{role}.stopped")
    except (RelayerError, ExceptionGroup) as exc:
        errors = _leaves(exc)
        for error in errors:
            log.error(f"{role}.fatal", error=str(error), kind=type(error).__name__)
        if any(not isinstance(e, RelayerError) for e in errors):
            raise
        sys.exit(1)


@click.group()
def main() -> None:
    """A cross-chain message relayer that verifies every proof itself."""


@main.command()
@_config_option
@click.option(
    "--role",
    type=click.Choice(["all", "watcher", "worker"]),
    default="all",
    show_default=True,
    help="all: everything in this process. watcher: follow the chains, record and announce. "
    "worker: attest and deliver with this process's keys. The split roles need "
    '[bus] type = "mqtt" and a PostgreSQL database.',
)
@click.option(
    "--instance",
    default=None,
    help="This watcher's name among several on one shared ledger ([a-z0-9-]+): each follows "
    "the chains with its own cursor. Leave it out for a single watcher.",
)
def start(config_path: Path, role: str, instance: str | None) -> None:
    """Run the relayer daemon (watchers, core, submitters) until interrupted."""
    from relayer.daemon import run_daemon  # noqa: PLC0415  (keeps `relayer status` light)
    from relayer.roles import Role  # noqa: PLC0415

    config = _load(config_path)
    configure_logging(config.relayer.log_level)
    log = get_logger()
    try:
        warnings = check_config(config, resolve_keys=False)
    except RelayerError as exc:
        raise click.ClickException(str(exc)) from None
    for warning in warnings:
        log.warning("config.warning", detail=warning)
    if role != "all" and config.bus.type != "mqtt":
        raise click.ClickException(
            f'--role {role} needs [bus] type = "mqtt" and a PostgreSQL [relayer] database: '
            "separate processes meet through them"
        )
    if instance is not None and not re.fullmatch(r"[a-z0-9-]{1,64}", instance):
        raise click.BadParameter("must be 1 to 64 of [a-z0-9-]", param_hint="--instance")
    _run_until_stopped(run_daemon(config, log, Role(role), instance), log, "relayer")


@main.group("config")
def config_group() -> None:
    """Configuration commands."""


def _chain_models() -> dict[str, type[BaseModel]]:
    try:
        return installed_chain_models()
    except RelayerError as exc:
        raise click.ClickException(str(exc)) from None


@config_group.command("default")
def config_default() -> None:
    """Print a complete config file: every key, commented [Required] or [Default: ...]."""
    try:
        skeleton = config_skeleton(_chain_models())
    except RelayerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(skeleton, nl=False)


@config_group.command("schema")
def config_schema_command() -> None:
    """Print the config file's JSON schema, for editors (one chain table per plugin, by type)."""
    try:
        schema = config_schema(_chain_models())
    except RelayerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(schema, indent=2))


@config_group.command("check")
@_config_option
def config_check(config_path: Path) -> None:
    """Validate a configuration; refuse unsafe settings with the table and key at fault."""
    config = _load(config_path)
    try:
        warnings = check_config(config)
    except RelayerError as exc:
        raise click.ClickException(str(exc)) from None
    for warning in warnings:
        click.echo(f"warning: {warning}")
    click.echo(f"config {config_path}: ok ({len(config.chains)} chains)")


@main.group("keys")
def keys_group() -> None:
    """Encrypted key files: one per name in the keys directory.

    The directory is [relayer] keys_dir of the config file, else keys/ beside it. A config
    names a key file as { keystore = "keys/NAME.json", password_file = "..." } (or
    password_env = "VAR"); it never holds a key or a password. Without a password, an address
    is what the file claims; show-address --verify decrypts the file and checks it.
    """


_keys_dir_option = click.option(
    "--keys-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The keys directory [default: relayer.keys_dir of the config, else keys/ beside it].",
)


def _keys_dir(config_path: Path, keys_dir: Path | None) -> Path:
    if keys_dir is not None:
        return keys_dir
    try:
        return keys_dir_for(config_path)
    except RelayerError as exc:
        raise click.ClickException(str(exc)) from None


def _key_formats() -> dict[str, KeyFormat]:
    try:
        return installed_key_formats()
    except RelayerError as exc:
        raise click.ClickException(str(exc)) from None


def _key_file(keys_dir: Path, name: str) -> Path:
    try:
        path = key_path(keys_dir, name)
    except RelayerError as exc:
        raise click.ClickException(str(exc)) from None
    if not path.exists():
        raise click.ClickException(
            f"no key named {name!r} in {keys_dir} (`relayer keys list` shows the keys there)"
        )
    return path


def _password(
    password_env: str | None, password_file: Path | None, *, purpose: str
) -> tuple[Secret, str]:
    """The password, and where it came from (for a "wrong password" message)."""
    if (password_env is None) == (password_file is None):
        raise click.UsageError("give one of --password-env VAR and --password-file PATH")
    if password_file is not None:
        try:
            return read_password_file(password_file), f"password file {password_file}"
        except RelayerError as exc:
            raise click.ClickException(str(exc)) from None
    assert password_env is not None
    value = _require_variable(password_env, f"the password that {purpose}")
    return Secret(value), f"environment variable {password_env}"


def _require_variable(name: str, holding: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise click.ClickException(
            f"environment variable {name} is not set (it must hold {holding})"
        )
    if not value.strip():
        raise click.ClickException(f"environment variable {name} is empty (it must hold {holding})")
    return value


_password_env_option = click.option(
    "--password-env", metavar="VAR", help="The variable holding the password."
)
_password_file_option = click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A private file holding the password (chmod 600; or root's, mode 0440).",
)


@keys_group.command("add")
@_config_option
@_keys_dir_option
@click.option(
    "--type", "kind", required=True, help="The chain family the key signs for (a plugin type)."
)
@click.option("--name", required=True, help="The key's name: the file is <keys dir>/NAME.json.")
@click.option(
    "--scheme",
    default=None,
    help="Signature scheme, for families with several [default: the family's first].",
)
@click.option(
    "--from-env", "from_env", metavar="VAR", help="Import the secret held in this variable."
)
@click.option("--generate", is_flag=True, help="Make a new random key.")
@click.option(
    "--dev",
    is_flag=True,
    help="Accept a development key anyone can derive (a Substrate dev URI such as //Bob); "
    "it loads only on chains marked dev = true.",
)
@_password_env_option
@_password_file_option
# Cheap key derivation, so that tests do not spend a second per key: never for a real key.
# Hidden, warned about when used, and marked weak-kdf by `keys list`.
@click.option("--light-kdf", is_flag=True, hidden=True)
def keys_add(
    config_path: Path,
    keys_dir: Path | None,
    kind: str,
    name: str,
    scheme: str | None,
    from_env: str | None,
    generate: bool,
    dev: bool,
    password_env: str | None,
    password_file: Path | None,
    light_kdf: bool,
) -> None:
    """Encrypt a key (imported from a variable, or new) into <keys dir>/NAME.json, mode 0600.

    Never overwrites a key: remove the old one first."""
    formats = _key_formats()
    key_format = formats.get(kind)
    if key_format is None:
        offered = ", ".join(formats) or "none"
        raise click.BadParameter(
            f"no installed chain family {kind!r} has key files (offered: {offered})",
            param_hint="--type",
        )
    scheme = scheme or key_format.schemes[0]
    if scheme not in key_format.schemes:
        raise click.BadParameter(
            f"{kind} keys are {' or '.join(key_format.schemes)}, not {scheme!r}",
            param_hint="--scheme",
        )
    if (from_env is None) == (not generate):
        raise click.UsageError("give one of --from-env VAR (import a key) and --generate")
    directory = _keys_dir(config_path, keys_dir)
    try:
        path = key_path(directory, name)
    except RelayerError as exc:
        raise click.ClickException(str(exc)) from None
    if path.exists():
        raise click.ClickException(
            f"a key named {name!r} already exists ({path}); keys are never overwritten: "
            f"choose another name, or `relayer keys remove {name}` first"
        )
    secret: Secret | None = None
    if from_env is not None:
        secret = Secret(_require_variable(from_env, key_format.importable))
    password, _ = _password(password_env, password_file, purpose="will encrypt the key")
    if light_kdf:
        click.echo(
            "warning: --light-kdf: a cheap key derivation, for tests only; the password of "
            "this file is quick to brute-force, and `relayer keys list` marks it weak-kdf",
            err=True,
        )
    try:
        document = key_format.create(secret, password, scheme=scheme, light_kdf=light_kdf, dev=dev)
        info = key_format.describe(document)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_key_file(path, document)
    except RelayerError as exc:
        raise click.ClickException(str(exc)) from None
    address = info.address if info is not None and info.address else "(not stored)"
    click.echo(f"added {name}: {kind} {scheme} key {address}, in {path}")
    if dev:
        click.echo(
            "warning: --dev: a development key may be one anyone can sign for; it loads only "
            "on chains marked dev = true",
            err=True,
        )
    config_dir = config_path.resolve().parent
    password_ref = (
        f'password_env = "{password_env}"'
        if password_env is not None
        else f'password_file = "{_relative(password_file, config_dir)}"'
    )
    click.echo(
        f'name it in the config as: {{ keystore = "{_relative(path, config_dir)}", '
        f"{password_ref} }}"
    )


def _relative(path: Path | None, base: Path) -> Path | None:
    """``path`` as the config file at ``base`` would name it (config paths are relative to it)."""
    if path is None:
        return None
    try:
        return Path(os.path.relpath(path.resolve(), base))
    except ValueError:  # another drive (Windows)
        return path.resolve()


@keys_group.command("list")
@_config_option
@_keys_dir_option
def keys_list(config_path: Path, keys_dir: Path | None) -> None:
    """Each key's name, family, scheme and the address its file claims.

    Read without any password, so an address is the file's claim, not checked against its key
    (`relayer keys show-address --verify NAME` checks one). A file whose key derivation is
    cheaper than the standard (made with --light-kdf, for tests) is marked weak-kdf."""
    directory = _keys_dir(config_path, keys_dir)
    try:
        entries = list_keys(directory, _key_formats())
    except RelayerError as exc:
        raise click.ClickException(str(exc)) from None
    if not entries:
        click.echo(f"no keys in {directory}")
        return
    width = max(len(entry.name) for entry in entries)
    for entry in entries:
        if entry.info is None:
            click.echo(f"{entry.name:<{width}}  unreadable: {entry.problem}")
            continue
        address = entry.info.address or "(address not stored)"
        line = f"{entry.name:<{width}}  {entry.kind:<10} {entry.info.scheme:<10} {address}"
        if entry.info.weak_kdf is not None:
            line += f"  weak-kdf ({entry.info.weak_kdf}: for tests only)"
        if entry.mode & 0o077:
            line += f"  (mode {entry.mode:04o}: others may read it; chmod 600 {entry.path})"
        click.echo(line)
    click.echo(
        "addresses are as each file claims them, not checked against its key: "
        "`relayer keys show-address --verify NAME` checks one",
        err=True,
    )


@keys_group.command("show-address")
@_config_option
@_keys_dir_option
@click.argument("name")
@click.option(
    "--verify",
    is_flag=True,
    help="Decrypt the file (give its password as for `keys add`) and check that the address "
    "is its key's.",
)
@_password_env_option
@_password_file_option
def keys_show_address(
    config_path: Path,
    keys_dir: Path | None,
    name: str,
    verify: bool,
    password_env: str | None,
    password_file: Path | None,
) -> None:
    """Print the address key NAME's file claims, alone on stdout (for scripts).

    Without --verify no password is needed, and the address is the file's claim, not checked
    against its key: anyone who could write the file could have changed it. With --verify the
    file is decrypted and the address printed is its key's."""
    path = _key_file(_keys_dir(config_path, keys_dir), name)
    formats = _key_formats()
    try:
        kind, info = describe_key_file(path, formats)
    except RelayerError as exc:
        raise click.ClickException(str(exc)) from None
    if not verify:
        if password_env is not None or password_file is not None:
            raise click.UsageError("--password-env and --password-file go with --verify")
        if info.address is None:
            raise click.ClickException(
                f"key file {path} does not store its address; only decrypting it would tell "
                "(--verify)"
            )
        click.echo(info.address)
        click.echo(
            f"note: the address key file {path} claims, not checked against its key "
            "(--verify checks it)",
            err=True,
        )
        return
    password, source = _password(password_env, password_file, purpose="encrypted the key")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        verified = formats[kind].verify(
            document, password, where=f"key file {path}", password_source=source
        )
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read key file {path}: {exc}") from None
    except RelayerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(verified.address)
    click.echo(f"verified: key file {path} decrypts to the key of this address", err=True)


@keys_group.command("remove")
@_config_option
@_keys_dir_option
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def keys_remove(config_path: Path, keys_dir: Path | None, name: str, yes: bool) -> None:
    """Delete key NAME's file. Without a copy elsewhere, the key is gone for good."""
    path = _key_file(_keys_dir(config_path, keys_dir), name)
    try:
        kind, info = describe_key_file(path, _key_formats())
        what = f"{kind} {info.scheme} key {info.address or '(address not stored)'}"
    except RelayerError:
        what = "an unreadable key file"
    if not yes:
        click.confirm(
            f"remove {name} ({what}, {path})? Without a copy elsewhere it cannot be recovered",
            abort=True,
        )
    try:
        path.unlink()
    except FileNotFoundError:
        raise click.ClickException(f"{path} was removed meanwhile") from None
    except OSError as exc:
        raise click.ClickException(f"cannot remove {path}: {exc.strerror}") from None
    click.echo(f"removed {name} ({path})")


@main.command()
@_config_option
@click.option("--name", required=True, help="The [[attesters]] table to run as.")
def attest(config_path: Path, name: str) -> None:
    """Run one attester: watch its origins with its own RPC, verify, sign, publish."""
    from relayer.attester import Attester  # noqa: PLC0415
    from relayer.checkpoints import DirectoryCheckpointStore  # noqa: PLC0415
    from relayer.ecdsa_key import load_ecdsa_key  # noqa: PLC0415

    config = _load(config_path)
    configure_logging(config.relayer.log_level)
    log = get_logger()
    spec = next((a for a in config.attesters if a.name == name), None)
    if spec is None:
        raise click.ClickException(f"no [[attesters]] table named {name!r}")
    try:
        key = load_ecdsa_key(spec.key, config.base_dir)
    except RelayerError as exc:
        raise click.ClickException(str(exc)) from None
    # Its own cursor database beside the relayer's, so attesters and daemon never share state.
    ledger = Ledger.open(config.relayer.attester_database(name, config.base_dir))
    local = DirectoryCheckpointStore(config.relayer.checkpoints)

    async def run() -> None:
        if config.bus.type != "mqtt":
            attester = Attester(
                config=config, name=name, key=key, ledger=ledger, checkpoints=local, log=log
            )
            await attester.run()
            return
        # Also on the bus: for relayers that do not share this machine's directory.
        from relayer.bus import MqttBus  # noqa: PLC0415
        from relayer.bus.attestations import PublishingCheckpointStore  # noqa: PLC0415

        async with MqttBus(config.bus.mqtt, log=log) as bus:
            store = PublishingCheckpointStore(local, bus, asyncio.get_running_loop(), log)
            attester = Attester(
                config=config, name=name, key=key, ledger=ledger, checkpoints=store, log=log
            )
            origins = [config.chain(origin).domain for origin in spec.origins]
            async with asyncio.TaskGroup() as group:
                group.create_task(attester.run(), name=f"attester:{name}")
                group.create_task(
                    store.answer_requests(attester.signer, origins), name="bus:answers"
                )

    try:
        _run_until_stopped(run(), log, "attester")
    finally:
        ledger.close()


@main.command()
@_config_option
def status(config_path: Path) -> None:
    """Messages per route and state."""
    config = _load(config_path)
    with Ledger.open(config.relayer.database) as ledger:
        counts = ledger.counts()
    if not counts:
        click.echo("no messages in the ledger")
        return
    routes = sorted({route for route, _ in counts})
    states = list(State)
    click.echo(f"{'route':<28}" + "".join(f"{s.value:>11}" for s in states))
    for route in routes:
        click.echo(f"{route:<28}" + "".join(f"{counts.get((route, s), 0):>11}" for s in states))


def _fmt_time(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


@main.command()
@_config_option
@click.argument("message_id")
def explain(config_path: Path, message_id: str) -> None:
    """A message's whole history and why it is where it is."""
    config = _load(config_path)
    with Ledger.open(config.relayer.database) as ledger:
        try:
            record, history = resolve(ledger, message_id)
        except ExplainError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"message 0x{record.id.hex()}")
    click.echo(f"  route      {record.route} (nonce {record.nonce})")
    click.echo(f"  state      {record.state.value}")
    click.echo(f"  origin     block {record.block_number} 0x{record.block_hash.hex()}")
    if record.finality:
        click.echo(f"  finality   {record.finality} (what made the origin block final)")
    click.echo(f"  attempts   {record.attempts}")
    if record.last_error:
        click.echo(f"  last error {record.last_error}")
    if record.state in (State.ATTESTED, State.VERIFIED) and record.next_attempt_at > time.time():
        click.echo(f"  next try   {_fmt_time(record.next_attempt_at)}")
    if record.tx_hash:
        click.echo(f"  tx         0x{record.tx_hash.hex()} (nonce {record.tx_nonce})")
    click.echo(f"  signatures {len(record.signatures)}")
    click.echo("history:")
    for entry in history:
        line = f"  {_fmt_time(entry.at)}  {entry.from_state or '-':>9} -> {entry.to_state}"
        if entry.detail:
            line += f"  {entry.detail}"
        if entry.error:
            line += f"  error: {entry.error}"
        click.echo(line)
    click.echo(f"why: {why(record.state)}")


@main.group("lightclient")
def lightclient_group() -> None:
    """Light clients that decide origin finality (``finality = "grandpa"`` and the like)."""


@lightclient_group.command("status")
@_config_option
def lightclient_status(config_path: Path) -> None:
    """Each saved light client: mode, owner, checkpoint, period or set id, finalized head."""
    config = _load(config_path)
    with Ledger.open(config.relayer.database) as ledger:
        saved = ledger.light_clients()
    modes = {c.name: c.light_client_mode for c in config.chains}
    for chain in config.chains:
        if chain.light_client_mode is not None and not any(r.chain == chain.name for r in saved):
            click.echo(f"{chain.name} ({chain.light_client_mode}): not bootstrapped yet")
    for row in saved:
        if row.chain not in modes:
            click.echo(f"{row.chain} ({row.mode}, {row.owner}): chain no longer configured")
            continue
        chain = config.chain(row.chain)
        stale = "" if modes[row.chain] == row.mode else f"; unused, finality is {chain.finality}"
        click.echo(
            f"{row.chain} ({row.mode}, {row.owner}; saved {_fmt_time(row.updated_at)}{stale})"
        )
        try:
            shown = load_plugin(chain.type).light_client_status(chain, row.state)
        except ValueError as exc:
            click.echo(f"  unreadable: {exc}")
            continue
        for key, value in shown.items():
            click.echo(f"  {key:<18} {value}")


@main.command()
@_config_option
@click.option("--route", default=None, help="Only this route (e.g. chain-a->chain-b).")
@click.option(
    "--from-block",
    type=click.IntRange(min=0),
    default=None,
    help="First re-read the route's origin blocks from this one up to the relayer's cursor "
    "and hand every message the ledger lacks to verification (the reconciler, on demand); "
    "needs --route.",
)
def clear(config_path: Path, route: str | None, from_block: int | None) -> None:
    """Re-queue failed messages for delivery; with --from-block, first find (and verify) the
    route's messages the event stream missed."""
    from proofs import ProofError  # noqa: PLC0415
    from relayer.reconciler import reconcile_route  # noqa: PLC0415  (loads the core)

    if from_block is not None and route is None:
        raise click.UsageError("--from-block needs --route (e.g. --route chain-a->chain-b)")
    config = _load(config_path)
    with Ledger.open(config.relayer.database) as ledger:
        if from_block is not None and route is not None:
            # Before clearing: a failed message the destination delivered meanwhile is marked
            # delivered by the pass instead of being sent again.
            configure_logging(config.relayer.log_level)
            try:
                report = asyncio.run(
                    reconcile_route(config, ledger, route, from_block, get_logger())
                )
            except (RelayerError, ProofError) as exc:
                raise click.ClickException(f"reconciling {route}: {exc}") from None
            if not report.scanned:
                click.echo(f"{report.chain}: nothing final at or above block {from_block} yet")
            else:
                click.echo(
                    f"{report.chain} blocks {report.first_block}..{report.last_block}: "
                    f"{report.found} message(s) of {route}; {report.healed} missing from the "
                    f"ledger, handed to verification; {report.marked_delivered} failed one(s) "
                    f"found delivered; {report.delivery_missing} delivered one(s) the "
                    "destination does not know"
                )
            if report.unchecked:
                click.echo(f"not compared with {', '.join(report.unchecked)}: no key here")
        count = ledger.clear_failed(route=route)
    click.echo(f"re-queued {count} failed message(s)")


@main.group("route")
def route_group() -> None:
    """Routes (origin->destination): pause, resume, and their state and limits.

    A paused route's messages are still observed, verified and attested; none is delivered
    until the route is resumed. The daemon pauses a route itself when its circuit breaker
    trips (verification failures in a row, or a transaction from our key that it did not
    send); every running daemon sees a pause or resume within a second."""


def _route(config: Config, route: str) -> str:
    try:
        config.check_route(route)
    except RelayerError as exc:
        raise click.BadParameter(str(exc), param_hint="ROUTE") from None
    return route


def _pauser() -> str:
    try:
        user = os.getlogin()
    except OSError:
        user = os.environ.get("USER", "unknown")
    return f"cli:{user}@{socket.gethostname()}"


@route_group.command("pause")
@_config_option
@click.argument("route")
@click.option("--reason", required=True, help="Why: shown by `route list`, /readyz and logs.")
def route_pause(config_path: Path, route: str, reason: str) -> None:
    """Stop delivering ROUTE's messages (e.g. chain-a->chain-b) until `relayer route resume`."""
    config = _load(config_path)
    _route(config, route)
    with Ledger.open(config.relayer.database) as ledger:
        if not ledger.pause_route(route, reason=reason, by=_pauser()):
            pause = ledger.paused_routes()[route]
            click.echo(
                f"{route} was paused already, since {_fmt_time(pause.paused_at)} by "
                f"{pause.paused_by}: {pause.reason}"
            )
            return
    click.echo(f"paused {route}; resume with: relayer route resume {route}")


@route_group.command("resume")
@_config_option
@click.argument("route")
def route_resume(config_path: Path, route: str) -> None:
    """Deliver ROUTE's messages again: those that waited go out, each once."""
    config = _load(config_path)
    with Ledger.open(config.relayer.database) as ledger:
        if route not in ledger.paused_routes():
            # A pause of a route no longer configured can still be lifted; anything else
            # is a typo or a route that was never paused.
            _route(config, route)
            click.echo(f"{route} is not paused")
            return
        pause = ledger.resume_route(route)
    if pause is None:
        click.echo(f"{route} is not paused")  # resumed by someone else meanwhile
        return
    click.echo(
        f"resumed {route} (paused {_fmt_time(pause.paused_at)} by {pause.paused_by}: "
        f"{pause.reason})"
    )


@route_group.command("list")
@_config_option
def route_list(config_path: Path) -> None:
    """Every route of the config: active or paused (why, when, by whom), and its limits."""
    config = _load(config_path)
    with Ledger.open(config.relayer.database) as ledger:
        paused = ledger.paused_routes()
    names = config.route_names
    for route in [*names, *sorted(set(paused) - set(names))]:
        pause = paused.get(route)
        if pause is None:
            state = "active"
        else:
            since = _fmt_time(pause.paused_at)
            state = f"PAUSED since {since} by {pause.paused_by}: {pause.reason}"
        click.echo(f"{route}  {state}")
        if route not in names:
            click.echo("  (no longer configured)")
            continue
        limits = config.route(route)
        rate = (
            f"{limits.rate_limit:g} msg/s, burst {limits.bucket_size}"
            if limits.rate_limit is not None
            else "none"
        )
        breaker = (
            f"pauses after {limits.pause_after_rejections} verification failures in a row"
            if limits.pause_after_rejections
            else "off"
        )
        click.echo(f"  senders     {_allowlist(limits.senders)}")
        click.echo(f"  recipients  {_allowlist(limits.recipients)}")
        click.echo(f"  rate limit  {rate}")
        click.echo(f"  breaker     {breaker}")
        budget = config.chain(route.partition("->")[2]).fee_budget_per_hour
        if budget is not None:
            click.echo(f"  fee budget  {budget} per hour (destination key, all its routes)")


def _allowlist(entries: tuple[str, ...]) -> str:
    return "anyone" if not entries else ", ".join(entries)


@main.command()
@_config_option
@click.option(
    "--older-than-days",
    type=click.IntRange(min=1),
    default=None,
    help="Prune what became final this many days ago or earlier [default: relayer.retention_days].",
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
def prune(config_path: Path, older_than_days: int | None, dry_run: bool) -> None:
    """Delete delivered, rejected and orphaned messages past the retention window, with their
    history and evidence, and the attestation files no kept message needs (what the daemon does
    every prune_interval). Messages in any other state are never deleted."""
    from relayer.checkpoints import DirectoryCheckpointStore  # noqa: PLC0415
    from relayer.daemon import prune_expired  # noqa: PLC0415

    config = _load(config_path)
    days = config.relayer.retention_days if older_than_days is None else older_than_days
    if days == 0:
        click.echo(
            "retention is off (relayer.retention_days = 0): nothing pruned; "
            "--older-than-days N prunes once"
        )
        return
    older_than = time.time() - days * 86_400
    checkpoints = DirectoryCheckpointStore(config.relayer.checkpoints)
    try:
        with Ledger.open(config.relayer.database) as ledger:
            report, files = prune_expired(config, ledger, checkpoints, older_than, dry_run=dry_run)
    except (RelayerError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} what became final before {_fmt_time(older_than)} ({days} days):")
    for label, value in (
        ("messages (delivered, rejected or orphaned)", report.messages),
        ("history rows", report.history),
        ("evidence rows", report.evidence),
        ("block evidence rows", report.block_evidence),
        ("attestation block directories", files.blocks),
        ("attestation files", files.files),
        ("attestation bytes", files.size),
    ):
        click.echo(f"  {label:<34}{value:>10}")
    if files.failed:
        click.echo(
            f"  {files.failed} attestation block directories could not be removed (permissions?);"
            " they were left as they were"
        )


def _devtool(name: str) -> Any:
    found = [ep for ep in entry_points(group="relayer.devtools") if ep.name == name]
    if not found:
        raise click.ClickException(f"no dev tool {name!r} is installed")
    return found[0].load()


@main.command(context_settings={"ignore_unknown_options": True})
@_config_option
@click.option("--from", "origin", required=True, help="Origin chain name.")
@click.option("--to", "destination", required=True, help="Destination chain name.")
@click.option("--recipient", required=True, help="Recipient address on the destination.")
@click.option("--body", default="hello", show_default=True)
@click.option("--count", default=1, show_default=True)
@click.option("--key-env", required=True, help="Environment variable holding the sender key.")
def send(
    config_path: Path,
    origin: str,
    destination: str,
    recipient: str,
    body: str,
    count: int,
    key_env: str,
) -> None:
    """Dev helper: send messages through the origin gateway."""
    config = _load(config_path)
    sender = _devtool("send")
    ids = asyncio.run(sender(config, origin, destination, recipient, body.encode(), count, key_env))
    for message_id in ids:
        click.echo("0x" + message_id.hex())


@main.command()
@click.option("--messages", default=100, show_default=True, help="Messages each way.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None)
@_config_option
def devnet(messages: int, workdir: Path | None, config_path: Path) -> None:
    """Start local chains, deploy, run attesters and the daemon, relay, report, stop."""
    run = _devtool("devnet")
    sys.exit(run(config_path=config_path, messages=messages, workdir=workdir))


if __name__ == "__main__":
    main()
