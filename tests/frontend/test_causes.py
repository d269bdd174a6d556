"""The cause chain (frontend.causes) against recorded and synthetic data.

Recorded: samples/deployment (a Pod back through its ReplicaSet to admin's `kubectl scale` or image
patch, a scale-down's deletions, the Deployment's delete) and samples/federation (a member's Pod up
to the host's Deployment, across clusters). Synthetic audit streams, written through the real
pipeline into a store, cover what the recordings do not: a ReplicaSet deleted by hand and made again
by the controller, owners and Pods whose requests were never received (only an Event, or nothing),
and how users are told apart as people or controllers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from frontend import actors, causes, query
from frontend.backend import StoreBackend
from frontend.causes import Chain
from frontend.query import QueryService
from frontend.spanfacts import format_time
from frontend.types import ObjectQuery
from frontend.views import ViewStore
from kelemetry import cli
from kelemetry.model import times
from kelemetry.store.sqlite import SpanStore, StoreReader
from tests.conftest import REPO_ROOT
from tests.factories import at, audit_event, kube_event, new_pipeline, owner_ref

FLEET = REPO_ROOT / "samples" / "federation"
DEPLOYMENT_CONTROLLER = "system:serviceaccount:kube-system:deployment-controller"
REPLICASET_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
GC = "system:serviceaccount:kube-system:generic-garbage-collector"


def us(moment: str) -> int:
    return times.parse_moment(moment)


@pytest.fixture(scope="module")
def sample(sample_store: Path) -> Iterator[QueryService]:
    service = QueryService(StoreBackend(StoreReader(sample_store)), ViewStore(None))
    yield service
    service.close()


def chain_of(
    service: QueryService, resource: str, name: str, at_us: int | None = None, **fields: Any
) -> Chain:
    found = service.explain(
        ObjectQuery(cluster=fields.pop("cluster", "tracetest"), resource=resource, name=name, **fields), at_us
    )
    return found.chain


def shape(chain: Chain) -> list[tuple[str, str, str, str | None, bool]]:
    return [
        (
            step.object.kind,
            step.object.key.name,
            step.relation,
            step.request.user if step.request else None,
            step.proven,
        )
        for step in chain.steps
    ]


# -- samples/deployment


def test_a_pod_of_the_scale_up_goes_back_to_admins_kubectl_scale(sample: QueryService) -> None:
    chain = chain_of(sample, "pods", "demo-85dd8d7bd8-krhwb", us("2026-11-23T07:23:31.400Z"))
    assert shape(chain) == [
        ("Pod", "demo-85dd8d7bd8-krhwb", "created", REPLICASET_CONTROLLER, True),
        ("ReplicaSet", "demo-85dd8d7bd8", "scaled", DEPLOYMENT_CONTROLLER, True),
        ("Deployment", "demo", "scaled", "admin", True),
    ]
    assert chain.complete
    replicaset, deployment = chain.steps[1], chain.steps[2]
    assert "spec.replicas 2 -> 4" in replicaset.changes
    assert deployment.request is not None and deployment.request.subresource == "scale"
    assert deployment.changes == ("metadata.generation 1 -> 2", "spec.replicas 2 -> 4")
    assert deployment.actor == "human" and replicaset.actor == "controller"
    # Each step happened before the one it explains.
    times_us = [step.time_us for step in chain.steps]
    assert times_us == sorted(times_us, reverse=True)


def test_the_first_pod_goes_back_to_the_deployments_create(sample: QueryService) -> None:
    chain = chain_of(sample, "pods", "demo-85dd8d7bd8-tlrvv", us("2026-11-23T07:23:31.040Z"))
    assert shape(chain) == [
        ("Pod", "demo-85dd8d7bd8-tlrvv", "created", REPLICASET_CONTROLLER, True),
        ("ReplicaSet", "demo-85dd8d7bd8", "created", DEPLOYMENT_CONTROLLER, True),
        ("Deployment", "demo", "created", "admin", True),
    ]
    assert "started by admin (kubectl) at 2026-11-23T07:23:30.571Z" in chain.summary()


def test_a_pod_of_the_new_replicaset_goes_back_to_the_image_change(sample: QueryService) -> None:
    chain = chain_of(sample, "pods", "demo-5544f8b48c-b25t4", us("2026-11-23T07:23:31.450Z"))
    assert shape(chain) == [
        ("Pod", "demo-5544f8b48c-b25t4", "created", REPLICASET_CONTROLLER, True),
        ("ReplicaSet", "demo-5544f8b48c", "created", DEPLOYMENT_CONTROLLER, True),
        ("Deployment", "demo", "changed", "admin", True),
    ]
    assert (
        chain.steps[-1].changes[-1]
        == 'spec.template.spec.containers[name=nginx].image "nginx:1.27" -> "nginx:1.28"'
    )


def test_a_pod_removed_by_the_scale_down_names_the_replicaset_controllers_delete(
    sample: QueryService,
) -> None:
    # The kubelet's (kwok's) deletes that finish the graceful deletion are not the decision.
    chain = chain_of(sample, "pods", "demo-5544f8b48c-b25t4", us("2026-11-23T07:23:32.700Z"))
    assert shape(chain) == [
        ("Pod", "demo-5544f8b48c-b25t4", "deleted", REPLICASET_CONTROLLER, True),
        ("ReplicaSet", "demo-5544f8b48c", "scaled", DEPLOYMENT_CONTROLLER, True),
        ("Deployment", "demo", "scaled", "admin", True),
    ]
    assert chain.steps[-1].changes[-1] == "spec.replicas 4 -> 2"


def test_by_default_the_last_activity_is_explained_the_garbage_collectors_deletes(
    sample: QueryService,
) -> None:
    chain = chain_of(sample, "pods", "demo-5544f8b48c-pdqd2")
    assert format_time(chain.at_us) == "2026-11-23T07:23:33.341Z"
    assert shape(chain) == [
        ("Pod", "demo-5544f8b48c-pdqd2", "deleted", GC, True),
        ("ReplicaSet", "demo-5544f8b48c", "deleted", GC, True),
        ("Deployment", "demo", "deleted", "admin", True),
    ]


def test_a_deployment_explains_itself(sample: QueryService) -> None:
    chain = chain_of(sample, "deployments", "demo", us("2026-11-23T07:23:32.000Z"))
    assert shape(chain) == [("Deployment", "demo", "changed", "admin", True)]
    assert chain.summary().startswith(
        "Deployment default/demo was changed by admin; started by admin (kubectl)"
    )


def test_the_cli_answers_in_json_as_the_issue_asks(
    sample_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import orjson

    code = cli.main(
        [
            "explain",
            "--store",
            str(sample_store),
            "--cluster",
            "tracetest",
            "--resource",
            "pods",
            "--namespace",
            "default",
            "--name",
            "demo-5544f8b48c-bq8vc",
            "--format",
            "json",
        ]
    )
    assert code == 0
    (answer,) = orjson.loads(capsys.readouterr().out)["data"]
    named = [(step["object"]["kind"], step["object"]["name"]) for step in answer["chain"]]
    assert ("ReplicaSet", "demo-5544f8b48c") in named and named[-1] == ("Deployment", "demo")
    assert answer["chain"][-1]["request"]["user"] == "admin" and answer["complete"]


def test_the_cli_text_is_one_block_per_step(sample_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["explain", "--store", str(sample_store), "--resource", "po", "--name", "demo-85dd8d7bd8-krhwb"]
    assert cli.main([*argv, "--at", "2026-11-23T07:23:31.400Z"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("why: Pod default/demo-85dd8d7bd8-krhwb was created by replicaset-controller")
    assert "[1] object: Pod default/demo-85dd8d7bd8-krhwb (cluster tracetest)  created" in out
    assert "[3] started: Deployment default/demo (cluster tracetest)  scaled" in out
    assert "    change: spec.replicas 2 -> 4" in out
    assert "by admin (kubectl) patch scale → 200 at 2026-11-23T07:23:31.278Z" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--name", "demo-85dd8d7bd8-krhwx"], "did you mean"),
        (["--name", "demo-85dd8d7bd8-krhwb", "--at", "soon"], "invalid time 'soon'"),
        (["--name", "demo-85dd8d7bd8-krhwb", "--at", "2020-01-01T00:00:00Z"], "no activity at or before"),
    ],
)
def test_the_cli_refuses_in_one_line(
    sample_store: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code = cli.main(["explain", "--store", str(sample_store), "--resource", "pods", *argv])
    assert code != 0
    err = capsys.readouterr().err
    assert err.startswith("kelemetry: error: ") and message in err and err.count("\n") == 1, err


# -- samples/federation: across clusters


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueryService]:
    path = tmp_path_factory.mktemp("fleet") / "k.db"
    for cluster in ("host", "member-1", "member-2"):
        files = [str(FLEET / cluster / "audit.log"), str(FLEET / cluster / "events.jsonl")]
        assert cli.main(["replay", "--quiet", "--cluster", cluster, "--store", str(path), *files]) == 0
    service = query.for_store(path, keep_views=False)
    yield service
    service.close()


def test_a_members_pod_goes_up_to_the_hosts_deployment_and_admin(fleet: QueryService) -> None:
    chain = chain_of(
        fleet, "pods", "fleet-demo-7794f7bfbf-b24n2", us("2026-11-30T03:42:42.000Z"), cluster="member-1"
    )
    assert [(step.object.key.cluster, step.object.kind, step.relation) for step in chain.steps] == [
        ("member-1", "Pod", "created"),
        ("member-1", "ReplicaSet", "scaled"),
        ("member-1", "Deployment", "scaled"),
        ("host", "Deployment", "scaled"),
    ]
    member, host = chain.steps[2], chain.steps[3]
    assert member.request is not None and member.request.user.endswith(":kubeadmiral-member")
    assert member.actor == "controller"
    assert host.request is not None and host.request.user == "admin" and host.request.subresource == "scale"
    assert chain.complete
    assert "Deployment fleet-demo (cluster host) scaled by admin" in chain.summary()


def test_the_host_deletion_reaches_the_members_pods(fleet: QueryService) -> None:
    chain = chain_of(fleet, "pods", "fleet-demo-7794f7bfbf-xjpm2", cluster="member-2")
    assert [(step.object.key.cluster, step.relation) for step in chain.steps][-2:] == [
        ("member-2", "deleted"),
        ("host", "deleted"),
    ]
    assert chain.steps[-1].request is not None and chain.steps[-1].request.user == "admin"


# -- synthetic: recreated, unproven


def store_of(
    path: Path, audit: list[dict[str, Any]], kube_events: Sequence[dict[str, Any]] = ()
) -> QueryService:
    store = SpanStore(path)
    pipeline = new_pipeline(store)
    assert pipeline.process_audit(audit, "c1").failed == 0
    if kube_events:
        assert pipeline.process_kube_events(kube_events, "c1").failed == 0
    store.close()
    return query.for_store(path, keep_views=False)


def test_a_replicaset_deleted_by_hand_is_recreated_by_the_controller(tmp_path: Path) -> None:
    deployment = owner_ref("Deployment", "web", uid="d-1")
    stream = [
        audit_event(resource="deployments", group="apps", name="web", uid="d-1", audit_id="dep", **at(0)),
        audit_event(
            resource="replicasets",
            group="apps",
            name="web-1",
            uid="r-1",
            owner=deployment,
            user=DEPLOYMENT_CONTROLLER,
            audit_id="rs-1",
            **at(1),
        ),
        audit_event(
            verb="delete",
            code=200,
            resource="replicasets",
            group="apps",
            name="web-1",
            uid="r-1",
            audit_id="by-hand",
            user="alice",
            **at(5),
        ),
        audit_event(
            resource="replicasets",
            group="apps",
            name="web-1",
            uid="r-2",
            owner=deployment,
            user=DEPLOYMENT_CONTROLLER,
            audit_id="rs-2",
            **at(6),
        ),
        audit_event(
            name="web-1-b",
            uid="p-2",
            owner=owner_ref("ReplicaSet", "web-1", uid="r-2"),
            user=REPLICASET_CONTROLLER,
            audit_id="pod",
            **at(7),
        ),
    ]
    service = store_of(tmp_path / "k.db", stream)
    try:
        chain = chain_of(service, "pods", "web-1-b", cluster="c1")
    finally:
        service.close()
    assert shape(chain) == [
        ("Pod", "web-1-b", "created", REPLICASET_CONTROLLER, True),
        ("ReplicaSet", "web-1", "recreated", DEPLOYMENT_CONTROLLER, True),
        ("ReplicaSet", "web-1", "deleted", "alice", True),
    ]
    recreated, deleted = chain.steps[1], chain.steps[2]
    assert recreated.object.uid == "r-2" and deleted.object.uid == "r-1"
    assert "alice" in recreated.reason and "by-hand" in recreated.reason and "r-1" in recreated.reason
    assert deleted.request is not None and deleted.request.audit_id == "by-hand" and deleted.actor == "human"
    assert chain.complete
    assert "started by alice" in chain.summary()


def test_an_owner_without_requests_is_unproven_and_quotes_its_event(tmp_path: Path) -> None:
    """The ReplicaSet was created before the data starts: only its SuccessfulCreate Event and the
    Pod's owner reference show it. The walk goes on to its owner, marked unproven."""
    stream = [
        audit_event(
            name="web-1-a",
            uid="p-1",
            owner=owner_ref("ReplicaSet", "web-1", uid="r-1"),
            user=REPLICASET_CONTROLLER,
            audit_id="pod",
            **at(3),
        ),
    ]
    event = kube_event(
        kind="ReplicaSet",
        api_version="apps/v1",
        name="web-1",
        object_uid="r-1",
        reason="SuccessfulCreate",
        message="Created pod: web-1-a",
        first="2024-05-01T10:00:03Z",
    )
    service = store_of(tmp_path / "k.db", stream, [event])
    try:
        chain = chain_of(service, "pods", "web-1-a", cluster="c1")
    finally:
        service.close()
    assert shape(chain) == [
        ("Pod", "web-1-a", "created", REPLICASET_CONTROLLER, True),
        ("ReplicaSet", "web-1", "created", None, False),
    ]
    owner = chain.steps[1]
    assert owner.actor == "unknown" and owner.request is None
    assert "no request creating or changing it" in owner.reason
    assert "SuccessfulCreate" in owner.reason and "Created pod: web-1-a" in owner.reason
    assert not chain.complete
    assert chain.summary().endswith("where it started is not proven")


