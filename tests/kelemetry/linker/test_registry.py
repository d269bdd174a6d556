"""The linker registry (kelemetry.linker.registry): every name builds a linker of that name, the
defaults are registered and leave out the file-driven rules, and configured hosts and rules reach
the linkers they are meant for.
"""

from __future__ import annotations

from typing import Any

from kelemetry.linker import registry
from kelemetry.linker.links import Clusters, MarkIndex
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


# Keys the federation systems write beside the ones the linkers read (from their own objects).
NEAR_MISSES = {
    "kubeadmiral.io/propagation-policy-name": "both-members",
    "kubeadmiral.io/source-generation": "2",
    "kubeadmiral.io/propagated-label-keys": "app,kubeadmiral.io/managed",
    "work.karmada.io/permanent-id": "0b2f",
    "resourcetemplate.karmada.io/uid": "u-1",
    "propagationpolicy.karmada.io/name": "nginx-propagation",
    "kubefed.io/controller": "kubefed",
    "offloading.liqo.io/nodeName": "liqo-member",
    "kelemetry.kubewharf.io/other": "{}",
    "app": "web",
}


def test_objects_without_any_linkers_keys_are_skipped_and_no_linker_would_have_answered() -> None:
    linkers = [registry.registry()[name]() for name in registry.DEFAULT]
    marks = MarkIndex(linkers)
    clusters = Clusters(frozenset({"host", "member1", "karmada-apiserver"}))
    objects = [
        ref("member1", "apps", "deployments", "default", "web"),
        ref("member1", "", "pods", "default", "web-1"),
        ref("member1", "", "secrets", "default", "token"),
        ref("member1", "", "configmaps", "default", "kube-root-ca.crt.x"),
        ref("karmada-apiserver", "work.karmada.io", "works", "karmada-es-member1", "web-1"),
    ]
    for obj in objects:
        for where in ("labels", "annotations"):
            plain = body(obj, **{where: NEAR_MISSES})
            assert not marks.may_link(plain), (obj, where)
            assert [linker.parent(obj, plain, clusters) for linker in linkers] == [None] * len(linkers)
    # Any one of a linker's keys, whatever its value, has the linkers asked.
    for linker in linkers:
        assert linker.marks is not None
        for key in linker.marks.labels:
            assert marks.may_link(body(objects[0], labels={key: ""}))
        for key in linker.marks.annotations:
            assert marks.may_link(body(objects[0], annotations={key: "x"}))


def test_a_linker_without_marks_is_asked_for_every_object() -> None:
    linkers = [registry.registry()["kubeadmiral"](), registry.registry()["rules"]()]
    pod = ref("c", "", "pods", "ns", "p")
    assert MarkIndex(linkers).may_link(body(pod))
    assert not MarkIndex(linkers[:1]).may_link(body(pod))


class _Reads(dict[str, str]):
    """Labels or annotations that remember which keys were looked up."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


def test_each_linkers_marks_name_every_key_it_looks_for() -> None:
    """On an object with none of its keys, a linker looks only at keys its marks name: a key it
    reads but does not declare would let the pipeline skip an object the linker would link."""
    clusters = Clusters(frozenset({"host", "member1", "karmada-apiserver"}))
    objects = [
        ref("member1", "apps", "deployments", "default", "web"),
        ref("member1", "", "secrets", "default", "token"),
        ref("karmada-apiserver", "work.karmada.io", "works", "karmada-es-member1", "web-1"),
    ]
    for name in registry.DEFAULT:
        linker = registry.registry()[name]()
        assert linker.marks is not None
        for obj in objects:
            labels, annotations = _Reads(NEAR_MISSES), _Reads(NEAR_MISSES)
            found = body(obj)
            found["metadata"]["labels"], found["metadata"]["annotations"] = labels, annotations
            assert linker.parent(obj, found, clusters) is None
            assert labels.read <= linker.marks.labels, (name, obj.key.resource)
            assert annotations.read <= linker.marks.annotations, (name, obj.key.resource)
            assert labels.read or annotations.read, f"{name} looked at nothing"
