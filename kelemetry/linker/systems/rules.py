"""User rules: parents of in-house systems' objects, declared in a YAML or JSON file.

An in-house controller that copies objects around (across clusters or not) usually leaves a label or
an annotation naming what it copied from. A rule says how to read it: a selector (group, resource,
labels, annotations) and a parent key whose fields are templates over the object::

    rules:
      - name: app-owner
        match:
          group: apps                    # optional: a string or a list; "" is the core group
          resource: [deployments, statefulsets]
          labels:
            app.example.com/owner: null  # null: the key is present, with any value
          annotations:
            app.example.com/tier: backend
        parent:
          cluster: "{annotations[app.example.com/home]}"   # optional; empty means the object's own
          group: example.com             # optional: "" (core) when omitted
          version: v1                    # optional
          kind: Application              # optional
          resource: applications         # required
          namespace: "{namespace}"       # optional: the object's own when omitted; "" for cluster-scoped
          name: "{labels[app.example.com/owner]}"          # required

Templates are literal text with ``{field}`` for the object's ``cluster``, ``group``, ``version``,
``resource``, ``namespace``, ``name``, ``uid`` or ``kind``, ``{labels[KEY]}`` and
``{annotations[KEY]}`` for its metadata, and ``{{``/``}}`` for literal braces. Nothing else is
evaluated (this is not ``str.format``: no attributes, no format specs).

Rules are tried in file order and the first whose selector matches decides: its parent, or a
refusal when a template names a label or annotation the object lacks, renders an empty resource or
name or one containing "/", or names a cluster that is not one of ours. A file that is not valid
YAML/JSON or does not have this shape is rejected whole by `load_rules` with a ``ValueError``
saying where.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from kelemetry.linker.links import Clusters, Marks, Refusal
from kelemetry.linker.systems import metadata, parents
from kelemetry.model.objects import ObjectKey, ObjectRef

OBJECT_FIELDS = frozenset({"cluster", "group", "version", "resource", "namespace", "name", "uid", "kind"})
_TOKEN = re.compile(r"\{\{|\}\}|\{[^{}]*\}|[{}]")
_METADATA_FIELD = re.compile(r"(labels|annotations)\[([^\[\]]+)\]")


class Field(NamedTuple):
    """One ``{...}`` of a template: ``source`` is "object", "labels" or "annotations"."""

    source: str
    key: str


@dataclass(frozen=True, slots=True)
class Template:
    text: str
    parts: tuple[str | Field, ...]

    @classmethod
    def compile(cls, text: str) -> Template:
        parts: list[str | Field] = []
        position = 0
        for token in _TOKEN.finditer(text):
            if token.start() > position:
                parts.append(text[position : token.start()])
            position = token.end()
            value = token.group()
            if value in ("{{", "}}"):
                parts.append(value[0])
            elif value in ("{", "}"):
                raise ValueError(f"unbalanced {value!r} at {token.start()} in {text!r} (write {value * 2})")
            else:
                parts.append(_field(value[1:-1], text))
        if position < len(text):
            parts.append(text[position:])
        return cls(text, tuple(parts))

    def render(
        self, obj: ObjectRef, labels: Mapping[str, str], annotations: Mapping[str, str]
    ) -> str | Field:
        """The rendered text, or the first field the object lacks."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif part.source == "object":
                out.append(_object_field(obj, part.key))
            else:
                values = labels if part.source == "labels" else annotations
                value = values.get(part.key)
                if value is None:
                    return part
                out.append(value)
        return "".join(out)


def _field(inner: str, text: str) -> Field:
    inner = inner.strip()
    if inner in OBJECT_FIELDS:
        return Field("object", inner)
    match = _METADATA_FIELD.fullmatch(inner)
    if match:
        return Field(match.group(1), match.group(2))
    known = ", ".join(sorted(OBJECT_FIELDS))
    raise ValueError(
        f"unknown field {{{inner}}} in {text!r}: use one of {known}, labels[KEY] or annotations[KEY]"
    )