def test_a_pod_seen_only_through_others_requests_is_unproven(tmp_path: Path) -> None:
    """A Pod whose create was never received, only the kubelet's status writes: its step says so
    and names no one; the walk does not stop at a guess."""
    stream = [
        audit_event(
            verb="patch",
            subresource="status",
            code=200,
            name="web-1-c",
            uid="p-3",
            user="system:node:node-1",
            owner=owner_ref("ReplicaSet", "web-1", uid="r-1"),
            audit_id="status",
            **at(9),
        ),
    ]
    service = store_of(tmp_path / "k.db", stream)
    try:
        chain = chain_of(service, "pods", "web-1-c", cluster="c1")
    finally:
        service.close()
    first = chain.steps[0]
    assert (first.relation, first.request, first.proven, first.actor) == ("created", None, False, "unknown")
    assert "no request creating or changing it before 2024-05-01T10:00:09.000Z is recorded" in first.reason
    assert not chain.complete


def test_a_controller_without_an_owner_ends_the_chain(tmp_path: Path) -> None:
    stream = [
        audit_event(
            resource="deployments",
            group="apps",
            name="auto",
            uid="d-9",
            user="system:serviceaccount:tools:deployer",
            audit_id="made",
            **at(0),
        )
    ]
    service = store_of(tmp_path / "k.db", stream)
    try:
        chain = chain_of(service, "deployments", "auto", cluster="c1")
    finally:
        service.close()
    assert shape(chain) == [("Deployment", "auto", "created", "system:serviceaccount:tools:deployer", True)]
    assert "no owner of the object is in the trace" in chain.steps[0].reason
    assert "the earliest request found is deployer's (a controller)" in chain.summary()


