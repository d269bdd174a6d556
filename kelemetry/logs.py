"""Log output of every command: ``--log-format text`` for people, ``json`` for log pipelines.

A JSON line always has ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger`` and ``msg``;
when the record is about one of them, also ``cluster``, ``batch`` (an inbox batch id) and
``audit_id`` — modules attach those with ``extra={"cluster": ..., "batch": ...}``, and the text
format shows them after the message. ``exception`` carries a traceback when there is one.

Fields are bounded (``auditwire.cut``, as reasons quoting input are): a log line never carries a
megabyte of someone else's input. Nothing here adds data to what the message says, so what keeps
secrets out of messages (redaction before anything is logged, reasons that name fields rather than
quote bodies) keeps them out of both formats.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

import orjson

from kelemetry.receivers.auditwire import cut

FORMATS = ("text", "json")
CONTEXT_KEYS = ("cluster", "batch", "audit_id")
MAX_MESSAGE = 4000
MAX_VALUE = 300
MAX_EXCEPTION = 8000
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _context(record: logging.LogRecord) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key in CONTEXT_KEYS:
        value = record.__dict__.get(key)
        if value is None:
            continue
        found[key] = (
            value if isinstance(value, int) and not isinstance(value, bool) else cut(str(value), MAX_VALUE)
        )
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": cut(record.getMessage(), MAX_MESSAGE),
        }
        document.update(_context(record))
        if record.exc_info:
            document["exception"] = cut(self.formatException(record.exc_info), MAX_EXCEPTION)
        elif record.exc_text:
            document["exception"] = cut(record.exc_text, MAX_EXCEPTION)
        return orjson.dumps(document).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with the record's cluster, batch and audit id after the message."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = _context(record)
        if context:
            line += " (" + " ".join(f"{key}={value}" for key, value in context.items()) + ")"
        return line


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that configuring again replaces it."""


def configure(level: str, log_format: str, stream: IO[str] | None = None) -> None:
    """Send every log record to ``stream`` (stderr) at ``level`` and above, in ``log_format``. Like
    ``logging.basicConfig``, it leaves logging alone when something else configured it first (a
    program embedding ours, pytest's log capture)."""
    if log_format not in FORMATS:
        raise ValueError(f"unknown log format {log_format!r}; known: {', '.join(FORMATS)}")
    root = logging.getLogger()
    if any(not isinstance(handler, _Handler) for handler in root.handlers):
        return
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))


def _rfc3339(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
