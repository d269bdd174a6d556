"""Many clusters, one tree: a real KubeAdmiral fleet traced by one collector (DESIGN.md §4).

The fleet (tests/e2e/fleet.py) is a federation host and two members, member-1 and member-2,
joined under the same names the collector gives them, so linking needs no configuration. The
scenarios are driven with kubectl as a user would: a namespace and a Deployment with a
PropagationPolicy are created in the host, KubeAdmiral propagates them to both members, and the
members' controllers make ReplicaSets and Pods there. Each test first checks with kubectl that
KubeAdmiral really did its part, then reads the collector's store the way a user does, with
``kelemetry dump --format json`` (and ``/redirect`` plus the Jaeger-shaped API for the view test).

A trace is polled until it holds what the test expects (so a failure never just means "not
arrived yet"), and a failing test lists every broken expectation together with the tree the
collector produced.

The tests run in file order and share one story: create, scale, look up from a member, link by
hand, a member-only object, delete. With ``KELEMETRY_RECORD=1`` the last one writes the story's
audit logs and Events to samples/federation/.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from kelemetry.model.times import parse_time_us
from tests.e2e.fleet import (
    ADMIN_TOKEN,
    COLLECTOR_TOKEN,
    HOST,
    KUBEADMIRAL_TOKEN,
    MEMBERS,
    Fleet,
    KubeCluster,
)
from tests.e2e.servers import REPO, HarnessError, wait_until
from tests.jaegerjson import fields, tags

pytestmark = pytest.mark.e2e

# The namespace every cluster has: KubeAdmiral propagates objects in it (it leaves the namespace
# object itself alone), and it is where the and the sample README's commands look.
NS = "default"
DEMO = "fleet-demo"
POLICY = "both-members"
LOCAL = "local-only"
LINKED = "hand-linked"
MANAGED_LABEL = "kubeadmiral.io/managed"
PARENT_LINK = "kelemetry.kubewharf.io/parent-link"
# Who writes what, as each apiserver's audit log names it.
ADMIN = "admin"
KUBEADMIRAL_MEMBER = "system:serviceaccount:kube-admiral-system:kubeadmiral-member"
DEPLOYMENT_CONTROLLER = "system:serviceaccount:kube-system:deployment-controller"
REPLICASET_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
SAMPLE = REPO / "samples" / "federation"
TRACE_TIMEOUT_S = 60.0


# ---------------------------------------------------------------------------------------------
# Manifests and kubectl


def demo_deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": DEMO,
            "namespace": NS,
            # How KubeAdmiral's quickstart attaches a PropagationPolicy to an object.
            "labels": {"app": DEMO, "kubeadmiral.io/propagation-policy-name": POLICY},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": DEMO}},
            "template": {
                "metadata": {"labels": {"app": DEMO}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }


def propagation_policy() -> dict[str, Any]:
    # Duplicate: every member runs the full replica count, so a scale in the host scales each member.
    return {
        "apiVersion": "core.kubeadmiral.io/v1alpha1",
        "kind": "PropagationPolicy",
        "metadata": {"name": POLICY, "namespace": NS},
        "spec": {"schedulingMode": "Duplicate", "placement": [{"cluster": name} for name in MEMBERS]},
    }


def rollout(cluster: KubeCluster, name: str, replicas: int, timeout: float = 120) -> None:
    wait_until(
        f"deployment {cluster.name}/{NS}/{name} to have {replicas} available replicas",
        lambda: (
            cluster.kubectl(
                "get",
                "deployment",
                name,
                "-n",
                NS,
                "-o",
                "jsonpath={.status.availableReplicas}/{.status.updatedReplicas}/{.status.replicas}",
                check=False,
            )
            == f"{replicas}/{replicas}/{replicas}"
        ),
        timeout,
        0.5,
    )


def controller_uid(obj: dict[str, Any]) -> str | None:
    refs = obj["metadata"].get("ownerReferences") or []
    return next((r["uid"] for r in refs if r.get("controller")), None)


@dataclass(frozen=True)
class Workload:
    """A Deployment with its ReplicaSets and Pods, as kubectl shows them in one cluster."""

    cluster: str
    deployment: dict[str, Any]
    replicasets: list[dict[str, Any]]
    pods: list[dict[str, Any]]

    def uids(self) -> dict[str, str]:
        """uid -> "resource/name" of every object."""
        found = {self.deployment["metadata"]["uid"]: f"deployments/{self.deployment['metadata']['name']}"}
        for resource, objects in (("replicasets", self.replicasets), ("pods", self.pods)):
            found.update({o["metadata"]["uid"]: f"{resource}/{o['metadata']['name']}" for o in objects})
        return found


def workload(cluster: KubeCluster, name: str) -> Workload:
    deployment = cluster.get("deployment", name, "-n", NS)
    replicasets = [
        rs
        for rs in cluster.get("replicasets", "-n", NS)["items"]
        if controller_uid(rs) == deployment["metadata"]["uid"]
    ]
    rs_uids = {rs["metadata"]["uid"] for rs in replicasets}
    pods = [p for p in cluster.get("pods", "-n", NS)["items"] if controller_uid(p) in rs_uids]
    return Workload(cluster.name, deployment, replicasets, pods)


def now_rfc3339() -> str:
    return datetime.now(tz=UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# Reading the collector's store as a user does: `kelemetry dump --format json`


class Trace:
    """One trace of ``kelemetry dump --format json`` (Jaeger's JSON shape, tree mode: objects and
    the requests and Events on them are spans; diffs are logs)."""

    def __init__(self, body: dict[str, Any], text: str) -> None:
        self.spans: list[dict[str, Any]] = body["data"][0]["spans"]
        self.by_id = {s["spanID"]: s for s in self.spans}
        self.text = text

    @staticmethod
    def is_object(span: dict[str, Any]) -> bool:
        return bool(tags(span).get("kelemetry.trace_source") == "object")

    def objects(self, cluster: str | None = None, resource: str | None = None) -> list[dict[str, Any]]:
        return [
            s
            for s in self.spans
            if self.is_object(s)
            and (cluster is None or tags(s).get("cluster") == cluster)
            and (resource is None or tags(s).get("resource") == resource)
        ]

    def object(self, uid: str) -> dict[str, Any] | None:
        return next((s for s in self.spans if self.is_object(s) and tags(s).get("uid") == uid), None)

    def parent(self, span: dict[str, Any]) -> dict[str, Any] | None:
        refs = span["references"]
        return self.by_id.get(refs[0]["spanID"]) if refs else None

    def root(self) -> dict[str, Any]:
        roots = [s for s in self.spans if not s["references"]]
        assert len(roots) == 1, f"{len(roots)} root spans in the trace:\n{self.text}"
        return roots[0]

    def happenings(self, span: dict[str, Any]) -> list[dict[str, Any]]:
        """The request and Event spans directly on one object."""
        return [s for s in self.spans if self.parent(s) is span and not self.is_object(s)]

    def requests(self, span: dict[str, Any]) -> list[tuple[Any, Any, Any]]:
        return [
            (t.get("audit.user"), t.get("audit.verb"), t.get("audit.subresource") or None)
            for t in map(tags, self.happenings(span))
            if t.get("kelemetry.trace_source") == "audit"
        ]

    def diff_lines(self, span: dict[str, Any], user: str | None = None) -> list[str]:
        """Diff lines of the requests on one object (by ``user`` only, if given)."""
        lines = []
        for request in self.happenings(span):
            if user is not None and tags(request).get("audit.user") != user:
                continue
            for log in request["logs"]:
                f = fields(log)
                if f.get("event") == "diff":
                    lines.extend(str(f.get("message", "")).split("\n"))
        return lines


def dump(
    fleet: Fleet, cluster: str, resource: str, name: str, *more: str, group: str = "apps"
) -> Trace | None:
    """The trace of one object as `kelemetry dump` prints it, or None while the store lacks it."""
    argv = [
        str(fleet.binaries.kelemetry),
        "dump",
        "--store",
        str(fleet.collector.store),
        "--cluster",
        cluster,
        "--group",
        group,
        "--resource",
        resource,
        "--namespace",
        NS,
        "--name",
        name,
        *more,
    ]
    result = subprocess.run(
        [*argv, "--format", "json"], capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        return None
    tree = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    return Trace(json.loads(result.stdout), tree.stdout)


def expect_trace(
    fleet: Fleet,
    cluster: str,
    resource: str,
    name: str,
    problems: Callable[[Trace], list[str]],
    *more: str,
    group: str = "apps",
    timeout: float = TRACE_TIMEOUT_S,
) -> Trace:
    """Poll the trace of one object until ``problems`` finds none; otherwise fail listing them all,
    with the tree the collector holds."""
    deadline = time.monotonic() + timeout
    last: Trace | None = None
    found: list[str] = [f"{cluster} {resource}/{name} is not in the store"]
    while True:
        last = dump(fleet, cluster, resource, name, *more, group=group) or last
        if last is not None:
            found = problems(last)
            if not found:
                return last
        if time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    listed = "\n".join(f"- {p}" for p in found)
    shown = last.text if last is not None else "(nothing)"
    raise AssertionError(
        f"the trace of {cluster} {resource}/{name} ({' '.join(more)}) after {timeout:.0f}s: "
        f"{len(found)} expectation(s) failed:\n{listed}\n\nwhat the collector holds:\n{shown}"
    )


def check_hierarchy(trace: Trace, host_uid: str, member: Workload) -> list[str]:
    """``member``'s Deployment hangs under the host Deployment, its ReplicaSets under it and its
    Pods under them, each span naming the member's cluster and each object's own uid."""
    problems = []
    expected_parent = {member.deployment["metadata"]["uid"]: host_uid}
    for rs in member.replicasets:
        expected_parent[rs["metadata"]["uid"]] = member.deployment["metadata"]["uid"]
    for pod in member.pods:
        expected_parent[pod["metadata"]["uid"]] = controller_uid(pod) or ""
    names = member.uids()
    for uid, parent_uid in expected_parent.items():
        what = f"{member.cluster} {names[uid]} ({uid})"
        span = trace.object(uid)
        if span is None:
            problems.append(f"{what} is not in the trace")
            continue
        if tags(span).get("cluster") != member.cluster:
            problems.append(f"{what} is tagged with cluster {tags(span).get('cluster')!r}")
        parent = trace.parent(span)
        if parent is None or tags(parent).get("uid") != parent_uid:
            shown = f"{tags(parent).get('cluster')} {parent['operationName']}" if parent else "nothing"
            problems.append(f"{what} hangs under {shown}, not under the object with uid {parent_uid}")
    return problems


def check_clusters_named(trace: Trace) -> list[str]:
    """Every span of the trace names its cluster, one of the fleet's."""
    clusters = {HOST, *MEMBERS}
    return [
        f"span {s['operationName']!r} names cluster {tags(s).get('cluster')!r}"
        for s in trace.spans
        if tags(s).get("cluster") not in clusters
    ]