def test_a_failed_request_is_no_cause(tmp_path: Path) -> None:
    stream = [
        audit_event(resource="deployments", group="apps", name="web", uid="d-1", audit_id="dep", **at(0)),
        audit_event(
            verb="patch",
            code=422,
            resource="deployments",
            group="apps",
            name="web",
            uid="d-1",
            audit_id="refused",
            **at(4),
        ),
    ]
    service = store_of(tmp_path / "k.db", stream)
    try:
        chain = chain_of(service, "deployments", "web", cluster="c1")
    finally:
        service.close()
    assert shape(chain) == [("Deployment", "web", "created", "admin", True)]


# -- people and controllers


@pytest.mark.parametrize(
    ("user", "agent", "actor"),
    [
        ("admin", "kubectl/v1.33.13 (linux/amd64) kubernetes/$Format", "human"),
        ("alice@example.com", "Mozilla/5.0", "human"),
        (
            "system:serviceaccount:kube-system:deployment-controller",
            "kube-controller-manager/v1.33",
            "controller",
        ),
        ("system:serviceaccount:argocd:argocd-application-controller", "argocd-controller/v2", "controller"),
        ("system:node:node-1", "kubelet/v1.33", "controller"),
        ("system:kube-scheduler", "kube-scheduler/v1.33", "controller"),
        (
            "kubeadmiral",
            "kubeadmiral-controller-manager/v0.0.0 (linux/amd64) kubernetes/$Format",
            "controller",
        ),
        ("kwok", "kwok/v0.6", "controller"),
        ("", "kubectl/v1.33", "unknown"),
    ],
)
def test_people_and_controllers_are_told_apart_by_user_then_user_agent(
    user: str, agent: str, actor: str
) -> None:
    assert actors.actor_of(user, agent) == actor


