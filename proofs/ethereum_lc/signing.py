"""What a sync committee signs: the attested block root under a domain that binds the fork
version and the chain (genesis validators root), so a signature is valid on one chain and fork
only."""

from __future__ import annotations

from proofs.ethereum_lc.ssz import hash_pair

__all__ = ["compute_domain", "compute_fork_digest", "compute_signing_root"]


def _fork_data_root(fork_version: bytes, genesis_validators_root: bytes) -> bytes:
    return hash_pair(fork_version + bytes(28), genesis_validators_root)


def compute_domain(
    domain_type: bytes, fork_version: bytes, genesis_validators_root: bytes
) -> bytes:
    return domain_type + _fork_data_root(fork_version, genesis_validators_root)[:28]


def compute_signing_root(object_root: bytes, domain: bytes) -> bytes:
    """``hash_tree_root(SigningData(object_root, domain))``."""
    return hash_pair(object_root, domain)


def compute_fork_digest(fork_version: bytes, genesis_validators_root: bytes) -> bytes:
    """The 4-byte digest that tags gossip topics and spec-test steps (Altair..Electra form;
    Fulu mixes blob parameters in, which the light-client data does not need)."""
    return _fork_data_root(fork_version, genesis_validators_root)[:4]