# ---------------------------------------------------------------------------------------------
# The story


@dataclass(frozen=True)
class Demo:
    fleet: Fleet
    started_us: int

    @property
    def host(self) -> KubeCluster:
        return self.fleet.host

    def members(self) -> Iterator[KubeCluster]:
        yield from self.fleet.members.values()


@pytest.fixture(scope="module")
def demo(fleet: Fleet) -> Demo:
    """The PropagationPolicy and the Deployment applied in the host, rolled out in both members."""
    started_us = time.time_ns() // 1000 - 1_000_000
    for member in fleet.members.values():
        member.wait_service_account(NS)
    fleet.host.apply(propagation_policy(), demo_deployment(2))
    for member in fleet.members.values():
        rollout(member, DEMO, 2)
    return Demo(fleet, started_us)


def test_host_deployment_holds_both_members_objects(demo: Demo) -> None:
    """KubeAdmiral copies the host Deployment into both members, whose controllers make its
    ReplicaSets and Pods; the host Deployment's full tree holds all of them, per cluster."""
    host = demo.host.get("deployment", DEMO, "-n", NS)
    host_uid = host["metadata"]["uid"]
    # Federated object in the host: what KubeAdmiral keeps about the Deployment.
    federated = demo.host.get("federatedobjects", "-n", NS)["items"]
    assert [f["metadata"]["name"] for f in federated] == [f"{DEMO}-deployments.apps"]
    assert controller_uid(federated[0]) == host_uid
    members = {}
    for member in demo.members():
        found = workload(member, DEMO)
        labels = found.deployment["metadata"].get("labels") or {}
        assert labels.get(MANAGED_LABEL) == "true", f"{member.name}'s copy is not KubeAdmiral's: {labels}"
        assert len(found.replicasets) == 1 and len(found.pods) == 2, (member.name, found.uids())
        assert all(p["spec"].get("nodeName") == "kwok-node-0" for p in found.pods)
        members[member.name] = found

    def problems(trace: Trace) -> list[str]:
        found = []
        root = trace.root()
        if tags(root).get("uid") != host_uid or tags(root).get("cluster") != HOST:
            found.append(
                f"the root is {tags(root).get('cluster')} {root['operationName']}, not the host Deployment"
            )
        for member in members.values():
            found += check_hierarchy(trace, host_uid, member)
            span = trace.object(member.deployment["metadata"]["uid"])
            if span is not None and (KUBEADMIRAL_MEMBER, "create", None) not in trace.requests(span):
                found.append(
                    f"{member.cluster}'s Deployment has no create by KubeAdmiral: {trace.requests(span)}"
                )
        return found + check_clusters_named(trace)

    expect_trace(demo.fleet, HOST, "deployments", DEMO, problems, "--scope", "full")