def _object_field(obj: ObjectRef, field: str) -> str:
    match field:
        case "uid":
            return obj.uid
        case "kind":
            return obj.kind
        case "version":
            return obj.version
        case _:
            return str(getattr(obj.key, field))


@dataclass(frozen=True, slots=True)
class Selector:
    groups: frozenset[str] | None
    """None: any group."""
    resources: frozenset[str] | None
    labels: Mapping[str, str | None]
    """Key → the value it must have, or None for "present with any value"."""
    annotations: Mapping[str, str | None]

    def matches(self, obj: ObjectRef, labels: Mapping[str, str], annotations: Mapping[str, str]) -> bool:
        if self.groups is not None and obj.key.group not in self.groups:
            return False
        if self.resources is not None and obj.key.resource not in self.resources:
            return False
        return _has(labels, self.labels) and _has(annotations, self.annotations)


def _has(values: Mapping[str, str], wanted: Mapping[str, str | None]) -> bool:
    for key, value in wanted.items():
        actual = values.get(key)
        if actual is None or (value is not None and actual != value):
            return False
    return True


@dataclass(frozen=True, slots=True)
class ParentTemplate:
    cluster: Template | None
    group: Template
    version: Template
    kind: Template
    resource: Template
    namespace: Template
    name: Template


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    match: Selector
    parent: ParentTemplate


class RuleLinker:
    name = "rules"
    marks: Marks | None = None  # a rule may select by resource alone

    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self.rules = tuple(rules)

    def parent(
        self, obj: ObjectRef, body: Mapping[str, Any], clusters: Clusters
    ) -> ObjectRef | Refusal | None:
        if not self.rules:
            return None
        labels, annotations = metadata.labels_of(body), metadata.annotations_of(body)
        for rule in self.rules:
            if rule.match.matches(obj, labels, annotations):
                return self._apply(rule, obj, labels, annotations, clusters)
        return None

    def _apply(
        self,
        rule: Rule,
        obj: ObjectRef,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        clusters: Clusters,
    ) -> ObjectRef | Refusal:
        spec = rule.parent
        rendered: dict[str, str] = {}
        for field in ("group", "version", "kind", "resource", "namespace", "name"):
            template: Template = getattr(spec, field)
            value = template.render(obj, labels, annotations)
            if isinstance(value, Field):
                return self._refuse(rule, f"parent {field}: the object has no {value.source}[{value.key}]")
            rendered[field] = value
        for field in ("resource", "name"):
            if not rendered[field]:
                text = getattr(spec, field).text
                return self._refuse(rule, f"parent {field} {text!r} renders empty")
        for field in ("group", "resource", "namespace", "name"):
            if "/" in rendered[field]:
                return self._refuse(rule, f"parent {field} {rendered[field]!r} contains '/'")
        cluster = obj.key.cluster
        if spec.cluster is not None:
            named = spec.cluster.render(obj, labels, annotations)
            if isinstance(named, Field):
                return self._refuse(rule, f"parent cluster: the object has no {named.source}[{named.key}]")
            if named and named != obj.key.cluster:
                ours = clusters.ours(named)
                if ours is None:
                    return self._refuse(rule, f"parent cluster {named!r} is not one of ours")
                cluster = ours
        key = ObjectKey.make(
            cluster, rendered["group"], rendered["resource"], rendered["namespace"], rendered["name"]
        )
        found = parents.parent(self.name, obj, key, kind=rendered["kind"], version=rendered["version"])
        if isinstance(found, Refusal):
            return self._refuse(rule, found.reason)
        return found

    def _refuse(self, rule: Rule, reason: str) -> Refusal:
        return Refusal(self.name, f"rule {rule.name!r}: {reason}")


