"""Stuck and failing Pods (frontend.stuck) on synthetic traces — one per signal and its counter-case —
on the recorded Deployment sample and real recorded Events (healthy: nothing listed), and the
namespace-wide view through QueryService, ``GET /api/kelemetry/stuck`` and ``kelemetry stuck``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from frontend import api, query, stuck
from frontend.jaegerstore import JaegerBackend
from frontend.stuck import PodState
from frontend.views import ViewStore
from jaeger.client import JaegerClient
from kelemetry import cli
from kelemetry.model.objects import KnownObject
from kelemetry.model.times import parse_time_us
from kelemetry.store.sqlite import SpanStore, StoreReader
from tests.factories import audit_event, kube_event, new_pipeline, owner_ref
from tests.frontend.conftest import SAMPLE_CLUSTER
from tests.frontend.spantrees import Obj, obj, trace_of, us
from tests.jaeger.fakejaeger import FakeJaeger, jaeger_traces, serving

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

SCHEDULER = "system:kube-scheduler"
UNSCHEDULABLE = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."


def workload() -> tuple[Obj, Obj]:
    deployment = obj("deployments", "web")
    replica_set = deployment.owns("replicasets", "web-5d4")
    return deployment, replica_set


def only(root: Obj, now_s: float) -> list[stuck.StuckPod]:
    return stuck.stuck_pods(trace_of(root), us(now_s))


def test_failed_scheduling_and_no_binding_is_unscheduled_since_the_first_one() -> None:
    deployment, replica_set = workload()
    pod = replica_set.owns("pods", "web-5d4-a")
    pod.request(10, "create", user="system:serviceaccount:kube-system:replicaset-controller", code=201)
    pod.event(11, "FailedScheduling", UNSCHEDULABLE, count=1)
    pod.event(40, "FailedScheduling", UNSCHEDULABLE, count=4)
    pod.event(100, "FailedScheduling", UNSCHEDULABLE, count=9)
    (found,) = only(deployment, 311)
    assert found.state is PodState.UNSCHEDULED
    assert found.pod.key.name == "web-5d4-a"
    assert (found.since_us, found.for_seconds, found.count) == (us(11), 300.0, 9)
    assert found.reasons == (f"FailedScheduling: {UNSCHEDULABLE}",)
    as_json = found.to_json()
    assert as_json["state"] == "unscheduled" and as_json["for_seconds"] == 300.0 and as_json["cause"] is None
    assert as_json["object"]["name"] == "web-5d4-a" and as_json["object"]["uid"] == "uid-web-5d4-a"
    assert as_json["since"].endswith("Z") and as_json["since_us"] == us(11)
    assert "unscheduled since" in found.text() and "5m00s" in found.text()


@pytest.mark.parametrize(
    "bind",
    [
        pytest.param(
            lambda pod: pod.request(50, "create", user=SCHEDULER, subresource="binding", code=201),
            id="binding",
        ),
        pytest.param(lambda pod: pod.change(50, 'spec.nodeName null -> "node-1"'), id="nodeName"),
        pytest.param(lambda pod: pod.event(50, "Scheduled", "assigned", warning=False), id="Scheduled"),
    ],
)
def test_a_pod_bound_after_failing_to_schedule_is_not_stuck(bind: Any) -> None:
    deployment, replica_set = workload()
    pod = replica_set.owns("pods", "web-5d4-a")
    pod.event(11, "FailedScheduling", UNSCHEDULABLE)
    bind(pod)
    assert only(deployment, 400) == []


def test_a_binding_that_failed_does_not_schedule_it() -> None:
    deployment, replica_set = workload()
    pod = replica_set.owns("pods", "web-5d4-a")
    pod.event(11, "FailedScheduling", UNSCHEDULABLE)
    pod.request(12, "create", user=SCHEDULER, subresource="binding", code=409)
    assert [item.state for item in only(deployment, 400)] == [PodState.UNSCHEDULED]


def test_back_off_warnings_are_crashlooping_until_the_pod_is_ready_again() -> None:
    deployment, replica_set = workload()
    pod = replica_set.owns("pods", "web-5d4-a")
    pod.event(20, "BackOff", "Back-off restarting failed container app in pod web-5d4-a", count=3)
    (found,) = only(deployment, 80)
    assert (found.state, found.since_us, found.count) == (PodState.CRASHLOOPING, us(20), 3)
    pod.change(90, 'status.conditions[type=Ready].status "False" -> "True"')
    assert only(deployment, 120) == []


def test_a_failing_liveness_probe_is_crashlooping_and_a_readiness_probe_not_ready() -> None:
    deployment, replica_set = workload()
    replica_set.owns("pods", "a").event(5, "Unhealthy", "Liveness probe failed: HTTP probe failed")
    replica_set.owns("pods", "b").event(6, "Unhealthy", "Readiness probe failed: connection refused")
    found = {item.pod.key.name: item.state for item in only(deployment, 60)}
    assert found == {"a": PodState.CRASHLOOPING, "b": PodState.NOT_READY}


def test_image_pull_back_off_is_not_ready_not_crashlooping() -> None:
    deployment, replica_set = workload()
    replica_set.owns("pods", "a").event(5, "BackOff", 'Back-off pulling image "nginx:9.9"')
    assert [item.state for item in only(deployment, 60)] == [PodState.NOT_READY]


@pytest.mark.parametrize(
    ("signal", "reason"),
    [
        pytest.param(
            lambda pod: pod.request(30, "create", user="ops", subresource="eviction", code=201),
            "eviction requested by ops (kubectl) create/eviction at",
            id="eviction-request",
        ),
        pytest.param(
            lambda pod: pod.event(30, "Evicted", "The node was low on resource: memory."),
            "Evicted: The node was low on resource: memory.",
            id="Evicted-event",
        ),
        pytest.param(
            lambda pod: pod.event(
                30, "TaintManagerEviction", "Marking for deletion Pod default/a", warning=False
            ),
            "TaintManagerEviction: Marking for deletion Pod default/a",
            id="taint-manager",
        ),
        pytest.param(
            lambda pod: pod.request(
                30,
                "patch",
                'status.reason null -> "Evicted"',
                user="kubelet",
                agent="kubelet",
                subresource="status",
            ),
            'status.reason -> "Evicted" (kubelet patch/status at',
            id="status-reason",
        ),
    ],
)
def test_an_evicted_pod_is_listed_with_who_or_what_evicted_it(signal: Any, reason: str) -> None:
    deployment, replica_set = workload()
    pod = replica_set.owns("pods", "a")
    pod.event(10, "BackOff", "Back-off restarting failed container")
    signal(pod)
    (found,) = only(deployment, 90)
    assert found.state is PodState.EVICTED and found.since_us == us(30)
    assert found.reasons[0].startswith(reason)
    assert found.reasons[1] == "BackOff: Back-off restarting failed container"  # the other signal is kept


def test_an_eviction_that_was_refused_evicts_nothing() -> None:
    deployment, replica_set = workload()
    replica_set.owns("pods", "a").request(30, "create", user="ops", subresource="eviction", code=429)
    assert only(deployment, 90) == []


def test_a_failed_phase_is_failed_and_time_stops_at_the_delete() -> None:
    deployment, replica_set = workload()
    pod = replica_set.owns("pods", "a")
    pod.request(10, "patch", 'status.phase "Running" -> "Failed"', user="kubelet", subresource="status")
    pod.request(70, "delete", user="system:serviceaccount:kube-system:pod-garbage-collector")
    (found,) = only(deployment, 1000)
    assert (found.state, found.for_seconds, found.deleted) == (PodState.FAILED, 60.0, True)
    assert "then deleted" in found.text()


def test_ready_false_counts_only_past_the_threshold_and_only_when_shown() -> None:
    deployment, replica_set = workload()
    slow = replica_set.owns("pods", "slow")
    slow.request(
        0, "patch", 'status.conditions[type=Ready] null -> {"type":"Ready","status":"False"}', user="kubelet"
    )
    replica_set.owns("pods", "silent").request(0, "create", code=201)  # no status shown: no guess
    limit = stuck.NOT_READY_AFTER_US / 1_000_000
    assert only(deployment, limit - 1) == []
    (found,) = only(deployment, limit + 1)
    assert (found.pod.key.name, found.state, found.since_us) == ("slow", PodState.NOT_READY, us(0))


def test_the_cause_hook_is_asked_for_each_stuck_pod_at_its_since() -> None:
    deployment, replica_set = workload()
    replica_set.owns("pods", "a").event(11, "FailedScheduling", UNSCHEDULABLE)
    replica_set.owns("pods", "b").event(12, "FailedScheduling", UNSCHEDULABLE)
    asked: list[tuple[str, int]] = []

    def cause_of(pod: KnownObject, time_us: int) -> dict[str, str]:
        asked.append((pod.key.name, time_us))
        return {"relation": "created", "by": "admin"}

    found = stuck.stuck_pods(trace_of(deployment), us(60), cause_of)
    assert sorted(asked) == [("a", us(11)), ("b", us(12))]
    assert [item.to_json()["cause"] for item in found] == [{"relation": "created", "by": "admin"}] * 2
    assert [item.pod.key.name for item in found] == ["a", "b"]  # the longest stuck first


def test_stuck_below_an_object_lists_only_its_own_pods() -> None:
    deployment, replica_set = workload()
    replica_set.owns("pods", "a").event(11, "FailedScheduling", UNSCHEDULABLE)
    other = deployment.owns("replicasets", "web-6e5")
    other.owns("pods", "b").event(12, "FailedScheduling", UNSCHEDULABLE)
    trace = trace_of(deployment)
    assert [item.pod.key.name for item in stuck.stuck_below(trace, other.known, us(60))] == ["b"]
    assert [item.pod.key.name for item in stuck.stuck_below(trace, deployment.known, us(60))] == ["a", "b"]
    assert stuck.stuck_below(trace, obj("pods", "elsewhere").known, us(60)) == []


def test_the_recorded_deployment_has_no_stuck_pods(sample_store: Path) -> None:
    service = query.for_store(sample_store, keep_views=False)
    try:
        answer = service.stuck(SAMPLE_CLUSTER, "default", None, None)
    finally:
        service.close()
    assert answer.pods == () and answer.scanned == 8 and not answer.truncated


def test_real_recorded_events_of_healthy_rollouts_list_no_stuck_pod(realdata: Path, tmp_path: Path) -> None:
    """Real kubelet, scheduler and controller Events (kspan's recordings: Scheduled, Pulling, Pulled,
    Created, Started, Killing) are no stuck signal. The real data holds no FailedScheduling or
    BackOff Event, so the positive cases are the synthetic ones above."""
    events = [
        doc
        for name in ("kspan_deployment_2_pods_recording.yaml", "kspan_fixture_objects_and_events.yaml")
        for doc in yaml.safe_load_all((realdata / name).read_text())
        if isinstance(doc, dict) and doc.get("kind") == "Event"
    ]
    reasons = {event["reason"] for event in events}
    assert {"Scheduled", "Started", "Killing"} <= reasons and "FailedScheduling" not in reasons
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(event, default=str) + "\n" for event in events))
    store = tmp_path / "k.db"
    assert cli.main(["replay", "--quiet", "--cluster", "real", "--store", str(store), str(path)]) == 0
    service = query.for_store(store, keep_views=False)
    try:
        namespaces = {event["involvedObject"].get("namespace") for event in events} - {None}
        answers = [service.stuck("real", namespace, None, None) for namespace in sorted(namespaces)]
    finally:
        service.close()
    assert sum(answer.scanned for answer in answers) >= 3
    assert [item for answer in answers for item in answer.pods] == []


# -- the namespace-wide view over a store


def second(n: int) -> str:
    return f"2024-05-01T10:{n // 60:02d}:{n % 60:02d}.000000Z"


@pytest.fixture(scope="module")
def stuck_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Deployment web (admin) → ReplicaSet web-1 → Pods: web-1-a never scheduled, web-1-b bound and
    crashlooping, web-1-c healthy; and a lone Pod in another namespace never scheduled."""
    path = tmp_path_factory.mktemp("stuck") / "k.db"
    store = SpanStore(path)
    rs_owner = owner_ref("ReplicaSet", "web-1", uid="rs-1")
    controller = "system:serviceaccount:kube-system:replicaset-controller"
    audit = [
        audit_event(
            verb="create",
            resource="deployments",
            group="apps",
            name="web",
            uid="dep-1",
            received=second(0),
            completed=second(0),
        ),
        audit_event(
            verb="create",
            resource="replicasets",
            group="apps",
            name="web-1",
            uid="rs-1",
            owner=owner_ref("Deployment", "web", uid="dep-1"),
            user="system:serviceaccount:kube-system:deployment-controller",
            received=second(1),
            completed=second(1),
        ),
        *(
            audit_event(
                verb="create",
                name=name,
                uid=f"uid-{name}",
                owner=rs_owner,
                user=controller,
                received=second(2),
                completed=second(2),
            )
            for name in ("web-1-a", "web-1-b", "web-1-c")
        ),
        *(
            audit_event(
                verb="create",
                name=name,
                subresource="binding",
                user=SCHEDULER,
                uid=f"uid-{name}",
                received=second(3),
                completed=second(3),
            )
            for name in ("web-1-b", "web-1-c")
        ),
        audit_event(
            verb="create",
            name="lone",
            namespace="other",
            uid="uid-lone",
            received=second(2),
            completed=second(2),
        ),
    ]
    events = [
        kube_event(
            kind="Pod",
            name="web-1-a",
            object_uid="uid-web-1-a",
            reason="FailedScheduling",
            message=UNSCHEDULABLE,
            event_type="Warning",
            count=7,
            first=second(3)[:19] + "Z",
            last=second(120)[:19] + "Z",
            uid="fs-a",
        ),
        kube_event(
            kind="Pod",
            name="web-1-b",
            object_uid="uid-web-1-b",
            reason="BackOff",
            message="Back-off restarting failed container app in pod web-1-b",
            event_type="Warning",
            count=2,
            first=second(30)[:19] + "Z",
            last=second(60)[:19] + "Z",
            uid="bo-b",
        ),
        kube_event(
            kind="Pod",
            name="lone",
            namespace="other",
            object_uid="uid-lone",
            reason="FailedScheduling",
            message=UNSCHEDULABLE,
            event_type="Warning",
            first=second(4)[:19] + "Z",
            uid="fs-lone",
        ),
    ]
    pipeline = new_pipeline(store)
    assert pipeline.process_audit(audit, "c1").failed == 0
    assert pipeline.process_kube_events(events, "c1").failed == 0
    store.close()
    return path