@pytest.fixture(scope="module")
def scaled(demo: Demo) -> None:
    demo.host.kubectl("scale", "deployment", DEMO, "-n", NS, "--replicas=3")
    for member in demo.members():
        rollout(member, DEMO, 3)


def test_scale_in_the_host_scales_each_member(demo: Demo, scaled: None) -> None:
    """`kubectl scale` on the host Deployment (2 -> 3): KubeAdmiral updates each member's copy and
    each member's ReplicaSet scales, with the diffs on each cluster's own objects."""
    host_uid = demo.host.get("deployment", DEMO, "-n", NS)["metadata"]["uid"]
    members = {member.name: workload(member, DEMO) for member in demo.members()}
    for found in members.values():
        assert [rs["spec"]["replicas"] for rs in found.replicasets] == [3], found.cluster
        assert len(found.pods) == 3, found.cluster
    line = "spec.replicas 2 -> 3"

    def problems(trace: Trace) -> list[str]:
        found = []
        root = trace.root()
        if (ADMIN, "patch", "scale") not in trace.requests(root):
            found.append(f"the host Deployment has no `admin patch scale`: {trace.requests(root)}")
        if line not in trace.diff_lines(root, ADMIN):
            found.append(f"the host Deployment's scale request has no diff {line!r}")
        for member in members.values():
            found += check_hierarchy(trace, host_uid, member)
            deployment = trace.object(member.deployment["metadata"]["uid"])
            if deployment is not None and line not in trace.diff_lines(deployment, KUBEADMIRAL_MEMBER):
                found.append(
                    f"{member.cluster}'s Deployment has no diff {line!r} by KubeAdmiral: "
                    f"{trace.diff_lines(deployment)}"
                )
            for rs in member.replicasets:
                span = trace.object(rs["metadata"]["uid"])
                if span is not None and line not in trace.diff_lines(span, DEPLOYMENT_CONTROLLER):
                    found.append(
                        f"{member.cluster}'s ReplicaSet has no diff {line!r} by the deployment controller: "
                        f"{trace.diff_lines(span)}"
                    )
        return found

    expect_trace(demo.fleet, HOST, "deployments", DEMO, problems, "--scope", "full")


