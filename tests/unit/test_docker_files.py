"""docker/Dockerfile and docker/compose.yaml, checked without a docker engine.

There is none on the machines this project is built on, so what `docker compose up` would find
out is checked here: the compose file parses; every command of a service running our image
parses against the console scripts pyproject.toml installs (options and all, through click);
the endpoints config.toml reads from its ``${VAR}``s lead to the service that serves that chain
or finality source on that port, the port of config.toml's default; keys go only to the
process that uses them, and the only key literals are anvil's public ones; mounts of files from
the host are read-only; images are pinned; the image runs as a non-root user. The scale-out
profile (broker, Postgres, two watchers, three workers, attesters on the bus) stays out of the
default `up`, reads config.toml changed only in its bus and ledger, keeps passwords out of the
database URL and gives each worker keys and a data volume of its own. The Dockerfile is
linted with dockerfile-utils (npm, pinned in package.json).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from chains.devservices import ReadyFile
from chains.evm import beacon_dev
from chains.evm.anvil import DEV_KEYS
from chains.evm.config import EvmChainConfig
from chains.evm.devnet import (
    ATTESTERS,
    BEACON_FINALITY_LAG,
    BEACON_FIRST_SLOT,
    SUBMITTER_A,
    SUBMITTER_B,
    deployment_address,
)
from chains.evm.devservices import serve_dev_beacon
from chains.substrate.chopsticks import SHARED_SPEC, SPEC_ENV
from chains.substrate.config import SubstrateChainConfig
from chains.substrate.devnet import SUBMITTER_URI, VOTER_CHANGE_DELAY, dev_voter_schedule
from chains.substrate.grandpa_voter import VoterSchedule
from relayer.config import Config, check_config, load_config
from tests.docker_compose import (
    COMPOSE,
    DOCKER,
    OUR_IMAGE,
    REPO,
    Invocation,
    compose_file,
    compose_services,
    dev_services,
    environment,
    mounts_of,
    our_commands,
    our_services,
    parse_command,
    published,
)

DOCKERFILE = DOCKER / "Dockerfile"
PROMETHEUS = DOCKER / "prometheus.yml"
CONFIG = REPO / "config.toml"


def _config(env: Mapping[str, str]) -> Config:
    return load_config(CONFIG, env=env)


# --- the compose file --------------------------------------------------------------------------


def test_compose_parses_and_names_every_component() -> None:
    services = compose_services()
    invocations = our_commands()
    roles = {inv.path for inv in invocations.values()}
    assert ("relayer", "start") in roles
    attesters = sorted(
        inv.params["name"] for inv in invocations.values() if inv.path == ("relayer", "attest")
    )
    assert attesters == sorted(a.name for a in _config({}).attesters)
    assert "prometheus" in services
    for name, service in services.items():
        assert "command" in service, f"{name}: say what runs, not the image's default"


def test_every_command_of_our_image_is_an_installed_entry_point() -> None:
    for name, service in our_services().items():
        command = service["command"]
        assert isinstance(command, list), f"{name}: exec form, no shell"
        assert "entrypoint" not in service, name
        parse_command(command)  # raises naming what does not exist


def test_every_chain_and_finality_source_of_the_config_is_a_service() -> None:
    """Each endpoint config.toml reads (with the compose env) is a service of this network that
    serves that chain on that port, and that port is also config.toml's default one."""
    relayer_env = environment(compose_services()["relayer"])
    config = _config(relayer_env)
    defaults = _config({})
    invocations = our_commands()
    services = compose_services()

    def serving(url: str, kind: str) -> Invocation:
        parts = urlsplit(url)
        assert parts.hostname in invocations, f"{url}: no service {parts.hostname}"
        inv = invocations[parts.hostname]
        assert inv.path == ("relayer-dev", kind), f"{url} is served by {inv.path}"
        assert inv.params["port"] == parts.port, f"{url}: the service listens on another port"
        assert inv.params["host"] == "0.0.0.0", f"{parts.hostname}: unreachable in the network"
        assert parts.port in published(services[parts.hostname])
        return inv

    def same_port(ours: str, default: str) -> None:
        assert urlsplit(ours).port == urlsplit(default).port, (ours, default)

    for chain, default in zip(config.chains, defaults.chains, strict=True):
        if chain.type == "evm":
            evm = chain.plugin_config(EvmChainConfig)
            plain = default.plugin_config(EvmChainConfig)
            node = serving(evm.rpc, "anvil")
            assert (node.params["chain_id"], node.params["domain"]) == (evm.chain_id, chain.domain)
            # relayer devnet's anvils mine a block a second, as a chain's block_time says.
            assert node.params["block_time"] == (getattr(chain, "block_time", None) or 1.0)
            assert evm.ws is not None and plain.ws is not None
            assert serving(evm.ws, "anvil") == node
            same_port(evm.rpc, plain.rpc)
            same_port(evm.ws, plain.ws)
            # The Gateway is where config.toml says by default: account #0's first contract.
            assert evm.gateway.lower() == deployment_address(0)
            if chain.light_client_mode == "sync-committee":
                assert evm.sync_committee is not None and plain.sync_committee is not None
                beacon = serving(evm.sync_committee.beacon_api, "beacon")
                assert beacon.params["rpc"] == evm.rpc
                # Unset: relayer devnet's finality geometry (checked in the next test).
                assert beacon.params["finality_lag"] is None
                assert beacon.params["first_slot"] is None
                same_port(evm.sync_committee.beacon_api, plain.sync_committee.beacon_api)
        elif chain.type == "substrate":
            sub = chain.plugin_config(SubstrateChainConfig)
            plain_sub = default.plugin_config(SubstrateChainConfig)
            node = serving(sub.rpc, "chopsticks")
            assert node.params["chain_name"] == sub.system_chain
            same_port(sub.rpc, plain_sub.rpc)
            if chain.light_client_mode == "grandpa":
                assert sub.grandpa is not None and plain_sub.grandpa is not None
                voters = serving(sub.grandpa.prover, "grandpa-voters")
                assert voters.params["chain_ws"] == sub.rpc
                assert voters.params["change_delay"] is None
                same_port(sub.grandpa.prover, plain_sub.grandpa.prover)
        else:
            pytest.fail(f"chain {chain.name}: no dev service for type {chain.type!r}")


