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


def labels_of(body: Mapping[str, Any]) -> Mapping[str, str]:
    return _strings(body, "labels")


def annotations_of(body: Mapping[str, Any]) -> Mapping[str, str]:
    return _strings(body, "annotations")
