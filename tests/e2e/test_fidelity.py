"""Who made each change: attribution on a real control plane (issue 9, point 7).

Each scenario runs in its own namespace. The workloads that only need time are created together
when the module starts (the CronJob first: its first Job only comes at the next minute), and each
test then waits for its own part; the CronJob's test runs last so that minute overlaps the others.

Before asserting, a test waits until the collector has stored every mutating request the
apiserver's audit log shows for its namespace, so a failure never just means "not arrived yet";
where the object watch matters, it also makes sure the collector has processed the watched
versions and, before asserting that no change span exists, that the change grace period has
passed (``settle_watches``). A failing test lists every broken expectation together with the spans
the collector produced, so one run shows the whole picture.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import orjson
import pytest

from frontend.types import AssembledTrace, ObjectQuery, SpanNode
from kelemetry.errors import NotFound
from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.model.spans import SpanRecord
from kelemetry.store.sqlite import StoreReader
from tests import lookups
from tests.e2e.conftest import Collector, ControlPlane
from tests.e2e.servers import CLUSTER, HarnessError, wait_until

pytestmark = pytest.mark.e2e

ADMIN = "admin"
_SA = "system:serviceaccount:kube-system:"
STATEFULSET_CONTROLLER = _SA + "statefulset-controller"
DAEMONSET_CONTROLLER = _SA + "daemon-set-controller"
CRONJOB_CONTROLLER = _SA + "cronjob-controller"
JOB_CONTROLLER = _SA + "job-controller"
ENDPOINTSLICE_CONTROLLER = _SA + "endpointslice-controller"
DEPLOYMENT_CONTROLLER = _SA + "deployment-controller"
SCHEDULER = "system:kube-scheduler"

# `kelemetry serve`'s default --change-grace, which the harness keeps; the margin covers the
# collector's idle flush (every second) and the audit webhook's batch wait (1 s).
CHANGE_GRACE_S = 5.0
GRACE_MARGIN_S = 3.0

OWNERS = "fid-owners"
SCALE = "fid-scale"
BIND = "fid-bind"
GRACEFUL = "fid-delete"
REUSE = "fid-reuse"
GONE = "fid-ns-gone"
POKE = "fid-poke"
BIND_REPLICAS = 8

RESOURCE_OF_KIND = {
    "Pod": "pods",
    "ControllerRevision": "controllerrevisions",
    "Job": "jobs",
    "EndpointSlice": "endpointslices",
    "ReplicaSet": "replicasets",
}

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Manifests


def _pod_template(app: str, image: str = "nginx:1.27") -> dict[str, Any]:
    return {"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": app, "image": image}]}}


def bare_pod(namespace: str, name: str) -> dict[str, Any]:
    template = _pod_template(name)
    template["metadata"].update(name=name, namespace=namespace)
    return {"apiVersion": "v1", "kind": "Pod", **template}


def deployment(namespace: str, name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": _pod_template(name),
        },
    }


def statefulset(namespace: str, name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            # Parallel: the pods need not wait for each other, which keeps the scenario short.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": name}},
            "template": _pod_template(name, "postgres:16"),
        },
    }


def daemonset(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": _pod_template(name, "busybox:1.36")},
    }


def cronjob(namespace: str, name: str) -> dict[str, Any]:
    pod = _pod_template(name, "busybox:1.36")
    pod["spec"]["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "schedule": "*/1 * * * *",
            # One Job is all the scenario needs; Forbid keeps a slow fake Pod from piling up more.
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {"backoffLimit": 0, "template": pod}},
        },
    }


def service(namespace: str, name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 80}]},
    }


# ---------------------------------------------------------------------------------------------
# Driving the cluster


def kube(cluster: ControlPlane, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cluster.kubectl("get", *args, "-o", "json"))
    return result


def items(cluster: ControlPlane, resource: str, namespace: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = kube(cluster, resource, "-n", namespace)["items"]
    return found


def owned_by(objects: Iterable[dict[str, Any]], owner: dict[str, Any]) -> list[dict[str, Any]]:
    uid = owner["metadata"]["uid"]
    return [o for o in objects if controller_uid(o) == uid]


def controller_uid(obj: dict[str, Any]) -> str | None:
    refs = obj["metadata"].get("ownerReferences") or []
    return next((r["uid"] for r in refs if r.get("controller")), None)


def wait_status(
    cluster: ControlPlane,
    namespace: str,
    kind: str,
    name: str,
    jsonpath: str,
    expected: str,
    timeout: float = 90,
) -> None:
    wait_until(
        f"{kind} {namespace}/{name} {jsonpath} to be {expected}",
        lambda: (
            cluster.kubectl("get", kind, name, "-n", namespace, "-o", f"jsonpath={jsonpath}", check=False)
            == expected
        ),
        timeout,
        0.5,
    )


def rollout(cluster: ControlPlane, namespace: str, name: str, replicas: int) -> None:
    wait_status(
        cluster,
        namespace,
        "deployment",
        name,
        "{.status.availableReplicas}/{.status.updatedReplicas}/{.status.replicas}",
        f"{replicas}/{replicas}/{replicas}",
    )


def statefulset_ready(cluster: ControlPlane, namespace: str, name: str, replicas: int) -> None:
    wait_status(
        cluster,
        namespace,
        "statefulset",
        name,
        "{.status.readyReplicas}/{.status.replicas}",
        f"{replicas}/{replicas}",
    )


def last_transition(obj: dict[str, Any]) -> float:
    """When the object's status conditions last changed, in epoch seconds (rounded up: the
    apiserver keeps whole seconds)."""
    stamps = [c["lastTransitionTime"] for c in (obj.get("status") or {}).get("conditions") or []]
    latest = max(datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) for t in stamps)
    return latest.timestamp() + 1


_pokes = itertools.count(1)


def settle_watches(cluster: ControlPlane, since: float, *, grace: bool) -> None:
    """Make sure the collector has processed what its object watches saw up to ``since`` (epoch
    seconds) and, with ``grace``, that the change grace period has passed for it.

    The collector's watch loop hands its buffered items over only when a later chunk of the stream
    arrives (kelemetry/kube/watch.py), so a quiet stream can hold the last events back for up to
    its 30 s timeout. Annotating the POKE objects a second later sends a newer event down the pod,
    Deployment and StatefulSet streams, which flushes everything seen before it.
    """
    time.sleep(max(0.0, since + 1.0 - time.time()))
    cluster.kubectl(
        "annotate",
        "pod/poke",
        "deployment/poke",
        "statefulset/poke",
        "-n",
        POKE,
        "--overwrite",
        f"kelemetry.test/poke={next(_pokes)}",
    )
    time.sleep(CHANGE_GRACE_S + GRACE_MARGIN_S if grace else GRACE_MARGIN_S)


# ---------------------------------------------------------------------------------------------
# Reading what the collector stored


class Findings:
    """Every broken expectation of a scenario, reported together with what the collector stored."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.evidence: list[str] = []

    def expect(self, ok: object, message: str) -> bool:
        if not ok:
            self.failures.append(message)
        return bool(ok)

    def show(self, title: str, lines: Iterable[str]) -> None:
        self.evidence.append(f"--- {title}\n" + "\n".join(lines))

    def verdict(self) -> None:
        if self.failures:
            listed = "\n".join(f"- {failure}" for failure in self.failures)
            evidence = "\n\n".join(self.evidence)
            raise AssertionError(f"{len(self.failures)} expectation(s) failed:\n{listed}\n\n{evidence}")


