"""The EVM family's cheap listing for the reconciler: the Gateway's ``Dispatch`` logs of a
block range, decoded to message bytes, with no block or receipt fetched and nothing proven.

The reconciler compares the listing with the ledger and reads (and proves, through
``EvmReader.read``) only the blocks holding messages the ledger lacks, so that a pass over a
window with no gap costs one ``eth_getLogs`` per ``max_span`` blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

from chains.evm.evidence import DISPATCH_TOPIC, abi_bytes
from chains.evm.reader import EvmReader

__all__ = ["EvmMessageLister"]

_TOPICS = ["0x" + DISPATCH_TOPIC.hex()]


class EvmMessageLister:
    def __init__(self, reader: EvmReader) -> None:
        self.reader = reader

    async def list_messages(self, start: int, end: int) -> Sequence[tuple[int, bytes]]:
        logs = await self.reader.rpc.logs(start, end, self.reader.gateway_hex, _TOPICS)
        found: list[tuple[int, bytes]] = []
        for entry in logs:
            if entry.get("removed"):
                continue  # a log of a block the node has left: not on the chain
            data = entry["data"]
            if not isinstance(data, str) or not data.startswith("0x"):
                raise ValueError(f"log data is not 0x-hex: {data!r:.80}")
            found.append((int(entry["blockNumber"], 16), abi_bytes(bytes.fromhex(data[2:]))))
        return found