def test_short_names() -> None:
    assert (
        actors.short_user("system:serviceaccount:kube-system:replicaset-controller")
        == "replicaset-controller"
    )
    assert actors.short_user("system:node:n1") == "system:node:n1"
    assert actors.short_agent("kubectl/v1.33.13 (linux/amd64) kubernetes/$Format") == "kubectl"
    assert actors.short_agent("") == ""


def test_an_empty_chain_says_nothing_is_recorded() -> None:
    assert causes.summarize(()) == "nothing is recorded about it"


def test_an_owner_known_only_through_what_it_owns_is_explained_as_unproven(tmp_path: Path) -> None:
    stream = [
        audit_event(
            name="web-1-a",
            uid="p-1",
            owner=owner_ref("ReplicaSet", "web-1", uid="r-1"),
            user=REPLICASET_CONTROLLER,
            audit_id="pod",
            **at(3),
        ),
    ]
    service = store_of(tmp_path / "k.db", stream)
    try:
        chain = chain_of(service, "replicasets", "web-1", cluster="c1")
    finally:
        service.close()
    assert shape(chain) == [("ReplicaSet", "web-1", "created", None, False)]
    assert "no request creating or changing it" in chain.steps[0].reason


def test_the_stores_lineage_reads_only_the_owners_and_gives_the_chain_the_whole_trace_gives(
    sample: QueryService,
) -> None:
    backend = sample.backend
    (pod,) = backend.find_objects(
        ObjectQuery(cluster="tracetest", resource="pods", name="demo-5544f8b48c-bq8vc")
    )
    moment = us("2026-11-23T07:23:31.600Z")
    narrow = backend.lineage(pod, None, moment)
    whole = backend.trace(pod, None, moment)
    objects = {node.span.key.name for node in narrow.walk() if node.span.source.value == "object"}
    assert objects == {"demo-5544f8b48c-bq8vc", "demo-5544f8b48c", "demo"}
    assert len(whole.walk()) > 2 * len(narrow.walk())
    assert causes.explain(narrow, moment) == causes.explain(whole, moment)