def lookup(collector: Collector, resource: str, namespace: str, name: str, **more: Any) -> AssembledTrace:
    reader = StoreReader(collector.store)
    try:
        query = ObjectQuery(cluster=CLUSTER, resource=resource, namespace=namespace, name=name, **more)
        return lookups.assemble(reader, query)
    finally:
        reader.close()


def settle(produce: Callable[[], T], ok: Callable[[T], bool], timeout: float) -> T | None:
    """Poll until ``ok`` holds; either way return the last value produced (None if none was), so a
    test asserts on, and shows, what the collector really holds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        try:
            last = produce()
            if ok(last):
                return last
        except NotFound:
            pass
        if time.monotonic() >= deadline:
            return last
        time.sleep(0.5)


_MUTATING = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def logged_requests(cluster: ControlPlane, needle: str, keep: Callable[[dict[str, Any]], bool]) -> set[str]:
    """Audit IDs of the completed mutating requests in the apiserver's own audit log that ``keep``
    selects (``needle`` only skips lines that cannot match without parsing them)."""
    ids = set()
    marker = needle.encode()
    for line in cluster.audit_log.read_bytes().splitlines():
        if marker not in line:
            continue
        event = orjson.loads(line)
        ref = event.get("objectRef") or {}
        if (
            event.get("stage") == "ResponseComplete"
            and event.get("verb") in _MUTATING
            and ref.get("resource") not in ("events", "leases")
            and keep(event)
        ):
            ids.add(str(event["auditID"]))
    return ids


def stored_audit_ids(collector: Collector) -> set[str]:
    reader = StoreReader(collector.store)
    try:
        return {str(s.tags[tags.AUDIT_ID]) for s in reader.all_spans() if s.source is TraceSource.AUDIT}
    finally:
        reader.close()


def caught_up(
    cluster: ControlPlane,
    collector: Collector,
    found: Findings,
    namespace: str,
    keep: Callable[[dict[str, Any]], bool] | None = None,
    timeout: float = 30,
) -> None:
    """Wait until the collector stored every request the apiserver logged for ``namespace``."""

    def in_namespace(event: dict[str, Any]) -> bool:
        return bool((event.get("objectRef") or {}).get("namespace") == namespace)

    chosen = keep or in_namespace
    missing: set[str] = set()

    def done() -> bool:
        nonlocal missing
        logged = logged_requests(cluster, namespace, chosen)
        missing = logged - stored_audit_ids(collector)
        return bool(logged) and not missing

    try:
        wait_until(f"the collector to store the requests in {namespace}", done, timeout, 1.0)
    except HarnessError:
        found.expect(
            False, f"{len(missing)} request(s) the apiserver logged were never stored: {sorted(missing)}"
        )


def object_nodes(trace: AssembledTrace, resource: str | None = None) -> list[SpanNode]:
    return [
        n
        for n in trace.walk()
        if n.span.source is TraceSource.OBJECT and (resource is None or n.span.key.resource == resource)
    ]


def find_node(trace: AssembledTrace, resource: str, name: str) -> SpanNode | None:
    return next((n for n in object_nodes(trace, resource) if n.span.key.name == name), None)


def parents(trace: AssembledTrace) -> dict[int, SpanNode]:
    """id(child node) -> its parent node."""
    return {id(child): node for node in trace.walk() for child in node.children}


def happenings(node: SpanNode) -> list[SpanRecord]:
    """The request, Event and change spans directly on one object."""
    return [c.span for c in node.children if c.span.source is not TraceSource.OBJECT]


Call = tuple[object, object, object]


def call(span: SpanRecord) -> Call:
    return (
        span.tags.get(tags.AUDIT_USER),
        span.tags.get(tags.AUDIT_VERB),
        span.tags.get(tags.AUDIT_SUBRESOURCE) or None,
    )


def calls(node: SpanNode) -> set[Call]:
    return {call(s) for s in happenings(node) if s.source is TraceSource.AUDIT}


def diff_lines(span: SpanRecord) -> list[str]:
    return [line for log in span.logs if log.kind == "diff" for line in log.message.split("\n")]


def message(span: SpanRecord) -> str:
    return "\n".join(log.message for log in span.logs if log.kind == "message")


def when(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%H:%M:%S.%f")


_SHOWN_TAGS = (
    "audit.user",
    "audit.verb",
    "audit.subresource",
    "audit.code",
    "resource_version",
    "event.",
    "change.",
)


def describe(span: SpanRecord, indent: str = "") -> list[str]:
    shown = {k: v for k, v in sorted(span.tags.items()) if k.startswith(_SHOWN_TAGS)}
    lines = [
        f"{indent}{span.source.value} {span.name!r} uid={span.uid or '-'} "
        f"{when(span.start_us)}..{when(span.end_us)} {shown}"
    ]
    for log in span.logs:
        text = log.message if log.kind != "snapshot" else log.message[:200] + "..."
        for i, line in enumerate(text.split("\n")):
            lines.append(f"{indent}    {log.kind + ':' if i == 0 else ' ' * (len(log.kind) + 1)} {line}")
    return lines


def show(node: SpanNode, indent: str = "") -> list[str]:
    """A subtree as text: objects with their uids, then what happened to each."""
    span = node.span
    if span.source is TraceSource.OBJECT:
        lines = [f"{indent}[{span.key.display} ns={span.key.namespace!r} uid={span.uid or '-'} {span.kind}]"]
    else:
        lines = describe(span, indent)
    for child in node.children:
        lines.extend(show(child, indent + "  "))
    return lines


def expect_owned(
    found: Findings,
    trace: AssembledTrace,
    owner: dict[str, Any],
    children: list[dict[str, Any]],
    creator: str,
) -> None:
    """Each of ``children`` (as kubectl shows them) hangs under ``owner``'s span with its own uid
    and has a `create` request by ``creator``."""
    owner_uid = owner["metadata"]["uid"]
    owner_name = f"{owner['kind']} {owner['metadata']['name']} ({owner_uid})"
    found.expect(
        any(n.span.uid == owner_uid for n in object_nodes(trace)),
        f"no object span has the uid of {owner_name}",
    )
    parent_of = parents(trace)
    for child in children:
        meta = child["metadata"]
        resource = RESOURCE_OF_KIND[child["kind"]]
        what = f"{resource}/{meta['name']}"
        node = find_node(trace, resource, meta["name"])
        if not found.expect(node is not None, f"{what} is not in the trace of {owner_name}"):
            continue
        assert node is not None
        found.expect(
            node.span.uid == meta["uid"],
            f"{what} has uid {node.span.uid!r} in the trace, {meta['uid']!r} in fact",
        )
        parent = parent_of.get(id(node))
        found.expect(
            parent is not None and parent.span.uid == owner_uid,
            f"{what} hangs under "
            + (f"{parent.span.key.display} ({parent.span.uid})" if parent else "nothing")
            + f", not under {owner_name}",
        )
        found.expect(
            (creator, "create", None) in calls(node),
            f"{what} has no `{creator} create` request; it has {sorted(map(str, calls(node)))}",
        )


# ---------------------------------------------------------------------------------------------
# Workloads shared by the module


@pytest.fixture(scope="module", autouse=True)
def workloads(cluster: ControlPlane) -> Iterator[None]:
    namespaces = (OWNERS, SCALE, BIND, GRACEFUL, REUSE, POKE)
    for namespace in namespaces:
        cluster.kubectl("create", "namespace", namespace)
    # Pods created before their namespace's default ServiceAccount exists are refused, and the
    # controllers' retries would add FailedCreate noise to the traces under test.
    wait_until(
        "the scenario namespaces' default service accounts",
        lambda: all(cluster.kubectl("get", "sa", "default", "-n", ns, check=False) for ns in namespaces),
        60,
    )
    manifests = [
        cronjob(OWNERS, "tick"),
        statefulset(OWNERS, "db", 2),
        daemonset(OWNERS, "agent"),
        deployment(OWNERS, "web", 1),
        service(OWNERS, "web", "web"),
        deployment(SCALE, "scaled", 2),
        statefulset(SCALE, "db", 2),
        # Several Pods: whether the watch or the audit stream tells the collector first varies per Pod.
        deployment(BIND, "bind", BIND_REPLICAS),
        deployment(GRACEFUL, "victim", 2),
        # Objects that exist only to send a late event down the collector's watches (settle_watches).
        bare_pod(POKE, "poke"),
        deployment(POKE, "poke", 0),
        statefulset(POKE, "poke", 0),
    ]
    cluster.kubectl(
        "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
    )
    yield
    # The cluster outlives this module: no new Job every minute behind later tests' backs.
    cluster.kubectl("patch", "cronjob", "tick", "-n", OWNERS, "-p", '{"spec":{"suspend":true}}', check=False)


@dataclass(frozen=True)
class Scaled:
    """`kubectl scale` done on the Deployment (2 -> 4) and the StatefulSet (2 -> 3) of SCALE."""

    finished: float


@pytest.fixture(scope="module")
def scaled(cluster: ControlPlane) -> Scaled:
    rollout(cluster, SCALE, "scaled", 2)
    statefulset_ready(cluster, SCALE, "db", 2)
    cluster.kubectl("scale", "deployment", "scaled", "-n", SCALE, "--replicas=4")
    cluster.kubectl("scale", "statefulset", "db", "-n", SCALE, "--replicas=3")
    rollout(cluster, SCALE, "scaled", 4)
    statefulset_ready(cluster, SCALE, "db", 3)
    finished = time.time()
    settle_watches(cluster, finished, grace=False)
    return Scaled(finished=finished)


# ---------------------------------------------------------------------------------------------
# 2. kubectl scale


SCALE_REQUEST: Call = (ADMIN, "patch", "scale")


@pytest.mark.parametrize(
    ("resource", "name", "before", "after"),
    [("deployments", "scaled", 2, 4), ("statefulsets", "db", 2, 3)],
    ids=["deployment", "statefulset"],
)
def test_kubectl_scale_diff_lands_on_the_scale_request(
    cluster: ControlPlane,
    collector: Collector,
    scaled: Scaled,
    resource: str,
    name: str,
    before: int,
    after: int,
) -> None:
    found = Findings()
    caught_up(cluster, collector, found, SCALE)
    line = f"spec.replicas {before} -> {after}"

    def scale_has_diff(trace: AssembledTrace) -> bool:
        return any(line in diff_lines(s) for s in happenings(trace.root) if call(s) == SCALE_REQUEST)

    # The scale response is a Scale, not the object: the diff may join the request a moment later.
    trace = settle(lambda: lookup(collector, resource, SCALE, name), scale_has_diff, 10)
    assert trace is not None, f"{resource}/{name} is not in the store"
    root = trace.root
    found.show(f"{resource}/{name}: its own spans", [line for s in happenings(root) for line in describe(s)])
    scale = [s for s in happenings(root) if call(s) == SCALE_REQUEST]
    found.expect(len(scale) == 1, f"expected one `admin patch scale` span, found {len(scale)}")
    found.expect(
        any(line in diff_lines(s) for s in scale),
        f"the `admin patch scale` span has no diff line {line!r}: its diff lines are "
        f"{[diff_lines(s) for s in scale]}",
    )
    for span in happenings(root):
        if span.tags.get(tags.AUDIT_SUBRESOURCE) != "status":
            continue
        stolen = [d for d in diff_lines(span) if d.startswith("spec.")]
        found.expect(
            not stolen,
            f"status request {span.name!r} at {when(span.start_us)} "
            f"(rv {span.tags.get(tags.RESOURCE_VERSION)}) carries spec lines {stolen}",
        )
    found.verdict()


# ---------------------------------------------------------------------------------------------
# 7. Events after their causes


def test_events_follow_the_requests_that_caused_them(
    cluster: ControlPlane, collector: Collector, scaled: Scaled
) -> None:
    found = Findings()
    caught_up(cluster, collector, found, SCALE)

    def scaled_to_four(trace: AssembledTrace) -> bool:
        return any(
            s.source is TraceSource.EVENT and s.name == "ScalingReplicaSet" and "to 4" in message(s)
            for s in happenings(trace.root)
        )

    trace = settle(lambda: lookup(collector, "deployments", SCALE, "scaled"), scaled_to_four, 30)
    assert trace is not None, "deployments/scaled is not in the store"
    root = trace.root
    found.show(
        "deployments/scaled: its own spans in time order",
        [line for s in sorted(happenings(root), key=lambda s: s.start_us) for line in describe(s)],
    )
    on_it = happenings(root)
    requests = [s for s in on_it if s.source is TraceSource.AUDIT]
    events = [s for s in on_it if s.source is TraceSource.EVENT]
    assert requests, "no request span on deployments/scaled"
    first = min(requests, key=lambda s: s.start_us)
    early = [e for e in events if e.start_us < first.start_us]
    found.expect(
        not early,
        f"{len(early)} Event span(s) start before the first request {first.name!r} "
        f"at {when(first.start_us)}: "
        + "; ".join(f"{e.name} {message(e)!r} at {when(e.start_us)}" for e in early),
    )
    scale = [s for s in requests if call(s) == SCALE_REQUEST]
    to_four = [e for e in events if e.name == "ScalingReplicaSet" and "to 4" in message(e)]
    found.expect(scale, "no `admin patch scale` span on deployments/scaled")
    found.expect(to_four, "no ScalingReplicaSet Event saying `to 4` on deployments/scaled")
    if scale:
        scale_end = max(s.end_us for s in scale)
        for event in to_four:
            found.expect(
                event.start_us >= scale_end,
                f"{message(event)!r} starts at {when(event.start_us)}, before `admin patch scale` ended "
                f"at {when(scale_end)}",
            )
    found.verdict()


# ---------------------------------------------------------------------------------------------
# 3. Scheduler binding


def test_scheduler_binding_carries_the_node_name(cluster: ControlPlane, collector: Collector) -> None:
    rollout(cluster, BIND, "bind", BIND_REPLICAS)
    pods = items(cluster, "pods", BIND)
    found = Findings()
    caught_up(cluster, collector, found, BIND)
    settle_watches(cluster, max(last_transition(p) for p in pods), grace=True)
    binding_call: Call = (SCHEDULER, "create", "binding")
    for pod in pods:
        name = pod["metadata"]["name"]
        line = f'spec.nodeName null -> "{pod["spec"]["nodeName"]}"'

        def binding_has_diff(trace: AssembledTrace, name: str = name, line: str = line) -> bool:
            node = find_node(trace, "pods", name)
            return node is not None and any(
                line in diff_lines(s) for s in happenings(node) if call(s) == binding_call
            )

        # The binding's response is a Status: the node name comes from the request or the watch.
        trace = settle(partial(lookup, collector, "pods", BIND, name), binding_has_diff, 5)
        node = find_node(trace, "pods", name) if trace is not None else None
        if not found.expect(node is not None, f"pods/{name} is not in the store"):
            continue
        assert node is not None
        failed_before = len(found.failures)
        binding = [s for s in happenings(node) if call(s) == binding_call]
        found.expect(
            len(binding) == 1, f"pods/{name}: expected one `{SCHEDULER} create binding`, found {len(binding)}"
        )
        found.expect(
            any(line in diff_lines(s) for s in binding),
            f"pods/{name}: the binding span has no diff line {line!r}; "
            f"it has {[diff_lines(s) for s in binding]}",
        )
        others = [
            s
            for s in happenings(node)
            if s not in binding and any(d.startswith("spec.nodeName") for d in diff_lines(s))
        ]
        for span in others:
            found.expect(
                False,
                f"pods/{name}: spec.nodeName is also on the {span.source.value} span {span.name!r} at "
                f"{when(span.start_us)} (rv {span.tags.get(tags.RESOURCE_VERSION)})",
            )
        if len(found.failures) > failed_before:
            found.show(f"pods/{name}", show(node))
    found.verdict()


# ---------------------------------------------------------------------------------------------
# 4. Graceful Pod delete


def test_graceful_pod_delete_is_claimed_by_the_delete_requests(
    cluster: ControlPlane, collector: Collector
) -> None:
    rollout(cluster, GRACEFUL, "victim", 2)
    name = items(cluster, "pods", GRACEFUL)[0]["metadata"]["name"]
    # The default grace period: the apiserver only sets deletionTimestamp; kwok, playing the
    # kubelet, then deletes the Pod for good. kubectl waits until it is gone.
    cluster.kubectl("delete", "pod", name, "-n", GRACEFUL)
    wait_until(
        f"pod {name} to be gone",
        lambda: not cluster.kubectl("get", "pod", name, "-n", GRACEFUL, "--ignore-not-found", "-o", "name"),
        60,
        0.5,
    )
    gone = time.time()
    found = Findings()
    caught_up(cluster, collector, found, GRACEFUL)
    settle_watches(cluster, gone, grace=True)
    trace = lookup(collector, "pods", GRACEFUL, name)
    node = find_node(trace, "pods", name)
    assert node is not None, f"pods/{name} is not in its own trace"
    found.show(f"pods/{name}", show(node))
    found.expect((ADMIN, "delete", None) in calls(node), f"no `admin delete` on pods/{name}")
    changes = [s for s in happenings(node) if s.source is TraceSource.CHANGE]
    found.expect(
        not changes,
        f"{len(changes)} change span(s) on pods/{name} although the delete requests explain the "
        "deletionTimestamp and the removal: "
        + "; ".join(
            f"{s.name!r} rv={s.tags.get(tags.RESOURCE_VERSION)} ({', '.join(diff_lines(s)[:2]) or 'no diff'})"
            for s in changes
        ),
    )
    found.verdict()


# ---------------------------------------------------------------------------------------------
# 5. Name reuse within one window


def _incarnation(cluster: ControlPlane) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The Deployment `reuse`, its only ReplicaSet and that ReplicaSet's Pods, as kubectl shows them."""
    deploy = kube(cluster, "deployment", "reuse", "-n", REUSE)
    (replicaset,) = owned_by(items(cluster, "replicasets", REUSE), deploy)
    pods = owned_by(items(cluster, "pods", REUSE), replicaset)
    return deploy, replicaset, pods


