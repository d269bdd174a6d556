"""Redaction: what must never leave the collector, removed from object bodies where they enter.

Secret ``data`` and ``stringData`` values (and any field a rule names) are replaced by opaque text,
``<redacted>:`` and a keyed digest of the value, with a key made fresh for each process and never
written anywhere. That is the one way values are redacted, done where bodies enter: the webhook
before a batch reaches the inbox, a replay and the object watch when a body is first read. It is
idempotent, so a body redacted at the edge and read again stays as it was. The digest lets a diff
say "this key changed" without the value or a reversible fingerprint of it; rendering shows every
redacted value as ``<redacted>``. ``metadata.managedFields`` is dropped from every body read: it is
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
OPAQUE_PREFIX = REDACTED_TEXT + ":"
# `kubectl apply` copies the whole manifest it applied into this annotation, Secret values included.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_PROCESS_KEY = os.urandom(32)


def is_redacted(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(OPAQUE_PREFIX)


def shown(value: Any) -> Any:
    """``value`` as output shows it: every redacted leaf as ``<redacted>`` (the digest is only for
    telling changes apart, never for display)."""
    if isinstance(value, str):
        return REDACTED_TEXT if value.startswith(OPAQUE_PREFIX) else value
    if isinstance(value, dict):
        return {k: shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shown(v) for v in value]
    return value


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

    @staticmethod
    def opaque(value: Any) -> Any:
        """Every leaf of ``value`` redacted (a credential, or a JSON patch that can carry any value
        at any path)."""
        return _opaque(value)

    def clean(self, group: str, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``body`` without managedFields and with the values of redacted fields (and of
        kubectl's last-applied annotation, which repeats them) redacted."""
        cleaned = dict(body)
        fields = self.fields_of(group, resource)
        meta = cleaned.get("metadata")
        if isinstance(meta, dict) and "managedFields" in meta:
            meta = cleaned["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
        if fields and isinstance(meta, dict):
            annotations = meta.get("annotations")
            if isinstance(annotations, dict) and LAST_APPLIED in annotations:
                masked = {**annotations, LAST_APPLIED: _opaque(annotations[LAST_APPLIED])}
                cleaned["metadata"] = {**meta, "annotations": masked}
        for field in fields:
            if field in cleaned:
                # Keys stay visible (which Secret key changed is what a reviewer needs); values do not.
                cleaned[field] = _opaque(cleaned[field])
        return cleaned


def _opaque(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _opaque(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_opaque(v) for v in value]
    if isinstance(value, str) and value.startswith(OPAQUE_PREFIX):
        return value  # redacted already (at the edge): the same marker again
    data = value if isinstance(value, str) else repr(value)
    return OPAQUE_PREFIX + hmac.new(_PROCESS_KEY, data.encode(), hashlib.sha256).hexdigest()[:32]
