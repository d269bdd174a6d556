"""Who made which change: the change tracker on audit writes and watched versions.

Each scenario is what the real control plane does (the shapes follow samples/deployment): a
`kubectl scale` answers with a Scale, the scheduler's binding with a Status, a status update with
the whole object. The tracker must give every change to the request that made it, learn late what a
partial answer hid, and never hand a change to a later writer that could not have made it. The
pipeline-level replay of the real sample is in tests/kelemetry/test_fidelity.py. The writes held
until their change is known and the claims are bounded in bytes as well as in count.
"""

from __future__ import annotations

import copy
from typing import Any

from kelemetry.diff.attribution import CLAIM_OVERHEAD_BYTES, ChangeTracker
from kelemetry.kube.kinds import KindResolver
from kelemetry.model.events import Event, TraceSource, WriteDetail
from kelemetry.model.objects import ObjectKey, ObjectRef

DEPLOY = ObjectRef(ObjectKey.make("c", "apps", "deployments", "default", "demo"), "uid-d", "Deployment", "v1")
POD = ObjectRef(ObjectKey.make("c", "", "pods", "default", "demo-1"), "uid-p", "Pod", "v1")


def tracker() -> ChangeTracker:
    resolver = KindResolver()
    return ChangeTracker(resolver.has_status, resolver.note_status, grace_us=5_000_000)


def body(obj: ObjectRef, rv: str, **parts: Any) -> dict[str, Any]:
    meta = {"name": obj.key.name, "namespace": obj.key.namespace, "uid": obj.uid, "resourceVersion": rv}
    meta.update(parts.pop("metadata", {}))
    return {"kind": obj.kind, "apiVersion": "v1", "metadata": meta, **parts}


def write(
    obj: ObjectRef,
    audit_id: str,
    verb: str,
    *,
    subresource: str = "",
    rv: str = "",
    precondition: str = "",
    new: dict[str, Any] | None = None,
    request: Any = None,
    response: dict[str, Any] | None = None,
    user: str = "admin",
) -> Event:
    return Event(
        object=obj,
        source=TraceSource.AUDIT,
        event_id=audit_id,
        title=f"{user} {verb}",
        start_us=1,
        end_us=2,
        body=new,
        write=WriteDetail(verb, subresource, rv, precondition, request, response),
    )


def logs(event: Event, kind: str = "diff") -> list[str]:
    return [line for log in event.logs if log.kind == kind for line in log.message.split("\n")]


def deployment(rv: str, wanted: int, generation: int, **status: Any) -> dict[str, Any]:
    return body(DEPLOY, rv, metadata={"generation": generation}, spec={"replicas": wanted}, status=status)


def test_scale_carries_its_change_and_the_status_update_does_not() -> None:
    t = tracker()
    t.audit(write(DEPLOY, "create", "create", rv="10", new=deployment("10", 2, 1)))
    scale = t.audit(
        write(
            DEPLOY,
            "scale",
            "patch",
            subresource="scale",
            rv="11",
            request={"spec": {"replicas": 4}},
            response={"kind": "Scale", "metadata": {"resourceVersion": "11"}, "spec": {"replicas": 4}},
        )
    )
    assert logs(scale.event) == ["spec.replicas 2 -> 4"]
    status = t.audit(
        write(
            DEPLOY,
            "status",
            "update",
            subresource="status",
            rv="12",
            precondition="11",
            new=deployment("12", 4, 2, observedGeneration=2),
            user="deployment-controller",
        )
    )
    assert logs(status.event) == ["status.observedGeneration null -> 2"]
    # The generation bump showed up at the status update, which cannot write it: the scale did.
    [again] = status.reissued
    assert again.event_id == "scale"
    assert logs(again) == ["metadata.generation 1 -> 2", "spec.replicas 2 -> 4"]


def test_a_spec_change_nobody_seen_could_make_is_unattributed_not_given_to_the_status_writer() -> None:
    t = tracker()
    t.audit(write(DEPLOY, "create", "create", rv="10", new=deployment("10", 2, 1)))
    # rv 11 (a scale) is missing from the audit stream, e.g. filtered by the policy.
    status = t.audit(
        write(
            DEPLOY, "status", "update", subresource="status", rv="12", new=deployment("12", 4, 2, replicas=4)
        )
    )
    assert logs(status.event) == ["status.replicas null -> 4"]
    assert logs(status.event, "unattributed") == ["metadata.generation 1 -> 2", "spec.replicas 2 -> 4"]
    assert status.reissued == []