def test_name_reuse_keeps_incarnations_apart(cluster: ControlPlane, collector: Collector) -> None:
    create = ("create", "deployment", "reuse", "-n", REUSE, "--image=nginx:1.27", "--replicas=1")
    cluster.kubectl(*create)
    rollout(cluster, REUSE, "reuse", 1)
    old_deploy, old_rs, old_pods = _incarnation(cluster)
    cluster.kubectl("delete", "deployment", "reuse", "-n", REUSE, "--wait=true")
    wait_until(
        "the old ReplicaSet and its Pod to be gone",
        lambda: not cluster.kubectl("get", "replicasets,pods", "-n", REUSE, "-o", "name").strip(),
        60,
        0.5,
    )
    cluster.kubectl(*create)
    rollout(cluster, REUSE, "reuse", 1)
    new_deploy, new_rs, new_pods = _incarnation(cluster)
    rs_name = new_rs["metadata"]["name"]
    assert old_rs["metadata"]["name"] == rs_name, "the scenario needs the same ReplicaSet name twice"
    uid = {
        "old deployment": old_deploy["metadata"]["uid"],
        "new deployment": new_deploy["metadata"]["uid"],
        "old replicaset": old_rs["metadata"]["uid"],
        "new replicaset": new_rs["metadata"]["uid"],
    }
    old_pod_uids = {p["metadata"]["uid"] for p in old_pods}
    new_pod_uids = {p["metadata"]["uid"] for p in new_pods}

    found = Findings()
    found.show(
        "uids from kubectl",
        [f"{k}: {v}" for k, v in uid.items()]
        + [f"old pods: {sorted(old_pod_uids)}", f"new pods: {sorted(new_pod_uids)}"],
    )
    caught_up(cluster, collector, found, REUSE)

    def new_complete(trace: AssembledTrace) -> bool:
        return any(
            n.span.uid == uid["new replicaset"] and (DEPLOYMENT_CONTROLLER, "create", None) in calls(n)
            for n in object_nodes(trace, "replicasets")
        )

    # By name: the newest incarnation.
    trace = settle(lambda: lookup(collector, "deployments", REUSE, "reuse"), new_complete, 10)
    assert trace is not None, "deployments/reuse is not in the store"
    found.show("lookup by name", show(trace.root))
    found.expect(
        trace.root.span.uid == uid["new deployment"],
        f"the lookup by name gives root uid {trace.root.span.uid!r}, not the new Deployment's",
    )
    replicasets = object_nodes(trace, "replicasets")
    found.expect(
        [n.span.uid for n in replicasets] == [uid["new replicaset"]],
        f"the new tree's ReplicaSets have uids {[n.span.uid for n in replicasets]}, "
        "expected only the new ReplicaSet's",
    )
    parent_of = parents(trace)
    for pod in object_nodes(trace, "pods"):
        owner = parent_of.get(id(pod))
        found.expect(
            pod.span.uid in new_pod_uids
            and owner is not None
            and owner.span.uid == uid["new replicaset"]
            and parent_of.get(id(owner)) is trace.root,
            f"pods/{pod.span.key.name} (uid {pod.span.uid}) in the new tree is not a new Pod under the new "
            "ReplicaSet",
        )
    found.expect(
        {n.span.uid for n in object_nodes(trace, "pods")} == new_pod_uids,
        "the new tree does not hold exactly the new Pods",
    )

    # By uid: the old incarnation, with its own ReplicaSet and requests.
    try:
        old = lookup(collector, "deployments", REUSE, "reuse", uid=uid["old deployment"])
    except (TypeError, NotFound) as exc:
        found.expect(False, f"the old incarnation cannot be looked up by uid: {type(exc).__name__}: {exc}")
    else:
        found.show("lookup by the old uid", show(old.root))
        found.expect(
            old.root.span.uid == uid["old deployment"], f"the lookup by uid gives root {old.root.span.uid}"
        )
        found.expect(
            {(ADMIN, "create", None), (ADMIN, "delete", None)} <= calls(old.root),
            f"the old Deployment's requests are {sorted(map(str, calls(old.root)))}",
        )
        old_sets = object_nodes(old, "replicasets")
        found.expect(
            [n.span.uid for n in old_sets] == [uid["old replicaset"]],
            f"the old tree's ReplicaSets have uids {[n.span.uid for n in old_sets]}",
        )
        for rs in old_sets:
            found.expect(
                (DEPLOYMENT_CONTROLLER, "create", None) in calls(rs),
                f"the old ReplicaSet has no `deployment-controller create`: {sorted(map(str, calls(rs)))}",
            )
        found.expect(
            {n.span.uid for n in object_nodes(old, "pods")} == old_pod_uids,
            f"the old tree's Pods are {sorted(n.span.uid for n in object_nodes(old, 'pods'))}",
        )

    reader = StoreReader(collector.store)
    try:
        rows = reader.find_objects(cluster=CLUSTER, resource="replicasets", name=rs_name, namespace=REUSE)
    finally:
        reader.close()
    found.expect(
        sorted(r.uid for r in rows) == sorted([uid["old replicaset"], uid["new replicaset"]]),
        f"find_objects(replicasets/{rs_name}) gives rows with uids {[r.uid for r in rows]}",
    )
    by_name = ObjectQuery(cluster=CLUSTER, resource="deployments", namespace=REUSE, name="reuse")
    listed = [row.uid for row in lookups.found(collector.store, by_name).incarnations]
    found.expect(
        uid["old deployment"] in listed and uid["new deployment"] not in listed,
        f"incarnations lists uids {listed}",
    )
    found.verdict()


