"""Rollout phases (frontend.rollouts): the recorded Deployment's two revisions with admin's requests,
and synthetic Deployments, StatefulSets and DaemonSets that finish, get stuck or are superseded."""

from __future__ import annotations

from pathlib import Path

from frontend import query, rollouts
from frontend.jaegerstore import JaegerBackend
from frontend.rollouts import RolloutState
from frontend.types import ObjectQuery
from jaeger.client import JaegerClient
from kelemetry.store.sqlite import StoreReader
from tests.frontend.conftest import SAMPLE_CLUSTER
from tests.frontend.spantrees import Obj, obj, trace_of, us
from tests.jaeger.fakejaeger import FakeJaeger, jaeger_traces, serving

DEPLOYMENT_CONTROLLER = "system:serviceaccount:kube-system:deployment-controller"
IMAGE = 'spec.template.spec.containers[name=app].image "app:1" -> "app:2"'
LATER_US = 1795418613319759 + 3600 * 1_000_000


def sample_rollouts(sample_store: Path, resource: str, name: str) -> list[rollouts.Rollout]:
    service = query.for_store(sample_store, keep_views=False)
    try:
        found = service.lookup_one(
            service.normalize(
                ObjectQuery(cluster=SAMPLE_CLUSTER, resource=resource, namespace="default", name=name)
            )
        )
        trace = service.backend.trace(found.target, None, None)
    finally:
        service.close()
    return rollouts.rollouts(trace, found.target, LATER_US)


def test_the_recorded_image_change_is_revision_2_started_by_admins_patch(sample_store: Path) -> None:
    first, second = sample_rollouts(sample_store, "deployments", "demo")
    assert (second.revision, second.state) == ("2", RolloutState.COMPLETE)
    assert second.holder is not None and second.holder.key.name == "demo-5544f8b48c"
    assert second.changes == ('spec.template.spec.containers[name=nginx].image "nginx:1.27" -> "nginx:1.28"',)
    trigger = second.to_json()["trigger"]
    assert trigger is not None
    assert (trigger["user"], trigger["verb"], trigger["subresource"], trigger["code"]) == (
        "admin",
        "patch",
        "",
        200,
    )
    assert trigger["audit_id"] == "8ee1ac29-6a00-461a-9695-f70f39a73974" and len(trigger["span_id"]) == 16
    as_json = second.to_json()
    assert (as_json["started"], as_json["finished"]) == (
        "2026-11-23T07:23:31.431Z",
        "2026-11-23T07:23:32.398Z",
    )
    assert "NewReplicaSetAvailable" in as_json["reason"]
    assert as_json["workload"]["name"] == "demo" and as_json["object"]["kind"] == "ReplicaSet"  # type: ignore[index]
    # Revision 1 came from admin's create, finished, and was then replaced by revision 2.
    assert (first.revision, first.state, first.changes) == ("1", RolloutState.COMPLETE, ())
    assert first.holder is not None and first.holder.key.name == "demo-85dd8d7bd8"
    assert first.trigger is not None and first.trigger.tags["audit.verb"] == "create"
    assert first.finished_us is not None and first.finished_us < second.started_us
    assert "replaced by a newer revision at 07:23:31.440" in first.reason
    assert second.text().startswith(
        "Deployment default/demo revision 2 (ReplicaSet demo-5544f8b48c): complete; "
        "started 2026-11-23T07:23:31.431Z by admin (kubectl) patch; finished 07:23:32.398\n"
    )


def test_a_pod_or_replicaset_target_answers_with_its_deployments_rollouts(sample_store: Path) -> None:
    whole = [item.to_json() for item in sample_rollouts(sample_store, "deployments", "demo")]
    assert [
        item.to_json() for item in sample_rollouts(sample_store, "pods", "demo-5544f8b48c-bq8vc")
    ] == whole
    assert [
        item.to_json() for item in sample_rollouts(sample_store, "replicasets", "demo-85dd8d7bd8")
    ] == whole


def test_jaeger_gives_the_same_rollouts_as_the_store(sample_store: Path) -> None:
    reader = StoreReader(sample_store)
    try:
        records = [record for _seq, record in reader.spans_after(0, 1_000_000)]
    finally:
        reader.close()
    expected = [item.to_json() for item in sample_rollouts(sample_store, "deployments", "demo")]
    with serving(FakeJaeger(traces=jaeger_traces(records))) as fake:
        backend = JaegerBackend(JaegerClient(fake.url), lookback_us=50 * 365 * 86_400 * 1_000_000)
        lookup = ObjectQuery(cluster=SAMPLE_CLUSTER, resource="deployments", namespace="default", name="demo")
        (target,) = backend.find_objects(lookup)
        trace = backend.trace(target, None, None)
    assert [item.to_json() for item in rollouts.rollouts(trace, target, LATER_US)] == expected


