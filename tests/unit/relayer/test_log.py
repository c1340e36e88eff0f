"""relayer.log: one JSON object per line off a terminal, whatever the values logged.

What is protected: the keys every line carries (event, level, an ISO UTC timestamp, the bound
fields), level filtering, and that a value JSON cannot hold is written as its ``repr`` (as
structlog's stdlib JSONRenderer did) instead of raising in the caller or leaking fields that a
redacting ``repr`` hides.
"""

from __future__ import annotations

import enum
import io
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from chains.evm.anvil import DEV_KEYS
from relayer import log as relayer_log
from relayer.ecdsa_key import EcdsaKey
from relayer.log import configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    # configure_logging changes structlog's process-wide configuration; other tests (capture_logs
    # in test_retry) rely on what was there before.
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    handlers = list(logging.getLogger().handlers)
    yield
    logging.getLogger().handlers[:] = handlers
    if was_configured:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    # capsys' stdout has a binary buffer under it, as a daemon's stdout does, so this is the
    # path the daemon takes; configure_logging must run in the test body, where capsys' stream
    # is the one in sys.stdout.
    text = capsys.readouterr().out
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_json_lines_carry_event_level_timestamp_and_bound_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", json=True)
    before = datetime.now(UTC)
    log = get_logger(chain="chain-b").bind(message_id="0x01")
    log.info("message.observed", nonce=3, ratio=0.5, final=True, tx=None, path=["a", 1])
    log.warning("chain.unavailable", endpoint="http://node:8545", detail={"code": -32000})
    after = datetime.now(UTC)

    first, second = lines(capsys)
    assert {k: v for k, v in first.items() if k != "timestamp"} == {
        "event": "message.observed",
        "level": "info",
        "chain": "chain-b",
        "message_id": "0x01",
        "nonce": 3,
        "ratio": 0.5,
        "final": True,
        "tx": None,
        "path": ["a", 1],
    }
    assert {k: v for k, v in second.items() if k != "timestamp"} == {
        "event": "chain.unavailable",
        "level": "warning",
        "chain": "chain-b",
        "message_id": "0x01",
        "endpoint": "http://node:8545",
        "detail": {"code": -32000},
    }
    for line in (first, second):
        stamp = datetime.fromisoformat(line["timestamp"])
        assert line["timestamp"].endswith("Z")
        assert stamp.utcoffset() == timedelta(0)
        # Microsecond resolution on both sides; allow the clock's own rounding.
        assert before - timedelta(milliseconds=1) <= stamp <= after + timedelta(milliseconds=1)


def test_levels_below_the_configured_one_are_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning", json=True)
    log = get_logger()
    log.debug("a.debug")
    log.info("a.info")
    log.warning("a.warning")
    log.error("a.error")
    assert [(line["event"], line["level"]) for line in lines(capsys)] == [
        ("a.warning", "warning"),
        ("a.error", "error"),
    ]


@dataclass(frozen=True)
class Credentials:
    user: str
    secret: bytes

    def __repr__(self) -> str:
        return f"Credentials(user={self.user}, secret=<redacted>)"


class Opaque:
    def __repr__(self) -> str:
        return "<opaque thing>"


class Kind(enum.Enum):
    REVERTED = "reverted"


class Tier(enum.IntEnum):
    GOLD = 3


class Colour(enum.StrEnum):
    RED = "red"


class Label(str):
    __slots__ = ()


def test_values_json_cannot_hold_are_written_as_their_repr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", json=True)
    key = EcdsaKey(bytes.fromhex(DEV_KEYS[1][2:]), "dev key #1")
    error = ValueError("boom")
    get_logger().info(
        "submit.failed",
        raw=b"\x01\xff",
        error=error,
        thing=Opaque(),
        ids={b"\x02"},
        nested={"list": [b"\x03", (1, 2)], 7: Kind.REVERTED, None: 1},
        key=key,
        credentials=Credentials("relayer", b"hunter2"),
        kind=Kind.REVERTED,
        tier=Tier.GOLD,
        colour=Colour.RED,
        label=Label("relay"),
    )
    text = capsys.readouterr().out
    (line,) = (json.loads(raw) for raw in text.splitlines())
    assert line["raw"] == repr(b"\x01\xff")
    assert line["error"] == "ValueError('boom')"
    assert line["thing"] == "<opaque thing>"
    assert line["ids"] == repr({b"\x02"})
    assert line["nested"] == {
        "list": [repr(b"\x03"), [1, 2]],
        "7": "<Kind.REVERTED: 'reverted'>",
        "null": 1,
    }
    assert line["kind"] == "<Kind.REVERTED: 'reverted'>"
    # Enums and other subclasses of JSON scalars are written as their values, as json.dumps does.
    assert (line["tier"], line["colour"], line["label"]) == (3, "red", "relay")
    # Only what a redacting repr chooses to show: never the fields behind it.
    assert line["credentials"] == "Credentials(user=relayer, secret=<redacted>)"
    assert line["key"] == repr(key)
    assert "hunter2" not in text
    assert DEV_KEYS[1][2:] not in text.lower()


