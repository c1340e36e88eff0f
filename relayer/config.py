"""The operator's configuration: one TOML file, decoded into frozen, typed values.

``load_config`` reads the file, refuses raw private keys, expands ``${VAR}`` /
``${VAR:-default}`` in string values, and decodes every table: the keys every chain shares here,
the rest of a ``[[chains]]`` table by its plugin's ``config_model`` (Hermes ``config.rs``).
``check_config`` adds the checks that need keys, and the warnings. Every refusal names the table
and key (``chains[name="chain-a"].committee.threshold: ...``); all problems of a file are reported
together, in one ``ConfigError``, and no message ever carries a secret or a raw input value.

Types are strict, for every table and every plugin's model: ``domain = "1000"``, ``1000.0`` or
``true`` is not the integer 1000. The one string read as a number or boolean is a ``${VAR}``
reference's value, where the field refuses a string (``_validate``). ``config_skeleton`` and
``config_schema`` describe the file from the same models (``relayer config default | schema``).
"""

from __future__ import annotations

import builtins
import datetime
import difflib
import ipaddress
import json
import math
import os
import re
import textwrap
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit

from eth_utils.address import to_checksum_address
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
)
from pydantic.fields import FieldInfo

from proofs.committee import check_threshold
from proofs.errors import QuorumError
from relayer.bus.mqtt import MqttSettings
from relayer.ecdsa_key import load_ecdsa_key
from relayer.errors import ConfigError, UnknownChainError
from relayer.keys import KeyRef, KeyUnavailableError
from relayer.plugin import ENTRY_POINT_GROUP, Signer, load_plugin

__all__ = [
    "BUILTIN_FINALITY",
    "RAW_KEY_REFUSAL",
    "AttesterConfig",
    "ChainConfig",
    "Committee",
    "Config",
    "ConfigRefusedError",
    "Endpoint",
    "EthAddress",
    "HttpEndpoint",
    "RelayerSettings",
    "RouteSettings",
    "WsEndpoint",
    "check_config",
    "config_schema",
    "config_skeleton",
    "installed_chain_models",
    "load_config",
]

RAW_KEY_REFUSAL = (
    "raw private keys are not allowed in the config: use { env = ... } or { keystore = ... }"
)

M = TypeVar("M", bound=BaseModel)

#: finality modes of the relayer's own; every other ``finality`` names a plugin's light client
BUILTIN_FINALITY = ("committee", "confirmations")
Loc = tuple[str | int, ...]


