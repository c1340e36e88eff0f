"""Why a message is where it is: what ``relayer explain`` prints and the loopback listener's
``/explain/<id>`` serves (read-only), from the ledger alone."""

from __future__ import annotations

from typing import Any

from relayer.errors import StoreError
from relayer.store import HistoryEntry, Ledger, MessageRecord, State

__all__ = ["ExplainError", "explanation", "resolve", "why"]


class ExplainError(StoreError):
    """No message, or several, match the id given; or it is not hex."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        #: the HTTP status the listener answers with
        self.status = status


def why(state: State) -> str:
    return {
        State.OBSERVED: "seen on the origin chain; its evidence is being verified",
        State.VERIFIED: "evidence verified; waiting for a quorum of attester signatures",
        State.ATTESTED: "attested; waiting for its turn (or its retry time) to be submitted",
        State.SUBMITTED: "in a transaction on the destination; waiting for it to be mined",
        State.DELIVERED: "delivered on the destination chain",
        State.REJECTED: "its evidence failed verification; it will never be submitted",
        State.FAILED: "the retry budget ran out; `relayer clear` re-queues it",
        State.ORPHANED: (
            "a reorg deeper than the origin chain's finality removed its block and the canonical"
            " chain does not hold it; it will never be submitted unless the origin chain includes"
            " it again (then it is observed anew)"
        ),
    }[state]


def resolve(ledger: Ledger, message_id: str) -> tuple[MessageRecord, list[HistoryEntry]]:
    """The one message whose id starts with ``message_id`` (hex, ``0x`` optional), and its
    history. Raises ExplainError (400 not hex, 404 none, 409 several)."""
    try:
        matches = ledger.find(message_id)
    except StoreError as exc:
        raise ExplainError(str(exc), status=400) from None
    if not matches:
        raise ExplainError(f"no message with id starting {message_id}", status=404)
    if len(matches) > 1:
        raise ExplainError(
            f"{len(matches)} messages start with {message_id}; give more digits", status=409
        )
    record = matches[0]
    return record, ledger.history(record.id)


def explanation(record: MessageRecord, history: list[HistoryEntry]) -> dict[str, Any]:
    """The message and its history as JSON-able data (ids and hashes as 0x-hex)."""
    return {
        "id": "0x" + record.id.hex(),
        "route": record.route,
        "nonce": record.nonce,
        "state": record.state.value,
        "origin_block": {"number": record.block_number, "hash": "0x" + record.block_hash.hex()},
        "finality": record.finality or None,
        "attempts": record.attempts,
        "last_error": record.last_error,
        "next_attempt_at": record.next_attempt_at,
        "tx": None
        if record.tx_hash is None
        else {"hash": "0x" + record.tx_hash.hex(), "nonce": record.tx_nonce},
        "signatures": len(record.signatures),
        "history": [
            {
                "at": entry.at,
                "from": entry.from_state.value if entry.from_state is not None else None,
                "to": entry.to_state.value,
                "detail": entry.detail,
                "error": entry.error,
            }
            for entry in history
        ],
        "why": why(record.state),
    }