def redirect_view(base_url: str, params: dict[str, str]) -> str | None:
    response = httpx.get(f"{base_url}/redirect", params={**params, "ts": now_rfc3339()}, timeout=10)
    if response.status_code == 404:
        return None
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith("/trace/"), location
    return location.removeprefix("/trace/")


def test_redirect_from_a_member_object_reaches_the_host_deployment(demo: Demo, scaled: None) -> None:
    """`/redirect` names member-1's copy; the same view in the `ancestors` and `full tree` scopes
    (hex digits 3-10 of the trace id, as in Go Kelemetry) is rooted at the host Deployment."""
    base = demo.fleet.collector.url
    host_uid = demo.host.get("deployment", DEMO, "-n", NS)["metadata"]["uid"]
    member_uid = demo.fleet.members["member-1"].get("deployment", DEMO, "-n", NS)["metadata"]["uid"]
    params = {
        "cluster": "member-1",
        "group": "apps",
        "resource": "deployments",
        "namespace": NS,
        "name": DEMO,
    }
    view = wait_until("/redirect to find member-1's Deployment", lambda: redirect_view(base, params), 60, 1.0)
    for mode, scope in (("22000000", "ancestors"), ("21000000", "full tree")):
        trace_id = f"ff{mode}{view[10:]}"
        response = httpx.get(f"{base}/api/traces/{trace_id}", timeout=30)
        assert response.status_code == 200, response.text
        spans = response.json()["data"][0]["spans"]
        shown = [
            (tags(s).get("cluster"), s["operationName"], tags(s).get("uid"))
            for s in spans
            if not s["references"]
        ]
        roots = [s for s in spans if not s["references"]]
        assert len(roots) == 1 and tags(roots[0]).get("uid") == host_uid, (
            f"{scope}: the root of the view is {shown}, not host deployments/{DEMO} ({host_uid})"
        )
        assert tags(roots[0]).get("cluster") == HOST
        assert any(
            tags(s).get("uid") == member_uid and tags(s).get("cluster") == "member-1" for s in spans
        ), f"{scope}: member-1's Deployment ({member_uid}) is not in its own view"