def test_the_answer_lists_the_stuck_pods_below_with_the_origin_of_their_chain(tmp_path: Path) -> None:
    stream = [
        audit_event(resource="deployments", group="apps", name="web", uid="d-1", audit_id="dep", **at(0)),
        audit_event(
            resource="replicasets",
            group="apps",
            name="web-1",
            uid="r-1",
            owner=owner_ref("Deployment", "web", uid="d-1"),
            user=DEPLOYMENT_CONTROLLER,
            audit_id="rs",
            **at(1),
        ),
        audit_event(
            name="web-1-a",
            uid="p-1",
            owner=owner_ref("ReplicaSet", "web-1", uid="r-1"),
            user=REPLICASET_CONTROLLER,
            audit_id="pod",
            **at(2),
        ),
    ]
    unschedulable = kube_event(
        kind="Pod",
        name="web-1-a",
        object_uid="p-1",
        reason="FailedScheduling",
        message="0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
        event_type="Warning",
        count=3,
        first="2024-05-01T10:00:03Z",
        last="2024-05-01T10:00:30Z",
    )
    service = store_of(tmp_path / "k.db", stream, [unschedulable])
    try:
        answer = service.explain(
            ObjectQuery(cluster="c1", resource="deployments", name="web"), now_us=us("2024-05-01T10:05:00Z")
        )
    finally:
        service.close()
    assert len(answer.stuck) == 1
    as_json = answer.to_json()["stuck"][0]
    assert as_json["object"]["name"] == "web-1-a" and as_json["state"] == "unscheduled"
    cause = as_json["cause"]
    assert (cause["object"]["name"], cause["relation"], cause["request"]["user"]) == (
        "web",
        "created",
        "admin",
    )
    text = answer.text()
    assert "stuck pods:\nPod default/web-1-a unscheduled since 2024-05-01T10:00:03.000Z" in text
    assert "started by: Deployment default/web (cluster c1)  created" in text


