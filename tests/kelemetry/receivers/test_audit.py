"""audit.k8s.io Events → model Events: envelope validation, the keep/drop rules, names, owners."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from kelemetry import errors
from kelemetry.kube.kinds import KindResolver
from kelemetry.receivers.audit import AuditConverter, AuditFilter, cheap_drop, decode_webhook_body
from kelemetry.receivers.auditfiles import FileStats, read_audit_file
from tests.conftest import FALCO
from tests.factories import audit_event, event_list, owner_ref


def convert(raw: dict[str, object], converter: AuditConverter | None = None):  # type: ignore[no-untyped-def]
    return (converter or AuditConverter(KindResolver())).convert(raw, "c")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        pytest.param(b"{nope", errors.MalformedBody, "not valid JSON", id="not-json"),
        pytest.param(b"\xff\xfe{}", errors.MalformedBody, "not valid UTF-8", id="not-utf8"),
        pytest.param(b"[]", errors.WrongKind, "not a JSON object", id="array"),
        pytest.param(
            json.dumps({"kind": "PodList", "apiVersion": "audit.k8s.io/v1"}).encode(),
            errors.WrongKind,
            "is not EventList",
            id="wrong-kind",
        ),
        pytest.param(
            json.dumps({"kind": "EventList", "apiVersion": "v1"}).encode(),
            errors.WrongKind,
            "apiVersion 'v1'",
            id="wrong-api-version",
        ),
        pytest.param(
            json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": {}}).encode(),
            errors.WrongKind,
            "items is not a list",
            id="items-not-list",
        ),
        pytest.param(
            json.dumps(event_list([audit_event(), 3])).encode(),
            errors.WrongKind,
            r"items\[1\] is not a JSON object",
            id="item-not-object",
        ),
        pytest.param(
            json.dumps(event_list([{**audit_event(), "kind": "Pod"}])).encode(),
            errors.WrongKind,
            "kind 'Pod'",
            id="item-wrong-kind",
        ),
        pytest.param(
            json.dumps(event_list([{k: v for k, v in audit_event().items() if k != "auditID"}])).encode(),
            errors.WrongKind,
            "has no auditID",
            id="item-without-audit-id",
        ),
    ],
)
def test_bad_webhook_bodies(body: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        decode_webhook_body(body)
    assert caught.value.status in (400, 422)  # type: ignore[attr-defined]


def test_good_webhook_bodies() -> None:
    assert len(decode_webhook_body(json.dumps(event_list([audit_event(), audit_event()])).encode())) == 2
    assert len(decode_webhook_body(json.dumps(event_list([], "audit.k8s.io/v1beta1")).encode())) == 0
    assert len(decode_webhook_body(json.dumps(audit_event()).encode())) == 1


@pytest.mark.parametrize(
    ("overrides", "outcome"),
    [
        pytest.param({"stage": "RequestReceived"}, "dropped_stage", id="request-received"),
        pytest.param({"stage": "ResponseStarted"}, "dropped_stage", id="response-started"),
        pytest.param({"verb": "get"}, "dropped_read", id="get"),
        pytest.param({"verb": "watch"}, "dropped_read", id="watch"),
        pytest.param({"objectRef": None}, "dropped_no_object", id="no-object"),
        pytest.param(
            {"objectRef": {"resource": "leases", "apiGroup": "coordination.k8s.io", "name": "x"}},
            "dropped_excluded_resource",
            id="lease",
        ),
        pytest.param(
            {"userAgent": "kube-scheduler/v1.33 (linux/amd64)/leader-election"},
            "dropped_excluded_user_agent",
            id="leader-election",
        ),
    ],
)
def test_drops_are_counted(overrides: dict[str, object], outcome: str) -> None:
    converter = AuditConverter(
        KindResolver(), AuditFilter.from_strings(["coordination.k8s.io/leases"], ["/leader-election"])
    )
    assert convert({**audit_event(), **overrides}, converter) is None
    assert converter.stats.counts == {outcome: 1}


def test_cheap_drop_agrees_with_the_decoder() -> None:
    for stage, verb, expected in [
        ("RequestReceived", "create", "dropped_stage"),
        ("ResponseComplete", "list", "dropped_read"),
        ("ResponseComplete", "update", None),
        ("Panic", "patch", None),
    ]:
        line = json.dumps(audit_event(stage=stage, verb=verb), separators=(",", ":")).encode()
        assert cheap_drop(line) == expected
    # A body field named like the envelope's makes the bytes ambiguous: leave it to the decoder.
    nested = audit_event(stage="RequestReceived", request_object={"stage": "ResponseComplete"})
    assert cheap_drop(json.dumps(nested, separators=(",", ":")).encode()) is None


def test_create_takes_its_name_from_the_response_and_links_the_owner() -> None:
    raw = audit_event(
        name="web-abc",
        uid="p1",
        owner=owner_ref("ReplicaSet", "web", uid="r1"),
        user="system:serviceaccount:kube-system:replicaset-controller",
    )
    event = convert(raw)
    assert event is not None and event.object.key.name == "web-abc" and event.object.uid == "p1"
    assert event.title == "system:serviceaccount:kube-system:replicaset-controller create"
    assert event.owner is not None
    owner = event.owner.owner.key
    assert (owner.group, owner.resource, owner.namespace, owner.name) == (
        "apps",
        "replicasets",
        "default",
        "web",
    )
    assert event.end_us - event.start_us == 10_000


def test_failed_generate_name_create_keeps_the_prefix_and_is_an_error() -> None:
    raw = audit_event(
        name="",
        code=409,
        request_object={"kind": "Pod", "apiVersion": "v1", "metadata": {"generateName": "web-"}},
    )
    raw["responseStatus"] = {"code": 409, "reason": "AlreadyExists", "message": 'pods "web-x" already exists'}
    event = convert(raw)
    assert event is not None and event.object.key.name == "web-" and event.error
    assert event.title.endswith("create (Conflict)")
    assert event.logs[0].message == 'AlreadyExists: pods "web-x" already exists'


def test_impersonation_subresource_and_panic() -> None:
    raw = audit_event(verb="update", subresource="status", code=200, impersonatedUser={"username": "bob"})
    event = convert(raw)
    assert event is not None and event.title == "bob update status"
    assert event.tags["audit.user"] == "bob" and event.tags["audit.impersonator"] == "admin"
    assert event.tags["audit.subresource"] == "status"
    panic = convert(audit_event(verb="update", stage="Panic", code=500))
    assert panic is not None and panic.error and panic.logs[0].message.startswith("Panic")


def test_owner_kinds() -> None:
    mirror = convert(audit_event(owner=owner_ref("Node", "n0", api_version="v1")))
    assert mirror is not None and mirror.owner is not None
    assert (mirror.owner.owner.key.resource, mirror.owner.owner.key.namespace) == ("nodes", "")
    custom = convert(audit_event(owner=owner_ref("WidgetSet", "w", api_version="example.com/v1")))
    assert custom is not None and custom.owner is not None
    assert custom.owner.owner.key.resource == "widgetsets"
    first = convert(audit_event(owner=owner_ref("ReplicaSet", "a", controller=False)))
    assert first is not None and first.owner is not None and first.owner.owner.key.name == "a"
    legacy = convert(audit_event(resource="deployments", group="extensions", name="d"))
    assert legacy is not None and legacy.object.key.group == "apps"
    assert convert(audit_event(verb="delete", code=200, owner=owner_ref("ReplicaSet", "a"))).owner is None  # type: ignore[union-attr]


def test_audit_files_plain_gzip_and_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps(audit_event()),
        "",
        "{broken",
        json.dumps({"kind": "Pod", "apiVersion": "v1"}),
        json.dumps(event_list([audit_event(), audit_event()])),
    ]
    plain = tmp_path / "audit.log"
    plain.write_text("\n".join(lines) + "\n")
    zipped = tmp_path / "audit.log.1"  # gzip recognised by content, not by name
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, zipped):
        stats = FileStats()
        progress: list[tuple[int, int]] = []

        def record(done: int, total: int, seen: list[tuple[int, int]] = progress) -> None:
            seen.append((done, total))

        events = [e for batch in read_audit_file(str(path), stats, record) for e in batch]
        assert len(events) == 3 and stats.bad_lines == 2 and stats.events == 3
        assert progress[-1][0] == progress[-1][1]
    with pytest.raises(errors.InputError, match="cannot read"):
        list(read_audit_file(str(tmp_path / "missing.log")))
    truncated = tmp_path / "cut.gz"
    truncated.write_bytes(zipped.read_bytes()[:-20])
    with pytest.raises(errors.InputError, match="cannot read"):
        list(read_audit_file(str(truncated)))


def test_falco_replicaset_controller_pods_link_to_replicasets(realdata: Path) -> None:
    converter = AuditConverter(KindResolver())
    pods = 0
    for line in (realdata / FALCO).read_text().splitlines():
        raw = json.loads(line)
        if raw["user"]["username"] != "system:serviceaccount:kube-system:replicaset-controller":
            continue
        event = convert(raw, converter)
        assert event is not None and event.owner is not None
        owner = event.owner.owner.key
        assert (owner.group, owner.resource) == ("apps", "replicasets")
        assert event.object.key.name.startswith(owner.name + "-")
        pods += 1
    assert pods == 42