def test_anything_else_has_no_rollouts() -> None:
    service = obj("services", "web")
    service.request(1, "create", code=201)
    assert rollouts.rollouts(trace_of(service), service.known, us(10)) == []
    lone = obj("pods", "lone")
    lone.request(1, "create", code=201)
    assert rollouts.rollouts(trace_of(lone), lone.known, us(10)) == []


def deployment_with_revision_2() -> tuple[Obj, Obj]:
    deployment = obj("deployments", "web")
    deployment.request(0, "create", code=201)
    deployment.request(
        1,
        "update",
        'metadata.annotations null -> {"deployment.kubernetes.io/revision":"1"}',
        "status.conditions[type=Progressing] null -> "
        '{"type":"Progressing","status":"True","reason":"NewReplicaSetCreated",'
        '"message":"Created new replica set \\"web-1\\""}',
        user=DEPLOYMENT_CONTROLLER,
        subresource="status",
    )
    deployment.owns("replicasets", "web-1").request(1, "create", user=DEPLOYMENT_CONTROLLER, code=201)
    deployment.request(
        5,
        "update",
        'status.conditions[type=Progressing].reason "NewReplicaSetCreated" -> "NewReplicaSetAvailable"',
        user=DEPLOYMENT_CONTROLLER,
        subresource="status",
    )
    deployment.request(100, "patch", "metadata.generation 1 -> 2", IMAGE, user="alice")
    deployment.request(
        101,
        "update",
        'metadata.annotations["deployment.kubernetes.io/revision"] "1" -> "2"',
        'status.conditions[type=Progressing].message "ReplicaSet \\"web-1\\" has successfully progressed." '
        '-> "Created new replica set \\"web-2\\""',
        'status.conditions[type=Progressing].reason "NewReplicaSetAvailable" -> "NewReplicaSetCreated"',
        user=DEPLOYMENT_CONTROLLER,
        subresource="status",
    )
    new = deployment.owns("replicasets", "web-2")
    new.request(101, "create", user=DEPLOYMENT_CONTROLLER, code=201)
    return deployment, new


def test_progress_deadline_exceeded_is_stuck_with_the_controllers_message() -> None:
    deployment, _new = deployment_with_revision_2()
    deployment.request(
        700,
        "update",
        'status.conditions[type=Progressing].reason "ReplicaSetUpdated" -> "ProgressDeadlineExceeded"',
        "status.conditions[type=Progressing].message "
        '"x" -> "ReplicaSet \\"web-2\\" has timed out progressing."',
        user=DEPLOYMENT_CONTROLLER,
        subresource="status",
    )
    first, second = rollouts.rollouts(trace_of(deployment), deployment.known, us(800))
    assert (first.state, first.finished_us) == (RolloutState.COMPLETE, us(5))
    assert (second.revision, second.state, second.finished_us) == ("2", RolloutState.STUCK, None)
    assert second.reason.startswith('ProgressDeadlineExceeded: ReplicaSet "web-2" has timed out progressing.')
    assert second.trigger is not None and second.trigger.tags["audit.user"] == "alice"
    assert second.changes == (IMAGE,) and second.started_us == us(100)


def test_pods_of_the_new_revision_stuck_past_the_threshold_make_it_stuck() -> None:
    deployment, new = deployment_with_revision_2()
    new.owns("pods", "web-2-a").event(102, "FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu.")
    soon = rollouts.rollouts(trace_of(deployment), deployment.known, us(150))[1]
    assert soon.state is RolloutState.PROGRESSING and "not finished yet" in soon.reason
    late = rollouts.rollouts(
        trace_of(deployment), deployment.known, us(100 + rollouts.STUCK_AFTER_US / 1e6 + 1)
    )[1]
    assert late.state is RolloutState.STUCK
    assert late.reason.startswith(
        "Pods not ready: web-2-a unscheduled (FailedScheduling: 0/1 nodes are available"
    )


def test_a_newer_revision_before_this_one_finished_supersedes_it() -> None:
    deployment, _new = deployment_with_revision_2()
    deployment.request(
        200, "patch", 'spec.template.spec.containers[name=app].image "app:2" -> "app:3"', user="bob"
    )
    deployment.request(
        201,
        "update",
        'metadata.annotations["deployment.kubernetes.io/revision"] "2" -> "3"',
        user=DEPLOYMENT_CONTROLLER,
        subresource="status",
    )
    states = [
        (r.revision, r.state, r.trigger.tags["audit.user"] if r.trigger else None)
        for r in rollouts.rollouts(trace_of(deployment), deployment.known, us(300))
    ]
    assert states == [
        ("1", RolloutState.COMPLETE, "admin"),
        ("2", RolloutState.SUPERSEDED, "alice"),
        ("3", RolloutState.PROGRESSING, "bob"),
    ]


