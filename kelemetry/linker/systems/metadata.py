"""Reading what federation systems write on objects: labels and annotations of a body as read.

Bodies come from watches and audit payloads and are not validated, so these helpers treat a missing
or non-mapping ``metadata`` as empty and drop non-string values (the API server never stores
them; a body that has them was built by hand) rather than raising in the linker loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _strings(body: Mapping[str, Any], field: str) -> Mapping[str, str]:
    meta = body.get("metadata")
    values = meta.get(field) if isinstance(meta, Mapping) else None
    if not isinstance(values, Mapping):
        return {}
    return {k: v for k, v in values.items() if isinstance(k, str) and isinstance(v, str)}


def _section(body: Mapping[str, Any], field: str) -> Mapping[str, Any] | None:
    # Every object without a controller owner passes through every linker: the dict checks come
    # first because bodies are decoded JSON, and the ABC check alone costs more than the lookup.
    meta = body.get("metadata")
    if meta is None or not (isinstance(meta, dict) or isinstance(meta, Mapping)):
        return None
    values = meta.get(field)
    if values is None or not (isinstance(values, dict) or isinstance(values, Mapping)):
        return None
    return values


def label(body: Mapping[str, Any], key: str) -> str | None:
    """One label's value, without copying the labels (None when absent or not a string)."""
    values = _section(body, "labels")
    value = values.get(key) if values is not None else None
    return value if isinstance(value, str) else None


def annotation(body: Mapping[str, Any], key: str) -> str | None:
    """One annotation's value, without copying the annotations (None when absent or not a string)."""
    values = _section(body, "annotations")
    value = values.get(key) if values is not None else None
    return value if isinstance(value, str) else None


def labels_of(body: Mapping[str, Any]) -> Mapping[str, str]:
    return _strings(body, "labels")


def annotations_of(body: Mapping[str, Any]) -> Mapping[str, str]:
    return _strings(body, "annotations")
