"""The causal answers on samples/causes: four scenarios recorded from a real control plane (see its
README), replayed with ``kelemetry replay`` and asked through the query service as the API and
``--format json`` answer.

The names, uids and audit ids expected are read from the recorded audit log itself, so the checks
say "the answer names the request the apiserver logged", not "the answer matches a copy of itself".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from frontend import rollouts, stuck
from frontend.backend import StoreBackend
from frontend.query import QueryService
from frontend.spanfacts import format_time
from frontend.types import ObjectQuery
from frontend.views import ViewStore
from kelemetry import cli, errors
from kelemetry.model.times import parse_time_us
from kelemetry.store.sqlite import StoreReader
from tests.conftest import REPO_ROOT

SAMPLE = REPO_ROOT / "samples" / "causes"
CLUSTER = "tracetest"
ADMIN = "admin"
DEPLOYMENT_CONTROLLER = "system:serviceaccount:kube-system:deployment-controller"
REPLICASET_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
GC = "system:serviceaccount:kube-system:generic-garbage-collector"
IMAGE_DIFF = 'spec.template.spec.containers[name=nginx].image "nginx:1.27" -> "nginx:1.28"'


@dataclass(frozen=True)
class Logged:
    """One completed write as the apiserver logged it."""

    namespace: str
    resource: str
    subresource: str | None
    name: str
    uid: str
    user: str
    verb: str
    audit_id: str
    time_us: int


def logged() -> list[Logged]:
    found = []
    for line in (SAMPLE / "audit.log").read_bytes().splitlines():
        event = orjson.loads(line)
        ref = event.get("objectRef") or {}
        if event.get("stage") != "ResponseComplete" or event["verb"] not in ("create", "patch", "delete"):
            continue
        body = event.get("responseObject") or {}
        uid = ref.get("uid") or (body.get("metadata") or {}).get("uid") or ""
        found.append(
            Logged(
                ref.get("namespace", ""),
                ref.get("resource", ""),
                ref.get("subresource"),
                ref.get("name") or (body.get("metadata") or {}).get("name", ""),
                uid,
                event["user"]["username"],
                event["verb"],
                event["auditID"],
                parse_time_us(event["requestReceivedTimestamp"]),
            )
        )
    return sorted(found, key=lambda w: w.time_us)


WRITES = logged()


def writes(namespace: str, resource: str, user: str | None = None, verb: str | None = None) -> list[Logged]:
    return [
        w
        for w in WRITES
        if w.namespace == namespace
        and w.resource == resource
        and w.subresource in (None, "scale")
        and (user is None or w.user == user)
        and (verb is None or w.verb == verb)
    ]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueryService]:
    path: Path = tmp_path_factory.mktemp("causes") / "k.db"
    argv = ["replay", "--quiet", "--cluster", CLUSTER, "--store", str(path)]
    assert cli.main([*argv, str(SAMPLE / "audit.log"), str(SAMPLE / "events.jsonl")]) == 0
    queries = QueryService(StoreBackend(StoreReader(path)), ViewStore(None))
    yield queries
    queries.close()


def explained(
    service: QueryService,
    namespace: str,
    resource: str,
    name: str,
    at_us: int | None = None,
    uid: str | None = None,
) -> dict[str, Any]:
    query = ObjectQuery(cluster=CLUSTER, resource=resource, namespace=namespace, name=name, uid=uid)
    return dict(service.explain(query, at_us).to_json())


def who(part: dict[str, Any] | None) -> tuple[Any, Any, Any]:
    request = (part or {}).get("request") or {}
    return (request.get("user"), request.get("verb"), request.get("subresource") or None)


def steps(answer: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(s["object"]["kind"], s["object"]["uid"], s["relation"], *who(s)[:2]) for s in answer["chain"]]


def test_a_pod_of_the_set_image_rollout_goes_back_to_admins_patch(service: QueryService) -> None:
    [patch] = writes("causes-rollout", "deployments", ADMIN, "patch")
    first_rs, new_rs = writes("causes-rollout", "replicasets", DEPLOYMENT_CONTROLLER, "create")
    pod = next(
        w
        for w in writes("causes-rollout", "pods", REPLICASET_CONTROLLER, "create")
        if w.name.startswith(new_rs.name + "-")
    )
    answer = explained(service, "causes-rollout", "pods", pod.name)
    assert steps(answer) == [
        ("Pod", pod.uid, "created", REPLICASET_CONTROLLER, "create"),
        ("ReplicaSet", new_rs.uid, "created", DEPLOYMENT_CONTROLLER, "create"),
        ("Deployment", patch.uid, "changed", ADMIN, "patch"),
    ]
    assert answer["chain"][-1]["request"]["audit_id"] == patch.audit_id
    assert IMAGE_DIFF in answer["chain"][-1]["changes"]
    assert answer["complete"] and first_rs.uid not in {s["object"]["uid"] for s in answer["chain"]}


def test_the_set_image_rollout_is_revision_2_triggered_by_admin(service: QueryService) -> None:
    [create] = writes("causes-rollout", "deployments", ADMIN, "create")
    [patch] = writes("causes-rollout", "deployments", ADMIN, "patch")
    first_rs, new_rs = writes("causes-rollout", "replicasets", DEPLOYMENT_CONTROLLER, "create")
    answer = explained(service, "causes-rollout", "deployments", "web")
    shown = [
        (r["revision"], r["object"]["uid"], r["state"], r["trigger"]["audit_id"]) for r in answer["rollouts"]
    ]
    assert shown == [
        ("1", first_rs.uid, "complete", create.audit_id),
        ("2", new_rs.uid, "complete", patch.audit_id),
    ]
    assert answer["rollouts"][1]["changes"] == [IMAGE_DIFF]
    # One request, one shape: the trigger is the same patch the chain starts from, and reads the same
    # (a client comparing them must not find "" in one and null in the other).
    assert answer["chain"][-1]["request"]["audit_id"] == patch.audit_id
    assert answer["rollouts"][1]["trigger"] == answer["chain"][-1]["request"]


def test_replicas_0_is_blamed_on_admins_scale_request_with_the_earlier_values(service: QueryService) -> None:
    [create] = writes("causes-scale", "deployments", ADMIN, "create")
    to_3, to_0 = writes("causes-scale", "deployments", ADMIN, "patch")
    query = ObjectQuery(cluster=CLUSTER, resource="deploy", namespace="causes-scale", name="web")
    answer: Any = service.blame(query, "spec.replicas").to_json()
    assert who(answer["current"]) == (ADMIN, "patch", "scale")
    [incarnation] = answer["incarnations"]
    assert [(e["old"], e["new"], (e["request"] or {}).get("audit_id")) for e in incarnation["history"]] == [
        ("null", "2", create.audit_id),
        ("2", "3", to_3.audit_id),
        ("3", "0", to_0.audit_id),
    ]


def test_the_unschedulable_pod_is_stuck_with_admins_create_of_its_deployment(service: QueryService) -> None:
    [create] = writes("causes-pending", "deployments", ADMIN, "create")
    [pod] = writes("causes-pending", "pods", REPLICASET_CONTROLLER, "create")
    events = [orjson.loads(line) for line in (SAMPLE / "events.jsonl").read_bytes().splitlines()]
    [failed] = [e for e in events if e["reason"] == "FailedScheduling"]
    since_us = parse_time_us(failed["eventTime"])
    end_us = since_us + 90_000_000
    answer: Any = service.stuck(CLUSTER, "causes-pending", None, end_us).to_json()
    [pending] = answer["data"]
    assert (pending["object"]["uid"], pending["state"]) == (pod.uid, "unscheduled")
    assert pending["since_us"] == since_us and pending["for_seconds"] == 90
    assert pending["reasons"] == [f"FailedScheduling: {failed['message']}"]
    assert pending["cause"]["request"]["audit_id"] == create.audit_id and who(pending["cause"]) == (
        ADMIN,
        "create",
        None,
    )

    workload = explained(service, "causes-pending", "deployments", "web")
    [rollout] = workload["rollouts"]
    assert rollout["state"] == "stuck" and rollout["reason"].startswith("ProgressDeadlineExceeded: ")
    assert rollout["trigger"]["audit_id"] == create.audit_id
    assert [s["object"]["uid"] for s in workload["stuck"]] == [pod.uid]


def test_the_replicaset_deleted_by_hand_is_recreated_and_its_incarnations_stay_apart(
    service: QueryService,
) -> None:
    [delete] = writes("causes-recreate", "replicasets", ADMIN, "delete")
    first, again = writes("causes-recreate", "replicasets", DEPLOYMENT_CONTROLLER, "create")
    assert first.name == again.name == delete.name and first.uid != again.uid
    answer = explained(service, "causes-recreate", "rs", delete.name)
    assert steps(answer) == [
        ("ReplicaSet", again.uid, "recreated", DEPLOYMENT_CONTROLLER, "create"),
        ("ReplicaSet", first.uid, "deleted", ADMIN, "delete"),
    ]
    assert answer["chain"][1]["request"]["audit_id"] == delete.audit_id

    [collected] = writes("causes-recreate", "pods", GC, "delete")
    assert steps(explained(service, "causes-recreate", "pods", collected.name)) == [
        ("Pod", collected.uid, "deleted", GC, "delete"),
        ("ReplicaSet", first.uid, "deleted", ADMIN, "delete"),
    ]
    remade = writes("causes-recreate", "pods", REPLICASET_CONTROLLER, "create")[-1]
    assert steps(explained(service, "causes-recreate", "pods", remade.name)) == [
        ("Pod", remade.uid, "created", REPLICASET_CONTROLLER, "create"),
        ("ReplicaSet", again.uid, "recreated", DEPLOYMENT_CONTROLLER, "create"),
        ("ReplicaSet", first.uid, "deleted", ADMIN, "delete"),
    ]


def test_the_replicaset_just_before_the_delete_is_the_first_incarnation(service: QueryService) -> None:
    """Found on the real control plane: the deployment-controller made the ReplicaSet again 7 ms
    after admin's delete, in the same second. Asked about a moment before the delete, the answer
    must be about the incarnation that existed then — the second was not made yet."""
    [delete] = writes("causes-recreate", "replicasets", ADMIN, "delete")
    first, _ = writes("causes-recreate", "replicasets", DEPLOYMENT_CONTROLLER, "create")
    for moment_us in (delete.time_us - 1_000, delete.time_us - 300_000):
        try:
            answer = explained(service, "causes-recreate", "rs", delete.name, moment_us)
        except errors.NotFound as exc:
            pytest.fail(
                f"the incarnation that existed {moment_us - first.time_us} µs after its create: {exc}"
            )
        assert answer["object"]["uid"] == first.uid
        assert steps(answer)[0] == ("ReplicaSet", first.uid, "created", DEPLOYMENT_CONTROLLER, "create")


def test_the_blamed_incarnations_of_the_recreated_replicaset_do_not_overlap(service: QueryService) -> None:
    [delete] = writes("causes-recreate", "replicasets", ADMIN, "delete")
    first, again = writes("causes-recreate", "replicasets", DEPLOYMENT_CONTROLLER, "create")
    query = ObjectQuery(cluster=CLUSTER, resource="rs", namespace="causes-recreate", name=delete.name)
    answer: Any = service.blame(query, "spec.replicas").to_json()
    newer, older = answer["incarnations"]
    assert (newer["uid"], older["uid"]) == (again.uid, first.uid)
    # Each begins at its own create (not the whole second of its creationTimestamp), so the new one
    # begins after the old one's delete.
    assert (older["first_us"], newer["first_us"]) == (first.time_us, again.time_us)
    assert older["last_us"] < newer["first_us"] and older["deleted"] and not newer["deleted"]


def test_a_moment_before_any_incarnation_is_refused_in_milliseconds(service: QueryService) -> None:
    first, _ = writes("causes-recreate", "replicasets", DEPLOYMENT_CONTROLLER, "create")
    with pytest.raises(errors.NotFound) as caught:
        explained(service, "causes-recreate", "rs", first.name, first.time_us - 400_000)
    message = str(caught.value)
    assert f"first active at {format_time(first.time_us)}" in message
    assert format_time(first.time_us - 400_000) in message


@pytest.mark.parametrize("namespace", ["causes-rollout", "causes-scale", "causes-pending", "causes-recreate"])
def test_what_rollouts_and_stuck_pods_read_gives_the_answer_the_whole_trace_gives(
    service: QueryService, namespace: str
) -> None:
    [workload] = service.backend.find_objects(
        ObjectQuery(cluster=CLUSTER, resource="deployments", namespace=namespace, name="web")
    )
    whole = service.backend.trace(workload, None, None)
    read = service.backend.states(workload, None, None)
    now_us = max(node.span.end_us for node in whole.walk()) + 600_000_000
    assert [r.to_json() for r in rollouts.rollouts(read, workload, now_us)] == [
        r.to_json() for r in rollouts.rollouts(whole, workload, now_us)
    ]
    assert [p.to_json() for p in stuck.stuck_below(read, workload, now_us)] == [
        p.to_json() for p in stuck.stuck_below(whole, workload, now_us)
    ]
    # Only Pods' status writes that mention no signal may be left out (the kubelet's first status
    # write here always mentions the Ready condition, so little is).
    left_out = {node.span.span_id for node in whole.walk()} - {node.span.span_id for node in read.walk()}
    spans = {node.span.span_id: node.span for node in whole.walk()}
    assert all(
        spans[i].key.resource == "pods" and spans[i].tags.get("audit.verb") in ("update", "patch")
        for i in left_out
    )