@pytest.fixture(scope="module")
def client(stuck_store: Path, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    service = query.for_store(stuck_store, tmp_path_factory.mktemp("views") / "views.db")
    app = FastAPI()
    api.install(app, service)
    return TestClient(app, raise_server_exceptions=False)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def test_the_api_lists_a_namespaces_stuck_pods_longest_first(client: TestClient) -> None:
    body = ok(
        client.get(
            "/api/kelemetry/stuck", params={"cluster": "c1", "namespace": "default", "end": second(600)}
        )
    )
    assert (body["scanned"], body["truncated"], body["limit"]) == (3, False, query.STUCK_PODS_SCANNED)
    rows = [(row["object"]["name"], row["state"], row["count"]) for row in body["data"]]
    assert rows == [("web-1-a", "unscheduled", 7), ("web-1-b", "crashlooping", 2)]
    first = body["data"][0]
    assert first["since"] == "2024-05-01T10:00:03.000Z" and first["for_seconds"] == 597.0
    assert first["reasons"] == [f"FailedScheduling: {UNSCHEDULABLE}"]
    # The cause is the origin of the Pod's cause chain: admin's create of Deployment web.
    cause = first["cause"]
    assert (cause["object"]["name"], cause["relation"], cause["actor"]) == ("web", "created", "human")
    assert cause["request"]["user"] == "admin" and cause["proven"]
    assert first["object"] == {
        "cluster": "c1",
        "group": "",
        "resource": "pods",
        "namespace": "default",
        "name": "web-1-a",
        "kind": "Pod",
        "uid": "uid-web-1-a",
    }


def test_the_range_narrows_the_pods_read(client: TestClient) -> None:
    body = ok(client.get("/api/kelemetry/stuck", params={"cluster": "c1", "namespace": "other"}))
    assert [row["object"]["name"] for row in body["data"]] == ["lone"]
    later = ok(
        client.get(
            "/api/kelemetry/stuck", params={"cluster": "c1", "namespace": "other", "start": second(300)}
        )
    )
    assert later["data"] == [] and later["scanned"] == 0


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"namespace": "default"}, 400, "missing query parameter(s): cluster"),
        ({"cluster": "c1"}, 400, "missing query parameter(s): namespace"),
        ({"cluster": "c1", "namespace": "default", "start": "yesterday"}, 400, "invalid start 'yesterday'"),
        (
            {"cluster": "c1", "namespace": "default", "start": second(9), "end": second(1)},
            400,
            "start is after end",
        ),
        ({"cluster": "c9", "namespace": "default"}, 404, "no cluster 'c9' in the store; known: c1"),
    ],
)
def test_bad_parameters_are_refused_with_the_reason(
    client: TestClient, params: dict[str, str], status: int, message: str
) -> None:
    response = client.get("/api/kelemetry/stuck", params=params)
    assert response.status_code == status, response.text
    body = response.json()
    assert message in body["error"] and body["errors"][0]["msg"] == body["error"] and body["data"] == []