def load_rules(path: str | Path) -> tuple[Rule, ...]:
    """The rules of a YAML file, or a JSON one (by its ``.json`` suffix).

    Raises:
        ValueError: the file is not valid YAML/JSON or not shaped as the module docstring shows;
            the message names the file and the rule.
        OSError: the file cannot be read.
    """
    path = Path(path)
    text = path.read_bytes()
    if path.suffix.lower() == ".json":
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    else:
        # PyYAML comes with the kubernetes client; imported here, and without its stubs, so the
        # rest of the collector neither loads it nor needs types-PyYAML.
        yaml = importlib.import_module("yaml")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    return parse_rules(data, str(path))


def parse_rules(data: Any, source: str = "rules") -> tuple[Rule, ...]:
    """Rules from an already-parsed document (``{"rules": [...]}``); ValueError when malformed."""
    if not isinstance(data, Mapping) or set(data) != {"rules"}:
        raise ValueError(f"{source}: expected a mapping with one key, 'rules' (a list of rules)")
    items = data["rules"]
    if not isinstance(items, list):
        raise ValueError(f"{source}: 'rules' must be a list")
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"{source}: rule {index}"
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            where = f"{where} ({item['name']!r})"
        try:
            rule = _rule(item)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if rule.name in seen:
            raise ValueError(f"{where}: the name is used by an earlier rule")
        seen.add(rule.name)
        rules.append(rule)
    return tuple(rules)


def _rule(item: Any) -> Rule:
    body = _mapping(item, "a rule", {"name", "match", "parent"})
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("'name' must be a non-empty string")
    return Rule(name, _selector(body.get("match")), _parent(body.get("parent")))


def _selector(item: Any) -> Selector:
    body = _mapping(item, "'match'", {"group", "resource", "labels", "annotations"})
    selector = Selector(
        groups=_names(body, "group"),
        resources=_names(body, "resource"),
        labels=_wanted(body, "labels"),
        annotations=_wanted(body, "annotations"),
    )
    if selector.resources is None and not selector.labels and not selector.annotations:
        raise ValueError("'match' needs a resource, a label or an annotation (it would match every object)")
    return selector


def _names(body: Mapping[str, Any], field: str) -> frozenset[str] | None:
    value = body.get(field)
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise ValueError(f"match.{field} must be a string or a non-empty list of strings")
    return frozenset(values)


def _wanted(body: Mapping[str, Any], field: str) -> Mapping[str, str | None]:
    value = body.get(field)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"match.{field} must be a mapping of key to value (null: any value)")
    for key, wanted in value.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"match.{field}: {key!r} is not a key")
        if wanted is not None and not isinstance(wanted, str):
            raise ValueError(f"match.{field}[{key}]: {wanted!r} is not a string (quote it) or null")
    return dict(value)


_PARENT_FIELDS = ("cluster", "group", "version", "kind", "resource", "namespace", "name")


def _parent(item: Any) -> ParentTemplate:
    body = _mapping(item, "'parent'", set(_PARENT_FIELDS))
    for field in ("resource", "name"):
        if field not in body:
            raise ValueError(f"parent.{field} is required")
    templates: dict[str, Template] = {}
    for field in _PARENT_FIELDS:
        default = "{namespace}" if field == "namespace" else ""
        value = body.get(field, default)
        if not isinstance(value, str):
            raise ValueError(f"parent.{field} must be a string template, not {value!r}")
        try:
            templates[field] = Template.compile(value)
        except ValueError as exc:
            raise ValueError(f"parent.{field}: {exc}") from None
    return ParentTemplate(
        cluster=templates["cluster"] if "cluster" in body else None,
        group=templates["group"],
        version=templates["version"],
        kind=templates["kind"],
        resource=templates["resource"],
        namespace=templates["namespace"],
        name=templates["name"],
    )


def _mapping(item: Any, what: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise ValueError(f"{what} must be a mapping")
    unknown = sorted(str(k) for k in item if k not in allowed)
    if unknown:
        raise ValueError(
            f"{what} has unknown keys {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )
    return item