def test_no_process_is_left_with_a_loopback_default_of_the_config() -> None:
    """Inside a container 127.0.0.1 is that container alone: every ``${VAR:-default}`` of
    config.toml whose default is a loopback address is set, identically, for the relayer and
    every attester (they read the same chains). The others (the Gateways' addresses) are meant
    to keep their defaults, which the endpoint test checks."""
    variables = re.findall(r"\$\{([A-Z0-9_]+):-([^}]*)\}", CONFIG.read_text())
    loopback = {name for name, default in variables if "127.0.0.1" in default}
    assert {"CHAIN_A_RPC", "DOT_A_GRANDPA", "RELAYER_HEALTH"} <= loopback
    services = compose_services()
    relayer_env = environment(services["relayer"])
    assert loopback <= set(relayer_env), f"unset for the relayer: {loopback - set(relayer_env)}"
    for name, inv in our_commands().items():
        if inv.path == ("relayer", "attest"):
            env = environment(services[name])
            for variable in loopback - {"RELAYER_HEALTH"}:
                assert env.get(variable) == relayer_env[variable], (name, variable)


def test_dev_service_defaults_are_relayer_devnets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Options compose leaves unset fall back to the devnet's own settings, so that compose
    runs the demo's geometry: the beacon's finality lag and first slot, the voters' change."""
    served: list[list[str]] = []
    monkeypatch.setattr(beacon_dev, "main", served.append)
    serve_dev_beacon(
        rpc_url="http://chain-a:8545",
        host="127.0.0.1",
        port=1,
        finality_lag=None,
        first_slot=None,
        ready=ReadyFile(None),
    )
    (argv,) = served
    given = dict(zip(argv[::2], argv[1::2], strict=True))
    assert given["--finality-lag"] == str(BEACON_FINALITY_LAG)
    assert given["--first-slot"] == str(BEACON_FIRST_SLOT)
    assert dev_voter_schedule(None) == VoterSchedule(change_delay=VOTER_CHANGE_DELAY)
    assert dev_voter_schedule(0).change_delay is None