def test_parent_link_annotation_links_a_member_object_under_the_host(demo: Demo, scaled: None) -> None:
    """A ConfigMap made in member-2 and annotated by hand with Kelemetry's parent-link naming the
    host Deployment hangs under it (KubeAdmiral knows nothing of it)."""
    member = demo.fleet.members["member-2"]
    member.kubectl("create", "configmap", LINKED, "-n", NS, "--from-literal=owner=a person")
    link = {
        "cluster": HOST,
        "group": "apps",
        "version": "v1",
        "resource": "deployments",
        "namespace": NS,
        "name": DEMO,
    }
    member.kubectl("annotate", "configmap", LINKED, "-n", NS, f"{PARENT_LINK}={json.dumps(link)}")
    uid = member.get("configmap", LINKED, "-n", NS)["metadata"]["uid"]
    host_uid = demo.host.get("deployment", DEMO, "-n", NS)["metadata"]["uid"]

    def under_host(trace: Trace) -> list[str]:
        span = trace.object(uid)
        if span is None:
            return [f"member-2 configmaps/{LINKED} ({uid}) is not in the trace"]
        parent = trace.parent(span)
        if parent is None or tags(parent).get("uid") != host_uid:
            shown = f"{tags(parent).get('cluster')} {parent['operationName']}" if parent else "nothing"
            return [f"member-2 configmaps/{LINKED} hangs under {shown}, not the host Deployment"]
        if tags(span).get("cluster") != "member-2":
            return [f"member-2 configmaps/{LINKED} is tagged with cluster {tags(span).get('cluster')!r}"]
        return []

    expect_trace(demo.fleet, HOST, "deployments", DEMO, under_host, "--scope", "full")
    # And from the ConfigMap's side: its owners reach across to the host.
    expect_trace(
        demo.fleet,
        "member-2",
        "configmaps",
        LINKED,
        lambda t: (
            [] if tags(t.root()).get("uid") == host_uid else [f"the root is {t.root()['operationName']}"]
        ),
        "--scope",
        "ancestors",
        group="",
    )


def test_member_only_deployment_stays_its_own_trace(demo: Demo, scaled: None) -> None:
    """A Deployment made directly in member-1 is no copy of the host's: KubeAdmiral leaves it alone
    and its trace is rooted at itself, with nothing of the host or of member-2 in it."""
    member = demo.fleet.members["member-1"]
    member.kubectl("create", "deployment", LOCAL, "-n", NS, "--image=nginx:1.27", "--replicas=1")
    rollout(member, LOCAL, 1)
    local = workload(member, LOCAL)
    assert MANAGED_LABEL not in (local.deployment["metadata"].get("labels") or {})
    assert not demo.host.kubectl("get", "deployment", LOCAL, "-n", NS, "--ignore-not-found")
    uid = local.deployment["metadata"]["uid"]

    def alone(trace: Trace) -> list[str]:
        found = []
        root = trace.root()
        if tags(root).get("uid") != uid:
            found.append(
                f"the root is {tags(root).get('cluster')} {root['operationName']}, not the Deployment"
            )
        strangers = {tags(s).get("cluster") for s in trace.spans} - {"member-1"}
        if strangers:
            found.append(f"spans of other clusters in the trace: {sorted(map(str, strangers))}")
        missing = set(local.uids()) - {tags(s).get("uid") for s in trace.objects()}
        if missing:
            found.append(f"objects missing: {[local.uids()[u] for u in missing]}")
        return found

    expect_trace(demo.fleet, "member-1", "deployments", LOCAL, alone, "--scope", "full")

    def not_in_host_tree(trace: Trace) -> list[str]:
        return [f"{LOCAL} is in the host Deployment's tree"] if trace.object(uid) else []

    expect_trace(demo.fleet, HOST, "deployments", DEMO, not_in_host_tree, "--scope", "full", timeout=5)


