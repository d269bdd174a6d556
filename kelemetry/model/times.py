"""Times, durations and sizes as people and the apiserver write them: the one place they are parsed.

All times are µs since the epoch (UTC), all durations µs. Bad input raises ``ValueError`` with a
message meant for the person who typed it; each edge turns that into its own error (a CLI exit, a
400) — this module sits below them and knows neither.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_DURATION_US = {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}
_DURATION_US |= {"d": 24 * _DURATION_US["h"], "w": 7 * 24 * _DURATION_US["h"]}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]i?b?)?$", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# A "+02:00" offset typed into a URL arrives as " 02:00" ("+" means space in a query string).
_PLUS_AS_SPACE = re.compile(r"(\d) (\d\d:?\d\d)$")
MAX_US = (1 << 62) - 1


def now_us() -> int:
    return time.time_ns() // 1000


def parse_time_us(value: str) -> int:
    """RFC 3339 as the apiserver writes it → µs; a time without a zone is UTC. Hot path: no checks
    beyond what ``fromisoformat`` does."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_moment(text: str, *, what: str = "time", jaeger: bool = False) -> int:
    """A moment a person gave: ``now``, RFC 3339 (``2024-05-01T10:00:00Z``, a space for the ``T``, a
    ``+02:00`` offset even when a URL turned its ``+`` into a space) or a date; a time without a zone
    is UTC. ``jaeger``: as Jaeger's query API takes them — digits are µs since the epoch, a time of
    day must say its zone, and there is no ``now``."""
    cleaned = _PLUS_AS_SPACE.sub(r"\1+\2", text.strip())
    if cleaned.lower() == "now" and not jaeger:
        return now_us()
    if jaeger and cleaned.isascii() and cleaned.isdigit():
        number = int(cleaned)
        if number > MAX_US:
            raise ValueError(f"invalid {what} {text!r}: out of range for microseconds since the epoch")
        return number
    candidate = cleaned.replace(" ", "T", 1) if len(cleaned) > 10 else cleaned
    try:
        moment = datetime.fromisoformat(candidate.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        example = "microseconds since the epoch or RFC 3339" if jaeger else "RFC 3339"
        raise ValueError(f"invalid {what} {text!r}: use {example}, e.g. 2024-05-01T10:00:00Z") from None
    if moment.tzinfo is None:
        if "T" in candidate and jaeger:
            raise ValueError(f"invalid {what} {text!r}: RFC 3339 needs a time zone (Z or +hh:mm)")
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_duration_us(text: str, *, what: str = "duration") -> int:
    """``500ms``, ``90s``, ``30m``, ``2h``, ``7d``, ``1w`` (decimals allowed) → µs."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise ValueError(f"invalid {what} {text!r}: use a number and a unit, e.g. 30m, 2h, 7d")
    return int(float(match.group(1)) * _DURATION_US[match.group(2)])


def parse_retention_us(text: str) -> int | None:
    """A duration, or None for ``forever`` (also ``none`` and ``0``)."""
    if text.strip().lower() in ("forever", "none", "0"):
        return None
    return parse_duration_us(text)


def parse_size(text: str) -> int:
    """``500MB``, ``2GiB``, ``1024`` (bytes) → bytes."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f"invalid size {text!r}: use e.g. 500MB or 2GB")
    unit = (match.group(2) or "").lower()[:1]
    return int(float(match.group(1)) * _SIZE_FACTORS[unit])