def test_an_update_based_on_the_version_before_is_exact() -> None:
    t = tracker()
    t.audit(write(DEPLOY, "create", "create", rv="10", new=deployment("10", 2, 1)))
    # An update whose precondition names the version we hold: nobody wrote in between, even outside
    # its scope (here an odd status write that also changed an annotation).
    status = t.audit(
        write(
            DEPLOY,
            "status",
            "update",
            subresource="status",
            rv="12",
            precondition="10",
            new=deployment("12", 2, 1, replicas=2),
        )
    )
    assert logs(status.event) == ["status.replicas null -> 2"]
    assert logs(status.event, "unattributed") == []


def pod(rv: str, **parts: Any) -> dict[str, Any]:
    return body(POD, rv, spec=parts.pop("spec", {"containers": [{"name": "c", "image": "x"}]}), **parts)


BINDING = {"kind": "Binding", "metadata": {"name": "demo-1"}, "target": {"kind": "Node", "name": "node-1"}}
SCHEDULED_POD = {
    "spec": {"containers": [{"name": "c", "image": "x"}], "nodeName": "node-1"},
    "status": {
        "phase": "Running",
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
    },
}
KWOK_PATCH = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


def test_binding_without_the_watch_gets_node_name_and_its_condition_from_the_next_version() -> None:
    t = tracker()
    t.audit(write(POD, "create", "create", rv="20", new=pod("20", status={"phase": "Pending"})))
    binding = t.audit(write(POD, "bind", "create", subresource="binding", request=BINDING, user="scheduler"))
    assert logs(binding.event) == ['spec.nodeName null -> "node-1"']
    kwok = t.audit(
        write(
            POD,
            "kwok",
            "patch",
            subresource="status",
            rv="22",
            request=KWOK_PATCH,
            new=pod("22", **SCHEDULED_POD),
        )
    )
    own = logs(kwok.event)
    assert 'status.phase "Pending" -> "Running"' in own
    assert any(line.startswith("status.conditions[type=Ready]") for line in own)
    # kwok's patch named neither the node nor the PodScheduled condition: the binding made both.
    assert not any("nodeName" in line or "PodScheduled" in line for line in own)
    [again] = kwok.reissued
    assert again.event_id == "bind"
    assert 'spec.nodeName null -> "node-1"' in logs(again)
    assert any(line.startswith("status.conditions[type=PodScheduled]") for line in logs(again))


def watched(t: ChangeTracker, kind: str, obj: ObjectRef, new: dict[str, Any], now: int = 0) -> list[Event]:
    return t.watched_version(kind, obj, copy.deepcopy(new), now)


