"""Where attesters publish signatures and the relayer collects them.

The store is not trusted: the relayer recovers every signer itself and counts only distinct
committee members over the digest it computed. ``CheckpointStore`` is the seam for other
backends (MQTT, object storage); ``DirectoryCheckpointStore`` is the embedded one, a directory
per origin domain and message, one small file per attester.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

import msgspec

__all__ = ["Attestation", "CheckpointStore", "DirectoryCheckpointStore"]


class Attestation(msgspec.Struct, frozen=True, kw_only=True):
    """One attester's signature over one message's digest for one destination."""

    signer: bytes
    signature: bytes
    origin_domain: int
    message_id: bytes
    origin_block_hash: bytes
    destination_domain: int


class CheckpointStore(Protocol):
    def put(self, attestation: Attestation) -> None:
        """Publish (idempotent: the same attester may publish again after a restart)."""
        ...

    def get(self, origin_domain: int, message_id: bytes) -> list[Attestation]:
        """Everything published for the message; possibly garbage, always re-verified."""
        ...


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Attestation)


class DirectoryCheckpointStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _dir(self, origin_domain: int, message_id: bytes) -> Path:
        return self.root / str(origin_domain) / message_id.hex()

    def put(self, attestation: Attestation) -> None:
        folder = self._dir(attestation.origin_domain, attestation.message_id)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{attestation.signer.hex()}.json"
        # Write then rename: a reader never sees half a file, a crash never leaves one.
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(_encoder.encode(attestation))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def get(self, origin_domain: int, message_id: bytes) -> list[Attestation]:
        folder = self._dir(origin_domain, message_id)
        out: list[Attestation] = []
        try:
            entries = list(folder.iterdir())
        except FileNotFoundError:
            return out
        for path in entries:
            if path.name.startswith(".") or path.suffix != ".json":
                continue
            try:
                out.append(_decoder.decode(path.read_bytes()))
            except (OSError, msgspec.DecodeError, msgspec.ValidationError):
                continue  # unreadable or forged file: it simply does not count
        return out