class ConfigRefusedError(ConfigError):
    """The configuration has problems; ``problems`` lists them, each as ``table.key: reason``."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = "".join(f"\n  - {problem}" for problem in self.problems)
        super().__init__(f"{source}: {count} problem{'s' if count != 1 else ''}:{lines}")


# --- value types ---------------------------------------------------------------------------------


def _parse_address(value: object) -> str:
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
            raise ValueError("must be a 20-byte hex address: 0x and 40 hex digits")
        digits = value[2:]
        # Mixed case is an EIP-55 checksum; a wrong one is a typo in an address we would trust.
        mixed = digits not in (digits.lower(), digits.upper())
        if mixed and to_checksum_address(value) != value:
            raise ValueError(
                "has an invalid EIP-55 checksum (a typo?); write it checksummed or all lowercase"
            )
        raw = bytes.fromhex(digits)
    else:
        # pydantic turns only ValueError into a validation error, so no TypeError here.
        raise ValueError("must be a hex address string")  # noqa: TRY004
    if len(raw) != 20:
        raise ValueError("must be a 20-byte address")
    if raw == bytes(20):
        raise ValueError("is the zero address, which no one controls")
    return to_checksum_address(raw)


#: a non-zero 20-byte Ethereum address, normalized to its EIP-55 checksummed hex form (the form
#: every consumer compares, logs and hands to web3); ``bytes.fromhex(a[2:])`` for the raw bytes
EthAddress = Annotated[str, PlainValidator(_parse_address, json_schema_input_type=str)]


def _url_checker(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        # Never echo the URL: endpoints often carry an API key in their path or query.
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"must be a {' or '.join(schemes)} URL with a host")
        return value

    return check


#: an http(s) JSON-RPC endpoint
HttpEndpoint = Annotated[str, AfterValidator(_url_checker(("http", "https")))]
#: a websocket endpoint
WsEndpoint = Annotated[str, AfterValidator(_url_checker(("ws", "wss")))]
#: any endpoint a chain plugin may speak to (its own model says which schemes it takes)
Endpoint = Annotated[str, AfterValidator(_url_checker(("http", "https", "ws", "wss")))]


def _split_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError("must be host:port, e.g. 127.0.0.1:9464")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("write an IPv6 address in brackets, e.g. [::1]:9464")
    if not 0 < int(port) < 65536:
        raise ValueError("port must be between 1 and 65535")
    return host, int(port)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
    if base is None or value.is_absolute():
        return value
    return Path(base) / value


class _Table(BaseModel):
    # TOML has inf and nan floats; no setting of ours means either. Strict: "1000", 1000.0 and
    # true are not the integer 1000 (load_config reads a ${VAR}'s value as a number itself).
    # The attribute docstrings are the keys' descriptions in `relayer config default | schema`.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        strict=True,
        use_attribute_docstrings=True,
    )


# --- tables --------------------------------------------------------------------------------------


class RelayerSettings(_Table):
    """``[relayer]``: the daemon's own files and listeners."""

    # Defaults as the file would write them (a JSON-mode path is a string); strict=False only
    # lets Python code pass a str, as a path takes nothing but a str or a Path either way.
    database: str = Field(default="relayer.db", validate_default=True, min_length=1)
    """The ledger of every message and its state: a SQLite file, relative to this file (one
    process), or a PostgreSQL URL (postgresql://user@host:5432/db) that several watchers and
    workers share; its password goes in PGPASSWORD or ~/.pgpass, never here. Attesters started
    with this file keep their own cursor databases beside it (attester-<name>.db)."""
    checkpoints: Path = Field(default="checkpoints", validate_default=True, strict=False)
    """Attestation checkpoint store: one directory per origin domain, relative to this file."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """debug | info | warning | error"""
    health: str = "127.0.0.1:9464"
    """Listen address of /healthz, /readyz, /metrics and /explain; loopback only unless you
    mean to expose them."""
    retention_days: int = Field(default=30, ge=0)
    """Days a delivered, rejected or orphaned message, its history and its evidence are kept
    after it became final; messages in any other state are kept for ever. Attestation files go
    with the last kept message of their block, or, for a block the ledger holds no message of,
    once they are this old: keep it above any delay the relayer may fall behind its attesters.
    0 keeps everything."""
    prune_interval: float = Field(default=3600.0, gt=0)
    """Seconds between the daemon's retention passes (`relayer prune` runs one on demand)."""
    backlog_slo: float = Field(default=600.0, ge=0)
    """Seconds a route's oldest undelivered message may wait, from its observation, before
    /readyz reports the relayer not ready. 0 turns the check off."""
    balance_interval: float = Field(default=60.0, gt=0)
    """Seconds between reads of each delivering key's balance (the relayer_signer_balance
    metric and the min_balance check of /readyz)."""
    reconcile_interval: float = Field(default=300.0, ge=0)
    """Seconds between the reconciler's passes over each origin chain: independent of the event
    stream, it re-reads the final blocks of the last reconcile_window blocks up to the
    watcher's cursor and hands any message the ledger lacks to verification, as the stream
    would have. 0 turns it off; a chain's own reconcile_interval overrides this."""
    reconcile_window: int = Field(default=256, gt=0)
    """Blocks behind the watcher's cursor each reconciler pass re-reads; a chain's own
    reconcile_window overrides this."""

    lease: float = Field(default=30.0, gt=0)
    """Seconds a worker holds the messages it claimed on a shared (PostgreSQL) ledger before
    another may take them over; renewed while it works on them. A dead worker's messages wait
    this long."""

    @field_validator("database")
    @classmethod
    def _database(cls, text: str, info: ValidationInfo) -> str:
        # A string either way (a path is resolved here): the config is validated through JSON,
        # where a Path | str union could not tell a file from a URL.
        if text.startswith(_POSTGRES_SCHEMES):
            try:
                password = urlsplit(text).password
            except ValueError:
                raise ValueError("is not a valid PostgreSQL URL") from None
            if password is not None:
                raise ValueError(
                    "holds a password: put it in PGPASSWORD or ~/.pgpass (libpq reads both), "
                    "never in the config"
                )
            return text
        return str(_resolve_path(Path(text), info))

    @field_validator("checkpoints")
    @classmethod
    def _relative_to_config(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve_path(value, info)

    @property
    def shared_database(self) -> bool:
        """Whether the ledger is a database server that several processes share."""
        return self.database.startswith(_POSTGRES_SCHEMES)

    def attester_database(self, name: str, base_dir: Path) -> Path:
        """Attester ``name``'s own cursor database: beside the ledger file, or in the config's
        folder when the ledger is a server."""
        folder = base_dir if self.shared_database else Path(self.database).parent
        return folder / f"attester-{name}.db"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("health")
    @classmethod
    def _host_port(cls, value: str) -> str:
        _split_host_port(value)
        return value

    @property
    def health_address(self) -> tuple[str, int]:
        """``(host, port)`` of the /healthz, /readyz and /metrics listener."""
        return _split_host_port(self.health)


class Committee(_Table):
    """``[chains.committee]``: the attesters trusted for messages originating on a chain."""

    attesters: tuple[EthAddress, ...] = Field(min_length=1)
    """The attesters' addresses: distinct, non-zero. The destination chains' Gateways are
    deployed with the same set."""
    threshold: int
    """Signatures needed: above half of the attesters, and at most all of them."""

    @field_validator("attesters")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        for address in value:  # checksummed, so equal addresses are equal strings
            if address in seen:
                # One key counted twice would let fewer attesters than the threshold sign.
                raise ValueError(f"attester {address} is listed twice")
            seen.add(address)
        return value

    @field_validator("threshold")
    @classmethod
    def _quorum(cls, value: int, info: ValidationInfo) -> int:
        attesters = info.data.get("attesters")
        if attesters is not None:  # otherwise the attesters' own error is reported
            try:
                check_threshold(value, len(attesters))
            except QuorumError as exc:
                raise ValueError(str(exc)) from None
        return value


class _Unparsed(BaseModel):
    """Stands in for a plugin model that failed, so the shared keys are still checked."""


def _plugin_config(value: object, info: ValidationInfo) -> BaseModel:
    # load_config decodes the plugin's keys with the plugin's own model first, then hands the
    # result over in the context: the table itself goes through JSON-mode validation.
    if isinstance(value, BaseModel):
        return value
    given = info.context.get("plugin") if isinstance(info.context, dict) else None
    if isinstance(given, BaseModel):
        return given
    raise ValueError("expected the chain plugin's decoded config")


class ChainConfig(_Table):
    """One ``[[chains]]`` table: the keys every chain has, and ``plugin``, the plugin's model."""

    name: str
    """Unique name, [a-z0-9-]+; used in logs, metrics and the CLI."""
    type: str = Field(min_length=1)
    """The chain plugin that serves this chain; it decodes the table's other keys."""
    domain: int = Field(ge=0, lt=2**32)
    """Unique u32 domain id: the message's origin/destination field. Not the chain id."""
    # "committee" and "confirmations" are the relayer's own; any other value names a light
    # client the chain's plugin offers (``ChainPlugin.light_client_modes``), checked below.
    finality: str = "committee"
    """Either "committee", "confirmations" (trusts the RPC's view of depth: development only,
    logged as insecure at every start) or a light client of the chain's plugin."""
    committee: Committee | None = None
    """The attesters trusted for messages originating on this chain."""
    block_time: float | None = Field(default=None, gt=0)
    """Seconds between the chain's blocks, as it is meant to make them. Turns on the head
    checks: /readyz reports the chain not ready once its head has not advanced for
    stall_after_blocks block times, and a head subscription silent for as long is restarted.
    Leave it out for a chain that makes blocks only on demand (an automining dev node)."""
    stall_after_blocks: int = Field(default=10, gt=0)
    """Block times without a new head after which the chain counts as stalled (with
    block_time)."""
    min_balance: int | None = Field(default=None, ge=0)
    """/readyz reports not ready while the key that delivers to this chain holds less than
    this, in the chain's smallest unit (wei, planck); a TOML integer, so at most 2**63 - 1."""
    fee_budget_per_hour: int | None = Field(default=None, gt=0)
    """Fees the key that delivers to this chain may pay in any hour, in the chain's smallest
    unit (wei, planck), counted from what the key's mined transactions cost and kept in the
    ledger, so that a restarted worker, or the next to hold the key, goes on from it: once the
    last hour's fees reach it, no new delivery transaction is sent (those in
    flight still confirm) until the hour has room again, and /readyz reports not ready. A TOML
    integer, so at most 2**63 - 1. Default: no budget."""
    reconcile_interval: float | None = Field(default=None, ge=0)
    """Seconds between reconciler passes over this chain as an origin; 0 turns them off for
    this chain. Default: relayer.reconcile_interval."""
    reconcile_window: int | None = Field(default=None, gt=0)
    """Blocks behind the watcher's cursor each reconciler pass over this chain re-reads.
    Default: relayer.reconcile_window."""
    plugin: SerializeAsAny[
        Annotated[BaseModel, PlainValidator(_plugin_config, json_schema_input_type=dict[str, Any])]
    ]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9-]+", value):
            raise ValueError("must be lowercase letters, digits and '-' ([a-z0-9-]+)")
        return value

    @field_validator("finality")
    @classmethod
    def _finality(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9-]+", value):
            raise ValueError(
                'must be "committee", "confirmations" or a light client of the chain\'s '
                'plugin (such as "grandpa" or "sync-committee")'
            )
        return value

    @property
    def light_client_mode(self) -> str | None:
        """The light client that decides finality, or None ("committee", "confirmations")."""
        return None if self.finality in BUILTIN_FINALITY else self.finality

    def plugin_config(self, model: builtins.type[M]) -> M:
        """``plugin`` as the type its plugin expects (``chain.plugin_config(EvmChainConfig)``)."""
        if not isinstance(self.plugin, model):
            raise ConfigError(
                f"chain {self.name!r} of type {self.type!r} has a {type(self.plugin).__name__} "
                f"config, not a {model.__name__}"
            )
        return self.plugin


_CHAIN_KEYS = frozenset(ChainConfig.model_fields) - {"plugin"}


