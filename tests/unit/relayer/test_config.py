"""The config file: the example works, and every unsafe setting is refused by table and key.

Every refusal test also checks that no private key appears in the message: an operator pastes
these errors into issues and chats.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path

import pytest
import rlp
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from pydantic import BaseModel

from chains.evm.anvil import DEV_KEYS
from chains.evm.config import EvmChainConfig
from chains.substrate.config import SubstrateChainConfig
from relayer.config import (
    RAW_KEY_REFUSAL,
    Config,
    ConfigRefusedError,
    check_config,
    load_config,
)
from relayer.ecdsa_key import EcdsaKey, load_ecdsa_key
from relayer.errors import ConfigError, UnknownChainError
from relayer.keys import KeyRef, KeyUnavailableError

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = REPO_ROOT / "config.toml"
PLUGINS: dict[str, type[BaseModel]] = {"evm": EvmChainConfig, "substrate": SubstrateChainConfig}

# anvil's dev accounts #0-#9; a test below re-derives them from the mnemonic.
ANVIL_KEYS = DEV_KEYS
ANVIL_ADDRESSES = (
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
    "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
    "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
    "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
    "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
    "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
)
FIRST_DEPLOYMENT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # account #0, nonce 0

DEV_ENV = {
    "RELAYER_KEY_CHAIN_A": ANVIL_KEYS[1],
    "RELAYER_KEY_CHAIN_B": ANVIL_KEYS[2],
    "ATTESTER_KEY_1": ANVIL_KEYS[5],
    "ATTESTER_KEY_2": ANVIL_KEYS[6],
    "ATTESTER_KEY_3": ANVIL_KEYS[7],
    "RELAYER_KEY_DOT_A": "//Bob",
}

A5, A6, A7 = (f'"{address}"' for address in ANVIL_ADDRESSES[5:8])

# A small valid config; tests edit it with str.replace (first occurrence = chain-a / att-1).
BASE = f"""
[[chains]]
name = "chain-a"
type = "evm"
domain = 1000
chain_id = 31337
rpc = "http://127.0.0.1:8545"
gateway = "{FIRST_DEPLOYMENT}"
submitter_key = {{ env = "RELAYER_KEY_CHAIN_A" }}
  [chains.committee]
  attesters = [{A5}, {A6}, {A7}]
  threshold = 2

[[chains]]
name = "chain-b"
type = "evm"
domain = 2000
chain_id = 31338
rpc = "http://127.0.0.1:8546"
gateway = "{FIRST_DEPLOYMENT}"
submitter_key = {{ env = "RELAYER_KEY_CHAIN_B" }}
  [chains.committee]
  attesters = [{A5}, {A6}, {A7}]
  threshold = 2

[[attesters]]
name = "att-1"
key = {{ env = "ATTESTER_KEY_1" }}
origins = ["chain-a", "chain-b"]

[[attesters]]
name = "att-2"
key = {{ env = "ATTESTER_KEY_2" }}
origins = ["chain-a", "chain-b"]

