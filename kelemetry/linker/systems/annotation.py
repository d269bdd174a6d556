"""Kelemetry's own parent link: ``kelemetry.kubewharf.io/parent-link`` on any object.

The annotation is JSON naming the parent: ``cluster``, ``group``, ``version``, ``resource``,
``namespace``, ``name``, ``uid`` (Go Kelemetry's format); an empty or missing cluster means the
object's own cluster. Whoever sets it (an in-house controller, a person) decides where the object
hangs, across clusters too. Malformed JSON, a missing resource or name, or a cluster that is not
one of ours is refused, never followed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from kelemetry.linker.links import Clusters, Marks, Refusal
from kelemetry.model.objects import ObjectKey, ObjectRef

ANNOTATION = "kelemetry.kubewharf.io/parent-link"


class ParentLinkAnnotation:
    name = "annotation"
    marks = Marks(annotations=frozenset({ANNOTATION}))

    def parent(
        self, obj: ObjectRef, body: Mapping[str, Any], clusters: Clusters
    ) -> ObjectRef | Refusal | None:
        meta = body.get("metadata")
        # dict first: bodies are decoded JSON, and the Mapping ABC check is the slow path.
        annotations = meta.get("annotations") if isinstance(meta, dict | Mapping) else None
        text = annotations.get(ANNOTATION) if isinstance(annotations, dict | Mapping) else None
        if text is None:
            return None
        if not isinstance(text, str):
            return Refusal(self.name, f"{ANNOTATION} is not a string")
        try:
            link = orjson.loads(text)
        except orjson.JSONDecodeError:
            return Refusal(self.name, f"{ANNOTATION} is not JSON: {text[:100]!r}")
        if not isinstance(link, dict):
            return Refusal(self.name, f"{ANNOTATION} is not a JSON object")
        fields = {
            k: link.get(k) for k in ("cluster", "group", "version", "resource", "namespace", "name", "uid")
        }
        if any(value is not None and not isinstance(value, str) for value in fields.values()):
            return Refusal(self.name, f"{ANNOTATION} has a field that is not a string")
        resource, name = fields["resource"] or "", fields["name"] or ""
        if not resource or not name:
            return Refusal(self.name, f"{ANNOTATION} names no resource or name")
        named = fields["cluster"] or obj.key.cluster
        cluster = clusters.ours(named) if fields["cluster"] else obj.key.cluster
        if cluster is None:
            return Refusal(self.name, f"{ANNOTATION} names cluster {named!r}, which is not one of ours")
        key = ObjectKey.make(cluster, fields["group"] or "", resource, fields["namespace"] or "", name)
        return ObjectRef(key, fields["uid"] or "", "", fields["version"] or "")