def test_the_relayer_and_attesters_start_after_every_dev_service_is_ready() -> None:
    services = compose_services()
    dev = {name for name, inv in our_commands().items() if inv.path[0] == "relayer-dev"}
    for name, inv in our_commands().items():
        service = services[name]
        if inv.path[0] == "relayer-dev":
            # Ready means the file the service writes once it serves.
            ready = inv.params["ready_file"]
            assert ready is not None, f"{name}: no --ready-file for its health check"
            assert service["healthcheck"]["test"] == ["CMD", "test", "-f", str(ready)]
            after = service.get("depends_on", {})
        else:
            after = service["depends_on"]
            assert set(after) == dev, f"{name} starts before {dev - set(after)}"
        for dependency, condition in after.items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in services[dependency], dependency


def test_keys_go_only_to_the_process_that_signs_with_them() -> None:
    invocations = our_commands()
    config = _config(environment(compose_services()["relayer"]))
    submitter_envs = set()
    for chain in config.chains:
        model = EvmChainConfig if chain.type == "evm" else SubstrateChainConfig
        key = chain.plugin_config(model).submitter_key
        if key is not None:
            assert key.env is not None, f"{chain.name}: compose passes keys through env"
            submitter_envs.add(key.env)
    attester_envs = {a.name: a.key.env for a in config.attesters}
    all_keys = submitter_envs | set(attester_envs.values())
    for name, inv in invocations.items():
        env = environment(compose_services()[name])
        given = set(env) & all_keys
        if inv.path == ("relayer", "start"):
            assert given == submitter_envs
            expected = {
                "RELAYER_KEY_CHAIN_A": DEV_KEYS[SUBMITTER_A],
                "RELAYER_KEY_CHAIN_B": DEV_KEYS[SUBMITTER_B],
                "RELAYER_KEY_DOT_A": SUBMITTER_URI,
            }
            assert {k: env[k] for k in given} == expected, "relayer devnet's dev keys"
        elif inv.path == ("relayer", "attest"):
            own = attester_envs[inv.params["name"]]
            assert given == {own}, f"{name} is given {given}"
            index = ATTESTERS[int(own.rsplit("_", 1)[1]) - 1]
            assert env[own] == DEV_KEYS[index]
        else:
            assert not given, f"{name} needs no key but is given {given}"


def test_the_only_key_literals_are_public_dev_keys_marked_as_such() -> None:
    for number, line in enumerate(COMPOSE.read_text().splitlines(), 1):
        for literal in re.findall(r"0x[0-9a-fA-F]{64}", line):
            assert literal in DEV_KEYS, f"line {number}: a key that is not anvil's"
            assert "anvil dev key" in line and "(public)" in line, f"line {number}: unmarked"
        if "//" in line and "KEY" in line:
            assert "dev URI (public)" in line, f"line {number}: unmarked dev URI"


def test_the_config_is_accepted_with_the_relayers_environment() -> None:
    """What `relayer start` checks at start passes; its one warning is the listener that
    RELAYER_HEALTH opens to the compose network, on purpose."""
    env = environment(compose_services()["relayer"])
    config = _config(env)
    warnings = check_config(config, env=env, resolve_keys=False)
    beyond = [w for w in warnings if "listens beyond loopback" in w]
    assert len(beyond) == 1


def test_metrics_are_scraped_where_the_relayer_listens() -> None:
    services = compose_services()
    env = environment(services["relayer"])
    host, port = _config(env).relayer.health_address
    assert host == "0.0.0.0"  # reachable from the prometheus container, see the comment there
    assert port == _config({}).relayer.health_address[1]
    assert port in published(services["relayer"])
    prometheus = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs["relayer"].get("metrics_path", "/metrics") == "/metrics"
    targets = [t for group in jobs["relayer"]["static_configs"] for t in group["targets"]]
    assert targets == [f"relayer:{port}"]
    mounts = {m.target: m for m in mounts_of(services["prometheus"])}
    config_file = next(a for a in services["prometheus"]["command"] if "--config.file=" in a)
    mount = mounts[config_file.split("=", 1)[1]]
    assert mount.read_only and mount.host_path() == PROMETHEUS


