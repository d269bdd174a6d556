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
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from kelemetry.kube.kinds import pluralize, split_api_version

REDACTED_TEXT = "<redacted>"
OPAQUE_PREFIX = REDACTED_TEXT + ":"
# `kubectl apply` copies the whole manifest it applied into this annotation, Secret values included.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_PROCESS_KEY = os.urandom(32)
# A JSON escape of an ASCII letter ("secr\\u0065ts"); Go's encoder escapes only <, > and &, so in a
# real stream this is rare.
_LETTER_ESCAPE = re.compile(rb"\\u00[4-7]")
# A field that has a binary twin: a ConfigMap keeps non-UTF-8 values under binaryData, beside data.
_TWIN_FIELDS = {"data": "binaryData"}


def resource_name(text: str) -> str:
    """A resource or group as the apiserver resolves it: a crafted sender may write ``Secrets`` or
    ``%73ecrets``; both still name Secrets."""
    if "%" in text:
        text = unquote(text)
    return text.strip().lower()


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
            key = (resource_name(rule.group), resource_name(rule.resource))
            twin = _TWIN_FIELDS.get(rule.field)
            added = {rule.field, twin} if twin else {rule.field}
            self._fields[key] = self._fields.get(key, frozenset()) | added
        # Lower-cased fragments of every redacted resource's name that its kind, list kind and
        # resource all contain ("secr" for Secret, SecretList, secrets), for a cheap look at raw bytes.
        self._markers = tuple(
            {resource[: max(len(resource) - 3, 3)].encode() for _group, resource in self._fields}
        )
        self._kind_fields: dict[tuple[Any, Any], frozenset[str]] = {}

    def fields_of(self, group: str, resource: str) -> frozenset[str]:
        found = self._fields.get((group, resource))
        if found is not None:
            return found
        return self._fields.get((resource_name(group), resource_name(resource)), frozenset())

    def may_hold(self, raw: bytes) -> bool:
        """Whether ``raw`` JSON can name a redacted resource or kind (in any case, or behind a JSON
        escape). False means it certainly holds nothing to redact."""
        lowered = raw.lower()
        return any(marker in lowered for marker in self._markers) or _LETTER_ESCAPE.search(raw) is not None

    def fields_of_kind(self, api_version: Any, kind: Any) -> frozenset[str]:
        """The redacted fields of objects that say they are ``kind`` of ``api_version``."""
        if not isinstance(kind, str) or not kind:
            return frozenset()  # a body's kind is not checked at the edge: a list or a mapping names nothing
        key = (api_version if isinstance(api_version, str) else "", kind)
        found = self._kind_fields.get(key)
        if found is None:
            found = frozenset()
            group = split_api_version(key[0])[0] if key[0] else ""
            found = self.fields_of(group, pluralize(kind))
            if len(self._kind_fields) < 4096:  # kinds are few; a flood of made-up ones is not kept
                self._kind_fields[key] = found
        return found

    def resources(self) -> frozenset[str]:
        return frozenset(resource for _group, resource in self._fields)

    @staticmethod
    def opaque(value: Any) -> Any:
        """Every leaf of ``value`` redacted (a credential, or a JSON patch that can carry any value
        at any path)."""
        return _opaque(value)

    def clean(self, group: str, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``body`` without managedFields and with the values of redacted fields (and of
        kubectl's last-applied annotation, which repeats them) redacted.

        A field is redacted when the resource the request named has it, or the kind the body says
        it is: a body is not trusted to match its request. A list (``SecretList``, a ``v1/List``
        mixing kinds, a deletecollection's answer) has each item cleaned as what it says it is, or
        as the list's own kind or resource when the item does not say; a watch event its object."""
        cleaned = dict(body)
        kind = cleaned.get("kind")
        fields = self.fields_of(group, resource)
        if kind is not None:
            fields = fields | self.fields_of_kind(cleaned.get("apiVersion"), kind)
        items = cleaned.get("items")
        if isinstance(items, list):
            item_kind = kind[:-4] if isinstance(kind, str) and kind.endswith("List") else None
            list_fields = fields | self.fields_of_kind(cleaned.get("apiVersion"), item_kind)
            cleaned["items"] = [self._clean_item(group, resource, list_fields, item) for item in items]
        watched = cleaned.get("object")
        if isinstance(watched, dict) and isinstance(cleaned.get("type"), str):
            cleaned["object"] = self.clean(group, resource, watched)
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

    def _clean_item(self, group: str, resource: str, list_fields: frozenset[str], item: Any) -> Any:
        if not isinstance(item, dict):
            return _opaque(item) if list_fields else item
        cleaned = self.clean(group, resource, item)
        for field in list_fields:
            if field in cleaned:
                cleaned[field] = _opaque(cleaned[field])  # idempotent: redacted values stay as they are
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