[[attesters]]
name = "att-3"
key = {{ env = "ATTESTER_KEY_3" }}
origins = ["chain-a", "chain-b"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _load(path: Path, env: Mapping[str, str] = DEV_ENV) -> Config:
    return load_config(path, plugin_models=PLUGINS, env=env)


def _edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _assert_no_secret(message: str, *extra: str) -> None:
    lowered = message.lower()
    for secret in (*ANVIL_KEYS, *extra):
        assert secret.lower().removeprefix("0x") not in lowered


def _refusal(
    tmp_path: Path, text: str, env: Mapping[str, str] = DEV_ENV, *, resolve_keys: bool = True
) -> str:
    """The message of the ConfigError that loading + checking ``text`` raises."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        check_config(_load(path, env), env=env, resolve_keys=resolve_keys)
    message = str(info.value)
    _assert_no_secret(message)
    # Pydantic's own rendering (input values, doc links) must never reach the operator.
    assert "pydantic" not in message
    assert "input_value" not in message
    return message


# --- the example --------------------------------------------------------------------------------


def test_dev_keys_are_the_anvil_mnemonic_accounts() -> None:
    Account.enable_unaudited_hdwallet_features()
    mnemonic = "test test test test test test test test test test test junk"
    for i, (key, address) in enumerate(zip(ANVIL_KEYS, ANVIL_ADDRESSES, strict=True)):
        account = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}")
        assert account.key.hex() == key.removeprefix("0x")
        assert account.address == address


def test_example_config_loads_and_checks_clean_with_dev_keys() -> None:
    config = _load(EXAMPLE)
    # Only the development chains' own warnings: the dev beacon server's trusted root, the
    # stand-in commitment, dev keys and the dev voters' checkpoint.
    warnings = check_config(config, env=DEV_ENV)
    assert len(warnings) == 4, warnings
    assert warnings[0].startswith('chains[name="chain-a"]: sync_committee.trusted_block_root')
    assert all(w.startswith('chains[name="dot-a"]: ') for w in warnings[1:])
    assert "dev-concat" in warnings[1] and "dev = true" in warnings[2]
    assert 'grandpa.checkpoint = "dev"' in warnings[3]

    assert config.base_dir == REPO_ROOT
    assert config.relayer.database == str(REPO_ROOT / ".relayer" / "relayer.db")
    assert config.relayer.checkpoints == REPO_ROOT / ".relayer" / "checkpoints"
    assert config.relayer.health_address == ("127.0.0.1", 9464)
    assert [(c.name, c.type, c.domain, c.finality) for c in config.chains] == [
        ("chain-a", "evm", 1000, "sync-committee"),
        ("chain-b", "evm", 2000, "committee"),
        ("dot-a", "substrate", 3000, "grandpa"),
    ]
    for chain, chain_id, port in ((config.chains[0], 31337, 8545), (config.chains[1], 31338, 8546)):
        evm = chain.plugin_config(EvmChainConfig)
        assert evm.chain_id == chain_id
        assert evm.rpc == f"http://127.0.0.1:{port}"
        assert evm.gateway == FIRST_DEPLOYMENT
        assert evm.confirmations == 2
        assert chain.committee is not None
        assert chain.committee.attesters == ANVIL_ADDRESSES[5:8]
        assert chain.committee.threshold == 2
    assert [a.name for a in config.attesters] == ["att-1", "att-2", "att-3"]
    assert all(a.origins == ("chain-a", "chain-b", "dot-a") for a in config.attesters)
    dot = config.chain("dot-a").plugin_config(SubstrateChainConfig)
    assert (dot.rpc, dot.system_chain, dot.dev) == ("ws://127.0.0.1:9944", "dot-a", True)
    assert config.attester_rpc(config.attesters[0], "dot-a") == "ws://127.0.0.1:9944"
    assert config.attester_rpc(config.attesters[0], "chain-b") == "http://127.0.0.1:8546"


def test_example_config_gateway_default_is_the_first_anvil_deployment() -> None:
    deployer = bytes.fromhex(ANVIL_ADDRESSES[0][2:])
    assert to_checksum_address(keccak(rlp.encode([deployer, 0]))[12:]) == FIRST_DEPLOYMENT


def test_example_config_points_at_the_devnet_through_variables() -> None:
    env = {
        **DEV_ENV,
        "CHAIN_A_RPC": "http://127.0.0.1:40001",
        "CHAIN_B_GATEWAY": ANVIL_ADDRESSES[4].lower(),
    }
    config = _load(EXAMPLE, env)
    assert config.chain("chain-a").plugin_config(EvmChainConfig).rpc == "http://127.0.0.1:40001"
    # Lowercase in, checksummed out: every consumer compares one form.
    assert config.chain("chain-b").plugin_config(EvmChainConfig).gateway == ANVIL_ADDRESSES[4]


def test_lookups_name_the_configured_chains() -> None:
    config = _load(EXAMPLE)
    assert config.chain_by_domain(2000).name == "chain-b"
    with pytest.raises(UnknownChainError, match="chain-a, chain-b, dot-a"):
        config.chain("chain-z")
    with pytest.raises(
        UnknownChainError, match=r"1000 \(chain-a\), 2000 \(chain-b\), 3000 \(dot-a\)"
    ):
        config.chain_by_domain(4000)
    with pytest.raises(ConfigError, match="att-1, att-2, att-3"):
        config.attester("att-9")


# --- ${VAR} expansion ---------------------------------------------------------------------------


def test_variables_expand_and_defaults_apply_when_unset_or_empty(tmp_path: Path) -> None:
    text = _edit('rpc = "http://127.0.0.1:8545"', 'rpc = "${RPC_A:-http://127.0.0.1:9999}"')
    text = _edit("chain_id = 31338", 'chain_id = "${CHAIN_B_ID}"', text)
    path = _write(tmp_path, text)

    config = _load(path, {**DEV_ENV, "CHAIN_B_ID": "777"})
    assert config.chain("chain-a").plugin_config(EvmChainConfig).rpc == "http://127.0.0.1:9999"
    assert config.chain("chain-b").plugin_config(EvmChainConfig).chain_id == 777

    config = _load(path, {**DEV_ENV, "CHAIN_B_ID": "777", "RPC_A": ""})
    assert config.chain("chain-a").plugin_config(EvmChainConfig).rpc == "http://127.0.0.1:9999"

    config = _load(path, {**DEV_ENV, "CHAIN_B_ID": "777", "RPC_A": "https://node.example:8545"})
    assert config.chain("chain-a").plugin_config(EvmChainConfig).rpc == "https://node.example:8545"


def test_unset_variable_without_default_names_table_key_and_variable(tmp_path: Path) -> None:
    text = _edit('rpc = "http://127.0.0.1:8546"', 'rpc = "${CHAIN_B_RPC}"')
    message = _refusal(tmp_path, text)
    assert 'chains[name="chain-b"].rpc: environment variable CHAIN_B_RPC is not set' in message
    # The unexpanded value is not reported a second time as a bad URL.
    assert "1 problem" in message


def test_malformed_variable_reference_is_refused(tmp_path: Path) -> None:
    text = _edit('rpc = "http://127.0.0.1:8545"', 'rpc = "${CHAIN_A_RPC"')
    message = _refusal(tmp_path, text)
    assert 'chains[name="chain-a"].rpc: malformed variable reference' in message


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "reason"),
    [
        (0, "threshold must be positive, got 0"),
        (1, "threshold 1 of 3 attesters is not above half"),
        (4, "threshold 4 exceeds the 3 attesters"),
    ],
)
def test_unsafe_threshold_is_refused(tmp_path: Path, threshold: int, reason: str) -> None:
    message = _refusal(tmp_path, _edit("threshold = 2", f"threshold = {threshold}"))
    assert f'chains[name="chain-a"].committee.threshold: {reason}' in message


def test_threshold_of_half_an_even_committee_is_refused(tmp_path: Path) -> None:
    text = _edit(
        f"attesters = [{A5}, {A6}, {A7}]", f'attesters = [{A5}, {A6}, {A7}, "{ANVIL_ADDRESSES[4]}"]'
    )
    message = _refusal(tmp_path, text)
    assert 'chains[name="chain-a"].committee.threshold: threshold 2 of 4' in message


@pytest.mark.parametrize(
    ("gateway", "reason"),
    [
        ('"0x5FbDB2315678afecb367f032d93F642f64180a"', "20-byte hex address"),
        ('"5FbDB2315678afecb367f032d93F642f64180aa3"', "20-byte hex address"),
        ('"0x5FbDB2315678afecb367f032d93f642f64180aa3"', "invalid EIP-55 checksum"),
        ('"0x0000000000000000000000000000000000000000"', "zero address"),
        ("42", "hex address string"),
    ],
)
def test_malformed_or_zero_gateway_is_refused(tmp_path: Path, gateway: str, reason: str) -> None:
    message = _refusal(tmp_path, _edit(f'gateway = "{FIRST_DEPLOYMENT}"', f"gateway = {gateway}"))
    assert 'chains[name="chain-a"].gateway: ' in message
    assert reason in message


def test_missing_gateway_is_refused(tmp_path: Path) -> None:
    message = _refusal(tmp_path, _edit(f'gateway = "{FIRST_DEPLOYMENT}"\n', ""))
    assert 'chains[name="chain-a"].gateway: required key is missing' in message


@pytest.mark.parametrize(
    ("attester", "reason"),
    [
        ('"0x0000000000000000000000000000000000000000"', "zero address"),
        ('"0x1234"', "20-byte hex address"),
    ],
)
def test_zero_or_malformed_attester_address_is_refused(
    tmp_path: Path, attester: str, reason: str
) -> None:
    text = _edit(f"attesters = [{A5}, {A6}, {A7}]", f"attesters = [{A5}, {attester}, {A7}]")
    message = _refusal(tmp_path, text)
    assert 'chains[name="chain-a"].committee.attesters[1]: ' in message
    assert reason in message


def test_duplicate_attester_addresses_are_refused(tmp_path: Path) -> None:
    # The same address twice, once checksummed and once lowercase.
    text = _edit(f"attesters = [{A5}, {A6}, {A7}]", f"attesters = [{A5}, {A6}, {A5.lower()}]")
    message = _refusal(tmp_path, text)
    assert (
        f'chains[name="chain-a"].committee.attesters: attester {ANVIL_ADDRESSES[5]} is listed twice'
        in message
    )


def test_committee_is_required_with_committee_finality(tmp_path: Path) -> None:
    text = _edit(f"  [chains.committee]\n  attesters = [{A5}, {A6}, {A7}]\n  threshold = 2\n", "")
    message = _refusal(tmp_path, text)
    assert 'chains[name="chain-a"].committee: required with finality = "committee"' in message


def test_a_light_client_the_plugin_does_not_offer_is_refused_naming_the_key(
    tmp_path: Path,
) -> None:
    text = _edit("domain = 2000", 'domain = 2000\nfinality = "grandpa"')
    message = _refusal(tmp_path, text)
    assert (
        'chains[name="chain-b"].finality: "grandpa" is not a finality mode of evm chains '
        '(choose from "committee", "confirmations", "sync-committee")'
    ) in message


def test_a_light_client_without_its_settings_is_refused_naming_the_key(tmp_path: Path) -> None:
    text = _edit("domain = 2000", 'domain = 2000\nfinality = "sync-committee"')
    message = _refusal(tmp_path, text)
    assert 'chains[name="chain-b"].finality: ' in message
    assert "needs a sync_committee table (beacon_api and trusted_block_root)" in message


def test_a_light_client_with_its_settings_is_accepted_and_a_dev_root_warned(
    tmp_path: Path,
) -> None:
    text = _edit(
        "domain = 2000",
        'domain = 2000\nfinality = "sync-committee"\nsync_committee = { beacon_api = '
        '"http://127.0.0.1:5052", trusted_block_root = "dev" }',
    )
    warnings = check_config(_load(_write(tmp_path, text)), env=DEV_ENV)
    assert any('trusted_block_root = "dev"' in w for w in warnings), warnings


@pytest.mark.parametrize("value", ['"Grandpa"', '"sync committee"', '""', "1", "true"])
def test_a_finality_that_is_not_a_mode_name_is_refused(tmp_path: Path, value: str) -> None:
    text = _edit("domain = 2000", f"domain = 2000\nfinality = {value}")
    assert 'chains[name="chain-b"].finality: ' in _refusal(tmp_path, text)


def test_duplicate_chain_names_are_refused(tmp_path: Path) -> None:
    text = _edit('name = "chain-b"', 'name = "chain-a"')
    text = text.replace('"chain-b"', '"chain-a"')
    message = _refusal(tmp_path, text)
    assert "chains[name=\"chain-a\"].name: another [[chains]] table is named 'chain-a'" in message


def test_duplicate_domains_are_refused(tmp_path: Path) -> None:
    message = _refusal(tmp_path, _edit("domain = 2000", "domain = 1000"))
    assert (
        "chains[name=\"chain-b\"].domain: domain 1000 is already used by chain 'chain-a'" in message
    )


def test_unknown_chain_in_attester_origins_is_refused(tmp_path: Path) -> None:
    text = _edit('origins = ["chain-a", "chain-b"]', 'origins = ["chain-a", "chain-c"]')
    message = _refusal(tmp_path, text)
    assert "attesters[name=\"att-1\"].origins: unknown chain 'chain-c'" in message
    assert "configured chains: chain-a, chain-b" in message


@pytest.mark.parametrize(
    ("old", "new", "where", "hint"),
    [
        (
            'rpc = "http://127.0.0.1:8545"',
            'rpc_url = "http://127.0.0.1:8545"',
            'chains[name="chain-a"].rpc_url',
            "did you mean 'rpc'?",
        ),
        (
            "threshold = 2",
            "threshold = 2\n  quorum = 3",
            'chains[name="chain-a"].committee.quorum',
            "",
        ),
        (
            '[[attesters]]\nname = "att-1"',
            '[[attesters]]\nname = "att-1"\nport = 1',
            'attesters[name="att-1"].port',
            "",
        ),
        (
            '{ env = "ATTESTER_KEY_1" }',
            '{ env = "ATTESTER_KEY_1", pasword_env = "X" }',
            'attesters[name="att-1"].key.pasword_env',
            "did you mean 'password_env'?",
        ),
        ("[[chains]]", "[relayer]\nlog_lvl = 'info'\n\n[[chains]]", "relayer.log_lvl", ""),
        ("[[chains]]", "[relayr]\n\n[[chains]]", "relayr", "did you mean 'relayer'?"),
    ],
)
def test_unknown_key_is_refused_with_its_path(
    tmp_path: Path, old: str, new: str, where: str, hint: str
) -> None:
    message = _refusal(tmp_path, _edit(old, new))
    assert f"{where}: unknown key" in message
    assert hint in message


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        # the key itself instead of a reference
        (
            '{ env = "RELAYER_KEY_CHAIN_A" }',
            f'"{ANVIL_KEYS[1]}"',
            'chains[name="chain-a"].submitter_key',
        ),
        # without 0x, in an attester
        (
            '{ env = "ATTESTER_KEY_1" }',
            f'"{ANVIL_KEYS[5][2:]}"',
            'attesters[name="att-1"].key',
        ),
        # as the default of a variable reference
        (
            '{ env = "RELAYER_KEY_CHAIN_A" }',
            f'"${{KEY_A:-{ANVIL_KEYS[1]}}}"',
            'chains[name="chain-a"].submitter_key',
        ),
        # pasted where the variable's name belongs
        (
            '{ env = "ATTESTER_KEY_1" }',
            f'{{ env = "{ANVIL_KEYS[5]}" }}',
            'attesters[name="att-1"].key.env',
        ),
        # key tables holding a raw key
        (
            '{ env = "RELAYER_KEY_CHAIN_A" }',
            f'{{ hex = "{ANVIL_KEYS[1]}" }}',
            'chains[name="chain-a"].submitter_key.hex',
        ),
        (
            '{ env = "RELAYER_KEY_CHAIN_A" }',
            f'{{ private_key = "{ANVIL_KEYS[1]}" }}',
            'chains[name="chain-a"].submitter_key.private_key',
        ),
        (
            '{ env = "RELAYER_KEY_CHAIN_A" }',
            '{ raw = "${SOME_VAR:-x}" }',
            'chains[name="chain-a"].submitter_key.raw',
        ),
        # a key-ish field the schema does not even have
        (
            "domain = 1000",
            f'domain = 1000\nsigning_secret = "{ANVIL_KEYS[3]}"',
            'chains[name="chain-a"].signing_secret',
        ),
        (
            "[[chains]]",
            f'[relayer]\nprivate_key = "{ANVIL_KEYS[0]}"\n\n[[chains]]',
            "relayer.private_key",
        ),
    ],
)
def test_raw_private_key_in_the_file_is_refused_without_echo(
    tmp_path: Path, old: str, new: str, where: str
) -> None:
    message = _refusal(tmp_path, _edit(old, new))
    assert f"{where}: {RAW_KEY_REFUSAL}" in message
    assert "1 problem:" in message  # not reported again as a type error


def test_hex_values_outside_key_fields_are_not_taken_for_keys(tmp_path: Path) -> None:
    # A 32-byte hash in a non-key field is an ordinary (here: unknown) value, not a secret.
    text = _edit("domain = 1000", f'domain = 1000\ngenesis_hash = "{"ab" * 32}"')
    message = _refusal(tmp_path, text)
    assert RAW_KEY_REFUSAL not in message
    assert 'chains[name="chain-a"].genesis_hash: unknown key' in message


def test_key_shared_between_attester_and_submitter_is_refused(tmp_path: Path) -> None:
    text = _edit('{ env = "ATTESTER_KEY_1" }', '{ env = "RELAYER_KEY_CHAIN_B" }')
    message = _refusal(tmp_path, text, resolve_keys=False)
    assert (
        'attesters[name="att-1"].key: the same key (env:RELAYER_KEY_CHAIN_B) as '
        'chains[name="chain-b"].submitter_key' in message
    )


def test_key_shared_between_two_attesters_is_refused(tmp_path: Path) -> None:
    text = _edit('{ env = "ATTESTER_KEY_3" }', '{ env = "ATTESTER_KEY_1" }')
    message = _refusal(tmp_path, text, resolve_keys=False)
    assert (
        'attesters[name="att-3"].key: the same key (env:ATTESTER_KEY_1) as '
        'attesters[name="att-1"].key' in message
    )


def test_keys_resolving_to_the_same_address_are_refused(tmp_path: Path) -> None:
    env = {**DEV_ENV, "ATTESTER_KEY_2": ANVIL_KEYS[1]}  # same value as RELAYER_KEY_CHAIN_A
    path = _write(tmp_path, BASE)
    config = _load(path, env)
    check_config(config, env=env, resolve_keys=False)  # references differ: not visible unresolved

    message = _refusal(tmp_path, BASE, env)
    assert (
        f'attesters[name="att-2"].key: resolves to the same address ({ANVIL_ADDRESSES[1]}) as '
        'the key of chains[name="chain-a"].submitter_key' in message
    )


def test_submitters_may_share_a_key_across_chains(tmp_path: Path) -> None:
    text = _edit('{ env = "RELAYER_KEY_CHAIN_B" }', '{ env = "RELAYER_KEY_CHAIN_A" }')
    config = _load(_write(tmp_path, text))
    assert check_config(config, env=DEV_ENV) == []


def test_malformed_key_in_environment_is_refused_without_echo(tmp_path: Path) -> None:
    bad = "0x" + "zz" * 32
    env = {**DEV_ENV, "ATTESTER_KEY_2": bad}
    message = _refusal(tmp_path, BASE, env)
    assert (
        'attesters[name="att-2"].key: environment variable ATTESTER_KEY_2 does not hold a '
        "32-byte hex private key" in message
    )
    assert bad not in message


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    text = _edit("threshold = 2", "threshold = 0")
    text = _edit("domain = 2000", "domain = -1", text)
    text = _edit('rpc = "http://127.0.0.1:8546"', 'rpc = "ftp://127.0.0.1"', text)
    text = _edit('origins = ["chain-a", "chain-b"]', 'origins = ["chain-x"]', text)
    path = _write(tmp_path, text)
    with pytest.raises(ConfigRefusedError) as info:
        _load(path)
    problems = info.value.problems
    assert any(p.startswith('chains[name="chain-a"].committee.threshold: ') for p in problems)
    assert any(p.startswith('chains[name="chain-b"].domain: ') for p in problems)
    assert any(
        p.startswith('chains[name="chain-b"].rpc: must be a http or https URL') for p in problems
    )
    assert any(p.startswith('attesters[name="att-1"].origins: unknown chain') for p in problems)
    assert str(info.value).startswith(f"{path}: {len(problems)} problems:")


def test_endpoint_urls_are_never_echoed(tmp_path: Path) -> None:
    text = _edit('rpc = "http://127.0.0.1:8545"', 'rpc = "htp://node/v3/SECRETAPIKEY"')
    message = _refusal(tmp_path, text)
    assert 'chains[name="chain-a"].rpc: must be a http or https URL' in message
    assert "SECRETAPIKEY" not in message


def test_unknown_plugin_type_is_refused_naming_it(tmp_path: Path) -> None:
    message = _refusal(tmp_path, _edit('type = "evm"', 'type = "cosmos"'))
    assert "chains[name=\"chain-a\"].type: no chain plugin of type 'cosmos'" in message
    assert "installed: evm" in message


def test_no_chains_is_refused(tmp_path: Path) -> None:
    message = _refusal(tmp_path, "[relayer]\n")
    assert "chains: no [[chains]] table" in message


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        _load(_write(tmp_path, "[[chains]\nname = 1"))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        _load(tmp_path / "nope.toml")


# --- warnings -----------------------------------------------------------------------------------


def test_confirmations_finality_is_warned_as_insecure(tmp_path: Path) -> None:
    text = _edit("domain = 2000", 'domain = 2000\nfinality = "confirmations"')
    warnings = check_config(_load(_write(tmp_path, text)), env=DEV_ENV)
    assert len(warnings) == 1
    assert warnings[0].startswith('chains[name="chain-b"].finality: ')
    assert "INSECURE" in warnings[0]


def test_chain_without_submitter_key_is_warned(tmp_path: Path) -> None:
    text = _edit('submitter_key = { env = "RELAYER_KEY_CHAIN_B" }\n', "")
    warnings = check_config(_load(_write(tmp_path, text)), env=DEV_ENV)
    assert warnings == [
        'chains[name="chain-b"]: no submitter_key: this chain cannot be a destination; '
        "messages to it will wait undelivered"
    ]


def test_committee_not_matching_configured_attesters_is_only_a_warning(tmp_path: Path) -> None:
    env = {**DEV_ENV, "ATTESTER_KEY_3": ANVIL_KEYS[4]}  # not a committee member
    warnings = check_config(_load(_write(tmp_path, BASE), env), env=env)
    assert len(warnings) == 2  # one per chain
    assert warnings[0].startswith('chains[name="chain-a"].committee.attesters: ')
    assert f"att-3 ({ANVIL_ADDRESSES[4]})" in warnings[0]
    assert f"members with no [[attesters]] table here: {ANVIL_ADDRESSES[7]}" in warnings[0]


def test_key_absent_on_this_host_is_only_a_warning(tmp_path: Path) -> None:
    env = {k: v for k, v in DEV_ENV.items() if k != "ATTESTER_KEY_2"}
    warnings = check_config(_load(_write(tmp_path, BASE), env), env=env)
    assert warnings == [
        'attesters[name="att-2"].key: key not checked on this host: environment variable '
        "ATTESTER_KEY_2 is not set (it must hold a hex private key)"
    ]


def test_health_beyond_loopback_is_warned(tmp_path: Path) -> None:
    text = '[relayer]\nhealth = "0.0.0.0:9464"\n' + BASE
    warnings = check_config(_load(_write(tmp_path, text)), env=DEV_ENV)
    assert len(warnings) == 1
    assert warnings[0].startswith("relayer.health: listens beyond loopback")


# --- keys ---------------------------------------------------------------------------------------


def _keystore(tmp_path: Path, key: str, password: str) -> Path:
    # pbkdf2 with 2 rounds: a test keystore needs no real key stretching.
    data = Account.encrypt(
        bytes.fromhex(key.removeprefix("0x")), password, kdf="pbkdf2", iterations=2
    )
    path = tmp_path / "keys" / "att-1.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_keystore_key_loads_relative_to_the_config(tmp_path: Path) -> None:
    _keystore(tmp_path, ANVIL_KEYS[5], "correct horse")
    text = _edit(
        '{ env = "ATTESTER_KEY_1" }',
        '{ keystore = "keys/att-1.json", password_env = "ATT1_PASSWORD" }',
    )
    env = {**DEV_ENV, "ATT1_PASSWORD": "correct horse"}
    config = _load(_write(tmp_path, text), env)
    ref = config.attester("att-1").key
    assert ref.identity == f"keystore:{tmp_path.resolve() / 'keys' / 'att-1.json'}"
    assert check_config(config, env=env) == []

    key = load_ecdsa_key(ref, config.base_dir, env=env)
    assert key.checksum_address == ANVIL_ADDRESSES[5]
    assert key.address == bytes.fromhex(ANVIL_ADDRESSES[5][2:])
    assert key.source == ref.identity


def test_keystore_with_wrong_password_is_a_config_error(tmp_path: Path) -> None:
    path = _keystore(tmp_path, ANVIL_KEYS[5], "correct horse")
    ref = KeyRef(keystore=path, password_env="ATT1_PASSWORD")
    with pytest.raises(ConfigError) as info:
        load_ecdsa_key(ref, env={"ATT1_PASSWORD": "battery staple"})
    message = str(info.value)
    assert str(path) in message
    assert "ATT1_PASSWORD" in message
    assert "wrong password" in message
    assert "battery staple" not in message
    assert not isinstance(info.value, KeyUnavailableError)

    text = _edit(
        '{ env = "ATTESTER_KEY_1" }', f'{{ keystore = "{path}", password_env = "ATT1_PASSWORD" }}'
    )
    message = _refusal(tmp_path, text, {**DEV_ENV, "ATT1_PASSWORD": "battery staple"})
    assert 'attesters[name="att-1"].key: keystore file' in message


def test_missing_keystore_or_password_is_unavailable(tmp_path: Path) -> None:
    path = _keystore(tmp_path, ANVIL_KEYS[5], "pw")
    with pytest.raises(KeyUnavailableError, match="ATT1_PASSWORD is not set"):
        load_ecdsa_key(KeyRef(keystore=path, password_env="ATT1_PASSWORD"), env={})
    with pytest.raises(KeyUnavailableError, match="does not exist"):
        load_ecdsa_key(KeyRef(keystore=tmp_path / "nope.json", password_env="P"), env={"P": "pw"})


def test_tampered_keystore_address_is_refused(tmp_path: Path) -> None:
    path = _keystore(tmp_path, ANVIL_KEYS[5], "pw")
    data = json.loads(path.read_text())
    data["address"] = ANVIL_ADDRESSES[6][2:].lower()
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="names address"):
        load_ecdsa_key(KeyRef(keystore=path, password_env="P"), env={"P": "pw"})


def test_env_key_loads_with_or_without_0x() -> None:
    for value in (ANVIL_KEYS[1], ANVIL_KEYS[1][2:], f" {ANVIL_KEYS[1]}\n"):
        key = load_ecdsa_key(KeyRef(env="K"), env={"K": value})
        assert key.checksum_address == ANVIL_ADDRESSES[1]


def test_out_of_range_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="not hold a valid secp256k1 private key"):
        load_ecdsa_key(KeyRef(env="K"), env={"K": "0x" + "00" * 32})


def test_local_key_shows_no_key_material() -> None:
    key = load_ecdsa_key(KeyRef(env="RELAYER_KEY_CHAIN_A"), env=DEV_ENV)
    assert isinstance(key, EcdsaKey)
    for rendered in (repr(key), str(key), f"{key}", f"{key!r}", repr([key])):
        _assert_no_secret(rendered)
        assert ANVIL_ADDRESSES[1] in rendered
        assert "redacted" in rendered
    with pytest.raises(TypeError):
        pickle.dumps(key)


@pytest.mark.parametrize(
    "table",
    [
        "{}",
        '{ env = "A", keystore = "k.json", password_env = "B" }',
        '{ keystore = "k.json" }',
        '{ env = "not a name" }',
    ],
)
def test_key_reference_needs_exactly_one_source(tmp_path: Path, table: str) -> None:
    message = _refusal(tmp_path, _edit('{ env = "ATTESTER_KEY_1" }', table))
    assert 'attesters[name="att-1"].key' in message


def test_key_reference_identity() -> None:
    assert KeyRef(env="X").identity == "env:X"
    assert KeyRef(keystore=Path("/k/a.json"), password_env="P").identity == "keystore:/k/a.json"
    assert KeyRef(env="X") == KeyRef(env="X")


def test_local_key_signatures_recover_to_its_address_and_match_eth_account() -> None:
    from eth_account import Account  # noqa: PLC0415
    from eth_account.messages import encode_defunct  # noqa: PLC0415

    from proofs.committee import eth_signed_message_hash, recover_signer  # noqa: PLC0415
    from relayer.ecdsa_key import load_ecdsa_key  # noqa: PLC0415
    from relayer.keys import KeyRef  # noqa: PLC0415

    key = load_ecdsa_key(KeyRef(env="K"), env={"K": ANVIL_KEYS[5]})
    digest = bytes(range(32))
    signature = key.sign_hash(eth_signed_message_hash(digest))
    assert recover_signer(eth_signed_message_hash(digest), signature) == key.address
    reference = (
        Account.from_key(ANVIL_KEYS[5]).sign_message(encode_defunct(primitive=digest)).signature
    )
    assert signature == bytes(reference)  # RFC 6979: the same deterministic signature


# --- substrate chains ----------------------------------------------------------------------------

DOT = f"""
[[chains]]
name = "dot-a"
type = "substrate"
domain = 3000
rpc = "ws://127.0.0.1:9944"
system_chain = "dot-a"
submitter_key = {{ env = "RELAYER_KEY_DOT_A" }}
  [chains.committee]
  attesters = [{A5}, {A6}, {A7}]
  threshold = 2
"""


def test_a_dev_uri_is_refused_as_the_key_of_a_chain_not_marked_dev(tmp_path: Path) -> None:
    message = _refusal(tmp_path, BASE + DOT, {**DEV_ENV, "RELAYER_KEY_DOT_A": "//Alice"})
    assert 'chains[name="dot-a"].submitter_key' in message
    assert "dev = true" in message
    # The same key on a chain marked dev = true is accepted, with the dev warnings.
    path = _write(
        tmp_path, BASE + DOT.replace('system_chain = "dot-a"', 'system_chain = "dot-a"\ndev = true')
    )
    warnings = check_config(_load(path), env={**DEV_ENV, "RELAYER_KEY_DOT_A": "//Alice"})
    assert any("dev = true" in w for w in warnings)


def test_dev_concat_is_refused_on_a_chain_not_marked_dev(tmp_path: Path) -> None:
    text = BASE + DOT.replace(
        'system_chain = "dot-a"', 'system_chain = "dot-a"\nextrinsics_commitment = "dev-concat"'
    )
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match="dev-concat") as info:
        _load(path)
    assert 'chains[name="dot-a"]' in str(info.value)


def test_a_substrate_chain_takes_websocket_endpoints_only(tmp_path: Path) -> None:
    text = BASE + DOT.replace('rpc = "ws://127.0.0.1:9944"', 'rpc = "http://127.0.0.1:9944"')
    with pytest.raises(ConfigError, match=r'chains\[name="dot-a"\]\.rpc'):
        _load(_write(tmp_path, text))


def test_a_postgresql_url_is_the_shared_ledger_and_never_holds_a_password(tmp_path: Path) -> None:
    url = "postgresql://relayer@db.example:5432/relayer"
    text = f'[relayer]\ndatabase = "{url}"\n\n[bus]\ntype = "mqtt"\n' + BASE
    config = _load(_write(tmp_path, text))
    assert (config.relayer.database, config.relayer.shared_database) == (url, True)
    assert config.bus.type == "mqtt"
    assert config.relayer.attester_database("att-1", tmp_path) == tmp_path / "attester-att-1.db"
    secret = "postgresql://relayer:hunter2-pw@db.example/relayer"
    message = _refusal(tmp_path, f'[relayer]\ndatabase = "{secret}"\n' + BASE)
    assert "relayer.database" in message and "PGPASSWORD" in message
    _assert_no_secret(message, "hunter2-pw")


def test_the_mqtt_bus_needs_a_shared_ledger(tmp_path: Path) -> None:
    message = _refusal(tmp_path, '[bus]\ntype = "mqtt"\n' + BASE)
    assert "relayer.database" in message and "PostgreSQL" in message