def test_config_and_fixtures_are_mounted_read_only_and_data_is_shared() -> None:
    services = compose_services()
    for name, service in services.items():
        for mount in mounts_of(service):
            if mount.is_bind:
                assert mount.read_only, f"{name}: {mount.source} from the host, writable"
                assert mount.host_path().is_relative_to(REPO.parent), mount.source
    data_volumes = set()
    for name, inv in our_commands().items():
        if inv.path[0] != "relayer":
            continue
        mounts = {m.target: m for m in mounts_of(services[name])}
        config_mount = mounts[str(inv.params["config_path"])]
        assert config_mount.read_only and config_mount.host_path() == CONFIG
        data = mounts[environment(services[name])["RELAYER_DATA_DIR"]]
        assert not data.is_bind and not data.read_only
        data_volumes.add(data.source)
    # One volume: the attesters write their signatures where the relayer reads them.
    assert len(data_volumes) == 1
    assert data_volumes <= set(compose_file()["volumes"])
    # The chopsticks chain starts from the shared fixtures, mounted read-only.
    (chopsticks,) = dev_services("chopsticks")
    mounts = mounts_of(services[chopsticks])
    spec = PurePosixPath(environment(services[chopsticks])[SPEC_ENV])
    fixture = next(m for m in mounts if spec.is_relative_to(m.target))
    assert fixture.read_only
    assert fixture.host_path() == SHARED_SPEC.parent
    assert spec.name == SHARED_SPEC.name
    if not SHARED_SPEC.parent.is_dir():
        pytest.skip(f"{SHARED_SPEC.parent} is not here to check the file exists")
    assert (fixture.host_path() / spec.relative_to(fixture.target)).is_file()


def test_images_are_pinned() -> None:
    images = {s["image"] for s in compose_services().values()} - {OUR_IMAGE}
    bases = re.findall(r"(?m)^FROM\s+(\S+)", DOCKERFILE.read_text())
    assert bases
    for image in images | set(bases):
        _, _, tag = image.rpartition(":")
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{image}: pin a version"
    assert any(b.startswith("python:3.11") and "slim" in b for b in bases)
    assert any(b.startswith("node:20") for b in bases)


# --- the Dockerfile ---------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_image_runs_as_a_non_root_user() -> None:
    final_stage = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            final_stage = []
        final_stage.append(instruction)
    users = [args for word, args in final_stage if word == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert "useradd" in " ".join(args for word, args in final_stage if word == "RUN")


def test_the_image_holds_no_secret_and_installs_the_package_pinned() -> None:
    instructions = _instructions()
    for word, args in instructions:
        if word in {"ENV", "ARG"}:
            assert not re.search(r"KEY|SECRET|PASSWORD|TOKEN", args, re.I), args
        if word in {"COPY", "ADD"}:
            # Copied by name: never the whole context (an .env or a keystore would come along).
            sources = [a for a in args.split() if not a.startswith("--")][:-1]
            assert "." not in sources and "./" not in sources, args
    runs = " ".join(args for word, args in instructions if word == "RUN")
    assert "npm ci" in runs
    assert re.search(r"pip install .*-c constraints\.txt", runs)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "node_modules"} <= set(ignored)