def test_the_cli_prints_each_stuck_pod_and_its_json_is_the_apis(
    client: TestClient, stuck_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "stuck",
        "--store",
        str(stuck_store),
        "--cluster",
        "c1",
        "--namespace",
        "default",
        "--end",
        second(600)[:19] + "Z",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("Pod default/web-1-a unscheduled since 2024-05-01T10:00:03.000Z (9m57s; 7x)\n")
    assert "Pod default/web-1-b crashlooping since" in out
    assert cli.main([*argv, "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == ok(
        client.get(
            "/api/kelemetry/stuck", params={"cluster": "c1", "namespace": "default", "end": second(600)}
        )
    )


def test_the_cli_says_when_nothing_is_stuck(stuck_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["stuck", "--store", str(stuck_store), "--cluster", "c1", "--namespace", "quiet"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no stuck or failing Pods among 0 Pod(s) in namespace quiet (cluster c1)" in captured.err


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--cluster", "c9", "--namespace", "default"], 1, "no cluster 'c9' in the store"),
        (
            ["--cluster", "c1", "--namespace", "default", "--since", "1h", "--start", "2024-05-01T10:00:00Z"],
            2,
            "use either --since or --start/--end",
        ),
        (["--cluster", "c1", "--namespace", "default", "--start", "soon"], 2, "soon"),
        (
            [
                "--cluster",
                "c1",
                "--namespace",
                "default",
                "--start",
                "2024-05-02T00:00:00Z",
                "--end",
                "2024-05-01T00:00:00Z",
            ],
            2,
            "start is after end",
        ),
    ],
)
def test_the_cli_refuses_bad_input_in_one_line(
    stuck_store: Path, capsys: pytest.CaptureFixture[str], extra: list[str], code: int, message: str
) -> None:
    assert cli.main(["stuck", "--store", str(stuck_store), *extra]) == code
    err = capsys.readouterr().err
    assert err.startswith("kelemetry: error: ") and message in err and err.count("\n") == 1


def test_jaeger_and_the_store_list_the_same_stuck_pods(stuck_store: Path) -> None:
    reader = StoreReader(stuck_store)
    try:
        records = [record for _seq, record in reader.spans_after(0, 1_000_000)]
    finally:
        reader.close()
    end_us = api.parse_time_param("end", second(600))
    from_store = query.for_store(stuck_store, keep_views=False)
    try:
        expected = from_store.stuck("c1", "default", None, end_us).to_json()
    finally:
        from_store.close()
    with serving(FakeJaeger(traces=jaeger_traces(records))) as fake:
        backend = JaegerBackend(JaegerClient(fake.url), lookback_us=50 * 365 * 86_400 * 1_000_000)
        service = query.QueryService(backend, ViewStore(None))
        assert service.stuck("c1", "default", None, end_us).to_json() == expected
    assert [row["object"]["name"] for row in expected["data"]] == ["web-1-a", "web-1-b"]  # type: ignore[index]


def test_the_store_leaves_out_pod_writes_that_mention_no_signal_and_the_answer_is_the_same(
    tmp_path: Path,
) -> None:
    """A Pod that went Ready, then had its restart count bumped over and over (routine kubelet
    writes), then went not ready: what rollouts and stuck Pods read skips the bumps only."""

    def pod(rv: int, status: dict[str, Any]) -> dict[str, Any]:
        metadata = {"name": "web-1-a", "namespace": "default", "uid": "uid-a", "resourceVersion": str(rv)}
        return {"kind": "Pod", "apiVersion": "v1", "metadata": metadata, "status": status}

    def ready(flag: str, restarts: int) -> dict[str, Any]:
        return {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": flag}],
            "containerStatuses": [{"name": "app", "restartCount": restarts}],
        }

    def write(second_: int, body: dict[str, Any], verb: str = "patch") -> dict[str, Any]:
        return audit_event(
            verb=verb,
            name="web-1-a",
            uid="uid-a",
            user="system:node:n1" if verb == "patch" else "admin",
            subresource="status" if verb == "patch" else "",
            request_object=body,
            response_object=body,
            received=second(second_),
            completed=second(second_),
        )

    def at_us(n: int) -> int:
        return parse_time_us(second(n))

    audit = [write(0, pod(1, {}), verb="create"), write(1, pod(2, ready("True", 0)))]
    audit += [write(2 + n, pod(3 + n, ready("True", n + 1))) for n in range(5)]
    audit.append(write(10, pod(20, ready("False", 5))))
    path = tmp_path / "k.db"
    store = SpanStore(path)
    assert new_pipeline(store).process_audit(audit, "c1").failed == 0
    store.close()
    backend = query.StoreBackend(StoreReader(path))
    try:
        [target] = backend.find_objects(query.ObjectQuery(cluster="c1", resource="pods", name="web-1-a"))
        whole, read = backend.trace(target, None, None), backend.states(target, None, None)
    finally:
        backend.close()
    requests = [n.span.tags.get("audit.verb") for n in whole.walk() if n.span.source.value == "audit"]
    kept = [n.span.start_us for n in read.walk() if n.span.source.value == "audit"]
    assert requests == ["create"] + ["patch"] * 7
    assert kept == [at_us(0), at_us(1), at_us(10)]
    later = at_us(10) + 600_000_000
    assert [p.to_json() for p in stuck.stuck_pods(read, later)] == [
        p.to_json() for p in stuck.stuck_pods(whole, later)
    ]
    [not_ready] = stuck.stuck_pods(read, later)
    assert not_ready.state is PodState.NOT_READY and not_ready.since_us == at_us(10)
