"""The fake chain's accounts: ed25519 keys (pynacl), given as a 32-byte seed in hex.

``FakeSigner`` is the family's opaque ``relayer.plugin.Signer``: its ``repr`` shows the account
and where the key came from, never the seed, and it refuses to be pickled.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from relayer.errors import ConfigError
from relayer.keys import KeyRef, resolve_key
from tests.conformance.fake.blocks import SIGNING_TAG, Tx, TxKind

__all__ = ["FakeSigner", "load_fake_signer", "signature_valid"]

_SEED = re.compile(r"(?:0[xX])?([0-9a-fA-F]{64})")


class FakeSigner:
    """A loaded account key. ``address`` is the ed25519 public key."""

    __slots__ = ("_key", "address", "source")

    address: bytes
    source: str

    def __init__(self, seed: bytes, source: str) -> None:
        if len(seed) != 32:
            raise ValueError("an ed25519 seed is 32 bytes")
        self._key = SigningKey(seed)
        self.address = bytes(self._key.verify_key)
        self.source = source

    @property
    def printable_address(self) -> str:
        return "fake:" + self.address.hex()

    def sign(self, kind: TxKind, nonce: int, fee: int, payload: bytes) -> Tx:
        body = Tx.signed_part(kind, self.address, nonce, fee, payload)
        signature = self._key.sign(SIGNING_TAG + body).signature
        return Tx(
            kind=kind,
            sender=self.address,
            nonce=nonce,
            fee=fee,
            payload=payload,
            signature=bytes(signature),
        )

    def __repr__(self) -> str:
        return f"FakeSigner({self.printable_address}, from {self.source})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # A pickle would carry the seed to wherever it goes (a queue, a cache, a log).
        raise TypeError("FakeSigner holds key material and cannot be pickled")


def signature_valid(tx: Tx) -> bool:
    body = Tx.signed_part(tx.kind, tx.sender, tx.nonce, tx.fee, tx.payload)
    try:
        VerifyKey(tx.sender).verify(SIGNING_TAG + body, tx.signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def load_fake_signer(
    ref: KeyRef, base_dir: Path | None, *, env: Mapping[str, str] = os.environ
) -> FakeSigner:
    """The seed ``ref`` names. ``KeyUnavailableError`` when absent here, ``ConfigError`` when it
    is not a seed or lives in a keystore (this family has no keystore format)."""
    resolved = resolve_key(
        ref, base_dir, env=env, holding="a fake-chain ed25519 seed (64 hex digits)"
    )
    if resolved.text is None:
        raise ConfigError(
            f"{resolved.where}: the fake family reads keys from {{ env = ... }} only, "
            "not from a keystore"
        )
    found = _SEED.fullmatch(resolved.text.reveal().strip())
    if found is None:
        # Never the value: it may be a real key in the wrong place.
        raise ConfigError(f"{resolved.where} does not hold an ed25519 seed (64 hex digits)")
    return FakeSigner(bytes.fromhex(found.group(1)), resolved.where)