def test_delete_in_the_host_deletes_in_the_members(demo: Demo, scaled: None) -> None:
    """`kubectl delete` on the host Deployment: KubeAdmiral deletes both copies, the members'
    garbage collectors their ReplicaSets and Pods; the deletions are in the host Deployment's tree."""
    host_uid = demo.host.get("deployment", DEMO, "-n", NS)["metadata"]["uid"]
    members = {member.name: workload(member, DEMO) for member in demo.members()}
    demo.host.kubectl("delete", "deployment", DEMO, "-n", NS, "--wait=true", "--timeout=120s")
    for member in demo.members():
        wait_until(
            f"{member.name}'s copy and its pods to be gone",
            lambda m=member: (
                not m.kubectl(
                    "get",
                    "deployment,replicaset,pod",
                    "-n",
                    NS,
                    "-l",
                    f"app={DEMO}",
                    "-o",
                    "name",
                    check=False,
                ).strip()
                and not m.kubectl(
                    "get", "deployment", DEMO, "-n", NS, "--ignore-not-found", check=False
                ).strip()
            ),
            120,
            1.0,
        )

    def problems(trace: Trace) -> list[str]:
        found = []
        root = trace.root()
        if (ADMIN, "delete", None) not in trace.requests(root):
            found.append(f"the host Deployment has no `admin delete`: {trace.requests(root)}")
        for member in members.values():
            found += check_hierarchy(trace, host_uid, member)
            names = member.uids()
            for uid, what in names.items():
                span = trace.object(uid)
                if span is None:
                    continue
                verbs = [verb for _user, verb, sub in trace.requests(span) if sub is None]
                if "delete" not in verbs:
                    found.append(f"{member.cluster} {what} has no delete request: {trace.requests(span)}")
            deployment = trace.object(member.deployment["metadata"]["uid"])
            if deployment is not None and (KUBEADMIRAL_MEMBER, "delete", None) not in trace.requests(
                deployment
            ):
                found.append(
                    f"{member.cluster}'s Deployment was not deleted by KubeAdmiral: "
                    f"{trace.requests(deployment)}"
                )
        return found + check_clusters_named(trace)

    expect_trace(demo.fleet, HOST, "deployments", DEMO, problems, "--scope", "full", timeout=90)
    if os.environ.get("KELEMETRY_RECORD"):
        record_sample(demo)


# ---------------------------------------------------------------------------------------------
# Recording samples/federation/


_READS = frozenset({"get", "list", "watch"})


def _kept(event: dict[str, Any]) -> bool:
    """The demo namespace's writes. Reads and Event writes are left out: the collector makes no spans
    of them (Events come from events.jsonl). So are the FederatedClusters: their status updates carry
    every API resource of a member, and linking needs none of them."""
    ref = event.get("objectRef") or {}
    if event.get("verb") in _READS or ref.get("resource") == "events":
        return False
    return bool(ref.get("namespace") == NS)


def record_sample(demo: Demo) -> None:
    """Keep the story's part of each apiserver's audit log and the namespace's Events as
    samples/federation/<cluster>/{audit.log,events.jsonl}."""
    time.sleep(2)  # the log backend writes the last requests a moment after they complete
    for name, cluster in demo.fleet.clusters.items():
        target = SAMPLE / name
        target.mkdir(parents=True, exist_ok=True)
        kept = []
        for line in cluster.audit_log.read_bytes().splitlines():
            event = orjson.loads(line)
            if parse_time_us(event["requestReceivedTimestamp"]) >= demo.started_us and _kept(event):
                kept.append(line)
        (target / "audit.log").write_bytes(b"\n".join(kept) + b"\n")
        # The story's Events, not the Nodes' (theirs are in the same namespace, from before the story).
        events = [
            e
            for e in cluster.get("events", "-n", NS)["items"]
            if e.get("involvedObject", {}).get("namespace") == NS
        ]
        (target / "events.jsonl").write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in events))
    _check_no_credentials(SAMPLE)


def _check_no_credentials(root: Path) -> None:
    """The audit policy keeps Secrets and tokens at Metadata level; make sure nothing slipped in (a
    CA certificate, as in every namespace's kube-root-ca.crt ConfigMap, is public and may stay)."""
    markers = ("PRIVATE KEY", "eyJhbGci", ADMIN_TOKEN, COLLECTOR_TOKEN, KUBEADMIRAL_TOKEN)
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            found = [m for m in markers if m in text]
            if found:
                raise HarnessError(f"{path} holds {found}: a credential may have been recorded")