class AttesterConfig(_Table):
    """One ``[[attesters]]`` table: an attester process (``relayer attest --name ...``)."""

    name: str
    """Unique name, given to `relayer attest --name`."""
    key: KeyRef
    """Its signing key; shared with no submitter and no other attester."""
    origins: tuple[str, ...] = Field(min_length=1)
    """The chains it watches and attests messages from."""
    rpc: dict[str, Endpoint] = Field(default_factory=dict)
    """Its own endpoint per origin (default: the chain's rpc). In production give each
    attester its own node: attesters that share the relayer's endpoint are only as honest as
    that endpoint."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError("must be letters, digits, '_', '.' and '-'")
        return value

    @field_validator("origins")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if value.count(origin) > 1:
                raise ValueError(f"chain {origin!r} is listed twice")
        return value

    @field_validator("rpc")
    @classmethod
    def _for_origins(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        origins = info.data.get("origins")
        if origins is not None:
            for chain in value:
                if chain not in origins:
                    raise ValueError(f"has an endpoint for {chain!r}, which is not in origins")
        return value


def _parse_account(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"0x(?:[0-9a-fA-F]{2}){1,32}", value):
        # pydantic turns only ValueError into a validation error, so no TypeError here.
        raise ValueError("must be 0x and an even number of hex digits, at most 64 (32 bytes)")
    return "0x" + value[2:].lower().rjust(64, "0")


#: a message's sender or recipient as the route tables name it: 0x-hex of at most 32 bytes,
#: left-padded to the message's bytes32 field (a 20-byte EVM address as written, a 32-byte
#: public key as it is), normalized to lowercase 0x and 64 hex digits
AccountId = Annotated[str, PlainValidator(_parse_account, json_schema_input_type=str)]

#: what a route is called in the config and on the command line: ``origin->destination``
ROUTE_NAME = re.compile(r"([a-z0-9-]+)->([a-z0-9-]+)")


class RouteSettings(_Table):
    """``[routes."origin->destination"]``: the safety limits of one route. A route without a
    table has these defaults (no allowlist, no rate limit, the breaker on)."""

    senders: tuple[AccountId, ...] = ()
    """Senders whose messages this route delivers, each 0x-hex of at most 32 bytes (compared
    with the message's bytes32 sender, left-padded with zeros: a 20-byte address as written).
    A message from anyone else is recorded rejected, naming this allowlist. Empty: any
    sender."""
    recipients: tuple[AccountId, ...] = ()
    """Recipients this route delivers to, written as senders are. Empty: any recipient."""
    rate_limit: float | None = Field(default=None, gt=0)
    """Messages per second each delivering process sends on this route at most (a token
    bucket): the rest wait their turn in the ledger, nothing is dropped. Per process: N
    workers delivering to one chain from a shared ledger send up to N times this. Default: no
    limit."""
    burst: int | None = Field(default=None, gt=0)
    """Messages the rate limit lets through at once after a quiet spell (the bucket's size).
    Default: rate_limit rounded up, at least 1."""
    pause_after_rejections: int = Field(default=10, ge=0)
    """Verification failures in a row (none more than an hour after the last, no verified
    message in between) that pause the route: evidence that fails verification for a message
    of this route, or an origin endpoint whose answers do not hash together (which pauses
    every route out of that chain). Resume with `relayer route resume origin->destination`.
    0 turns the breaker off."""

    @property
    def bucket_size(self) -> int:
        """``burst``, or its default."""
        if self.burst is not None:
            return self.burst
        return max(1, math.ceil(self.rate_limit or 1.0))


class BusSettings(_Table):
    """``[bus]``: how watchers, workers and attesters tell each other about work."""

    type: Literal["memory", "mqtt"] = "memory"
    """"memory": one process does everything (relayer start --role all). "mqtt": an MQTT v5
    broker ([bus.mqtt]) joins watcher and worker processes (relayer start --role watcher |
    worker) and attesters on other machines; the ledger must then be a PostgreSQL URL."""
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    """[bus.mqtt]: the broker, with type = "mqtt"."""


class Config(_Table):
    """The whole configuration, as ``load_config`` decoded it."""

    relayer: RelayerSettings
    chains: tuple[ChainConfig, ...]
    attesters: tuple[AttesterConfig, ...] = ()
    bus: BusSettings = Field(default_factory=BusSettings)
    #: each ``[routes."a->b"]`` table, by route; a route without one has the defaults
    routes: dict[str, RouteSettings] = Field(default_factory=dict)
    #: the config file's folder; relative paths in the file are relative to it
    base_dir: Path

    def route(self, name: str) -> RouteSettings:
        """The limits of route ``name`` (its table's, or the defaults)."""
        return self.routes.get(name) or _DEFAULT_ROUTE

    @property
    def route_names(self) -> list[str]:
        """Every route between the configured chains (``origin->destination``), in config
        order: what a message can travel, whether or not it has a table."""
        return [
            f"{origin.name}->{destination.name}"
            for origin in self.chains
            for destination in self.chains
            if origin.name != destination.name
        ]

    def check_route(self, name: str) -> tuple[str, str]:
        """``(origin, destination)`` of route ``name``. Raises ``ConfigError`` saying what is
        wrong with it (the form, or a chain that is not configured)."""
        problem = _route_problem(name, {chain.name for chain in self.chains})
        if problem is not None:
            raise ConfigError(f"route {name!r}: {problem}")
        origin, _, destination = name.partition("->")
        return origin, destination

    def chain(self, name: str) -> ChainConfig:
        """Raises ``UnknownChainError`` listing the configured chains."""
        for chain in self.chains:
            if chain.name == name:
                return chain
        known = ", ".join(chain.name for chain in self.chains) or "none"
        raise UnknownChainError(f"no chain named {name!r} is configured (configured: {known})")

    def chain_by_domain(self, domain: int) -> ChainConfig:
        """Raises ``UnknownChainError`` listing the configured domains."""
        for chain in self.chains:
            if chain.domain == domain:
                return chain
        known = ", ".join(f"{chain.domain} ({chain.name})" for chain in self.chains) or "none"
        raise UnknownChainError(f"no chain has domain {domain} (configured: {known})")

    def attester(self, name: str) -> AttesterConfig:
        """Raises ``ConfigError`` listing the configured attesters."""
        for attester in self.attesters:
            if attester.name == name:
                return attester
        known = ", ".join(attester.name for attester in self.attesters) or "none"
        raise ConfigError(f"no [[attesters]] table is named {name!r} (configured: {known})")

    def attester_rpc(self, attester: AttesterConfig, origin: str) -> str:
        """The endpoint ``attester`` uses for ``origin``: its own, else the chain's ``rpc``."""
        if origin in attester.rpc:
            return attester.rpc[origin]
        chain = self.chain(origin)
        rpc = load_plugin(chain.type).default_rpc(chain)
        if rpc is None:
            raise ConfigError(
                f'attesters[name="{attester.name}"].rpc: chain {origin!r} has no rpc of its own; '
                f"give the attester one"
            )
        return rpc


_DEFAULT_ROUTE = RouteSettings()


def _route_problem(name: str, chain_names: Iterable[str]) -> str | None:
    """What is wrong with a route's name, or None."""
    match = ROUTE_NAME.fullmatch(name)
    if match is None:
        return 'a route is written "origin->destination" (e.g. "chain-a->chain-b")'
    if match.group(1) == match.group(2):
        return "origin and destination are the same chain"
    known = sorted(chain_names)
    unknown = [chain for chain in match.groups() if chain not in known]
    if unknown:
        listed = ", ".join(known) or "none"
        return f"unknown chain {unknown[0]!r} (configured chains: {listed})"
    return None


# --- loading -------------------------------------------------------------------------------------

_TOP_LEVEL = ("relayer", "chains", "attesters", "bus", "routes")
# What makes [relayer] database a PostgreSQL server rather than a SQLite file.
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-((?:(?!\$\{)[^}])*))?\}")
# A field whose name says it holds key material; everything below it is key-ish too.
_KEYISH = re.compile(r"key|secret|priv|seed|mnemonic|passw|signer|wallet", re.I)
# Names that only ever hold a raw secret, wherever they appear.
_SECRET_FIELDS = frozenset({"private_key", "privkey", "priv_key", "secret_key", "mnemonic"})
# Names that hold a raw secret inside a key table (``submitter_key = { hex = ... }``).
_SECRET_IN_KEY_TABLE = frozenset({"raw", "hex"})
# 64 hex digits anywhere in the value: also a key given as a ${VAR:-default}.
_HEX_SECRET = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[Loc, str]] = []

    def add(self, loc: Loc, message: str) -> None:
        if (loc, message) not in self.items:
            self.items.append((loc, message))

    def covers(self, loc: Loc) -> bool:
        """Whether a problem is already reported at, above or below ``loc``: a value refused
        before decoding is not reported again by the decoder."""
        return any(loc[: len(seen)] == seen or seen[: len(loc)] == loc for seen, _ in self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


def load_config(
    path: str | os.PathLike[str],
    *,
    plugin_models: Mapping[str, type[BaseModel]] | None = None,
    env: Mapping[str, str] = os.environ,
) -> Config:
    """Read, expand and decode the config file; raise one ``ConfigError`` listing every problem.

    ``plugin_models`` maps a chain ``type`` to the model decoding the rest of its table; ``None``
    asks the installed plugin (``load_plugin(type).config_model``). Keys are not loaded here:
    ``check_config`` does that."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The decoder's message gives line and column, never the offending text.
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None

    base_dir = path.resolve().parent
    problems = _Problems()
    variables: set[Loc] = set()
    doc = _expand(raw, (), env, problems, variables)
    _scan_raw_keys(raw, (), False, problems)
    render = _renderer(doc)
    config = _decode(doc, base_dir, plugin_models, problems, render, frozenset(variables))
    if problems or config is None:
        raise ConfigRefusedError(
            str(path), [f"{render(loc)}: {msg}" for loc, msg in problems.items]
        )
    return config


def check_config(
    config: Config, *, env: Mapping[str, str] = os.environ, resolve_keys: bool = True
) -> list[str]:
    """Refuse unsafe settings (one ``ConfigError`` listing all); return the warnings.

    With ``resolve_keys`` every key is loaded: a malformed key or wrong password is refused, a
    variable or keystore absent on this host only warned about (the key may live elsewhere), and
    keys that resolve are compared by address as well as by reference."""
    render = _renderer(
        {
            "chains": [{"name": chain.name} for chain in config.chains],
            "attesters": [{"name": attester.name} for attester in config.attesters],
        }
    )
    chains = list(enumerate(config.chains))
    attesters = list(enumerate(config.attesters))
    problems = _Problems()
    _cross_check(chains, attesters, {chain.name for chain in config.chains}, problems, render)
    warnings = _warnings(config, chains)
    if resolve_keys:
        _check_keys(
            config, chains, attesters, env=env, problems=problems, warnings=warnings, render=render
        )
    if problems:
        raise ConfigRefusedError(
            "configuration", [f"{render(loc)}: {msg}" for loc, msg in problems.items]
        )
    return [f"{render(loc)}: {msg}" for loc, msg in warnings]


def _expand(
    node: Any, loc: Loc, env: Mapping[str, str], problems: _Problems, variables: set[Loc]
) -> Any:
    """``node`` with every ``${VAR}`` replaced; the location of each string that held one is
    added to ``variables``: only there may a string stand for a number (``_validate``)."""
    if isinstance(node, dict):
        return {
            key: _expand(value, (*loc, key), env, problems, variables)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_expand(value, (*loc, i), env, problems, variables) for i, value in enumerate(node)]
    if isinstance(node, datetime.date | datetime.time):  # datetime is a date
        problems.add(loc, "is a TOML date or time, which no setting takes (quote it for a string)")
        return None
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if default is not None and not value:  # as in the shell: unset or empty
            return default
        if value is None:
            problems.add(
                loc,
                f"environment variable {name} is not set "
                f"(set it, or give a default: ${{{name}:-...}})",
            )
            return match.group(0)
        return value

    expanded = _VARIABLE.sub(substitute, node)
    if "${" in _VARIABLE.sub("", node):
        problems.add(loc, "malformed variable reference: write ${NAME} or ${NAME:-default}")
    if _VARIABLE.search(node):
        variables.add(loc)
    return expanded


def _scan_raw_keys(node: Any, loc: Loc, keyish: bool, problems: _Problems) -> None:
    # Runs on the file as written, before expansion: a key that arrives through ${VAR} is not in
    # the file, and one that is in the file must be refused whatever field it sits in.
    if isinstance(node, dict):
        for key, value in node.items():
            name = key.lower()
            if name in _SECRET_FIELDS or (keyish and name in _SECRET_IN_KEY_TABLE):
                problems.add((*loc, key), RAW_KEY_REFUSAL)
                continue
            _scan_raw_keys(value, (*loc, key), keyish or bool(_KEYISH.search(key)), problems)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _scan_raw_keys(value, (*loc, i), keyish, problems)
    elif isinstance(node, str) and keyish and _HEX_SECRET.search(node):
        problems.add(loc, RAW_KEY_REFUSAL)


def _renderer(doc: Mapping[str, Any]) -> Callable[[Loc], str]:
    """``("chains", 0, "committee", "threshold")`` → ``chains[name="a"].committee.threshold``."""

    def render(loc: Loc) -> str:
        parts: list[str] = []
        rest: Sequence[str | int] = loc
        if len(loc) >= 2 and loc[0] in ("chains", "attesters") and isinstance(loc[1], int):
            tables = doc.get(str(loc[0]))
            table = tables[loc[1]] if isinstance(tables, list) and loc[1] < len(tables) else None
            name = table.get("name") if isinstance(table, dict) else None
            if isinstance(name, str) and name:
                parts.append(f"{loc[0]}[name={json.dumps(name)}]")
            else:
                parts.append(f"{loc[0]}[{loc[1]}]")
            rest = loc[2:]
        for part in rest:
            if isinstance(part, int) and parts:
                parts[-1] += f"[{part}]"
            elif re.fullmatch(r"[A-Za-z0-9_-]*", str(part)):
                parts.append(str(part))
            else:  # as TOML writes such a key: routes."chain-a->chain-b"
                parts.append(json.dumps(str(part)))
        return ".".join(parts) or "(top level)"

    return render


class _PluginModels:
    def __init__(self, given: Mapping[str, type[BaseModel]] | None) -> None:
        self.given = given
        self.loaded: dict[str, type[BaseModel]] = {}

    def model(self, kind: str) -> type[BaseModel]:
        """Raises ``ConfigError`` / ``UnknownChainError`` naming the type."""
        if self.given is not None:
            model = self.given.get(kind)
            if model is None:
                known = ", ".join(sorted(self.given)) or "none"
                raise UnknownChainError(
                    f"no chain plugin of type {kind!r} is installed (installed: {known})"
                )
            return model
        if kind not in self.loaded:
            try:
                plugin = load_plugin(kind)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(
                    f"chain plugin {kind!r} is installed but fails to load: {exc}"
                ) from None
            try:
                model = plugin.config_model
            except AttributeError:
                model = None
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ConfigError(f"chain plugin {kind!r} has no pydantic config_model")
            self.loaded[kind] = model
        return self.loaded[kind]


def _decode(
    doc: dict[str, Any],
    base_dir: Path,
    plugin_models: Mapping[str, type[BaseModel]] | None,
    problems: _Problems,
    render: Callable[[Loc], str],
    variables: frozenset[Loc],
) -> Config | None:
    context: dict[str, Any] = {"base_dir": base_dir}
    for key in doc:
        if key not in _TOP_LEVEL:
            problems.add((key,), _unknown_key(key, _TOP_LEVEL))

    relayer: RelayerSettings | None = None
    section = doc.get("relayer", {})
    if not isinstance(section, dict):
        problems.add(("relayer",), "expected a [relayer] table")
    else:
        relayer = _validate(
            RelayerSettings, section, context, ("relayer",), problems, variables=variables
        )

    chain_tables = _tables(doc, "chains", problems)
    if doc.get("chains") in (None, []):
        problems.add(("chains",), "no [[chains]] table: configure at least one chain")
    models = _PluginModels(plugin_models)
    chains: list[tuple[int, ChainConfig]] = []
    for i, table in chain_tables:
        chain = _decode_chain(i, table, models, context, problems, variables)
        if chain is not None:
            chains.append((i, chain))

    attesters: list[tuple[int, AttesterConfig]] = []
    for i, table in _tables(doc, "attesters", problems):
        attester = _validate(
            AttesterConfig, table, context, ("attesters", i), problems, variables=variables
        )
        if attester is not None:
            attesters.append((i, attester))

    bus: BusSettings | None = BusSettings()
    bus_section = doc.get("bus", {})
    if not isinstance(bus_section, dict):
        problems.add(("bus",), "expected a [bus] table")
    else:
        bus = _validate(BusSettings, bus_section, context, ("bus",), problems, variables=variables)
        if (
            bus is not None
            and relayer is not None
            and bus.type == "mqtt"
            and not relayer.shared_database
        ):
            problems.add(
                ("relayer", "database"),
                'with [bus] type = "mqtt" the ledger must be a PostgreSQL URL that every '
                "process shares (a SQLite file is one process's)",
            )

    named = {name for _, t in chain_tables if isinstance(name := t.get("name"), str)}
    _cross_check(chains, attesters, named, problems, render)
    routes = _decode_routes(doc, named, context, problems, variables)
    if problems or relayer is None or bus is None:
        return None
    return Config(
        relayer=relayer,
        chains=tuple(chain for _, chain in chains),
        attesters=tuple(attester for _, attester in attesters),
        bus=bus,
        routes=routes,
        base_dir=base_dir,
    )


def _decode_routes(
    doc: dict[str, Any],
    chain_names: set[str],
    context: dict[str, Any],
    problems: _Problems,
    variables: frozenset[Loc],
) -> dict[str, RouteSettings]:
    section = doc.get("routes", {})
    if not isinstance(section, dict):
        problems.add(("routes",), 'expected [routes."origin->destination"] tables')
        return {}
    routes: dict[str, RouteSettings] = {}
    for name, table in section.items():
        loc: Loc = ("routes", name)
        problem = _route_problem(name, chain_names)
        if problem is not None:
            problems.add(loc, problem)
            continue
        if not isinstance(table, dict):
            problems.add(loc, "expected a table")
            continue
        settings = _validate(RouteSettings, table, context, loc, problems, variables=variables)
        if settings is not None:
            routes[name] = settings
    return routes


def _tables(
    doc: dict[str, Any], section: str, problems: _Problems
) -> list[tuple[int, dict[str, Any]]]:
    value = doc.get(section, [])
    if not isinstance(value, list):
        problems.add((section,), f"expected [[{section}]] tables")
        return []
    tables: list[tuple[int, dict[str, Any]]] = []
    for i, table in enumerate(value):
        if isinstance(table, dict):
            tables.append((i, table))
        else:
            problems.add((section, i), f"expected a [[{section}]] table")
    return tables


def _decode_chain(
    index: int,
    table: dict[str, Any],
    models: _PluginModels,
    context: dict[str, Any],
    problems: _Problems,
    variables: frozenset[Loc],
) -> ChainConfig | None:
    loc: Loc = ("chains", index)
    shared = {key: value for key, value in table.items() if key in _CHAIN_KEYS}
    own = {key: value for key, value in table.items() if key not in _CHAIN_KEYS}
    model: type[BaseModel] | None = None
    kind = table.get("type")
    if isinstance(kind, str) and kind:
        try:
            model = models.model(kind)
        except (UnknownChainError, ConfigError) as exc:
            problems.add((*loc, "type"), str(exc))
    plugin: BaseModel | None = None
    if model is not None:
        plugin = _validate(
            model, own, context, loc, problems, variables=variables, also_known=_CHAIN_KEYS
        )
        if plugin is not None and model.model_config.get("extra") != "forbid":
            # A third-party model that ignores unknown keys would hide typos; we do not.
            for key in sorted(set(own) - set(model.model_fields)):
                problems.add((*loc, key), _unknown_key(key, [*_CHAIN_KEYS, *model.model_fields]))
    chain = _validate(
        ChainConfig,
        {**shared, "plugin": {}},
        {**context, "plugin": plugin or _Unparsed()},
        loc,
        problems,
        variables=variables,
    )
    return chain if plugin is not None else None


def _validate(
    model: type[M],
    data: Mapping[str, Any],
    context: dict[str, Any],
    loc: Loc,
    problems: _Problems,
    *,
    variables: frozenset[Loc],
    also_known: Iterable[str] = (),
) -> M | None:
    """``data`` (the table at ``loc``) decoded by ``model`` in strict mode, or None with its
    problems added.

    Strict as JSON is: a TOML array is a tuple and a string a path, but "1000", 1000.0 and true
    are not the integer 1000, for any model, a plugin's own included. A ``${VAR}``'s value is a
    string; where the model refuses it as one, it is read as the TOML number or boolean it
    spells (``CHAIN_ID=31337``). No other string is: a quoted number in the file is a typo.
    """
    try:
        return _strict(model, data, context)
    except ValidationError as exc:
        first = exc.errors(include_url=False)
    spelled: dict[Loc, int | float | bool] = {}
    for error in first:
        where: Loc = (*loc, *error["loc"])
        origin = next((v for v in variables if where[: len(v)] == v), None)
        if origin is None or len(origin) <= len(loc):
            continue
        value = _spelled_scalar(_at(data, origin[len(loc) :]))
        if value is not None:
            spelled[origin[len(loc) :]] = value
    errors = first
    if spelled:
        try:
            return _strict(model, _replaced(data, spelled), context)
        except ValidationError as exc:
            second = exc.errors(include_url=False)

        # Where the field wants a string after all, say why the string was refused.
        wanted_string = {
            at
            for at in spelled
            for e in second
            if tuple(e["loc"][: len(at)]) == at and e["type"] == "string_type"
        }
        errors = [
            e for e in second if not any(tuple(e["loc"][: len(at)]) == at for at in wanted_string)
        ]
        errors += [
            e for e in first if any(tuple(e["loc"][: len(at)]) == at for at in wanted_string)
        ]
    for error in errors:
        where = (*loc, *error["loc"])
        if problems.covers(where):
            continue
        from_variable = any(where[: len(v)] == v for v in variables)
        problems.add(where, _message(model, error, also_known, from_variable=from_variable))
    return None


def _strict(model: type[M], data: Mapping[str, Any], context: dict[str, Any]) -> M:
    # Through JSON, as TOML's values are JSON's (dates and times were refused in _expand).
    return model.model_validate_json(json.dumps(data), strict=True, context=context)


def _at(node: Any, path: Loc) -> Any:
    for part in path:
        node = node[part]
    return node


def _replaced(node: Any, values: Mapping[Loc, Any], path: Loc = ()) -> Any:
    if path in values:
        return values[path]
    if isinstance(node, Mapping):
        return {key: _replaced(value, values, (*path, key)) for key, value in node.items()}
    if isinstance(node, list):
        return [_replaced(value, values, (*path, i)) for i, value in enumerate(node)]
    return node


# What may spell a TOML number or boolean: digits, signs, '.', '_', exponents, 0x/0o/0b, inf.
_SCALAR = re.compile(r"[+-]?[0-9A-Za-z_.+-]+")


def _spelled_scalar(value: object) -> int | float | bool | None:
    """The TOML integer, float or boolean a variable's string spells, or None."""
    if not isinstance(value, str) or not _SCALAR.fullmatch(value.strip()):
        return None
    try:
        parsed = tomllib.loads(f"value = {value.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        return None
    return parsed if isinstance(parsed, int | float | bool) else None


#: what each of pydantic's strict type errors expects, in TOML's words
_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "tuple_type": "an array",
    "list_type": "an array",
    "finite_number": "a finite number",
}


def _message(
    model: type[BaseModel], error: Any, also_known: Iterable[str], *, from_variable: bool = False
) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        key_loc = tuple(error["loc"])
        known = _fields_at(model, key_loc[:-1])
        if len(key_loc) == 1:
            known = [*also_known, *known]
        return _unknown_key(str(key_loc[-1]), known)
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "expected a table"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind in _EXPECTED:
        if from_variable:
            return f"must be {_EXPECTED[kind]}; the value of its ${{...}} variable is not one"
        # The input's TOML type, never its value (it may be a secret or an endpoint's key).
        return f"must be {_EXPECTED[kind]}, not {_toml_type(error.get('input'))}"
    return str(error["msg"])


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float" + (" (write integers without a fraction)" if value.is_integer() else "")
    if isinstance(value, str):
        if _spelled_scalar(value) is not None:
            # Quoted numbers are read as numbers only where they come from ${VAR}.
            return "a string (write numbers and booleans without quotes)"
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "this kind of value"


def _unknown_key(key: str, known: Iterable[str]) -> str:
    known = sorted(set(known))
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key (known keys: {', '.join(known) or 'none'})"


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys allowed in the table at ``loc`` inside ``model``, for "unknown key" messages."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            args = [a for a in get_args(current) if a is not Ellipsis]
            current = args[0] if args else None
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = field.annotation
        if get_origin(current) in (Union, type(int | None)):
            members = [a for a in get_args(current) if a is not type(None)]
            current = members[0] if len(members) == 1 else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


# --- checks --------------------------------------------------------------------------------------


def _key_refs(
    chains: Sequence[tuple[int, ChainConfig]], attesters: Sequence[tuple[int, AttesterConfig]]
) -> list[tuple[Loc, ChainConfig | None, KeyRef]]:
    """Every key reference, with its location and the chain whose plugin decodes it (None: an
    attester's, a committee key); submitters first, so that a shared key is reported at the
    attester, which must change it."""
    refs: list[tuple[Loc, ChainConfig | None, KeyRef]] = [
        (("chains", i, field), chain, value)
        for i, chain in chains
        for field, value in chain.plugin
        if isinstance(value, KeyRef)
    ]
    refs.extend((("attesters", i, "key"), None, attester.key) for i, attester in attesters)
    return refs


def _cross_check(
    chains: Sequence[tuple[int, ChainConfig]],
    attesters: Sequence[tuple[int, AttesterConfig]],
    chain_names: set[str],
    problems: _Problems,
    render: Callable[[Loc], str],
) -> None:
    """Refusals that look across tables and need no key."""
    by_name: dict[str, int] = {}
    by_domain: dict[int, ChainConfig] = {}
    for i, chain in chains:
        if chain.name in by_name:
            problems.add(("chains", i, "name"), f"another [[chains]] table is named {chain.name!r}")
        by_name.setdefault(chain.name, i)
        first = by_domain.setdefault(chain.domain, chain)
        if first is not chain:
            problems.add(
                ("chains", i, "domain"),
                f"domain {chain.domain} is already used by chain {first.name!r}; "
                "domains must be unique",
            )
        if chain.finality != "confirmations" and chain.committee is None:
            problems.add(
                ("chains", i, "committee"),
                f'required with finality = "{chain.finality}": a [chains.committee] table with '
                "the attesters trusted for messages from this chain and their threshold",
            )
        mode = chain.light_client_mode
        if mode is not None:
            offered = _light_client_modes(chain)
            if offered is not None and mode not in offered:
                choices = ", ".join(f'"{m}"' for m in (*BUILTIN_FINALITY, *sorted(offered)))
                problems.add(
                    ("chains", i, "finality"),
                    f'"{mode}" is not a finality mode of {chain.type} chains (choose from '
                    f"{choices})",
                )
            elif offered is not None:
                for problem in load_plugin(chain.type).finality_problems(chain):
                    problems.add(("chains", i, "finality"), problem)

    attester_names: set[str] = set()
    for i, attester in attesters:
        if attester.name in attester_names:
            problems.add(
                ("attesters", i, "name"), f"another [[attesters]] table is named {attester.name!r}"
            )
        attester_names.add(attester.name)
        for origin in attester.origins:
            if origin not in chain_names:
                known = ", ".join(sorted(chain_names)) or "none"
                problems.add(
                    ("attesters", i, "origins"),
                    f"unknown chain {origin!r} (configured chains: {known})",
                )

    # An attester's key must be its own: shared with a submitter, one compromise forges and
    # delivers at once; shared with another attester, one key counts twice toward the threshold.
    first_by_identity: dict[str, tuple[Loc, bool]] = {}
    for loc, owner, ref in _key_refs(chains, attesters):
        is_attester = owner is None
        seen = first_by_identity.get(ref.identity)
        if seen is None:
            first_by_identity[ref.identity] = (loc, is_attester)
        elif is_attester or seen[1]:
            problems.add(loc, f"the same key ({ref.identity}) as {render(seen[0])}; {_OWN_KEY}")


_OWN_KEY = "an attester needs a key of its own, shared with no submitter and no other attester"


def _warnings(config: Config, chains: Sequence[tuple[int, ChainConfig]]) -> list[tuple[Loc, str]]:
    warnings: list[tuple[Loc, str]] = []
    host, _ = config.relayer.health_address
    if not _is_loopback(host):
        warnings.append(
            (
                ("relayer", "health"),
                "listens beyond loopback: /metrics and /healthz are reachable from the network",
            )
        )
    for i, chain in chains:
        if chain.finality == "confirmations":
            warnings.append(
                (
                    ("chains", i, "finality"),
                    '"confirmations" trusts the RPC endpoint\'s view of the chain; INSECURE, '
                    "for development only",
                )
            )
        warnings.extend((("chains", i), warning) for warning in _plugin_warnings(chain))
        if _submitter_key(chain) is None:
            warnings.append(
                (
                    ("chains", i),
                    "no submitter_key: this chain cannot be a destination; messages to it will "
                    "wait undelivered",
                )
            )
    return warnings


def _light_client_modes(chain: ChainConfig) -> frozenset[str] | None:
    """The light clients ``chain``'s plugin offers; None when the plugin is not there (its
    absence is reported on ``type``)."""
    try:
        return frozenset(load_plugin(chain.type).light_client_modes)
    except UnknownChainError:
        return None


def _plugin_warnings(chain: ChainConfig) -> Sequence[str]:
    try:
        return load_plugin(chain.type).warnings(chain)
    except UnknownChainError:
        return ()  # decoded by a model given to load_config, with no plugin installed


def _submitter_key(chain: ChainConfig) -> KeyRef | None:
    try:
        return load_plugin(chain.type).submitter_key(chain)
    except UnknownChainError:
        return None  # decoded by a model given to load_config, with no plugin installed


def _load_key(
    chain: ChainConfig | None, ref: KeyRef, base_dir: Path, env: Mapping[str, str]
) -> Signer:
    if chain is None:
        return load_ecdsa_key(ref, base_dir, env=env)
    return load_plugin(chain.type).load_signer(chain, ref, base_dir=base_dir, env=env)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_keys(
    config: Config,
    chains: Sequence[tuple[int, ChainConfig]],
    attesters: Sequence[tuple[int, AttesterConfig]],
    *,
    env: Mapping[str, str],
    problems: _Problems,
    warnings: list[tuple[Loc, str]],
    render: Callable[[Loc], str],
) -> None:
    loaded: dict[str, Signer | None] = {}
    address_of: dict[Loc, bytes] = {}
    first_by_address: dict[bytes, tuple[Loc, bool, str]] = {}
    for loc, chain, ref in _key_refs(chains, attesters):
        is_attester = chain is None
        if ref.identity not in loaded:
            try:
                loaded[ref.identity] = _load_key(chain, ref, config.base_dir, env)
            except KeyUnavailableError as exc:
                loaded[ref.identity] = None
                warnings.append((loc, f"key not checked on this host: {exc}"))
            except ConfigError as exc:
                loaded[ref.identity] = None
                problems.add(loc, str(exc))
        key = loaded[ref.identity]
        if key is None:
            continue
        address_of[loc] = key.address
        seen = first_by_address.get(key.address)
        if seen is None:
            first_by_address[key.address] = (loc, is_attester, ref.identity)
        elif (is_attester or seen[1]) and seen[2] != ref.identity:  # same identity: reported
            problems.add(
                loc,
                f"resolves to the same address ({key.printable_address}) as the key of "
                f"{render(seen[0])}; {_OWN_KEY}",
            )

    # Attesters may run on other hosts, so a committee that differs from the attesters
    # configured here is worth a warning, not a refusal.
    attesters_by_index = {j: attester.name for j, attester in attesters}
    for i, chain in chains:
        if chain.committee is None:
            continue
        watching = [j for j, attester in attesters if chain.name in attester.origins]
        local = {
            address_of[("attesters", j, "key")]: attesters_by_index[j]
            for j in watching
            if ("attesters", j, "key") in address_of
        }
        if not local:
            continue
        members = {bytes.fromhex(a[2:]) for a in chain.committee.attesters}
        outside = [
            f"{name} ({to_checksum_address(a)})" for a, name in local.items() if a not in members
        ]
        # With a key not resolved here, a member may well be that attester: do not guess.
        absent = [
            a
            for a in chain.committee.attesters
            if len(local) == len(watching) and bytes.fromhex(a[2:]) not in local
        ]
        if outside or absent:
            notes = []
            if outside:
                notes.append(f"configured attesters outside the committee: {', '.join(outside)}")
            if absent:
                notes.append(f"members with no [[attesters]] table here: {', '.join(absent)}")
            warnings.append(
                (("chains", i, "committee", "attesters"), "; ".join(notes) + " (may run elsewhere)")
            )


# --- reference: the JSON schema and the commented skeleton ---------------------------------------

# ChainConfig.committee's default is None, but _cross_check requires it unless this holds.
_COMMITTEE_OPTIONAL_WITH = 'finality = "confirmations"'
_SKELETON_HEADER = """\
# Relayer configuration: every key, each marked [Required] or [Default: ...].
#
# Printed by `relayer config default` for the chain plugins installed here: one [[chains]] table
# per plugin (write one table per chain, of the plugin that serves it) and one [[attesters]]
# table. Fill in every [Required] value, then check the file: relayer config check -c FILE.
# `relayer config schema` prints the JSON schema of this file, for editors.
#
# String values may use ${VAR} and ${VAR:-default}, and so may numbers and booleans
# (chain_id = "${CHAIN_ID}"): a quoted number is read as one only where it comes from ${VAR}.
# Keys are never written in this file: a key is named by where it lives, either
#   { env = "VAR" }                                   the key in that environment variable, or
#   { keystore = "key.json", password_env = "VAR" }   an encrypted key file (path relative to
#                                                     this file) and its password's variable.
"""


def installed_chain_models() -> dict[str, type[BaseModel]]:
    """Each installed chain plugin's config model, by chain ``type`` in name order. Raises
    ``ConfigError`` naming a plugin that fails to load or has no pydantic ``config_model``."""
    models = _PluginModels(None)
    names = sorted({entry.name for entry in entry_points(group=ENTRY_POINT_GROUP)})
    return {name: models.model(name) for name in names}


def config_schema(plugin_models: Mapping[str, type[BaseModel]]) -> dict[str, Any]:
    """The JSON schema of the config file, for editors: a ``[[chains]]`` table is one of the
    plugins' chain tables, told apart by ``type`` (a discriminated union).

    A schema of the file as written: ``${VAR}`` strings where numbers belong are not in it, and
    the checks across tables and keys (``check_config``) are not either."""
    if not plugin_models:
        raise ConfigError("no chain plugin is installed: no [[chains]] table could be decoded")
    tables = [_chain_table(kind, model) for kind, model in sorted(plugin_models.items())]
    chain: Any = (
        tables[0]
        if len(tables) == 1
        else Annotated[Union[tuple(tables)], Field(discriminator="type")]  # noqa: UP007
    )
    document = create_model(
        "RelayerConfigFile",
        __config__=ConfigDict(extra="forbid", title="relayer configuration"),
        __doc__="The relayer's config file (TOML): `relayer config default` prints a skeleton.",
        relayer=(
            RelayerSettings,
            Field(default_factory=RelayerSettings, description=RelayerSettings.__doc__),
        ),
        chains=(list[chain], Field(min_length=1, description="One table per chain.")),
        attesters=(
            list[AttesterConfig],
            Field(default_factory=list, description=AttesterConfig.__doc__),
        ),
        bus=(BusSettings, Field(default_factory=BusSettings, description=BusSettings.__doc__)),
        routes=(
            dict[str, RouteSettings],
            Field(default_factory=dict, description=RouteSettings.__doc__),
        ),
    )
    schema = document.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def _chain_table(kind: str, model: type[BaseModel]) -> type[BaseModel]:
    """One ``[[chains]]`` table of ``kind`` as a single model: the shared keys, then the
    plugin's."""
    fields: dict[str, Any] = {}
    for name, info in ChainConfig.model_fields.items():
        if name == "type":
            fields[name] = (Literal[kind], Field(description=info.description))
        elif name != "plugin":
            fields[name] = (info.annotation, info)
    fields.update((name, (info.annotation, info)) for name, info in model.model_fields.items())
    title = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", kind)) + "Chain"
    return create_model(
        title,
        __config__=ConfigDict(extra="forbid", title=f"[[chains]] of type {kind!r}"),
        __doc__=model.__doc__,
        **fields,
    )


def config_skeleton(plugin_models: Mapping[str, type[BaseModel]]) -> str:
    """A complete config file: every key of every table, with its description, marked
    ``[Required]`` (with a placeholder that never passes the checks) or ``[Default: ...]``."""
    lines = [_SKELETON_HEADER, "[relayer]", *_skeleton_keys(RelayerSettings, "relayer")]
    for kind, model in sorted(plugin_models.items()):
        lines += ["", "", "[[chains]]"]
        shared = {name: info for name, info in ChainConfig.model_fields.items() if name != "plugin"}
        for name, info in shared.items():
            if name == "type":
                lines += _skeleton_key(name, info, value=_toml(kind), marker="[Required]")
            elif name != "committee":
                lines += _skeleton_key(name, info)
        lines.append(f"# --- keys of the {kind} plugin ".ljust(99, "-"))
        lines += _skeleton_keys(model, "chains")
        lines += [
            "",
            *_comment(shared["committee"].description, "  "),
            _with_marker("  [chains.committee]", f"[Required unless {_COMMITTEE_OPTIONAL_WITH}]"),
            *_skeleton_keys(Committee, "chains.committee", "  "),
        ]
    lines += ["", "", "[[attesters]]", *_skeleton_keys(AttesterConfig, "attesters")]
    lines += ["", "", "[bus]", *_skeleton_key("type", BusSettings.model_fields["type"])]
    lines += ["", *_comment(BusSettings.model_fields["mqtt"].description, ""), "[bus.mqtt]"]
    lines += _skeleton_keys(MqttSettings, "bus.mqtt")
    # Commented out whole: a route names two chains of the file, which a skeleton cannot know.
    about = (
        "The safety limits of a route (origin->destination): a route without a table has the "
        "defaults shown (no allowlist, no rate limit, the breaker on)."
    )
    lines += ["", "", *_comment(about, ""), '# [routes."chain-a->chain-b"]']
    lines += [
        line if line.lstrip().startswith("#") else "# " + line.replace("   # [", " # [", 1)
        for line in _skeleton_keys(RouteSettings, "routes")
    ]
    return "\n".join(lines) + "\n"


def _skeleton_keys(model: type[BaseModel], table: str, indent: str = "") -> list[str]:
    lines: list[str] = []
    for name, info in model.model_fields.items():
        nested = _table_model(info.annotation)
        if nested not in (None, KeyRef):
            assert nested is not None
            lines += _skeleton_inline_table(name, info, nested, f"{table}.{name}", indent)
        else:
            lines += _skeleton_key(name, info, indent=indent)
    return lines


def _skeleton_inline_table(
    name: str, info: FieldInfo, model: type[BaseModel], table: str, indent: str
) -> list[str]:
    """An optional sub-table as one commented inline table (its keys' descriptions above it):
    a [chains.x] header in a skeleton would capture every key written after it."""
    if info.is_required():
        raise ConfigError(f"{table}: a required nested table the skeleton cannot write yet")
    lines = _comment(info.description, indent)
    parts = []
    for key, sub in model.model_fields.items():
        if _table_model(sub.annotation) not in (None, KeyRef):
            raise ConfigError(f"{table}.{key}: a nested table the skeleton cannot write yet")
        if sub.is_required():
            value, marker = _placeholder(sub.annotation), "required"
        else:
            default = sub.get_default(call_default_factory=True)
            value = _placeholder(sub.annotation) if default is None else _toml(default)
            marker = "default: none" if default is None else f"default: {value}"
        parts.append(f"{key} = {value}")
        lines += _comment(f"{key} ({marker}): {sub.description or ''}", indent + "  ")
    line = f"{indent}# {name} = {{ {', '.join(parts)} }}"
    return [*lines, _with_marker(line, "[Default: none]")]


def _skeleton_key(
    name: str,
    info: FieldInfo,
    *,
    indent: str = "",
    value: str | None = None,
    marker: str | None = None,
) -> list[str]:
    commented = False
    if value is None:
        if info.is_required():
            value, marker = _placeholder(info.annotation), "[Required]"
        else:
            default = info.get_default(call_default_factory=True)
            if default is None:
                # TOML has no null: the key is left out, shown here commented.
                value, marker, commented = _placeholder(info.annotation), "[Default: none]", True
            else:
                value = _toml(default)
                marker = f"[Default: {value}]"
    line = f"{indent}{'# ' if commented else ''}{name} = {value}"
    return [*_comment(info.description, indent), _with_marker(line, marker or "")]


def _with_marker(line: str, marker: str) -> str:
    return f"{line.ljust(40)} # {marker}" if marker else line


def _comment(text: str | None, indent: str) -> list[str]:
    if not text:
        return []
    words = " ".join(text.split())
    width = 98 - len(indent)
    return [f"{indent}# {line}" for line in textwrap.wrap(words, width, break_on_hyphens=False)]


def _table_model(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _placeholder(annotation: Any) -> str:
    """An empty value of the field's TOML type, which no check lets through unchanged."""
    if _table_model(annotation) is KeyRef:
        return '{ env = "" }'
    if get_origin(annotation) is Annotated:
        return _placeholder(get_args(annotation)[0])
    if get_origin(annotation) in (Union, type(int | None)):
        members = [a for a in get_args(annotation) if a is not type(None)]
        return _placeholder(members[0])
    placeholders: dict[Any, str] = {int: "0", float: "0.0", bool: "false"}
    if annotation in placeholders:
        return placeholders[annotation]
    if get_origin(annotation) in (tuple, list):
        return "[]"
    if get_origin(annotation) is dict:
        return "{}"
    return '""'


def _toml(value: Any) -> str:
    """``value`` as TOML writes it (strings as basic strings, whose escapes are JSON's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(f"{key} = {_toml(item)}" for key, item in value.items())
        return f"{{ {pairs} }}" if pairs else "{}"
    if isinstance(value, BaseModel):
        return _toml(value.model_dump(exclude_none=True, mode="json"))
    raise TypeError(f"no TOML form for {type(value).__name__}")
