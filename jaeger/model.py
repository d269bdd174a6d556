"""Jaeger query-API JSON, as ``/api/traces`` returns it and Jaeger UI and jq scripts read it.

IDs are lower-case hex strings (32 chars for traces, 16 for spans); times are µs since the epoch.
"""

from __future__ import annotations

from typing import Literal, TypedDict

TagType = Literal["string", "bool", "int64", "float64", "binary"]


class KeyValue(TypedDict):
    key: str
    type: TagType
    value: str | bool | int | float


class Reference(TypedDict):
    refType: Literal["CHILD_OF", "FOLLOWS_FROM"]
    traceID: str
    spanID: str


class LogEntry(TypedDict):
    timestamp: int
    fields: list[KeyValue]


class Span(TypedDict):
    traceID: str
    spanID: str
    flags: int
    operationName: str
    references: list[Reference]
    startTime: int
    duration: int
    tags: list[KeyValue]
    logs: list[LogEntry]
    processID: str
    warnings: list[str] | None


class Process(TypedDict):
    serviceName: str
    tags: list[KeyValue]


class Trace(TypedDict):
    traceID: str
    spans: list[Span]
    processes: dict[str, Process]
    warnings: list[str] | None


def key_value(key: str, value: str | bool | int | float) -> KeyValue:
    """A tag with the type Jaeger expects for the Python value."""
    if type(value) is str:  # the common case first: this runs for every tag of every span shown
        return {"key": key, "type": "string", "value": value}
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    return {"key": key, "type": "string", "value": str(value)}
