"""Owner links from an object's own metadata: its controller ``ownerReference``.

Used alike for objects seen in audit bodies and objects seen by the watch. The reference names its
owner by apiVersion + kind + name + uid; the kind becomes a resource through the resolver
(discovery, then the built-in table, then a plural), and an owner of a namespaced kind lives in its
dependent's namespace. Without a reference marked ``controller``, the first one places the object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kelemetry.kube.kinds import KindResolver, canonical_group, split_api_version
from kelemetry.model.objects import ObjectKey, ObjectRef, OwnerLink


def owner_link(obj: ObjectRef, meta: Mapping[str, Any], resolver: KindResolver) -> OwnerLink | None:
    """The controller owner that an object's metadata declares, if any."""
    refs = meta.get("ownerReferences")
    if not refs or not isinstance(refs, list):
        return None
    chosen = next((r for r in refs if isinstance(r, dict) and r.get("controller")), None)
    if chosen is None:
        chosen = refs[0] if isinstance(refs[0], dict) else None
    if chosen is None or not isinstance(chosen.get("kind"), str) or not isinstance(chosen.get("name"), str):
        return None
    if not chosen["kind"] or not chosen["name"]:
        return None
    group, version = split_api_version(str(chosen.get("apiVersion", "")))
    info = resolver.resolve(group, chosen["kind"])
    group = canonical_group(group, info.resource)
    key = obj.key
    owner_key = ObjectKey.make(
        key.cluster, group, info.resource, key.namespace if info.namespaced else "", chosen["name"]
    )
    uid = chosen.get("uid")
    owner = ObjectRef(owner_key, uid if isinstance(uid, str) else "", chosen["kind"], version)
    return OwnerLink(child=obj, owner=owner)
