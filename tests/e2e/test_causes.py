"""Causal answers on a real control plane: who really did what, asked the way an incident asks it.

Four scenarios, each in its own namespace and driven with kubectl as user ``admin``: a rollout by
``kubectl set image``, a ``kubectl scale --replicas=0``, a Deployment whose Pods no node can take
(the real scheduler's FailedScheduling), and a ReplicaSet deleted by hand that the
deployment-controller creates again. Each test first checks what reached the collector's store
(the requests, Events and incarnations the answers are built from), then asks ``kelemetry
explain``, ``blame`` and ``stuck`` (the CLI against the collector's store) and the HTTP API.

The namespaces are made and the workloads created together at the start of the module, so the
scenarios' control loops run while the earlier tests check their answers. With
KELEMETRY_RECORD=1 the module writes samples/causes/ (the scenarios' part of the audit log and
their Events) when it ends.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from kelemetry.model.events import TraceSource
from kelemetry.model.spans import SpanRecord
from kelemetry.model.times import parse_time_us
from kelemetry.store.sqlite import StoreReader
from tests.e2e.conftest import RUN_DIR, Collector, ControlPlane, Jaeger
from tests.e2e.servers import CLUSTER, REPO, Binaries, wait_until

pytestmark = pytest.mark.e2e

ADMIN = "admin"
DEPLOYMENT_CONTROLLER = "system:serviceaccount:kube-system:deployment-controller"
REPLICASET_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
GARBAGE_COLLECTOR = "system:serviceaccount:kube-system:generic-garbage-collector"

ROLLOUT, SCALE, PENDING, RECREATE = "causes-rollout", "causes-scale", "causes-pending", "causes-recreate"
NAMESPACES = (ROLLOUT, SCALE, PENDING, RECREATE)
IMAGE_DIFF = 'spec.template.spec.containers[name=nginx].image "nginx:1.27" -> "nginx:1.28"'

# No node has this label (the kwok node is `type: kwok`), so the scheduler can never place the Pods.
# A short progress deadline lets the deployment-controller give up on the rollout within the run.
PENDING_DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": PENDING},
    "spec": {
        "replicas": 1,
        "progressDeadlineSeconds": 10,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "nodeSelector": {"disktype": "ssd"},
                "containers": [{"name": "nginx", "image": "nginx:1.27"}],
            },
        },
    },
}


@dataclass(frozen=True)
class Scenarios:
    cluster: ControlPlane
    collector: Collector
    binaries: Binaries
    started_us: int


@pytest.fixture(scope="module")
def scenarios(cluster: ControlPlane, collector: Collector, binaries: Binaries) -> Iterator[Scenarios]:
    started_us = time.time_ns() // 1000 - 1_000_000
    for namespace in NAMESPACES:
        cluster.kubectl("create", "namespace", namespace)
    wait_until(
        "the namespaces' default service accounts",
        lambda: all(cluster.kubectl("get", "sa", "default", "-n", ns, check=False) for ns in NAMESPACES),
        60,
    )
    replicas = {ROLLOUT: "2", SCALE: "2", RECREATE: "1"}
    for namespace, count in replicas.items():
        create_web(cluster, namespace, count)
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(PENDING_DEPLOYMENT))
    yield Scenarios(cluster, collector, binaries, started_us)
    if os.environ.get("KELEMETRY_RECORD"):
        record_sample(cluster, started_us)


def create_web(cluster: ControlPlane, namespace: str, replicas: str) -> None:
    cluster.kubectl(
        "create", "deployment", "web", "-n", namespace, "--image=nginx:1.27", f"--replicas={replicas}"
    )


def jsonpath(cluster: ControlPlane, namespace: str, *what: str, path: str) -> str:
    return cluster.kubectl("get", *what, "-n", namespace, "-o", f"jsonpath={path}", check=False)


def rolled_out(cluster: ControlPlane, namespace: str, replicas: int) -> None:
    wait_until(
        f"deployment web in {namespace} to have {replicas} updated, available pods",
        lambda: (
            jsonpath(
                cluster,
                namespace,
                "deployment",
                "web",
                path="{.status.availableReplicas}/{.status.updatedReplicas}/{.status.replicas}",
            )
            == (f"{replicas}/{replicas}/{replicas}" if replicas else "//")
        ),
        90,
        0.5,
    )


# -- what reached the store


def spans_in(collector: Collector, namespace: str) -> list[SpanRecord]:
    reader = StoreReader(collector.store)
    try:
        return [s for s in reader.all_spans() if s.key.namespace == namespace and s.key.cluster == CLUSTER]
    finally:
        reader.close()


def requests_of(spans: list[SpanRecord], resource: str, name: str | None = None) -> list[SpanRecord]:
    return sorted(
        (
            s
            for s in spans
            if s.source is TraceSource.AUDIT
            and s.key.resource == resource
            and (name is None or s.key.name == name)
        ),
        key=lambda s: s.start_us,
    )


def call(span: SpanRecord) -> tuple[Any, Any, Any]:
    return (span.tags.get("audit.user"), span.tags.get("audit.verb"), span.tags.get("audit.subresource"))


def diff_lines(span: SpanRecord) -> list[str]:
    return [line for log in span.logs if log.kind == "diff" for line in log.message.split("\n")]


def incarnations(collector: Collector, namespace: str, resource: str, name: str) -> list[str]:
    reader = StoreReader(collector.store)
    try:
        found = reader.find_objects(cluster=CLUSTER, resource=resource, namespace=namespace, name=name)
    finally:
        reader.close()
    return sorted(o.uid for o in found if o.uid)


def wait_for_spans(collector: Collector, namespace: str, what: str, check: Any, timeout: float = 60) -> Any:
    return wait_until(what, lambda: check(spans_in(collector, namespace)), timeout, 0.5)


# -- the answers: the real CLI against the collector's store, and the collector's HTTP API


def cli_json(scenarios: Scenarios, *args: str, source: tuple[str, str] | None = None) -> Any:
    """``kelemetry ARGS --format json`` against the collector's store, or ``source`` (e.g. Jaeger)."""
    result = subprocess.run(
        [
            str(scenarios.binaries.kelemetry),
            *args,
            "--cluster",
            CLUSTER,
            *(source or ("--store", str(scenarios.collector.store))),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"kelemetry {' '.join(args)} failed: {result.stderr.strip()}"
    return json.loads(result.stdout)


def settled(what: str, ask: Callable[[], Any], ready: Callable[[Any], bool], timeout: float = 30) -> Any:
    """The answer once ``ready`` holds; after ``timeout`` the last answer anyway, so the assertions
    that follow say precisely what is wrong with it rather than only that it never came. Each
    different answer on the way is kept in the run folder (causes/<what>.jsonl, with the seconds
    since the first ask), to tell an answer that is late from one that was wrong for a while."""
    started = time.monotonic()
    kept = RUN_DIR / "causes" / f"{re.sub(r'[^a-z0-9]+', '-', what.lower()).strip('-')}.jsonl"
    kept.parent.mkdir(parents=True, exist_ok=True)
    last = None
    with kept.open("w") as out:
        while True:
            answer = ask()
            if answer != last:
                out.write(
                    json.dumps({"after_s": round(time.monotonic() - started, 2), "answer": answer}) + "\n"
                )
                last = answer
            if ready(answer) or time.monotonic() - started > timeout:
                return answer
            time.sleep(0.5)


def only(answer: dict[str, Any]) -> dict[str, Any]:
    assert len(answer["data"]) == 1, answer
    item: dict[str, Any] = answer["data"][0]
    return item


def asked(request: dict[str, Any] | None) -> tuple[Any, Any, Any]:
    """Who made a request, and how: (user, verb, subresource or None)."""
    request = request or {}
    return (request.get("user"), request.get("verb"), request.get("subresource") or None)


def who(step_or_entry: dict[str, Any]) -> tuple[Any, Any, Any]:
    return asked(step_or_entry.get("request"))


def explain(scenarios: Scenarios, namespace: str, resource: str, name: str, *extra: str) -> dict[str, Any]:
    return only(
        cli_json(
            scenarios, "explain", "--resource", resource, "--namespace", namespace, "--name", name, *extra
        )
    )


def started_by_a_person(answer: dict[str, Any]) -> bool:
    return bool(answer["chain"]) and answer["chain"][-1]["actor"] == "human"


# -- the scenarios


def test_set_image_rollout_is_explained_back_to_admin(scenarios: Scenarios) -> None:
    cluster, collector = scenarios.cluster, scenarios.collector
    rolled_out(cluster, ROLLOUT, 2)
    first_rs = jsonpath(cluster, ROLLOUT, "rs", path="{.items[0].metadata.name}")
    cluster.kubectl("set", "image", "deployment/web", "-n", ROLLOUT, "nginx=nginx:1.28")
    rolled_out(cluster, ROLLOUT, 2)
    wait_until(
        "the old ReplicaSet to be scaled to 0",
        lambda: jsonpath(cluster, ROLLOUT, "rs", first_rs, path="{.status.replicas}") == "0",
        60,
    )

    def arrived(spans: list[SpanRecord]) -> tuple[SpanRecord, SpanRecord, list[SpanRecord]] | None:
        patches = [
            s
            for s in requests_of(spans, "deployments", "web")
            if call(s) == (ADMIN, "patch", None) and IMAGE_DIFF in diff_lines(s)
        ]
        new_rs = [
            s
            for s in requests_of(spans, "replicasets")
            if call(s) == (DEPLOYMENT_CONTROLLER, "create", None) and s.key.name != first_rs
        ]
        pods = [
            s
            for s in requests_of(spans, "pods")
            if new_rs
            and call(s) == (REPLICASET_CONTROLLER, "create", None)
            and s.key.name.startswith(new_rs[0].key.name + "-")
        ]
        ready = len(patches) == 1 and len(new_rs) == 1 and len(pods) >= 2
        return (patches[0], new_rs[0], pods) if ready else None

    patch, new_rs, pods = wait_for_spans(
        collector, ROLLOUT, "admin's set-image patch, the new ReplicaSet and its pods", arrived
    )
    assert "kubectl" in str(patch.tags.get("audit.user_agent"))

    # The first Pod of the new ReplicaSet: made because the ReplicaSet was made, because of the patch.
    pod = pods[0]
    answer = settled(
        "the Pod's chain to reach admin",
        lambda: explain(scenarios, ROLLOUT, "pods", pod.key.name),
        started_by_a_person,
    )
    chain = answer["chain"]
    assert answer["object"]["name"] == pod.key.name and answer["object"]["uid"] == pod.uid
    assert [step["object"]["resource"] for step in chain] == ["pods", "replicasets", "deployments"]
    assert who(chain[0]) == (REPLICASET_CONTROLLER, "create", None)
    assert chain[0]["relation"] == "created" and chain[0]["actor"] == "controller"
    assert chain[1]["object"]["name"] == new_rs.key.name and chain[1]["object"]["uid"] == new_rs.uid
    assert who(chain[1])[0] == DEPLOYMENT_CONTROLLER and chain[1]["actor"] == "controller"
    last = chain[-1]
    assert last["object"]["name"] == "web" and last["object"]["kind"] == "Deployment"
    assert who(last) == (ADMIN, "patch", None) and last["actor"] == "human"
    assert last["request"]["audit_id"] == patch.tags["audit.id"]
    assert last["request"]["user_agent"].startswith("kubectl/")
    assert IMAGE_DIFF in last["changes"]
    assert all(step["proven"] for step in chain) and answer["complete"] is True
    assert ADMIN in answer["summary"] and new_rs.key.name in answer["summary"]


def test_explain_through_the_collectors_http_api(scenarios: Scenarios) -> None:
    """The same question through the running collector's API: the same chain as the CLI's."""
    collector = scenarios.collector
    pod = next(
        s
        for s in requests_of(spans_in(collector, ROLLOUT), "pods")
        if call(s) == (REPLICASET_CONTROLLER, "create", None)
    )
    params = {"cluster": CLUSTER, "resource": "po", "namespace": ROLLOUT, "name": pod.key.name}
    response = httpx.get(f"{collector.url}/api/kelemetry/explain", params=params, timeout=30)
    assert response.status_code == 200, response.text
    over_http = only(response.json())
    from_cli = explain(scenarios, ROLLOUT, "pods", pod.key.name)
    assert over_http["object"] == from_cli["object"]
    assert [(s["object"]["uid"], s["relation"], who(s)) for s in over_http["chain"]] == [
        (s["object"]["uid"], s["relation"], who(s)) for s in from_cli["chain"]
    ]
    assert who(over_http["chain"][-1])[0] == ADMIN
    # An object no one has heard of is a 404 with a reason, not an empty chain.
    missing = httpx.get(
        f"{collector.url}/api/kelemetry/explain", params={**params, "name": "no-such-pod"}, timeout=30
    )
    assert missing.status_code == 404 and missing.json()["errors"]
    # Blame without a field is refused with the reason.
    unasked = httpx.get(f"{collector.url}/api/kelemetry/blame", params=params, timeout=30)
    assert unasked.status_code == 400 and "field" in unasked.json()["error"]


def test_explain_from_jaeger_tells_the_same_chain(scenarios: Scenarios, jaeger: Jaeger) -> None:
    """What the collector exported to Jaeger answers the same question the same way."""
    collector = scenarios.collector
    pods = [
        s
        for s in requests_of(spans_in(collector, ROLLOUT), "pods")
        if call(s) == (REPLICASET_CONTROLLER, "create", None)
    ]
    pod = pods[-1].key.name  # of the new ReplicaSet: the three-step chain back to the set-image patch
    from_store = explain(scenarios, ROLLOUT, "pods", pod)

    def ask() -> dict[str, Any]:
        return only(
            cli_json(
                scenarios,
                *("explain", "--resource", "pods", "--namespace", ROLLOUT, "--name", pod),
                source=("--jaeger-url", jaeger.api),
            )
        )

    def steps(answer: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [
            (s["object"]["uid"], s["relation"], who(s), (s["request"] or {}).get("audit_id"), s["changes"])
            for s in answer["chain"]
        ]

    from_jaeger = settled(
        "Jaeger to hold the Pod's line of owners", ask, lambda a: steps(a) == steps(from_store), 60
    )
    assert steps(from_jaeger) == steps(from_store)
    assert who(from_jaeger["chain"][-1]) == (ADMIN, "patch", None)

    # The Deployment's rollouts too: the same revisions, ReplicaSets, states and triggers.
    def phases(answer: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [
            (r["revision"], (r["object"] or {}).get("uid"), r["state"], (r["trigger"] or {}).get("audit_id"))
            for r in answer["rollouts"]
        ]

    workload = explain(scenarios, ROLLOUT, "deployments", "web")
    workload_from_jaeger = settled(
        "Jaeger to hold the Deployment's rollouts",
        lambda: only(
            cli_json(
                scenarios,
                *("explain", "--resource", "deploy", "--namespace", ROLLOUT, "--name", "web"),
                source=("--jaeger-url", jaeger.api),
            )
        ),
        lambda a: phases(a) == phases(workload),
        60,
    )
    assert phases(workload_from_jaeger) == phases(workload) and len(phases(workload)) == 2


def test_set_image_rollout_is_revision_2_triggered_by_admin(scenarios: Scenarios) -> None:
    collector = scenarios.collector
    spans = spans_in(collector, ROLLOUT)
    patch = next(s for s in requests_of(spans, "deployments", "web") if call(s)[1] == "patch")
    made = [
        s for s in requests_of(spans, "replicasets") if call(s) == (DEPLOYMENT_CONTROLLER, "create", None)
    ]
    answer = settled(
        "the Deployment's rollouts",
        lambda: explain(scenarios, ROLLOUT, "deployments", "web"),
        lambda a: (
            [(r["revision"], asked(r["trigger"])[0]) for r in a.get("rollouts", [])]
            == [("1", ADMIN), ("2", ADMIN)]
        ),
    )
    revisions = {r["revision"]: r for r in answer["rollouts"]}
    assert set(revisions) >= {"1", "2"}, answer["rollouts"]
    second = revisions["2"]
    assert asked(second["trigger"]) == (ADMIN, "patch", None)
    assert second["trigger"]["audit_id"] == patch.tags["audit.id"]
    assert IMAGE_DIFF in second["changes"]
    assert second["state"] == "complete" and second["finished"]
    # The first revision came from admin's create and was done before the second replaced it.
    first = revisions["1"]
    assert asked(first["trigger"]) == (ADMIN, "create", None)
    assert first["finished"] and first["finished"] <= second["started"]
    assert [first["object"]["uid"], second["object"]["uid"]] == [rs.uid for rs in made]
    assert answer["stuck"] == []


def test_scale_to_zero_is_blamed_on_admins_scale_request(scenarios: Scenarios) -> None:
    cluster, collector = scenarios.cluster, scenarios.collector
    rolled_out(cluster, SCALE, 2)
    cluster.kubectl("scale", "deployment/web", "-n", SCALE, "--replicas=3")
    rolled_out(cluster, SCALE, 3)
    cluster.kubectl("scale", "deployment/web", "-n", SCALE, "--replicas=0")
    rolled_out(cluster, SCALE, 0)

    def arrived(spans: list[SpanRecord]) -> list[SpanRecord] | None:
        scales = [s for s in requests_of(spans, "deployments", "web") if call(s) == (ADMIN, "patch", "scale")]
        return scales if len(scales) == 2 else None

    scales = wait_for_spans(collector, SCALE, "admin's two scale requests", arrived)
    assert "spec.replicas 2 -> 3" in diff_lines(scales[0])
    assert "spec.replicas 3 -> 0" in diff_lines(scales[1])

    answer = only(
        cli_json(
            scenarios,
            *("blame", "--resource", "deploy", "--namespace", SCALE, "--name", "web"),
            *("--field", "spec.replicas"),
        )
    )
    assert answer["field"] == "spec.replicas"
    current = answer["current"]
    assert who(current) == (ADMIN, "patch", "scale")
    assert (current["old"], current["new"]) == ("3", "0")
    assert current["request"]["audit_id"] == scales[1].tags["audit.id"] and current["proven"]
    [incarnation] = answer["incarnations"]
    assert not incarnation["deleted"]
    history = [(e["old"], e["new"], who(e)) for e in incarnation["history"]]
    assert history == [
        ("null", "2", (ADMIN, "create", None)),
        ("2", "3", (ADMIN, "patch", "scale")),
        ("3", "0", (ADMIN, "patch", "scale")),
    ]


def test_unschedulable_pod_is_stuck_with_the_request_that_created_its_workload(scenarios: Scenarios) -> None:
    cluster, collector = scenarios.cluster, scenarios.collector

    def failed_scheduling(spans: list[SpanRecord]) -> list[SpanRecord] | None:
        found = [
            s
            for s in spans
            if s.source is TraceSource.EVENT
            and s.key.resource == "pods"
            and s.tags.get("event.reason") == "FailedScheduling"
        ]
        return found or None

    events = wait_for_spans(collector, PENDING, "the scheduler's FailedScheduling Event", failed_scheduling)
    assert all(e.tags.get("event.type") == "Warning" for e in events)
    assert any("didn't match Pod's node affinity/selector" in log.message for e in events for log in e.logs)
    spans = spans_in(collector, PENDING)
    create = requests_of(spans, "deployments", "web")[0]
    assert call(create) == (ADMIN, "create", None)
    assert not [s for s in requests_of(spans, "pods") if call(s)[2] == "binding"]
    wait_until(
        "the deployment-controller to give up on the rollout",
        lambda: (
            "ProgressDeadlineExceeded"
            in jsonpath(
                cluster,
                PENDING,
                "deployment",
                "web",
                path="{.status.conditions[?(@.type=='Progressing')].reason}",
            )
        ),
        60,
        0.5,
    )
    pod = events[0].key.name
    first_failure_us = min(e.start_us for e in events)

    asked_us = time.time_ns() // 1000
    answer = cli_json(scenarios, "stuck", "--namespace", PENDING)
    [stuck] = answer["data"]
    assert stuck["object"]["name"] == pod and stuck["state"] == "unscheduled"
    assert any(r.startswith("FailedScheduling: 0/1 nodes are available") for r in stuck["reasons"])
    assert stuck["count"] >= 1
    assert abs(stuck["since_us"] - first_failure_us) < 1_000_000
    # For as long as it has been Pending when asked, give or take the CLI's own start.
    assert abs(stuck["for_seconds"] - (asked_us - stuck["since_us"]) / 1e6) < 15
    cause = stuck["cause"]
    assert cause is not None, "the stuck Pod does not name the request that created its workload"
    assert who(cause) == (ADMIN, "create", None)
    assert cause["object"]["kind"] == "Deployment" and cause["request"]["audit_id"] == create.tags["audit.id"]

    workload = settled(
        "the pending Deployment's answer",
        lambda: explain(scenarios, PENDING, "deployments", "web"),
        lambda a: [asked(r["trigger"])[0] for r in a["rollouts"]] == [ADMIN] and len(a["stuck"]) == 1,
    )
    assert [(s["object"]["name"], s["state"]) for s in workload["stuck"]] == [(pod, "unscheduled")]
    [rollout] = workload["rollouts"]
    assert rollout["state"] == "stuck" and "ProgressDeadlineExceeded" in rollout["reason"]
    assert asked(rollout["trigger"]) == (ADMIN, "create", None)


def test_replicaset_deleted_by_hand_is_explained_as_recreated(scenarios: Scenarios) -> None:
    cluster, collector = scenarios.cluster, scenarios.collector
    rolled_out(cluster, RECREATE, 1)
    rs = jsonpath(cluster, RECREATE, "rs", path="{.items[0].metadata.name}")
    old_uid = jsonpath(cluster, RECREATE, "rs", rs, path="{.metadata.uid}")
    cluster.kubectl("delete", "rs", rs, "-n", RECREATE)
    new_uid = wait_until(
        "the deployment-controller to create the ReplicaSet again",
        lambda: (
            (uid := jsonpath(cluster, RECREATE, "rs", rs, path="{.metadata.uid}")) not in ("", old_uid)
            and uid
        ),
        60,
        0.5,
    )
    rolled_out(cluster, RECREATE, 1)

    def arrived(spans: list[SpanRecord]) -> list[SpanRecord] | None:
        calls = requests_of(spans, "replicasets", rs)
        wanted = [(DEPLOYMENT_CONTROLLER, "create", None), (ADMIN, "delete", None)]
        seen = [call(s) for s in calls]
        return calls if all(w in seen for w in wanted) and seen.count(wanted[0]) == 2 else None

    calls = wait_for_spans(collector, RECREATE, "the delete and both creates of the ReplicaSet", arrived)
    order = [call(s) for s in calls if call(s)[1] in ("create", "delete")]
    assert order == [
        (DEPLOYMENT_CONTROLLER, "create", None),
        (ADMIN, "delete", None),
        (DEPLOYMENT_CONTROLLER, "create", None),
    ]
    creates = [s for s in calls if call(s)[1] == "create"]
    assert [s.uid for s in creates] == [old_uid, new_uid]
    delete = next(s for s in calls if call(s)[1] == "delete")
    wait_until(
        "both incarnations in the store",
        lambda: incarnations(collector, RECREATE, "replicasets", rs) == sorted([old_uid, new_uid]),
        30,
        0.5,
    )

    answer = explain(scenarios, RECREATE, "rs", rs)
    assert answer["object"]["uid"] == new_uid
    chain = answer["chain"]
    assert chain[0]["relation"] == "recreated" and chain[0]["object"]["uid"] == new_uid
    assert who(chain[0]) == (DEPLOYMENT_CONTROLLER, "create", None)
    assert chain[0]["request"]["audit_id"] == creates[1].tags["audit.id"]
    deleted = chain[-1]
    assert who(deleted) == (ADMIN, "delete", None) and deleted["actor"] == "human"
    assert deleted["object"]["uid"] == old_uid and deleted["relation"] == "deleted"
    assert deleted["request"]["audit_id"] == delete.tags["audit.id"]
    assert answer["complete"] is True

    # The first incarnation's own story: at its end, deleted by admin; before that, made for the
    # Deployment admin created. The second incarnation has no part in either.
    gone = explain(scenarios, RECREATE, "rs", rs, "--uid", old_uid)
    assert gone["object"]["uid"] == old_uid
    assert (gone["chain"][0]["relation"], who(gone["chain"][0])) == ("deleted", (ADMIN, "delete", None))
    before_delete = datetime.fromtimestamp((delete.start_us - 1000) / 1e6, UTC).isoformat()
    earlier = explain(scenarios, RECREATE, "rs", rs, "--uid", old_uid, "--at", before_delete)
    assert earlier["object"]["uid"] == old_uid
    assert earlier["chain"][0]["object"]["uid"] == old_uid
    assert who(earlier["chain"][0]) == (DEPLOYMENT_CONTROLLER, "create", None)
    assert who(earlier["chain"][-1]) == (ADMIN, "create", None)
    # Asked without a uid for that same moment, the answer is about the incarnation that existed
    # then: the second one was made only after the delete.
    then = explain(scenarios, RECREATE, "rs", rs, "--at", before_delete)
    assert then["object"]["uid"] == old_uid
    for told in (gone, earlier):
        assert new_uid not in {s["object"]["uid"] for s in told["chain"]}

    # Their Pods follow the same split: the garbage collector removed the first one because of
    # admin's delete; the replicaset-controller made the next one for the second incarnation.
    pods = requests_of(spans_in(collector, RECREATE), "pods")
    collected = next(s for s in pods if call(s) == (GARBAGE_COLLECTOR, "delete", None))
    remade = next(
        s for s in pods if call(s) == (REPLICASET_CONTROLLER, "create", None) and s.start_us > delete.start_us
    )
    chain = explain(scenarios, RECREATE, "pods", collected.key.name)["chain"]
    assert [(s["object"]["uid"], s["relation"], who(s)) for s in chain] == [
        (collected.uid, "deleted", (GARBAGE_COLLECTOR, "delete", None)),
        (old_uid, "deleted", (ADMIN, "delete", None)),
    ]
    chain = explain(scenarios, RECREATE, "pods", remade.key.name)["chain"]
    assert [(s["object"]["uid"], s["relation"], who(s)) for s in chain] == [
        (remade.uid, "created", (REPLICASET_CONTROLLER, "create", None)),
        (new_uid, "recreated", (DEPLOYMENT_CONTROLLER, "create", None)),
        (old_uid, "deleted", (ADMIN, "delete", None)),
    ]

    # Blame keeps the two apart: each incarnation its own history, the newest first.
    blamed = only(
        cli_json(
            scenarios,
            *("blame", "--resource", "rs", "--namespace", RECREATE, "--name", rs, "--field", "spec.replicas"),
        )
    )
    assert [(i["uid"], i["deleted"]) for i in blamed["incarnations"]] == [(new_uid, False), (old_uid, True)]
    for incarnation, made in zip(blamed["incarnations"], reversed(creates), strict=True):
        assert incarnation["history"][0]["request"]["audit_id"] == made.tags["audit.id"]
        assert who(incarnation["history"][0]) == (DEPLOYMENT_CONTROLLER, "create", None)


# -- the sample


def record_sample(cluster: ControlPlane, started_us: int) -> None:
    """Write samples/causes/: the scenarios' requests from the apiserver's audit log and their Events."""
    time.sleep(2)  # the log backend writes the last requests a moment after they complete
    target = REPO / "samples" / "causes"
    target.mkdir(exist_ok=True)
    kept = []
    for line in cluster.audit_log.read_bytes().splitlines():
        event = orjson.loads(line)
        if (event.get("objectRef") or {}).get("namespace") not in NAMESPACES:
            continue
        if parse_time_us(event["requestReceivedTimestamp"]) < started_us:
            continue
        kept.append(line)
    (target / "audit.log").write_bytes(b"\n".join(kept) + b"\n")
    events = [
        event
        for namespace in NAMESPACES
        for event in json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json"))["items"]
    ]
    (target / "events.jsonl").write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in events))