def test_with_the_watch_a_binding_claims_its_version_and_gets_the_exact_diff() -> None:
    t = tracker()
    created = pod("20", status={"phase": "Pending"})
    bound = pod("21", spec={"containers": [{"name": "c", "image": "x"}], "nodeName": "node-1"})
    bound["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    watched(t, "ADDED", POD, created)
    watched(t, "MODIFIED", POD, bound)
    t.audit(write(POD, "create", "create", rv="20", new=created))
    binding = t.audit(write(POD, "bind", "create", subresource="binding", request=BINDING))
    assert logs(binding.event) == [
        'spec.nodeName null -> "node-1"',
        'status.conditions[type=PodScheduled] null -> {"type":"PodScheduled","status":"True"}',
    ]
    # Claimed: no "seen by the watch" change span for the binding's version, ever.
    assert t.due(10**12) == []


def test_binding_seen_by_the_watch_only_after_the_audit_event_is_sharpened() -> None:
    t = tracker()
    created = pod("20", status={"phase": "Pending"})
    watched(t, "ADDED", POD, created)
    t.audit(write(POD, "create", "create", rv="20", new=created))
    binding = t.audit(write(POD, "bind", "create", subresource="binding", request=BINDING))
    assert logs(binding.event) == ['spec.nodeName null -> "node-1"']
    bound = pod("21", spec={"containers": [{"name": "c", "image": "x"}], "nodeName": "node-1"})
    bound["status"] = {"phase": "Pending"}
    [again] = watched(t, "MODIFIED", POD, bound)
    assert again.event_id == "bind" and logs(again) == ['spec.nodeName null -> "node-1"']
    assert t.due(10**12) == []


def test_a_scale_seen_by_the_watch_gets_the_watch_s_exact_diff() -> None:
    t = tracker()
    watched(t, "ADDED", DEPLOY, deployment("10", 2, 1))
    watched(t, "MODIFIED", DEPLOY, deployment("11", 4, 2))
    t.audit(write(DEPLOY, "create", "create", rv="10", new=deployment("10", 2, 1)))
    scale = t.audit(
        write(
            DEPLOY,
            "scale",
            "patch",
            subresource="scale",
            rv="11",
            response={"kind": "Scale", "metadata": {"resourceVersion": "11"}, "spec": {"replicas": 4}},
        )
    )
    assert logs(scale.event) == ["metadata.generation 1 -> 2", "spec.replicas 2 -> 4"]
    assert t.due(10**12) == []


def test_a_graceful_delete_claims_its_modification_and_the_final_delete_its_removal() -> None:
    t = tracker()
    live = pod("30")
    terminating = pod("31", metadata={"deletionTimestamp": "2024-05-01T10:00:30Z"})
    watched(t, "ADDED", POD, live)
    watched(t, "MODIFIED", POD, terminating)
    watched(t, "DELETED", POD, pod("32", metadata={"deletionTimestamp": "2024-05-01T10:00:30Z"}))
    t.audit(write(POD, "create", "create", rv="30", new=live))
    deleted = t.audit(write(POD, "graceful", "delete", rv="31", new=terminating))
    assert logs(deleted.event, "snapshot")
    t.audit(write(POD, "final", "delete", rv="32", new=pod("32")))
    assert t.due(10**12) == []


def test_unclaimed_watched_changes_become_change_events_after_the_grace_period() -> None:
    t = tracker()
    watched(t, "ADDED", DEPLOY, deployment("10", 2, 1), now=1_000_000)
    watched(t, "MODIFIED", DEPLOY, deployment("11", 3, 2), now=1_000_000)
    assert t.due(5_999_999) == []
    changes = t.due(6_000_000)
    assert sorted(c.event_id for c in changes) == ["rv:10", "rv:11"]
    modified = next(c for c in changes if c.event_id == "rv:11")
    assert modified.source is TraceSource.CHANGE
    assert logs(modified) == ["metadata.generation 1 -> 2", "spec.replicas 2 -> 3"]


def test_a_listed_version_is_not_proof_of_the_version_before() -> None:
    t = tracker()
    t.audit(write(DEPLOY, "create", "create", rv="10", new=deployment("10", 2, 1)))
    # After a relist the watch holds rv 12 from the list; what happened at 11 was not watched.
    watched(t, "LIST", DEPLOY, deployment("12", 5, 3))
    status = t.audit(
        write(
            DEPLOY, "status", "update", subresource="status", rv="12", new=deployment("12", 5, 3, replicas=5)
        )
    )
    assert logs(status.event) == ["status.replicas null -> 5"]
    assert logs(status.event, "unattributed") == ["metadata.generation 1 -> 3", "spec.replicas 2 -> 5"]


def test_incarnations_never_diff_against_each_other() -> None:
    t = tracker()
    t.audit(write(DEPLOY, "create", "create", rv="10", new=deployment("10", 2, 1)))
    t.audit(write(DEPLOY, "delete", "delete", rv="15", new=deployment("15", 2, 1)))
    again = ObjectRef(DEPLOY.key, "uid-d2", "Deployment", "v1")
    t.audit(
        write(
            again, "create2", "create", rv="20", new={**deployment("20", 1, 1), "metadata": {"uid": "uid-d2"}}
        )
    )
    update = t.audit(write(again, "scale2", "update", rv="21", precondition="20", new=deployment("21", 3, 2)))
    # Against the new incarnation's own creation (1 replica), not the old one's last state (2).
    assert "spec.replicas 1 -> 3" in logs(update.event)


def terminating(rv: str, grace: int, at: str) -> dict[str, Any]:
    return pod(rv, metadata={"deletionTimestamp": at, "deletionGracePeriodSeconds": grace})


def test_kwok_s_final_delete_writes_twice_and_claims_both_whichever_comes_first() -> None:
    # kwok deletes a terminating Pod with grace period 0: the apiserver first shortens the grace
    # period (a version no response names), then removes it (the version the response names).
    for watch_first in (True, False):
        t = tracker()
        watched(t, "ADDED", POD, pod("30"))
        t.audit(write(POD, "create", "create", rv="30", new=pod("30")))
        watched(t, "MODIFIED", POD, terminating("31", 30, "10:00:30Z"))
        t.audit(write(POD, "graceful", "delete", rv="31", new=terminating("31", 30, "10:00:30Z")))
        shortened = terminating("32", 0, "10:00:01Z")
        if watch_first:
            watched(t, "MODIFIED", POD, shortened)
            watched(t, "DELETED", POD, terminating("33", 0, "10:00:01Z"))
        t.audit(write(POD, "kwok", "delete", rv="33", new=terminating("33", 0, "10:00:01Z"), user="kwok"))
        if not watch_first:
            watched(t, "MODIFIED", POD, shortened)
            watched(t, "DELETED", POD, terminating("33", 0, "10:00:01Z"))
        assert t.due(10**12) == [], f"watch first: {watch_first}"


def test_a_binding_seen_by_the_watch_after_the_next_write_s_audit_is_still_claimed() -> None:
    t = tracker()
    created = pod("20", status={"phase": "Pending"})
    watched(t, "ADDED", POD, created)
    t.audit(write(POD, "create", "create", rv="20", new=created))
    t.audit(write(POD, "bind", "create", subresource="binding", request=BINDING))
    kwok = t.audit(
        write(
            POD,
            "kwok",
            "patch",
            subresource="status",
            rv="22",
            request=KWOK_PATCH,
            new=pod("22", **SCHEDULED_POD),
        )
    )
    assert [e.event_id for e in kwok.reissued] == ["bind"]
    bound = pod("21", spec=SCHEDULED_POD["spec"])
    bound["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    [again] = watched(t, "MODIFIED", POD, bound)
    assert again.event_id == "bind"
    watched(t, "MODIFIED", POD, pod("22", **SCHEDULED_POD))
    assert t.due(10**12) == []


def test_an_eviction_claims_both_of_its_writes() -> None:
    t = tracker()
    live = pod("40", status={"phase": "Running"})
    watched(t, "ADDED", POD, live)
    t.audit(write(POD, "create", "create", rv="40", new=live))
    disrupted = pod(
        "41", status={"phase": "Running", "conditions": [{"type": "DisruptionTarget", "status": "True"}]}
    )
    watched(t, "MODIFIED", POD, disrupted)
    deleting = {**disrupted, "metadata": {**disrupted["metadata"], "resourceVersion": "42"}}
    deleting["metadata"]["deletionTimestamp"] = "2024-05-01T10:00:30Z"
    watched(t, "MODIFIED", POD, deleting)
    evicted = t.audit(write(POD, "evict", "create", subresource="eviction", request={"kind": "Eviction"}))
    lines = logs(evicted.event)
    assert any(line.startswith("status.conditions[type=DisruptionTarget]") for line in lines)
    assert any(line.startswith("metadata.deletionTimestamp") for line in lines)
    assert t.due(10**12) == []


def test_a_no_op_write_answering_with_another_write_s_version_changes_nothing() -> None:
    # The namespace-controller's finalize answered with the version its status update had made.
    ns = ObjectRef(ObjectKey.make("c", "", "namespaces", "", "gone"), "uid-n", "Namespace", "v1")
    t = tracker()
    t.audit(write(ns, "create", "create", rv="50", new=body(ns, "50", spec={"finalizers": ["kubernetes"]})))
    conditions = {"phase": "Terminating", "conditions": [{"type": "NamespaceDeletionContentFailure"}]}
    status = t.audit(
        write(ns, "status", "update", subresource="status", rv="51", new=body(ns, "51", status=conditions))
    )
    assert logs(status.event)
    finalize = t.audit(
        write(
            ns, "finalize", "update", subresource="finalize", rv="51", new=body(ns, "51", status=conditions)
        )
    )
    assert [log.message for log in finalize.event.logs] == ["No-op update"]
    # ...while the same status update delivered again gets the same diff as the first time.
    again = t.audit(
        write(ns, "status", "update", subresource="status", rv="51", new=body(ns, "51", status=conditions))
    )
    assert logs(again.event) == logs(status.event)


def pod_named(i: int) -> ObjectRef:
    return ObjectRef(ObjectKey.make("c", "", "pods", "default", f"p-{i}"), f"uid-{i}", "Pod", "v1")


def test_writes_held_until_their_change_is_known_are_capped_in_bytes() -> None:
    resolver = KindResolver()
    t = ChangeTracker(resolver.has_status, resolver.note_status, max_partial_bytes=20_000)
    big = {"containers": [{"name": "c", "image": "x" * 3000}]}
    for i in range(40):
        # A binding answers with a Status: its change is learned from the next version, later.
        t.audit(write(pod_named(i), f"bind-{i}", "create", subresource="binding", request=BINDING, new=big))

    assert 0 < t.partial_bytes <= 20_000
    assert t.partials_evicted > 0 and t.partials + t.partials_evicted == 40
    # The newest are kept; the held write of a deleted object is let go, and its bytes with it.
    held, size = t.partials, t.partial_bytes
    t.audit(write(pod_named(39), "delete", "delete", rv="9"))
    assert t.partials == held - 1
    assert size - t.partial_bytes > 3000


def test_claims_are_capped_in_bytes() -> None:
    resolver = KindResolver()
    cap = 50 * (CLAIM_OVERHEAD_BYTES + 20)
    t = ChangeTracker(resolver.has_status, resolver.note_status, max_claim_bytes=cap)
    for i in range(200):
        obj = pod_named(i)
        t.audit(write(obj, f"create-{i}", "create", rv=str(1000 + i), new=body(obj, str(1000 + i))))

    assert 0 < t.claim_bytes <= cap
    assert t.claims_evicted > 0 and t.claims + t.claims_evicted == 200
