"""The object at a moment, for the API and the CLI: find the incarnation a query means, list its
stored versions, read the one in effect at a time (or by resourceVersion), and compare two.

The query names an object as lookups do (cluster, group, resource, namespace, name, optionally a
uid). When the name was used by several incarnations, the one that existed at the moment asked
about is meant (without a moment: the newest). Reconstruction and diffs are ``frontend.revisions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from frontend import revisions
from frontend.backend import Backend
from frontend.types import ObjectQuery
from kelemetry import errors
from kelemetry.model.objects import KnownObject
from kelemetry.model.versions import ObjectVersion


@dataclass(frozen=True, slots=True)
class History:
    target: KnownObject
    versions: list[ObjectVersion]
    incarnations: list[KnownObject]
    """Every incarnation of the target's key (the target included)."""

    @property
    def what(self) -> str:
        key = self.target.key
        where = f"{key.namespace}/" if key.namespace else ""
        return f"{self.target.kind or key.resource} {where}{key.name} (uid {self.target.uid or '?'})"


@dataclass(frozen=True, slots=True)
class Moment:
    """One of: a time (µs) or a resourceVersion."""

    at_us: int | None = None
    resource_version: str | None = None


def history(backend: Backend, query: ObjectQuery, at_us: int | None = None) -> History:
    found = backend.find_objects(query)
    if query.uid:
        # The key of that uid; its other incarnations are still listed beside it.
        keys_of_uid = {row.key for row in found if row.uid == query.uid}
        found = [row for row in found if row.key in keys_of_uid]
    if not found:
        raise errors.NotFound(f"no object {query.describe()} is known")
    keys = sorted({row.key for row in found}, key=str)
    if len(keys) > 1:
        choices = "; ".join(
            f"namespace={k.namespace!r} group={k.group!r} cluster={k.cluster!r}" for k in keys
        )
        raise errors.InputError(f"{query.describe()} matches {len(keys)} objects; say which: {choices}")
    incarnations = sorted(found, key=lambda r: (r.first_us or r.last_us or 0, r.uid))
    candidates = [row for row in incarnations if not query.uid or row.uid == query.uid]
    listed = [(row, backend.revisions(row)) for row in candidates]
    with_versions = [(row, versions) for row, versions in listed if versions]
    if at_us is not None and len(with_versions) > 1:
        # The incarnation that existed then: the newest one written at or before the moment.
        # Ordered by each one's first written version, not by first_us: that is a whole second, and
        # a name made again within the second of its delete would sort by uid.
        with_versions.sort(key=lambda item: item[1][0].time_us)
        earlier = [(row, versions) for row, versions in with_versions if versions[0].time_us <= at_us]
        row, versions = earlier[-1] if earlier else with_versions[0]
    elif with_versions:
        row, versions = with_versions[-1]
    else:
        row, versions = listed[-1]
    return History(row, versions, incarnations)


def pick(found: History, moment: Moment) -> ObjectVersion:
    if moment.resource_version:
        return revisions.by_resource_version(found.versions, moment.resource_version, found.what)
    if moment.at_us is None:
        if not found.versions:
            return revisions.in_effect(found.versions, 0, found.what)
        return found.versions[-1]
    return revisions.in_effect(found.versions, moment.at_us, found.what)


def manifest(backend: Backend, found: History, moment: Moment) -> revisions.Manifest:
    chosen = pick(found, moment)
    return revisions.manifest(found.versions, chosen, lambda rv: backend.revision_body(found.target, rv))


def version_json(version: ObjectVersion) -> dict[str, Any]:
    return {
        "rv": version.resource_version,
        "time": version.time_us,
        "verb": version.verb,
        "user": version.user,
        "source": version.source,
        "complete": version.complete,
        "deleted": version.deleted,
        "spanID": None if version.span_id is None else f"{version.span_id:016x}",
        "label": revisions.describe(version),
    }


def diff_json(left: revisions.Manifest, right: revisions.Manifest) -> dict[str, Any]:
    left_text = revisions.to_yaml(left.body)
    right_text = revisions.to_yaml(right.body)
    rows = revisions.side_by_side(left_text, right_text)
    return {
        "left": {**version_json(left.version), "notes": list(left.notes)},
        "right": {**version_json(right.version), "notes": list(right.notes)},
        "changed": sum(1 for row in rows if row.kind != "same"),
        "rows": [
            {
                "kind": row.kind,
                "leftNo": row.left_no,
                "left": row.left,
                "rightNo": row.right_no,
                "right": row.right,
            }
            for row in rows
        ],
        "unified": revisions.unified(
            left_text, right_text, revisions.describe(left.version), revisions.describe(right.version)
        ),
    }