def test_a_recreated_object_whose_earlier_incarnation_is_in_another_window_is_recreated(
    tmp_path: Path,
) -> None:
    """A ConfigMap deleted by bob and made again by carol 40 minutes later: the two incarnations are
    roots of traces of different windows, and the delete is found in the earlier one."""
    stream = [
        audit_event(
            resource="configmaps",
            kind="ConfigMap",
            name="cfg",
            uid="c-1",
            user="alice",
            audit_id="made",
            **at(0),
        ),
        audit_event(
            verb="delete",
            code=200,
            resource="configmaps",
            kind="ConfigMap",
            name="cfg",
            uid="c-1",
            user="bob",
            audit_id="gone",
            **at(5),
        ),
        audit_event(
            resource="configmaps",
            kind="ConfigMap",
            name="cfg",
            uid="c-2",
            user="carol",
            audit_id="again",
            received="2024-05-01T10:40:00.000000Z",
            completed="2024-05-01T10:40:00.005000Z",
        ),
    ]
    service = store_of(tmp_path / "k.db", stream)
    try:
        chain = chain_of(service, "configmaps", "cfg", cluster="c1")
        [alone] = service.lookup(ObjectQuery(cluster="c1", resource="configmaps", name="cfg", uid="c-2"))
        trace = service.backend.lineage(alone.target, None, None)
    finally:
        service.close()
    assert shape(chain) == [
        ("ConfigMap", "cfg", "recreated", "carol", True),
        ("ConfigMap", "cfg", "deleted", "bob", True),
    ]
    assert chain.steps[0].object.uid == "c-2" and chain.steps[1].object.uid == "c-1"
    assert chain.steps[1].request is not None and chain.steps[1].request.audit_id == "gone"
    # The new incarnation's own trace alone does not hold the delete: without what lies elsewhere
    # the chain could only say "created".
    assert [step.relation for step in causes.explain(trace).steps] == ["created"]


def test_an_event_dated_in_whole_seconds_does_not_start_an_incarnation_early(tmp_path: Path) -> None:
    """Found on the real control plane: the deployment-controller made the ReplicaSet again 7 ms after
    the delete, and the new incarnation's SuccessfulCreate Event, dated in whole seconds, reads 0.8 s
    before that delete. Asked about a moment just before the delete, the answer is the incarnation
    that existed then, not the one the Event seems to start early."""
    deployment = owner_ref("Deployment", "web", uid="d-1")
    moment = "2024-05-01T10:00:05.{:06d}Z".format
    rs = {"resource": "replicasets", "group": "apps", "name": "web-1", "owner": deployment}
    stream = [
        audit_event(resource="deployments", group="apps", name="web", uid="d-1", audit_id="dep", **at(0)),
        audit_event(**rs, uid="r-1", user=DEPLOYMENT_CONTROLLER, audit_id="rs-1", **at(1)),
        audit_event(
            **{**rs, "owner": None},
            verb="delete",
            code=200,
            uid="r-1",
            audit_id="by-hand",
            user="alice",
            received=moment(858_000),
            completed=moment(859_000),
        ),
        audit_event(
            **rs,
            uid="r-2",
            user=DEPLOYMENT_CONTROLLER,
            audit_id="rs-2",
            received=moment(865_000),
            completed=moment(866_000),
        ),
    ]
    created = kube_event(
        kind="ReplicaSet",
        api_version="apps/v1",
        name="web-1",
        object_uid="r-2",
        reason="SuccessfulCreate",
        message="Created pod: web-1-b",
        first="2024-05-01T10:00:05Z",
        component="replicaset-controller",
    )
    service = store_of(tmp_path / "k.db", stream, [created])
    try:
        before_delete = us("2024-05-01T10:00:05.857Z")
        found = service.explain(
            ObjectQuery(cluster="c1", resource="replicasets", name="web-1"), before_delete, chain_only=True
        )
        latest = service.explain(
            ObjectQuery(cluster="c1", resource="replicasets", name="web-1"), chain_only=True
        )
    finally:
        service.close()
    assert found.object["uid"] == "r-1"
    assert found.chain.steps[0].relation == "created"
    assert latest.object["uid"] == "r-2"
    assert latest.chain.steps[0].relation == "recreated"
