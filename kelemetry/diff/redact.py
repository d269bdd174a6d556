"""Redaction: what must never leave the collector, removed from object bodies on arrival.

Secret ``data`` and ``stringData`` values (and any field a rule names) are replaced by a
`Redacted` marker before a body is cached, diffed or snapshotted. The marker keeps a keyed digest
of the value, with a key made fresh for each process and never written anywhere, so a diff can
still say "this key changed" without the value or a reversible fingerprint of it reaching a span,
the store, an export or a log. ``metadata.managedFields`` is dropped from every body: it is
bookkeeping, large, and never what an SRE wants in a diff.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

REDACTED_TEXT = "<redacted>"
# `kubectl apply` copies the whole manifest it applied into this annotation, Secret values included.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_PROCESS_KEY = os.urandom(32)


@dataclass(frozen=True, slots=True)
class Redacted:
    """A removed value; equal to another marker exactly when the two values were equal."""

    digest: str

    @classmethod
    def of(cls, value: Any) -> Redacted:
        data = value if isinstance(value, str) else repr(value)
        return cls(hmac.new(_PROCESS_KEY, data.encode(), hashlib.sha256).hexdigest())

    def __str__(self) -> str:
        return REDACTED_TEXT


@dataclass(frozen=True, slots=True)
class RedactionRule:
    """Every value under the top-level field ``field`` of objects of ``(group, resource)``."""

    group: str
    resource: str
    field: str

    @classmethod
    def parse(cls, text: str) -> RedactionRule:
        """``secrets:data``, ``configmaps:data``, ``widgets.example.com:spec``."""
        target, sep, field = text.partition(":")
        resource, _, group = target.partition(".")
        if not sep or not resource or not field or "." in field:
            raise ValueError(
                f"invalid redaction rule {text!r}: use RESOURCE[.GROUP]:FIELD, e.g. configmaps:data"
            )
        return cls(group, resource, field)


DEFAULT_RULES = (RedactionRule("", "secrets", "data"), RedactionRule("", "secrets", "stringData"))


def with_rules(extra_rules: Iterable[str]) -> Redactor:
    """The default redaction (Secret values) plus ``RESOURCE[.GROUP]:FIELD`` rules."""
    return Redactor((*DEFAULT_RULES, *(RedactionRule.parse(rule) for rule in extra_rules)))


class Redactor:
    def __init__(self, rules: Iterable[RedactionRule] = DEFAULT_RULES) -> None:
        self._fields: dict[tuple[str, str], frozenset[str]] = {}
        for rule in rules:
            key = (rule.group, rule.resource)
            self._fields[key] = self._fields.get(key, frozenset()) | {rule.field}

    def fields_of(self, group: str, resource: str) -> frozenset[str]:
        return self._fields.get((group, resource), frozenset())

    def resources(self) -> frozenset[str]:
        return frozenset(resource for _group, resource in self._fields)

    def scrub_in_place(self, group: str, resource: str, body: dict[str, Any]) -> None:
        """Replace redacted fields' values in a raw body by opaque text (before it is persisted)."""
        fields = self.fields_of(group, resource)
        for field in fields:
            if field in body:
                body[field] = _opaque(body[field])
        if fields:
            annotations = _annotations(body)
            if annotations is not None and LAST_APPLIED in annotations:
                annotations[LAST_APPLIED] = _opaque(annotations[LAST_APPLIED])

    @staticmethod
    def opaque(value: Any) -> Any:
        """Every leaf of ``value`` replaced by opaque text."""
        return _opaque(value)

    def clean(self, group: str, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``body`` without managedFields and with redacted fields' values replaced."""
        cleaned = dict(body)
        fields = self.fields_of(group, resource)
        meta = cleaned.get("metadata")
        if isinstance(meta, dict) and "managedFields" in meta:
            meta = cleaned["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
        if fields and isinstance(meta, dict):
            annotations = meta.get("annotations")
            if isinstance(annotations, dict) and LAST_APPLIED in annotations:
                masked = {**annotations, LAST_APPLIED: _mask(annotations[LAST_APPLIED])}
                cleaned["metadata"] = {**meta, "annotations": masked}
        for field in fields:
            if field in cleaned:
                cleaned[field] = _mask(cleaned[field])
        return cleaned


def _annotations(body: dict[str, Any]) -> dict[str, Any] | None:
    meta = body.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    return annotations if isinstance(annotations, dict) else None


def _opaque(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _opaque(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_opaque(v) for v in value]
    return f"{REDACTED_TEXT}:{Redacted.of(value).digest[:32]}"


def _mask(value: Any) -> Any:
    # Keys stay visible (which Secret key changed is what a reviewer needs); values do not.
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return Redacted.of(value)
