"""The linker registry (kelemetry.linker.registry): every name builds a linker of that name, the
defaults are registered and leave out the file-driven rules, and configured hosts and rules reach
the linkers they are meant for.
"""

from __future__ import annotations

from kelemetry.linker import registry
from kelemetry.linker.links import Clusters
from kelemetry.linker.systems.rules import parse_rules
from kelemetry.model.objects import ObjectRef
from tests.kelemetry.linker.bodies import body, ref


def test_every_factory_builds_the_linker_of_its_name() -> None:
    factories = registry.registry()
    assert set(registry.DEFAULT) <= set(factories)
    assert "rules" not in registry.DEFAULT
    for name, factory in factories.items():
        assert factory().name == name


def test_configured_hosts_reach_their_linker_only() -> None:
    factories = registry.registry(hosts={"karmada": "fed"})
    clusters = Clusters(frozenset({"fed", "host", "member1"}))
    member = ref("member1", "apps", "deployments", "default", "nginx")
    karmada_body = body(
        member,
        annotations={"work.karmada.io/namespace": "karmada-es-member1", "work.karmada.io/name": "nginx-x"},
    )
    admiral_body = body(member, labels={"kubeadmiral.io/managed": "true"})
    karmada = factories["karmada"]().parent(member, karmada_body, clusters)
    admiral = factories["kubeadmiral"]().parent(member, admiral_body, clusters)
    assert isinstance(karmada, ObjectRef) and karmada.key.cluster == "fed"
    assert isinstance(admiral, ObjectRef) and admiral.key.cluster == "host"


def test_user_rules_reach_the_rules_linker() -> None:
    rules = parse_rules(
        {
            "rules": [
                {
                    "name": "r",
                    "match": {"labels": {"owner": None}},
                    "parent": {"resource": "apps", "name": "{labels[owner]}"},
                }
            ]
        }
    )
    linker = registry.registry(user_rules=rules)["rules"]()
    pod = ref("c", "", "pods", "ns", "p")
    found = linker.parent(pod, body(pod, labels={"owner": "shop"}), Clusters())
    assert isinstance(found, ObjectRef) and found.key.name == "shop"
    assert registry.registry()["rules"]().parent(pod, body(pod, labels={"owner": "shop"}), Clusters()) is None
