"""structlog set-up, done once at start: JSON lines off a terminal, console rendering on one."""

from __future__ import annotations

import logging
import sys
import time
from json import dumps as _json_dumps
from typing import Any

import msgspec
import structlog
from structlog.typing import EventDict, WrappedLogger

__all__ = ["configure_logging", "get_logger"]


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    use_json = not sys.stdout.isatty() if json is None else json
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    logger_factory: Any
    if not use_json:
        processors += [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(),
        ]
        logger_factory = structlog.PrintLoggerFactory(file=sys.stdout)
    else:
        processors += [_UtcTimestamper(), structlog.processors.format_exc_info]
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is not None:
            # The encoder's bytes go straight to the binary stream: decoding them only for
            # print() to encode them again was a good part of each line's cost.
            processors.append(_render_json)
            logger_factory = structlog.BytesLoggerFactory(file=buffer)
        else:
            # A text-only stdout (an io.StringIO put there by an embedding program or a test).
            processors.append(_render_json_text)
            logger_factory = structlog.PrintLoggerFactory(file=sys.stdout)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )
    # What libraries report through the standard logging module (asyncio's "exception was
    # never retrieved", psycopg's pool, paho) would otherwise reach stderr as plain text
    # beside the JSON lines, where log shippers and the tests' line parsers cannot read it.
    # Warnings and above, as Python's own last-resort handler would print them; handlers
    # others installed (a test runner's) stay.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _LibraryLog)]:
        root.removeHandler(handler)
    root.addHandler(_LibraryLog(logging.WARNING))


class _LibraryLog(logging.Handler):
    """Hands standard-logging records to structlog as ``library.logged`` lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            structlog.get_logger().log(
                record.levelno,
                "library.logged",
                library=record.name,
                detail=record.getMessage(),
                exc_info=record.exc_info or False,
            )
        except Exception:  # noqa: BLE001  (a log line must never take the caller down)
            self.handleError(record)


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger().bind(**bound)


class _UtcTimestamper:
    """Adds ``timestamp``: ISO 8601 in UTC with microseconds, as structlog's
    ``TimeStamper(fmt="iso", utc=True)`` does (except that it always writes the microseconds,
    where ``isoformat`` drops them when they are zero), in a fraction of its time: that builds a
    datetime per line, here only the date and time of day are formatted, once a second."""

    __slots__ = ("_cached",)

    def __init__(self) -> None:
        # One tuple, read and replaced whole, so that threads logging at once never pair one
        # second's prefix with another's check.
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
        second, micro = divmod(time.time_ns() // 1000, 1_000_000)
        cached_second, prefix = self._cached
        if second != cached_second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cached = (second, prefix)
        event_dict["timestamp"] = f"{prefix}.{micro:06d}Z"
        return event_dict


# msgspec writes these as json.dumps does, up to whitespace and \u escapes. NaN and infinities
# become null, where json.dumps wrote NaN and Infinity, which no strict JSON parser accepts.
_PLAIN = frozenset({str, int, float, bool, type(None)})
_encode = msgspec.json.Encoder().encode


def _render_json(logger: WrappedLogger, name: str, event_dict: EventDict) -> bytes:
    """The JSON object structlog's JSONRenderer would write, at a fraction of the cost.

    msgspec is not given the values as they are: it would write bytes as base64 and dataclasses
    field by field, where json.dumps with structlog's fallback wrote their ``repr``. Field by field
    would bypass the redacting ``repr`` of key material, and base64 would make logged bytes
    unreadable, so anything that is not plain JSON goes through ``_jsonable`` first."""
    try:
        for key, value in event_dict.items():
            if type(value) not in _PLAIN:
                event_dict[key] = _jsonable(value)
        return _encode(event_dict)
    except ValueError:
        # msgspec refuses a str holding a lone surrogate (what surrogateescape decoding leaves of
        # undecodable bytes in a path or a child's output); json.dumps escapes it.
        return _json_dumps(event_dict, default=repr).encode()


def _render_json_text(logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
    return _render_json(logger, name, event_dict).decode()


def _jsonable(value: object) -> Any:
    """``value`` as json.dumps would see it with structlog's fallback: containers and subclasses
    of the JSON scalars as such, ``__structlog__`` where an object defines it, else ``repr``."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {_json_key(key): _jsonable(item) for key, item in value.items()}
    # Subclasses (str- and int-based enums among them): json.dumps writes the underlying value,
    # msgspec refuses any subclass that is not an enum.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    to_structlog = getattr(value, "__structlog__", None)
    if callable(to_structlog):
        return _jsonable(to_structlog())
    return repr(value)


def _json_key(key: object) -> str:
    """A mapping key as json.dumps writes it; where json.dumps would raise, its ``repr``: a log
    line must never take the caller down."""
    if isinstance(key, str):
        return str.__str__(key)
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        return float.__repr__(key)
    return repr(key)
