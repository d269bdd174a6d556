"""Which fields a write can change (hard scopes) and which a patch document names.

The attribution tests (test_attribution.py) cover how these decide between requests; here each
rule is checked on its own, with paths shaped as the diff produces them.
"""

from __future__ import annotations

from typing import Any

import pytest

from kelemetry.diff import scopes
from kelemetry.model.diffs import Diff, Segment


def diff(*segments: Segment, new: Any = 1) -> Diff:
    return Diff(".".join(str(s) for s in segments), 0, new, segments)


@pytest.mark.parametrize(
    ("verb", "subresource", "has_status", "segments", "allowed"),
    [
        pytest.param("update", "status", True, ("status", "replicas"), True, id="status-writes-status"),
        pytest.param("update", "status", True, ("spec", "replicas"), False, id="status-never-spec"),
        pytest.param(
            "update", "status", True, ("metadata", "generation"), False, id="status-never-generation"
        ),
        pytest.param(
            "update",
            "status",
            True,
            ("metadata", "annotations", "deployment.kubernetes.io/revision"),
            True,
            id="status-may-annotate",
        ),
        pytest.param("patch", "", True, ("status", "phase"), False, id="main-never-status"),
        pytest.param("patch", "", False, ("status", "phase"), True, id="main-status-without-subresource"),
        pytest.param("patch", "", True, ("spec", "template"), True, id="main-spec"),
        pytest.param("patch", "scale", True, ("spec", "replicas"), True, id="scale-replicas"),
        pytest.param("patch", "scale", True, ("metadata", "generation"), True, id="scale-generation"),
        pytest.param("patch", "scale", True, ("spec", "template"), False, id="scale-not-template"),
        pytest.param("create", "binding", True, ("spec", "nodeName"), True, id="binding-node"),
        pytest.param(
            "create",
            "binding",
            True,
            ("status", "conditions", ("type", "PodScheduled"), "status"),
            True,
            id="binding-podscheduled",
        ),
        pytest.param(
            "create",
            "binding",
            True,
            ("status", "conditions", ("type", "Ready"), "status"),
            False,
            id="binding-not-ready",
        ),
        pytest.param("create", "eviction", True, ("metadata", "deletionTimestamp"), True, id="eviction"),
        pytest.param("delete", "", True, ("metadata", "deletionTimestamp"), True, id="delete-graceful"),
        pytest.param("delete", "", True, ("spec", "replicas"), False, id="delete-not-spec"),
        pytest.param("update", "finalize", False, ("spec", "finalizers", 0), True, id="finalize"),
        pytest.param("patch", "proxy", True, ("anything",), True, id="unknown-subresource-anything"),
    ],
)
def test_hard_scopes(
    verb: str, subresource: str, has_status: bool, segments: tuple[Segment, ...], allowed: bool
) -> None:
    assert scopes.hard_scope(verb, subresource, has_status=has_status).allows(segments) is allowed


KWOK_STATUS_PATCH = {
    "status": {
        "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
        "phase": "Running",
        "podIP": "10.0.0.1",
    }
}


@pytest.mark.parametrize(
    ("patch", "change", "named"),
    [
        pytest.param(KWOK_STATUS_PATCH, diff("status", "phase"), True, id="listed-field"),
        pytest.param(KWOK_STATUS_PATCH, diff("status", "startTime"), False, id="unlisted-field"),
        pytest.param(
            KWOK_STATUS_PATCH,
            diff("status", "conditions", ("type", "Ready"), "status"),
            True,
            id="listed-item",
        ),
        pytest.param(
            KWOK_STATUS_PATCH,
            diff("status", "conditions", ("type", "PodScheduled")),
            False,
            id="unlisted-item-added",
        ),
        pytest.param(
            KWOK_STATUS_PATCH,
            diff("status", "conditions", ("type", "PodScheduled"), new=None),
            True,
            id="unlisted-item-removed-merge-patch-replaces-lists",
        ),
        pytest.param({"spec": {"replicas": 3}}, diff("spec", "replicas"), True, id="scalar"),
        pytest.param(
            {"spec": {"template": None}}, diff("spec", "template", "spec", "x"), True, id="null-deletes"
        ),
        pytest.param(
            {"metadata": {"labels": {"a": "b"}}}, diff("metadata", "generation"), False, id="side-effect"
        ),
        pytest.param(
            {"spec": {"$patch": "replace", "replicas": 1}},
            diff("spec", "paused"),
            True,
            id="replace-directive",
        ),
        pytest.param(
            {"spec": {"$setElementOrder/containers": [{"name": "a"}]}},
            diff("spec", "containers", ("name", "b")),
            True,
            id="element-order",
        ),
        pytest.param(
            [{"op": "replace", "path": "/spec/replicas", "value": 3}],
            diff("spec", "replicas"),
            True,
            id="jsonpatch",
        ),
        pytest.param(
            [{"op": "add", "path": "/spec/containers/0/image", "value": "x"}],
            diff("spec", "containers", ("name", "a"), "image"),
            True,
            id="jsonpatch-position-may-be-the-item",
        ),
        pytest.param(
            [{"op": "replace", "path": "/spec/replicas", "value": 3}],
            diff("spec", "paused"),
            False,
            id="jsonpatch-other",
        ),
        pytest.param(
            {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {}},
            diff("spec", "replicas"),
            None,
            id="apply-configuration-cannot-tell",
        ),
        pytest.param(None, diff("spec", "replicas"), None, id="no-body"),
    ],
)
def test_named_by(patch: Any, change: Diff, named: bool | None) -> None:
    assert scopes.named_by(patch, change) is named
