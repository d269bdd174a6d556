"""Reading Jaeger query JSON in tests, the way the original project's jq checks do."""

from __future__ import annotations

from typing import Any


def fields(log: dict[str, Any]) -> dict[str, Any]:
    return {field["key"]: field["value"] for field in log["fields"]}


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span["tags"]}


def root_of(trace: dict[str, Any]) -> dict[str, Any]:
    roots = [span for span in trace["spans"] if not span["references"]]
    assert len(roots) == 1, f"expected exactly one root span, got {len(roots)}"
    return roots[0]


def children_of(trace: dict[str, Any], span_id: str) -> list[dict[str, Any]]:
    return [s for s in trace["spans"] if any(r["spanID"] == span_id for r in s["references"])]