def test_without_the_revision_annotation_each_replicaset_is_a_revision_of_unknown_number() -> None:
    deployment = obj("deployments", "web")
    deployment.change(1, IMAGE)
    deployment.owns("replicasets", "web-1").request(0, "create", user=DEPLOYMENT_CONTROLLER, code=201)
    deployment.owns("replicasets", "web-2").request(2, "create", user=DEPLOYMENT_CONTROLLER, code=201)
    first, second = rollouts.rollouts(trace_of(deployment), deployment.known, us(10))
    assert (first.revision, first.state, first.trigger) == ("web-1", RolloutState.SUPERSEDED, None)
    assert "the revision number is not in the data" in first.reason
    assert "the request that changed spec.template is not in the data" in first.reason
    # The watched change shows what changed, not who: no request to name.
    assert (
        second.revision == "web-2"
        and second.trigger is not None
        and second.trigger.tags.get("audit.user") is None
    )
    assert second.changes == (IMAGE,)


def test_a_statefulset_revision_runs_from_update_revision_to_current_revision() -> None:
    sts = obj("statefulsets", "db")
    sts.request(0, "create", code=201)
    sts.request(
        1,
        "update",
        'status.currentRevision null -> "db-aaa"',
        'status.updateRevision null -> "db-aaa"',
        "status.replicas null -> 3",
        "status.updatedReplicas null -> 3",
        user="system:serviceaccount:kube-system:statefulset-controller",
        subresource="status",
    )
    sts.owns("controllerrevisions", "db-aaa").request(0, "create", code=201)
    sts.owns("controllerrevisions", "db-bbb").request(50, "create", code=201)
    sts.request(49, "patch", 'spec.template.spec.containers[name=db].image "db:1" -> "db:2"', user="carol")
    sts.request(
        50,
        "update",
        'status.updateRevision "db-aaa" -> "db-bbb"',
        "status.updatedReplicas 3 -> 0",
        user="system:serviceaccount:kube-system:statefulset-controller",
        subresource="status",
    )
    sts.request(
        90,
        "update",
        'status.currentRevision "db-aaa" -> "db-bbb"',
        "status.updatedReplicas 2 -> 3",
        user="system:serviceaccount:kube-system:statefulset-controller",
        subresource="status",
    )
    first, second = rollouts.rollouts(trace_of(sts), sts.known, us(100))
    assert (first.revision, first.state, first.finished_us) == ("db-aaa", RolloutState.COMPLETE, us(1))
    assert first.holder is not None and first.holder.kind == "ControllerRevision"
    assert (second.revision, second.state, second.finished_us, second.started_us) == (
        "db-bbb",
        RolloutState.COMPLETE,
        us(90),
        us(49),
    )
    assert second.trigger is not None and second.trigger.tags["audit.user"] == "carol"
    assert second.holder is not None and second.holder.key.name == "db-bbb"


def test_a_daemonset_revision_is_its_controllerrevision_done_when_every_pod_is_updated() -> None:
    ds = obj("daemonsets", "agent")
    ds.request(0, "create", code=201)
    ds.owns("controllerrevisions", "agent-1").request(0, "create", code=201)
    ds.request(
        1,
        "update",
        "status.desiredNumberScheduled null -> 2",
        "status.updatedNumberScheduled null -> 2",
        "status.numberAvailable null -> 2",
        "status.observedGeneration null -> 1",
        user="system:serviceaccount:kube-system:daemon-set-controller",
        subresource="status",
    )
    ds.request(
        10,
        "patch",
        "metadata.generation 1 -> 2",
        'spec.template.spec.containers[name=agent].image "a:1" -> "a:2"',
        user="dave",
    )
    ds.owns("controllerrevisions", "agent-2").request(11, "create", code=201)
    ds.request(
        12,
        "update",
        "status.updatedNumberScheduled 2 -> 0",
        "status.observedGeneration 1 -> 2",
        user="system:serviceaccount:kube-system:daemon-set-controller",
        subresource="status",
    )
    first, second = rollouts.rollouts(trace_of(ds), ds.known, us(20))
    assert (first.revision, first.state) == ("agent-1", RolloutState.COMPLETE)
    assert (second.revision, second.state, second.finished_us) == ("agent-2", RolloutState.PROGRESSING, None)
    assert second.trigger is not None and second.trigger.tags["audit.user"] == "dave"
    ds.request(
        30,
        "update",
        "status.updatedNumberScheduled 0 -> 2",
        user="system:serviceaccount:kube-system:daemon-set-controller",
        subresource="status",
    )
    done = rollouts.rollouts(trace_of(ds), ds.known, us(40))[1]
    assert (done.state, done.finished_us) == (RolloutState.COMPLETE, us(30))