def test_strings_msgspec_refuses_are_still_written(capsys: pytest.CaptureFixture[str]) -> None:
    # A lone surrogate is what surrogateescape leaves of undecodable bytes (os.fsdecode).
    configure_logging("info", json=True)
    get_logger(path="/tmp/\udcff").info("chain.unavailable", detail="bad \udc80 byte")
    (line,) = lines(capsys)
    assert (line["path"], line["detail"], line["event"]) == (
        "/tmp/\udcff",
        "bad \udc80 byte",
        "chain.unavailable",
    )


def test_exception_info_becomes_a_string_field(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", json=True)
    try:
        raise RuntimeError("node went away")
    except RuntimeError:
        get_logger().exception("submit.crashed")
    (line,) = lines(capsys)
    assert line["event"] == "submit.crashed"
    assert line["level"] == "error"
    assert "RuntimeError: node went away" in line["exception"]


def test_off_a_terminal_json_is_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")
    get_logger(route="a->b").info("message.observed")
    (line,) = lines(capsys)
    assert (line["event"], line["route"]) == ("message.observed", "a->b")


def test_a_text_only_stdout_gets_the_same_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    configure_logging("info", json=True)
    get_logger(chain="chain-a").info("chain.recovered", raw=b"\x00")
    (text,) = stream.getvalue().splitlines()
    line = json.loads(text)
    assert (line["event"], line["level"], line["chain"], line["raw"]) == (
        "chain.recovered",
        "info",
        "chain-a",
        repr(b"\x00"),
    )


def test_the_timestamp_prefix_follows_the_clock_across_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stamper = relayer_log._UtcTimestamper()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    # The last microsecond of a second, the first of the next, then the clock stepping back.
    for ns in (1_700_000_000_999_999_000, 1_700_000_001_000_000_999, 1_699_999_999_000_001_000):
        monkeypatch.setattr(relayer_log.time, "time_ns", lambda ns=ns: ns)
        stamp = stamper(None, "info", {})["timestamp"]
        expected = epoch + timedelta(microseconds=ns // 1000)
        assert stamp == expected.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert datetime.fromisoformat(stamp) == expected


# --- against structlog's own JSONRenderer ---------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**100), max_value=2**100),
    # NaN and infinities excluded: json.dumps writes them as invalid JSON, msgspec as null.
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.sampled_from(["\udc80", "é", "\x00", 'quote " and \\']),
    st.binary(max_size=8),
    st.sampled_from([Kind.REVERTED, Tier.GOLD, Colour.RED, Opaque()]),
    st.builds(ValueError, st.text(max_size=5)),
    st.builds(Label, st.text(max_size=5)),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=3),
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(st.text(min_size=1, max_size=8), _values, max_size=6))
def test_the_json_is_the_object_structlogs_json_renderer_writes(fields: dict[str, Any]) -> None:
    expected = json.loads(structlog.processors.JSONRenderer()(None, "info", dict(fields)))
    assert json.loads(relayer_log._render_json(None, "info", dict(fields))) == expected


def test_library_warnings_become_json_lines_and_their_debug_chatter_stays_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", json=True)
    configure_logging("info", json=True)  # again: still one line per record
    try:
        raise ValueError("socket gone")
    except ValueError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    logging.getLogger("paho").warning("failed to receive on socket: %s", "Broken pipe")
    logging.getLogger("psycopg.pool").info("connection returned")

    first, second = lines(capsys)
    assert first["event"] == "library.logged"
    assert first["level"] == "error"
    assert first["library"] == "asyncio"
    assert first["detail"] == "Task exception was never retrieved"
    assert "ValueError: socket gone" in first["exception"]
    assert (second["library"], second["level"], second["detail"]) == (
        "paho",
        "warning",
        "failed to receive on socket: Broken pipe",
    )
