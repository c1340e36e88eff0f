"""Which chain the light client follows: preset sizes, fork schedule, genesis validators root,
and the rules that depend on the fork in force at a slot (branch gindices, signing version).

``ChainSpec.mainnet()`` is Ethereum mainnet. ``ChainSpec.minimal(config)`` is the consensus
specs' minimal preset (32-member sync committees, 8-slot epochs) with a spec test's or a devnet's
``config.yaml`` laid over it: its ``*_FORK_EPOCH`` / ``*_FORK_VERSION`` keys replace the
defaults, so ``ELECTRA_FORK_EPOCH: 0`` makes a chain Electra from genesis. The minimal defaults
are Altair through Deneb at genesis and Electra and Fulu never, the shape of the Deneb spec tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "DOMAIN_SYNC_COMMITTEE",
    "FAR_FUTURE_EPOCH",
    "FORK_NAMES",
    "LIGHT_CLIENT_FORKS",
    "ChainSpec",
    "Fork",
]

FAR_FUTURE_EPOCH = 2**64 - 1
DOMAIN_SYNC_COMMITTEE = bytes.fromhex("07000000")

# In activation order. The light-client data formats start at Altair; Fulu changes nothing in
# them but its fork version, which signatures commit to, so it must be known to follow mainnet.
FORK_NAMES = ("phase0", "altair", "bellatrix", "capella", "deneb", "electra", "fulu")
LIGHT_CLIENT_FORKS = FORK_NAMES[1:]
_CAPELLA = FORK_NAMES.index("capella")
_DENEB = FORK_NAMES.index("deneb")
_ELECTRA = FORK_NAMES.index("electra")

# Generalized indices into BeaconState (Altair..Deneb, then Electra's deeper state) and into
# BeaconBlockBody; their floor(log2) is the branch depth.
_FINALIZED_ROOT_GINDEX = 105
_CURRENT_SYNC_COMMITTEE_GINDEX = 54
_NEXT_SYNC_COMMITTEE_GINDEX = 55
_FINALIZED_ROOT_GINDEX_ELECTRA = 169
_CURRENT_SYNC_COMMITTEE_GINDEX_ELECTRA = 86
_NEXT_SYNC_COMMITTEE_GINDEX_ELECTRA = 87
EXECUTION_PAYLOAD_GINDEX = 25

_MAINNET_GENESIS_VALIDATORS_ROOT = bytes.fromhex(
    "4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"
)
_MAINNET_FORKS = (
    ("phase0", "00000000", 0),
    ("altair", "01000000", 74240),
    ("bellatrix", "02000000", 144896),
    ("capella", "03000000", 194048),
    ("deneb", "04000000", 269568),
    ("electra", "05000000", 364032),
    ("fulu", "06000000", 411392),
)
_MINIMAL_FORKS = (
    ("phase0", "00000001", 0),
    ("altair", "01000001", 0),
    ("bellatrix", "02000001", 0),
    ("capella", "03000001", 0),
    ("deneb", "04000001", 0),
    ("electra", "05000001", FAR_FUTURE_EPOCH),
    ("fulu", "06000001", FAR_FUTURE_EPOCH),
)


@dataclass(frozen=True, slots=True)
class Fork:
    name: str
    version: bytes
    epoch: int


@dataclass(frozen=True, slots=True)
class ChainSpec:
    """Everything chain-specific the sync protocol needs. Frozen: a store is bound to one."""

    preset: str
    slots_per_epoch: int
    epochs_per_sync_committee_period: int
    sync_committee_size: int
    min_sync_committee_participants: int
    update_timeout: int
    genesis_validators_root: bytes
    forks: tuple[Fork, ...]
    seconds_per_slot: int
    genesis_time: int | None = None

    def __post_init__(self) -> None:
        if tuple(f.name for f in self.forks) != FORK_NAMES:
            raise ValueError(f"forks must be {FORK_NAMES}, got {[f.name for f in self.forks]}")
        if self.forks[0].epoch != 0:
            raise ValueError("phase0 must start at epoch 0")
        for earlier, later in zip(self.forks, self.forks[1:], strict=False):
            if later.epoch < earlier.epoch:
                raise ValueError(
                    f"{later.name} fork epoch {later.epoch} is before {earlier.name}'s "
                    f"{earlier.epoch}; fork epochs must not decrease"
                )
        for fork in self.forks:
            if len(fork.version) != 4:
                raise ValueError(f"{fork.name} fork version must be 4 bytes: {fork.version!r}")
        if len(self.genesis_validators_root) != 32:
            raise ValueError("genesis validators root must be 32 bytes")
        if self.sync_committee_size <= 0 or self.sync_committee_size % 8:
            raise ValueError(f"sync committee size {self.sync_committee_size} is unusable")

    # ------------------------------------------------------------------------- constructors

    @classmethod
    def mainnet(cls) -> ChainSpec:
        return cls(
            preset="mainnet",
            slots_per_epoch=32,
            epochs_per_sync_committee_period=256,
            sync_committee_size=512,
            min_sync_committee_participants=1,
            update_timeout=32 * 256,
            genesis_validators_root=_MAINNET_GENESIS_VALIDATORS_ROOT,
            forks=tuple(Fork(n, bytes.fromhex(v), e) for n, v, e in _MAINNET_FORKS),
            seconds_per_slot=12,
            genesis_time=1606824023,
        )

    @classmethod
    def minimal(
        cls,
        config: Mapping[str, Any] | None = None,
        *,
        genesis_validators_root: bytes | None = None,
    ) -> ChainSpec:
        """The minimal preset with ``config`` (a parsed ``config.yaml``) laid over it.

        Read keys: ``<FORK>_FORK_EPOCH``, ``<FORK>_FORK_VERSION``, ``GENESIS_FORK_VERSION``,
        ``SECONDS_PER_SLOT``, ``PRESET_BASE`` (must be ``minimal`` if present), and, because a
        spec test keeps it in ``meta.yaml`` rather than the config, ``GENESIS_VALIDATORS_ROOT`` /
        ``genesis_validators_root`` and ``GENESIS_TIME`` / ``genesis_time``; other keys are
        ignored. Versions may be ``0x``-hex strings or the integers YAML reads ``0x01000001``
        as. The keyword ``genesis_validators_root`` wins over the config. Raises ValueError for
        an unusable config (decreasing fork epochs, a version that is not 4 bytes).
        """
        spec = cls(
            preset="minimal",
            slots_per_epoch=8,
            epochs_per_sync_committee_period=8,
            sync_committee_size=32,
            min_sync_committee_participants=1,
            update_timeout=8 * 8,
            genesis_validators_root=bytes(32),
            forks=tuple(Fork(n, bytes.fromhex(v), e) for n, v, e in _MINIMAL_FORKS),
            seconds_per_slot=6,
        )
        if config is not None:
            spec = spec._with_config(config)
        if genesis_validators_root is not None:
            spec = replace(spec, genesis_validators_root=bytes(genesis_validators_root))
        return spec

    def _with_config(self, config: Mapping[str, Any]) -> ChainSpec:
        preset = config.get("PRESET_BASE")
        if preset is not None and str(preset) != self.preset:
            raise ValueError(f"config is for the {preset!r} preset, not {self.preset!r}")
        forks = []
        for fork in self.forks:
            prefix = "GENESIS" if fork.name == "phase0" else fork.name.upper()
            version = config.get(f"{prefix}_FORK_VERSION")
            epoch = config.get(f"{fork.name.upper()}_FORK_EPOCH")
            forks.append(
                Fork(
                    fork.name,
                    fork.version if version is None else _version(version, prefix),
                    fork.epoch if epoch is None or fork.name == "phase0" else _int(epoch, prefix),
                )
            )
        changes: dict[str, Any] = {"forks": tuple(forks)}
        for key in ("GENESIS_VALIDATORS_ROOT", "genesis_validators_root"):
            if config.get(key) is not None:
                changes["genesis_validators_root"] = _root(config[key])
        for key in ("GENESIS_TIME", "genesis_time"):
            if config.get(key) is not None:
                changes["genesis_time"] = _int(config[key], key)
        if config.get("SECONDS_PER_SLOT") is not None:
            changes["seconds_per_slot"] = _int(config["SECONDS_PER_SLOT"], "SECONDS_PER_SLOT")
        return replace(self, **changes)

    # ------------------------------------------------------------------------ time and forks

    @property
    def slots_per_period(self) -> int:
        return self.slots_per_epoch * self.epochs_per_sync_committee_period

    def epoch_at_slot(self, slot: int) -> int:
        return slot // self.slots_per_epoch

    def period_at_slot(self, slot: int) -> int:
        return slot // self.slots_per_period

    def slot_at_time(self, unix_seconds: float) -> int:
        """The wall-clock slot, for ``current_slot``; needs a known genesis time."""
        if self.genesis_time is None:
            raise ValueError(f"the {self.preset} spec has no genesis time; pass current_slot")
        return max(0, int(unix_seconds - self.genesis_time) // self.seconds_per_slot)

    def fork_at_epoch(self, epoch: int) -> Fork:
        current = self.forks[0]
        for fork in self.forks[1:]:
            if epoch < fork.epoch:
                break
            current = fork
        return current

    def fork_at_slot(self, slot: int) -> Fork:
        return self.fork_at_epoch(self.epoch_at_slot(slot))

    def fork(self, name: str) -> Fork:
        for fork in self.forks:
            if fork.name == name:
                return fork
        raise ValueError(f"unknown fork {name!r}; known: {', '.join(FORK_NAMES)}")

    def _index_at_slot(self, slot: int) -> int:
        return FORK_NAMES.index(self.fork_at_slot(slot).name)

    def has_execution_at(self, slot: int) -> bool:
        """Light-client headers carry an execution payload header from Capella on."""
        return self._index_at_slot(slot) >= _CAPELLA

    def has_blob_fields_at(self, slot: int) -> bool:
        """Execution payload headers gain ``blob_gas_used`` / ``excess_blob_gas`` at Deneb."""
        return self._index_at_slot(slot) >= _DENEB

    def signature_fork(self, signature_slot: int) -> Fork:
        """The fork whose version the sync committee signed with: the one in force at the slot
        before ``signature_slot`` (the committee signs the previous slot's block)."""
        return self.fork_at_slot(max(signature_slot, 1) - 1)

    def finalized_root_gindex_at_slot(self, slot: int) -> int:
        if self._index_at_slot(slot) >= _ELECTRA:
            return _FINALIZED_ROOT_GINDEX_ELECTRA
        return _FINALIZED_ROOT_GINDEX

    def current_sync_committee_gindex_at_slot(self, slot: int) -> int:
        if self._index_at_slot(slot) >= _ELECTRA:
            return _CURRENT_SYNC_COMMITTEE_GINDEX_ELECTRA
        return _CURRENT_SYNC_COMMITTEE_GINDEX

    def next_sync_committee_gindex_at_slot(self, slot: int) -> int:
        if self._index_at_slot(slot) >= _ELECTRA:
            return _NEXT_SYNC_COMMITTEE_GINDEX_ELECTRA
        return _NEXT_SYNC_COMMITTEE_GINDEX


def branch_depths(fork: str) -> tuple[int, int, int]:
    """(current committee, next committee, finality) branch lengths of ``fork``'s data."""
    if fork not in LIGHT_CLIENT_FORKS:
        raise ValueError(f"no light-client data for fork {fork!r}")
    if FORK_NAMES.index(fork) >= _ELECTRA:
        return (
            _CURRENT_SYNC_COMMITTEE_GINDEX_ELECTRA.bit_length() - 1,
            _NEXT_SYNC_COMMITTEE_GINDEX_ELECTRA.bit_length() - 1,
            _FINALIZED_ROOT_GINDEX_ELECTRA.bit_length() - 1,
        )
    return (
        _CURRENT_SYNC_COMMITTEE_GINDEX.bit_length() - 1,
        _NEXT_SYNC_COMMITTEE_GINDEX.bit_length() - 1,
        _FINALIZED_ROOT_GINDEX.bit_length() - 1,
    )


def header_shape(fork: str) -> str:
    """``altair`` (beacon only), ``capella`` (15-field execution) or ``deneb`` (17 fields)."""
    if fork not in LIGHT_CLIENT_FORKS:
        raise ValueError(f"no light-client data for fork {fork!r}")
    index = FORK_NAMES.index(fork)
    if index >= _DENEB:
        return "deneb"
    if index >= _CAPELLA:
        return "capella"
    return "altair"


def _int(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    raise ValueError(f"{what} must be an integer, got {value!r}")


def _version(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str) and value.lower().startswith("0x"):
        raw = bytes.fromhex(value[2:])
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32:
        raw = value.to_bytes(4, "big")
    else:
        raise ValueError(f"{what}_FORK_VERSION must be 4 bytes, got {value!r}")
    if len(raw) != 4:
        raise ValueError(f"{what}_FORK_VERSION must be 4 bytes, got {value!r}")
    return raw


def _root(value: Any) -> bytes:
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        raw = bytes.fromhex(value.removeprefix("0x"))
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**256:
        raw = value.to_bytes(32, "big")
    else:
        raise ValueError(f"genesis validators root must be 32 bytes, got {value!r}")
    if len(raw) != 32:
        raise ValueError(f"genesis validators root must be 32 bytes, got {value!r}")
    return raw