# ---------------------------------------------------------------------------------------------
# 6. Namespace delete


def test_deleted_namespace_is_one_cluster_scoped_object(cluster: ControlPlane, collector: Collector) -> None:
    cluster.kubectl("create", "namespace", GONE)
    cluster.kubectl("delete", "namespace", GONE, "--wait=true")
    found = Findings()

    def about_it(event: dict[str, Any]) -> bool:
        ref = event.get("objectRef") or {}
        body_name = ((event.get("responseObject") or {}).get("metadata") or {}).get("name")
        return ref.get("resource") == "namespaces" and GONE in (
            ref.get("name"),
            ref.get("namespace"),
            body_name,
        )

    caught_up(cluster, collector, found, GONE, about_it)
    reader = StoreReader(collector.store)
    try:
        rows = reader.find_objects(cluster=CLUSTER, resource="namespaces", name=GONE)
    finally:
        reader.close()
    found.show("object rows", [repr(r) for r in rows])
    found.expect(len(rows) == 1, f"expected one object row for namespaces/{GONE}, found {len(rows)}")
    found.expect(
        all(r.key.namespace == "" for r in rows),
        f"namespace rows keyed in namespaces {[r.key.namespace for r in rows]}, expected '' (cluster-scoped)",
    )
    try:
        trace = lookup(collector, "namespaces", "", GONE)
    except NotFound as exc:
        found.expect(False, f"no cluster-scoped trace for namespaces/{GONE}: {exc}")
    else:
        found.show(f"namespaces/{GONE}", show(trace.root))
        node = find_node(trace, "namespaces", GONE)
        requests = calls(node) if node is not None else set()
        found.expect(
            {(ADMIN, "create", None), (ADMIN, "delete", None)} <= requests,
            f"the namespace's requests are {sorted(map(str, requests))}",
        )
    found.verdict()