def test_dockerfile_lints_clean() -> None:
    linter = REPO / "node_modules" / ".bin" / "dockerfile-utils"
    if not linter.exists():
        reason = "dockerfile-utils is not in node_modules: run `make setup`"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    pinned = json.loads((REPO / "package.json").read_text())["devDependencies"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned["dockerfile-utils"]), "pin an exact version"
    result = subprocess.run(
        [str(linter), "lint", "--json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    findings = json.loads(result.stdout)
    assert findings == [], "\n".join(
        f"line {f['range']['start']['line'] + 1}: {f['severity']}: {f['message']}" for f in findings
    )
    assert result.returncode == 0


# --- the scale-out profile ---------------------------------------------------------------------

SCALE_OUT = "scale-out"
SCALE_OUT_CONFIG = DOCKER / "config.scale-out.toml"
# What docker/config.scale-out.toml changes in config.toml, and nothing else.
_SCALE_OUT_CHANGES = {
    'database = "${RELAYER_DATA_DIR:-.relayer}/relayer.db"      # [Default: "relayer.db"]': (
        'database = "postgresql://relayer@postgres:5432/relayer"    '
        '# [Default: "relayer.db"] compose: PGPASSWORD'
    ),
    'type = "memory"                          # [Default: "memory"]': (
        'type = "mqtt"                            # [Default: "memory"]'
    ),
    '# host = "127.0.0.1"                     # [Default: "127.0.0.1"]': (
        'host = "mqtt"                            '
        '# [Default: "127.0.0.1"] compose: the mqtt service'
    ),
}


def _scale_out_config(env: Mapping[str, str]) -> Config:
    return load_config(SCALE_OUT_CONFIG, env=env)


def test_the_scale_out_config_is_the_example_config_with_its_bus_and_ledger_changed() -> None:
    """config.toml's ${VAR:-default}s cannot nest, so the scale-out services read a copy: this
    keeps the copy from drifting from the example."""
    expected = CONFIG.read_text()
    for old, new in _SCALE_OUT_CHANGES.items():
        assert expected.count(old) == 1, old
        expected = expected.replace(old, new)
    assert SCALE_OUT_CONFIG.read_text() == expected


def test_the_default_up_is_the_single_process_example() -> None:
    profiled = {
        name
        for name, s in compose_file()["services"].items()
        if "profiles" in s and s["profiles"] == [SCALE_OUT]
    }
    assert profiled == set(compose_services(SCALE_OUT))
    assert not profiled & set(compose_services())
    roles = {inv.path for inv in our_commands().values()}
    assert ("relayer", "start") in roles
    for inv in our_commands().values():
        assert inv.path != ("relayer", "start") or inv.params["role"] == "all"


def test_scale_out_runs_a_broker_postgres_two_watchers_three_workers_and_the_attesters() -> None:
    services = compose_services(SCALE_OUT)
    for name, service in services.items():
        assert "command" in service, f"{name}: say what runs, not the image's default"
        if service.get("image") == OUR_IMAGE:
            assert "entrypoint" not in service, name
    invocations = our_commands(SCALE_OUT)  # parses each against the CLI
    starts = {n: inv for n, inv in invocations.items() if inv.path == ("relayer", "start")}
    watchers = {n: inv for n, inv in starts.items() if inv.params["role"] == "watcher"}
    workers = {n: inv for n, inv in starts.items() if inv.params["role"] == "worker"}
    assert set(starts) == set(watchers) | set(workers)
    assert len(watchers) == 2 and len(workers) == 3
    instances = [inv.params["instance"] for inv in watchers.values()]
    assert None not in instances and len(set(instances)) == 2, instances
    attesters = sorted(
        inv.params["name"] for inv in invocations.values() if inv.path == ("relayer", "attest")
    )
    assert attesters == sorted(a.name for a in _config({}).attesters)
    images = {s["image"].rpartition(":")[0] for s in services.values()}
    assert {"eclipse-mosquitto", "postgres"} <= images
    for inv in invocations.values():
        assert inv.params["config_path"] == PurePosixPath("/etc/xrelayer/config.toml")


def test_scale_out_services_read_the_bus_and_ledger_of_this_network() -> None:
    services = compose_services(SCALE_OUT)
    postgres = environment(services["postgres"])
    broker = services["mqtt"]
    for name in our_services(SCALE_OUT):
        env = environment(services[name])
        config = _scale_out_config(env)
        assert config.bus.type == "mqtt"
        assert config.bus.mqtt.host == "mqtt"
        assert f"listener {config.bus.mqtt.port}" in _mosquitto_conf(broker)
        url = urlsplit(config.relayer.database)
        assert url.scheme.startswith("postgres") and url.hostname == "postgres"
        assert url.password is None, f"{name}: a password in the database URL"
        assert url.username == postgres["POSTGRES_USER"]
        assert url.path == "/" + postgres["POSTGRES_DB"]
        # The password reaches libpq through PGPASSWORD, the same variable postgres starts with.
        raw = services[name]["environment"]["PGPASSWORD"]
        assert raw == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
        for endpoint, value in environment(compose_services()["relayer"]).items():
            if endpoint not in {"RELAYER_HEALTH"} and not endpoint.startswith("RELAYER_KEY"):
                assert env[endpoint] == value, (name, endpoint)
    # The dev password is marked as such wherever it is a default.
    for number, line in enumerate(COMPOSE.read_text().splitlines(), 1):
        if "POSTGRES_PASSWORD:-" in line:
            assert "DEV-ONLY" in line, f"line {number}: an unmarked default password"


def _mosquitto_conf(broker: Mapping[str, Any]) -> str:
    command = broker["command"]
    target = command[command.index("-c") + 1]
    mount = {m.target: m for m in mounts_of(broker)}[target]
    assert mount.read_only and mount.is_bind, "mosquitto.conf: read-only from the repository"
    assert mount.host_path() == DOCKER / "mosquitto.conf"
    return mount.host_path().read_text()


def test_the_broker_and_postgres_are_pinned_and_checked_for_health() -> None:
    services = compose_services(SCALE_OUT)
    for name in ("mqtt", "postgres"):
        _, _, tag = services[name]["image"].rpartition(":")
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: pin a version"
        assert "healthcheck" in services[name], name
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    data = {m.target: m for m in mounts_of(services["postgres"])}["/var/lib/postgresql/data"]
    assert not data.is_bind and data.source in compose_file()["volumes"]
    assert re.search(r"(?m)^listener 1883$", _mosquitto_conf(services["mqtt"]))
    # On the compose network only: the host does not reach the broker or the database.
    assert not published(services["mqtt"]) and not published(services["postgres"])


def test_scale_out_processes_start_after_the_chains_the_broker_and_postgres() -> None:
    services = compose_services(SCALE_OUT)
    dev = {n for n, inv in our_commands().items() if inv.path[0] == "relayer-dev"}
    for name in our_services(SCALE_OUT):
        after = services[name]["depends_on"]
        assert set(after) == dev | {"mqtt", "postgres"}, name
        for dependency, condition in after.items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in {**compose_services(), **services}[dependency], dependency


def test_scale_out_workers_sign_with_keys_of_their_own() -> None:
    services = compose_services(SCALE_OUT)
    config = _config({})
    submitter_envs = set()
    for chain in config.chains:
        model = EvmChainConfig if chain.type == "evm" else SubstrateChainConfig
        key = chain.plugin_config(model).submitter_key
        if key is not None and key.env is not None:
            submitter_envs.add(key.env)
    attester_envs = {a.name: a.key.env for a in config.attesters}
    all_keys = submitter_envs | set(attester_envs.values())
    # Every other role of the example: the deployer, the senders, the attesters.
    others = {DEV_KEYS[i] for i in (0, 3, 4, *ATTESTERS)}
    keys_seen: dict[str, set[str]] = {}
    data_volumes: dict[str, str] = {}
    for name, inv in our_commands(SCALE_OUT).items():
        env = environment(services[name])
        given = set(env) & all_keys
        data = {m.target: m for m in mounts_of(services[name])}[env["RELAYER_DATA_DIR"]]
        assert not data.is_bind and not data.read_only
        assert data.source in compose_file()["volumes"]
        if inv.path == ("relayer", "start") and inv.params["role"] == "worker":
            assert given == submitter_envs, f"{name} is given {given}"
            for variable in given:
                key = env[variable]
                assert key not in others, f"{name}: {variable} is another role's key"
                for other, keys in keys_seen.items():
                    assert key not in keys, f"{name} and {other} share a key"
            keys_seen[name] = {env[v] for v in given}
            # Its own checkpoint directory (and no other worker's).
            assert data.source not in data_volumes.values(), f"{name}: a shared data volume"
            data_volumes[name] = data.source
        elif inv.path == ("relayer", "attest"):
            own = attester_envs[inv.params["name"]]
            assert given == {own}, f"{name} is given {given}"
            assert env[own] == DEV_KEYS[ATTESTERS[int(own.rsplit("_", 1)[1]) - 1]]
        else:
            assert not given, f"{name} needs no key but is given {given}"
    assert len(keys_seen) == 3


def test_scale_out_mounts_from_the_host_are_read_only() -> None:
    for name, service in compose_services(SCALE_OUT).items():
        for mount in mounts_of(service):
            if mount.is_bind:
                assert mount.read_only, f"{name}: {mount.source} from the host, writable"
                assert mount.host_path().is_relative_to(DOCKER), mount.source
                assert mount.host_path().is_file(), mount.source
    for name in our_services(SCALE_OUT):
        mounts = {m.target: m for m in mounts_of(compose_services(SCALE_OUT)[name])}
        assert mounts["/etc/xrelayer/config.toml"].host_path() == SCALE_OUT_CONFIG
