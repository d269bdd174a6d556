"""Which key a list's items are matched by; how a keyed diff then reads is `test_compute`'s business."""

from __future__ import annotations

import re

import pytest

from kelemetry.diff import mergekeys
from kelemetry.model.diffs import Segment


@pytest.mark.parametrize(
    ("parent", "field", "expected"),
    [
        pytest.param("status", "conditions", ("type",), id="status-conditions"),
        pytest.param(0, "conditions", ("type",), id="conditions-anywhere"),
        pytest.param("spec", "containers", ("name",), id="containers"),
        pytest.param(("name", "app"), "volumeMounts", ("mountPath",), id="volume-mounts"),
        pytest.param(("name", "app"), "ports", ("containerPort", "port"), id="ports-by-shape"),
        pytest.param("metadata", "ownerReferences", ("uid",), id="owner-references"),
        pytest.param("spec", "readinessGates", ("conditionType",), id="readiness-gates"),
        pytest.param("status", "addresses", ("type",), id="node-addresses"),
        pytest.param(0, "addresses", ("name",), id="endpoints-addresses-generic"),
        pytest.param(None, "addresses", ("name",), id="root-addresses-generic"),
        pytest.param("spec", "members", ("name",), id="unknown-generic"),
        pytest.param("spec", None, ("name",), id="list-at-root"),
        pytest.param("spec", 3, ("name",), id="list-in-list"),
    ],
)
def test_key_fields(parent: Segment | None, field: Segment | None, expected: tuple[str, ...]) -> None:
    assert mergekeys.key_fields(parent, field) == expected


def test_key_fields_render_unquoted() -> None:
    # A key field is printed bare in `[field=value]`; a path reader relies on it being a word.
    tables = [*mergekeys.BY_FIELD.values(), *mergekeys.BY_PARENT.values(), mergekeys.GENERIC]
    assert [
        fields for fields in tables if not fields or not all(re.fullmatch(r"\w+", f) for f in fields)
    ] == []