# ---------------------------------------------------------------------------------------------
# 1. Built-in controllers' ownership (the CronJob last: its first Job takes up to a minute)


def test_statefulset_owns_its_pods_and_controller_revision(
    cluster: ControlPlane, collector: Collector
) -> None:
    statefulset_ready(cluster, OWNERS, "db", 2)
    sts = kube(cluster, "statefulset", "db", "-n", OWNERS)
    pods = owned_by(items(cluster, "pods", OWNERS), sts)
    revisions = owned_by(items(cluster, "controllerrevisions", OWNERS), sts)
    assert len(pods) == 2 and len(revisions) == 1, (len(pods), len(revisions))
    found = Findings()
    caught_up(cluster, collector, found, OWNERS)
    trace = lookup(collector, "statefulsets", OWNERS, "db")
    found.show("statefulsets/db", show(trace.root))
    found.expect(trace.root.span.uid == sts["metadata"]["uid"], f"the root's uid is {trace.root.span.uid}")
    expect_owned(found, trace, sts, pods, STATEFULSET_CONTROLLER)
    expect_owned(found, trace, sts, revisions, STATEFULSET_CONTROLLER)
    found.verdict()


def test_daemonset_owns_its_pod_and_controller_revision(cluster: ControlPlane, collector: Collector) -> None:
    wait_status(
        cluster, OWNERS, "daemonset", "agent", "{.status.numberReady}/{.status.desiredNumberScheduled}", "1/1"
    )
    ds = kube(cluster, "daemonset", "agent", "-n", OWNERS)
    pods = owned_by(items(cluster, "pods", OWNERS), ds)
    revisions = owned_by(items(cluster, "controllerrevisions", OWNERS), ds)
    assert len(pods) == 1 and len(revisions) == 1, (len(pods), len(revisions))
    found = Findings()
    caught_up(cluster, collector, found, OWNERS)
    trace = lookup(collector, "daemonsets", OWNERS, "agent")
    found.show("daemonsets/agent", show(trace.root))
    found.expect(trace.root.span.uid == ds["metadata"]["uid"], f"the root's uid is {trace.root.span.uid}")
    expect_owned(found, trace, ds, pods, DAEMONSET_CONTROLLER)
    expect_owned(found, trace, ds, revisions, DAEMONSET_CONTROLLER)
    found.verdict()


