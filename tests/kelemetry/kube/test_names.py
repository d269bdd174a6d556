"""Reading resources as people type them (kelemetry.kube.names) over the built-in table, discovery's
short names and resources only the store knows."""

from __future__ import annotations

import pytest

from kelemetry.kube import names
from kelemetry.kube.discovery import parse_resource_lists
from kelemetry.kube.kinds import KindResolver, builtin_names
from kelemetry.kube.names import ResourceName

BUILTIN = builtin_names()


def resolved(text: str, known: list[ResourceName] = BUILTIN) -> list[str]:
    return [entry.qualified for entry in names.resolve(text, known)]


@pytest.mark.parametrize(
    "text",
    [
        "deploy",
        "Deployment",
        "deployment",
        "DEPLOYMENT",
        "deployments",
        "deployments.apps",
        "deployments.v1.apps",
        "Deployment.apps",
        "deploy.apps",
        " deployments ",
    ],
)
def test_every_kubectl_spelling_of_a_deployment(text: str) -> None:
    assert resolved(text) == ["deployments.apps"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("po", "pods"),
        ("pod", "pods"),
        ("Pod", "pods"),
        ("pods.v1", "pods"),
        ("svc", "services"),
        ("rs", "replicasets.apps"),
        ("sts", "statefulsets.apps"),
        ("cj", "cronjobs.batch"),
        ("hpa", "horizontalpodautoscalers.autoscaling"),
        ("ing", "ingresses.networking.k8s.io"),
        ("ingresses.networking.k8s.io", "ingresses.networking.k8s.io"),
        ("ingresses.v1.networking.k8s.io", "ingresses.networking.k8s.io"),
        ("crd", "customresourcedefinitions.apiextensions.k8s.io"),
        ("ns", "namespaces"),
    ],
)
def test_built_in_short_names_kinds_and_groups(text: str, expected: str) -> None:
    assert resolved(text) == [expected]


def test_a_group_that_does_not_serve_the_resource_matches_nothing() -> None:
    assert resolved("deployments.batch") == []
    assert resolved("pods.apps") == []
    assert resolved("deployments.v1.batch") == []


def test_nothing_known_is_no_match() -> None:
    assert resolved("deplyo") == []
    assert resolved("") == []


def test_a_kind_in_two_groups_is_ambiguous_until_qualified() -> None:
    # Event is a kind of the core group and of events.k8s.io.
    assert sorted(resolved("Event")) == ["events", "events.events.k8s.io"]
    assert resolved("events.events.k8s.io") == ["events.events.k8s.io"]
    assert resolved("events.v1.events.k8s.io") == ["events.events.k8s.io"]
    assert resolved("ev") == ["events"]


def test_a_plural_beats_a_kind_and_a_kind_beats_a_short_name() -> None:
    # A custom resource whose short name is another resource's plural does not take it over.
    known = [*BUILTIN, ResourceName("example.com", "podgroups", "PodGroup", ("pods", "pg"))]
    assert resolved("pods", known) == ["pods"]
    assert resolved("pg", known) == ["podgroups.example.com"]
    assert resolved("PodGroup", known) == ["podgroups.example.com"]


def test_discovery_short_names_reach_the_resolver() -> None:
    lists = [
        {
            "groupVersion": "example.com/v1",
            "resources": [
                {"name": "widgets", "kind": "Widget", "namespaced": True, "shortNames": ["wd", "wdg"]},
                {"name": "widgets/status", "kind": "Widget", "namespaced": True},
            ],
        }
    ]
    table = parse_resource_lists(lists)
    assert table[("example.com", "Widget")].short_names == ("wd", "wdg")
    kinds = KindResolver(table)
    known = kinds.names()
    assert resolved("wd", known) == ["widgets.example.com"]
    assert resolved("wdg.example.com", known) == ["widgets.example.com"]
    assert resolved("widget", known) == ["widgets.example.com"]
    # The built-in table is still there behind discovery.
    assert resolved("deploy", known) == ["deployments.apps"]


def test_the_store_s_resources_add_custom_resources_without_discovery() -> None:
    seen = [ResourceName("example.com", "gadgetries", "Gadget")]
    known = names.unite([], seen, BUILTIN)
    assert resolved("Gadget", known) == ["gadgetries.example.com"]
    assert resolved("gadget", known) == ["gadgetries.example.com"]
    assert resolved("gadgetries.v1alpha1.example.com", known) == ["gadgetries.example.com"]


def test_unite_keeps_one_entry_per_resource_with_every_source_s_names() -> None:
    discovered = [ResourceName("apps", "deployments", "Deployment", ("dep",))]
    seen = [ResourceName("apps", "deployments", "")]
    united = names.unite(discovered, seen, BUILTIN)
    deployments = [entry for entry in united if entry.resource == "deployments"]
    assert deployments == [ResourceName("apps", "deployments", "Deployment", ("dep", "deploy"))]


def test_readings_follow_kubectl() -> None:
    assert names.readings("deploy") == [("deploy", None)]
    assert names.readings("Deployment.apps") == [("deployment", "apps")]
    assert names.readings("deployments.v1.apps") == [("deployments", "v1.apps"), ("deployments", "apps")]
    assert names.readings("pods.v1") == [("pods", "v1"), ("pods", "")]
    assert names.readings("ingresses.networking.k8s.io") == [("ingresses", "networking.k8s.io")]


def test_nearest_finds_typos_and_prefixes() -> None:
    spellings = ["deployments", "Deployment", "deploy", "daemonsets", "pods"]
    assert names.nearest("deplyo", spellings) == ["deploy"]
    assert names.nearest("deploymnets", spellings)[0] == "deployments"
    assert names.nearest("zzzzzz", spellings) == []
    pods = ["demo-5544f8b48c-b25t4", "demo-5544f8b48c-bq8vc", "other"]
    assert names.nearest("b25t4", pods) == ["demo-5544f8b48c-b25t4"]
    assert names.nearest("dmeo", ["demo", "other"]) == ["demo"]


def test_edit_distance() -> None:
    assert names.edit_distance("kitten", "sitting") == 3
    assert names.edit_distance("", "abc") == 3
    assert names.edit_distance("same", "same") == 0
