"""sr25519 signing keys for Substrate accounts (``//Alice`` style dev URIs and mnemonics).

Built on the same Rust bindings (schnorrkel) that substrate-interface uses, without that
library: every substrate-interface release requires eth-utils<6, which web3 8 (through
eth-account 0.14) cannot share an environment with.
"""

from __future__ import annotations

import bip39
import sr25519

from proofs.hashing import blake2_256
from proofs.substrate.scale import encode_compact

__all__ = ["DEV_PHRASE", "Sr25519Keypair"]

# Substrate's well-known development mnemonic: //Alice, //Bob... derive from it. Public on
# purpose; an account derived from it holds nothing anywhere but a dev chain.
DEV_PHRASE = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
_CHAIN_CODE_LEN = 32


class Sr25519Keypair:
    """A signing key. ``repr`` shows the public key only."""

    __slots__ = ("_public", "_secret")

    def __init__(self, public_key: bytes, secret_key: bytes) -> None:
        self._public = bytes(public_key)
        self._secret = bytes(secret_key)

    @classmethod
    def from_uri(cls, uri: str) -> Sr25519Keypair:
        """``[mnemonic]//hard//junctions``; the mnemonic defaults to the dev phrase.

        Soft junctions (``/x``) and passwords (``///pw``) are refused rather than guessed at:
        a wrong derivation silently signs with a different account.
        """
        phrase, _, path = uri.partition("//")
        phrase = phrase.strip() or DEV_PHRASE
        if "///" in uri or any("/" in junction for junction in path.split("//")):
            raise ValueError("only hard junctions (//name) are supported in a key URI")
        public, secret = sr25519.pair_from_seed(bytes(bip39.bip39_to_mini_secret(phrase, "")))
        for junction in filter(None, path.split("//") if path else ()):
            _, public, secret = sr25519.hard_derive_keypair(
                (_chain_code(junction), public, secret), b""
            )
        return cls(public, secret)

    @property
    def public_key(self) -> bytes:
        """The AccountId32 of an sr25519 account."""
        return self._public

    def sign(self, payload: bytes) -> bytes:
        signature: bytes = sr25519.sign((self._public, self._secret), payload)
        return bytes(signature)

    def __repr__(self) -> str:
        return f"Sr25519Keypair(public_key=0x{self._public.hex()}, secret=<redacted>)"


def _chain_code(junction: str) -> bytes:
    """A junction's chain code as Substrate derives it: the SCALE encoding of the junction
    (a number as u64, anything else as a string), padded or hashed to 32 bytes."""
    if junction.isdigit():
        encoded = int(junction).to_bytes(8, "little")
    else:
        raw = junction.encode()
        encoded = encode_compact(len(raw)) + raw
    if len(encoded) > _CHAIN_CODE_LEN:
        return blake2_256(encoded)
    return encoded.ljust(_CHAIN_CODE_LEN, b"\0")