def test_service_owns_its_endpointslice(cluster: ControlPlane, collector: Collector) -> None:
    svc = kube(cluster, "service", "web", "-n", OWNERS)
    slices = wait_until(
        "the Service's EndpointSlice",
        lambda: owned_by(items(cluster, "endpointslices", OWNERS), svc),
        60,
        0.5,
    )
    found = Findings()
    caught_up(cluster, collector, found, OWNERS)
    trace = lookup(collector, "services", OWNERS, "web")
    found.show("services/web", show(trace.root))
    found.expect(trace.root.span.uid == svc["metadata"]["uid"], f"the root's uid is {trace.root.span.uid}")
    expect_owned(found, trace, svc, slices, ENDPOINTSLICE_CONTROLLER)
    found.verdict()


def test_cronjob_owns_its_job_which_owns_its_pod(cluster: ControlPlane, collector: Collector) -> None:
    cron = kube(cluster, "cronjob", "tick", "-n", OWNERS)

    def job_and_pod() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        jobs = owned_by(items(cluster, "jobs", OWNERS), cron)
        if not jobs:
            return None
        first = min(jobs, key=lambda j: str(j["metadata"]["creationTimestamp"]))
        pods = owned_by(items(cluster, "pods", OWNERS), first)
        return (first, pods) if pods else None

    # The CronJob controller starts a Job at the first minute boundary after the CronJob exists.
    job, pods = wait_until("the CronJob's first Job and its Pod", job_and_pod, 100, 1.0)
    found = Findings()
    caught_up(cluster, collector, found, OWNERS)
    trace = lookup(collector, "cronjobs", OWNERS, "tick")
    found.show("cronjobs/tick", show(trace.root))
    found.expect(trace.root.span.uid == cron["metadata"]["uid"], f"the root's uid is {trace.root.span.uid}")
    expect_owned(found, trace, cron, [job], CRONJOB_CONTROLLER)
    expect_owned(found, trace, job, pods, JOB_CONTROLLER)
    found.verdict()
