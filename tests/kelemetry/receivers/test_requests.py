"""Request metrics derived from the audit stream (``kelemetry.receivers.requests``): each request
counted once, at its final stage, under bounded labels — the acting (impersonated) user, nodes as
one user, the first N users and resources by name and ``other`` beyond, known verbs, exact status
codes — and its apiserver latency in the histogram. The same metrics through the webhook and
/metrics are in test_metrics_endpoint.py."""

from __future__ import annotations

from typing import Any

import pytest

from kelemetry import metrics
from kelemetry.receivers.auditwire import AuditEvent, from_mapping
from kelemetry.receivers.requests import RequestMetrics
from tests import promtext
from tests.factories import audit_event


def event(**fields: Any) -> AuditEvent:
    return from_mapping(audit_event(with_bodies=False, **fields))


def observed(events: list[AuditEvent], cluster: str = "c1", **bounds: int) -> RequestMetrics:
    requests = RequestMetrics(metrics.Registry(), **bounds)
    requests.observe(events, cluster)
    return requests


def counts(requests: RequestMetrics) -> dict[tuple[str, ...], float]:
    return requests.requests.series()


def test_a_request_is_counted_once_at_its_final_stage_with_its_labels_and_latency() -> None:
    stages = [
        event(verb="patch", resource="deployments", group="apps", subresource="scale", code=200, stage=stage)
        for stage in ("RequestReceived", "ResponseStarted", "ResponseComplete")
    ]
    registry = metrics.Registry()
    requests = RequestMetrics(registry)
    for each in stages:  # the stages of one request, in three batches
        requests.observe([each], "c1")

    assert counts(requests) == {("c1", "apps", "deployments/scale", "patch", "200", "admin"): 1}
    # received 10:00:00.000000, completed 10:00:00.010000 (the factory's defaults)
    assert requests.duration.count(("c1", "deployments/scale", "patch")) == 1
    assert requests.duration.sum(("c1", "deployments/scale", "patch")) == pytest.approx(0.01)
    values = promtext.samples(registry.render().decode())
    series = 'cluster="c1",le="{}",resource="deployments/scale",verb="patch"'
    bucket = "kelemetry_audit_request_duration_seconds_bucket{%s}"
    assert values[bucket % series.format("0.005")] == 0
    assert values[bucket % series.format("0.01")] == 1  # le is inclusive


def test_a_panic_is_a_final_stage_too() -> None:
    requests = observed([event(verb="get", stage="Panic", code=500)])

    assert counts(requests) == {("c1", "", "pods", "get", "500", "admin"): 1}


def test_the_impersonated_user_is_the_one_acting_and_nodes_are_one_user() -> None:
    impersonating = audit_event(with_bodies=False, verb="get", user="admin", code=200)
    impersonating["impersonatedUser"] = {"username": "alice"}
    requests = observed(
        [
            from_mapping(impersonating),
            event(verb="update", resource="nodes", namespace="", user="system:node:kind-worker", code=200),
            event(verb="update", resource="nodes", namespace="", user="system:node:kind-worker2", code=200),
        ]
    )

    assert counts(requests) == {
        ("c1", "", "pods", "get", "200", "alice"): 1,
        ("c1", "", "nodes", "update", "200", "system:node"): 2,
    }


def test_users_past_the_first_n_are_other_and_the_first_keep_their_label() -> None:
    users = ["u1", "u2", "u3", "u4", "u1", "u3"]
    requests = observed([event(verb="get", code=200, user=user) for user in users], max_users=2)

    assert counts(requests) == {
        ("c1", "", "pods", "get", "200", "u1"): 2,
        ("c1", "", "pods", "get", "200", "u2"): 1,
        ("c1", "", "pods", "get", "200", "other"): 3,
    }


def test_resources_past_the_first_n_are_other_in_group_and_resource() -> None:
    requests = observed(
        [
            event(verb="list", resource="pods", code=200),
            event(verb="list", resource="events", code=200),
            event(verb="list", resource="events", group="events.k8s.io", code=200),
        ],
        max_resources=2,
    )

    assert counts(requests) == {
        ("c1", "", "pods", "list", "200", "admin"): 1,
        ("c1", "", "events", "list", "200", "admin"): 1,
        ("c1", "other", "other", "list", "200", "admin"): 1,
    }
    assert requests.duration.count(("c1", "other", "list")) == 1


def test_non_resource_requests_odd_verbs_and_codes_stay_bounded() -> None:
    healthz = audit_event(with_bodies=False, verb="get", code=200)
    del healthz["objectRef"]
    no_status = audit_event(with_bodies=False, verb="get")
    del no_status["responseStatus"]
    requests = observed(
        [
            from_mapping(healthz),
            event(verb="frobnicate", code=200),
            event(verb="get", code=999),
            from_mapping(no_status),
        ]
    )

    assert counts(requests) == {
        ("c1", "", "nonresource", "get", "200", "admin"): 1,
        ("c1", "", "pods", "other", "200", "admin"): 1,
        ("c1", "", "pods", "get", "other", "admin"): 1,
        ("c1", "", "pods", "get", "unknown", "admin"): 1,
    }


def test_a_missing_or_unreadable_timestamp_counts_the_request_without_a_latency() -> None:
    requests = observed(
        [
            event(verb="get", code=200, completed=""),
            event(verb="get", code=200, received="yesterday"),
            # A clock that went backwards is a latency of 0, not a negative one.
            event(verb="get", code=200, received="2024-05-01T10:00:01Z", completed="2024-05-01T10:00:00Z"),
        ]
    )

    assert counts(requests) == {("c1", "", "pods", "get", "200", "admin"): 3}
    assert requests.duration.count(("c1", "pods", "get")) == 1
    assert requests.duration.sum(("c1", "pods", "get")) == 0.0


def test_clusters_are_counted_apart() -> None:
    requests = RequestMetrics(metrics.Registry())
    requests.observe([event(verb="get", code=200)], "host")
    requests.observe([event(verb="get", code=200)], "member-1")

    assert set(counts(requests)) == {
        ("host", "", "pods", "get", "200", "admin"),
        ("member-1", "", "pods", "get", "200", "admin"),
    }
