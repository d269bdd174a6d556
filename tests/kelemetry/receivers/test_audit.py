"""audit.k8s.io Events → model Events (kelemetry.receivers.audit).

Covers the wire form (kelemetry.receivers.auditwire): webhook body decoding and every rejection with
its HTTP status (a field of the wrong JSON type included, named by its path), bodies left undecoded
and judged only when read, JSON-lines documents, events given as Python values; the byte-level drop
shortcut; owner links from metadata; and AuditConverter: stage and verb rules, outcome counters,
resource and user-agent exclusion, names, namespaces, uids, kinds and versions, body metadata of the
wrong type, titles and tags, failures, impersonation, timestamps, owner links, and two real recorded
audit logs.
"""

from __future__ import annotations

import http
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kelemetry import errors
from kelemetry.kube.kinds import KindResolver, ResourceInfo
from kelemetry.linker.owners import owner_link
from kelemetry.model.events import Event, Log, TraceSource
from kelemetry.model.objects import ObjectKey, ObjectRef
from kelemetry.model.times import parse_time_us
from kelemetry.receivers import auditwire
from kelemetry.receivers.audit import AuditConverter, AuditFilter
from kelemetry.receivers.auditwire import AuditEvent, decode_batch, decode_line, from_mapping
from tests.conftest import AUDIT2RBAC, FALCO
from tests.factories import audit_event, event_list, mismatches, owner_ref

RS_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
MUTATING = ("create", "update", "patch", "delete", "deletecollection")


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()


def without(mapping: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k not in keys}


def convert(raw: dict[str, Any], converter: AuditConverter | None = None) -> Event | None:
    return (converter or AuditConverter(KindResolver())).convert(from_mapping(raw), "c")


def convert_all(converter: AuditConverter, raws: list[AuditEvent]) -> list[Event]:
    return [event for raw in raws if (event := converter.convert(raw, "c")) is not None]


def kept(raw: dict[str, Any], converter: AuditConverter | None = None) -> Event:
    event = convert(raw, converter)
    assert event is not None
    return event


def with_owners(raw: dict[str, Any], refs: Any) -> dict[str, Any]:
    """``raw`` with ``refs`` as the ownerReferences of both bodies."""
    for side in ("requestObject", "responseObject"):
        if side in raw:
            raw[side]["metadata"]["ownerReferences"] = refs
    return raw


def us(year: int, month: int, day: int, hour: int, minute: int, second: int, micro: int = 0) -> int:
    whole = int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp())
    return whole * 1_000_000 + micro


# ---------------------------------------------------------------------------------------------
# decode_batch: accepted bodies


@pytest.mark.parametrize(
    "api_version",
    [pytest.param("audit.k8s.io/v1", id="v1"), pytest.param("audit.k8s.io/v1beta1", id="v1beta1")],
)
def test_event_list_returns_its_items_in_order(api_version: str) -> None:
    items = [
        audit_event(audit_id="a1", api_version=api_version),
        audit_event(audit_id="a2", api_version=api_version, verb="update", code=200),
    ]
    decoded = decode_batch(encode(event_list(items, api_version)))
    assert [event.auditID for event in decoded] == ["a1", "a2"]
    assert mismatches(decoded, items) == []


def test_event_list_items_may_omit_their_own_kind_and_api_version() -> None:
    # kube-apiserver serialises list items with an empty TypeMeta, so real webhook items carry neither.
    items = [without(audit_event(audit_id="a1"), "kind", "apiVersion")]
    decoded = decode_batch(encode(event_list(items)))
    assert mismatches(decoded, items) == []
    assert (decoded[0].kind, decoded[0].apiVersion) == ("", "")


@pytest.mark.parametrize(
    "api_version",
    [pytest.param("audit.k8s.io/v1", id="v1"), pytest.param("audit.k8s.io/v1beta1", id="v1beta1")],
)
def test_lone_event_is_a_list_of_one(api_version: str) -> None:
    raw = audit_event(audit_id="lone", api_version=api_version)
    assert mismatches(decode_batch(encode(raw)), [raw]) == []


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(event_list([]), id="empty-items"),
        pytest.param(without(event_list([]), "items"), id="no-items"),
        pytest.param({**event_list([]), "items": None}, id="null-items"),
        pytest.param(event_list([], "audit.k8s.io/v1beta1"), id="empty-v1beta1"),
    ],
)
def test_event_list_without_items_is_empty(document: dict[str, Any]) -> None:
    assert decode_batch(encode(document)) == []


def test_bodies_stay_undecoded_until_read() -> None:
    raw = audit_event(verb="update", code=200, name="web-0")
    raw["responseObject"]["spec"] = {"nodeName": "node-1", "weight": 0.5}
    (event,) = decode_batch(encode(event_list([raw])))
    assert isinstance(event.responseObject, msgspec.Raw)
    assert event.response() == raw["responseObject"]
    assert event.request() == raw["requestObject"]
    (bare,) = decode_batch(encode(event_list([without(raw, "requestObject", "responseObject")])))
    assert (bare.request(), bare.response()) == (None, None)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b"1" * 5000, None, id="number-beyond-any-float"),
        pytest.param(b'{"spec": {"replicas": ' + b"9" * 5000 + b"}}", None, id="number-inside"),
        pytest.param(b"null", None, id="null"),
        pytest.param(b'"text"', "text", id="string"),
        pytest.param(b"[1, 2]", [1, 2], id="list"),
        pytest.param(b'{"big": 18446744073709551616}', {"big": 18446744073709551616}, id="beyond-64-bits"),
    ],
)
def test_a_body_is_judged_only_when_read(body: bytes, expected: Any) -> None:
    # The envelope is checked at the edge; a body is not, and one JSON cannot hold as Python values
    # is treated as absent rather than refusing the batch it came in.
    document = encode(event_list([audit_event(audit_id="odd")])).replace(
        b'"responseObject": {', b'"responseObject": ' + body + b', "x": {'
    )
    (event,) = decode_batch(document)
    assert event.auditID == "odd"
    assert event.response() == expected


# ---------------------------------------------------------------------------------------------
# decode_batch: rejections


def _item_without(field: str) -> bytes:
    return encode(event_list([audit_event(), without(audit_event(), field)]))


def _item_with(**fields: Any) -> bytes:
    return encode(event_list([audit_event(), {**audit_event(), **fields}]))


def _ref_with(**fields: Any) -> bytes:
    raw = audit_event(verb="update", code=200)
    raw["objectRef"].update(fields)
    return encode(event_list([audit_event(), raw]))


@pytest.mark.parametrize(
    ("body", "error", "status", "message"),
    [
        pytest.param(b"{nope", errors.MalformedBody, 400, "not valid JSON", id="not-json"),
        pytest.param(b"", errors.MalformedBody, 400, "not valid JSON", id="empty-body"),
        pytest.param(b"\xff\xfe", errors.MalformedBody, 400, "not valid UTF-8", id="not-utf8"),
        pytest.param(
            b'{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [], "x": "\xff"}',
            errors.MalformedBody,
            400,
            "not valid UTF-8",
            id="utf8-inside",
        ),
        pytest.param(
            encode(event_list([audit_event()])).replace(b"kubectl/", b"kubectl\xff/"),
            errors.MalformedBody,
            400,
            "not valid UTF-8",
            id="utf8-inside-a-field",
        ),
        pytest.param(b"[]", errors.WrongKind, 422, "body: Expected object, got array", id="array"),
        pytest.param(b'"EventList"', errors.WrongKind, 422, "body: Expected object, got str", id="string"),
        pytest.param(
            encode({"kind": "PodList", "apiVersion": "audit.k8s.io/v1", "items": []}),
            errors.WrongKind,
            422,
            "kind 'PodList' is not EventList or Event",
            id="wrong-kind",
        ),
        pytest.param(
            encode({"apiVersion": "audit.k8s.io/v1", "items": []}),
            errors.WrongKind,
            422,
            "kind None",
            id="missing-kind",
        ),
        pytest.param(
            encode({**audit_event(), "kind": "Pod"}),
            errors.WrongKind,
            422,
            "kind 'Pod' is not EventList or Event",
            id="lone-object-of-wrong-kind",
        ),
        pytest.param(
            encode(event_list([], "v1")), errors.WrongKind, 422, "apiVersion 'v1'", id="wrong-api-version"
        ),
        pytest.param(
            encode(event_list([], "audit.k8s.io/v2")),
            errors.WrongKind,
            422,
            "apiVersion 'audit.k8s.io/v2'",
            id="unknown-audit-version",
        ),
        pytest.param(
            encode(without(event_list([]), "apiVersion")),
            errors.WrongKind,
            422,
            "apiVersion None",
            id="missing-api-version",
        ),
        pytest.param(
            encode(without(audit_event(), "apiVersion")),
            errors.WrongKind,
            422,
            "apiVersion None",
            id="lone-event-without-api-version",
        ),
        pytest.param(
            encode({**event_list([]), "items": {}}),
            errors.WrongKind,
            422,
            r"^items: Expected array \| null, got object",
            id="items-object",
        ),
        pytest.param(
            encode({**event_list([]), "items": "x"}),
            errors.WrongKind,
            422,
            r"^items: Expected array \| null, got str",
            id="items-string",
        ),
        pytest.param(
            encode(event_list([audit_event(), 3])),
            errors.WrongKind,
            422,
            r"^items\[1\]: Expected object, got int",
            id="item-number",
        ),
        pytest.param(
            encode(event_list([None])),
            errors.WrongKind,
            422,
            r"^items\[0\]: Expected object, got null",
            id="item-null",
        ),
        pytest.param(
            encode(event_list([[audit_event()]])),
            errors.WrongKind,
            422,
            r"^items\[0\]: Expected object, got array",
            id="item-array",
        ),
        pytest.param(
            _item_without("auditID"),
            errors.WrongKind,
            422,
            r"^items\[1\]: Object missing required field auditID",
            id="no-id",
        ),
        pytest.param(
            _item_without("stage"),
            errors.WrongKind,
            422,
            r"^items\[1\]: Object missing required field stage",
            id="no-stage",
        ),
        pytest.param(
            _item_without("verb"),
            errors.WrongKind,
            422,
            r"^items\[1\]: Object missing required field verb",
            id="no-verb",
        ),
        pytest.param(
            _item_with(auditID=""), errors.WrongKind, 422, r"^items\[1\] has no auditID", id="empty-id"
        ),
        pytest.param(_item_with(verb=""), errors.WrongKind, 422, r"^items\[1\] has no verb", id="empty-verb"),
        pytest.param(
            encode(event_list([{**audit_event(), "auditID": 7}])),
            errors.WrongKind,
            422,
            r"^items\[0\]\.auditID: Expected str, got int",
            id="numeric-audit-id",
        ),
        pytest.param(
            encode(event_list([{**audit_event(), "kind": "Pod"}])),
            errors.WrongKind,
            422,
            r"items\[0\] has kind 'Pod'",
            id="item-kind-pod",
        ),
        pytest.param(
            encode(event_list([{**audit_event(), "apiVersion": "v1"}])),
            errors.WrongKind,
            422,
            r"items\[0\] has apiVersion 'v1'",
            id="item-wrong-api-version",
        ),
        pytest.param(
            encode(without(audit_event(), "verb")),
            errors.WrongKind,
            422,
            "^body: Object missing required field verb",
            id="lone-no-verb",
        ),
    ],
)
def test_rejected_bodies(body: bytes, error: type[errors.InputError], status: int, message: str) -> None:
    with pytest.raises(errors.InputError, match=message) as caught:
        decode_batch(body)
    assert type(caught.value) is error
    assert caught.value.status == status


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(_item_with(user="alice"), r"items[1].user: Expected object | null, got str", id="user"),
        pytest.param(
            _item_with(impersonatedUser=["bob"]),
            "items[1].impersonatedUser: Expected object | null, got array",
            id="impersonated-user",
        ),
        pytest.param(
            _item_with(userAgent=["x"]), "items[1].userAgent: Expected str, got array", id="user-agent"
        ),
        pytest.param(
            _item_with(sourceIPs="10.0.0.1"), "items[1].sourceIPs: Expected array, got str", id="ips"
        ),
        pytest.param(_item_with(stage=3), "items[1].stage: Expected str, got int", id="stage"),
        pytest.param(
            _item_with(objectRef="pods"), "items[1].objectRef: Expected object | null, got str", id="ref"
        ),
        pytest.param(
            _ref_with(name=None), "items[1].objectRef.name: Expected str, got null", id="ref-name-null"
        ),
        pytest.param(
            _ref_with(namespace=["a"]),
            "items[1].objectRef.namespace: Expected str, got array",
            id="ref-namespace",
        ),
        pytest.param(
            _item_with(responseStatus={"code": "500"}),
            "items[1].responseStatus.code: Expected int | null, got str",
            id="status-code",
        ),
        pytest.param(
            _item_with(stageTimestamp=1714557600),
            "items[1].stageTimestamp: Expected str, got int",
            id="timestamp",
        ),
        pytest.param(
            _item_with(user={"username": "alice", "groups": "admins"}),
            "items[1].user.groups: Expected array, got str",
            id="groups",
        ),
    ],
)
def test_a_field_of_the_wrong_json_type_refuses_the_body_with_its_path(body: bytes, message: str) -> None:
    # Refused at the edge, before acknowledgement, instead of being stored and failing later.
    with pytest.raises(errors.WrongKind) as caught:
        decode_batch(body)
    assert str(caught.value) == message
    assert caught.value.status == 422


def test_one_bad_item_refuses_the_whole_body() -> None:
    # Nothing is half-ingested: the good items before the bad one are not returned either.
    body = encode(event_list([audit_event(), audit_event(), {"kind": "Event"}]))
    with pytest.raises(errors.WrongKind, match=r"items\[2\]"):
        decode_batch(body)


# ---------------------------------------------------------------------------------------------
# decode_line (one line of a log file)


def test_bare_event_without_api_version_or_kind_is_accepted() -> None:
    # The log backend of older apiservers wrote events with neither field (see the falco fixtures).
    raw = without(audit_event(), "apiVersion", "kind")
    assert mismatches(decode_line(encode(raw), "audit.log:1"), [raw]) == []


@pytest.mark.parametrize(
    "api_version",
    [pytest.param("audit.k8s.io/v1", id="v1"), pytest.param("audit.k8s.io/v1beta1", id="v1beta1")],
)
def test_bare_versioned_event_is_accepted(api_version: str) -> None:
    raw = audit_event(api_version=api_version)
    assert mismatches(decode_line(encode(raw), "audit.log:1"), [raw]) == []


def test_event_list_line_is_expanded() -> None:
    items = [audit_event(audit_id="x1"), without(audit_event(audit_id="x2"), "kind", "apiVersion")]
    assert mismatches(decode_line(encode(event_list(items)), "audit.log:4"), items) == []
    assert decode_line(encode({**event_list([]), "items": None}), "audit.log:5") == []


def test_an_event_whose_body_names_an_event_list_is_one_event() -> None:
    # The line is an Event even though "EventList" occurs in it (inside a body).
    raw = audit_event(audit_id="mentions", request_object={"kind": "EventList", "items": []})
    assert [event.auditID for event in decode_line(encode(raw), "audit.log:2")] == ["mentions"]


@pytest.mark.parametrize(
    ("line", "error", "message"),
    [
        pytest.param(
            encode({"kind": "Pod", "apiVersion": "v1"}),
            errors.WrongKind,
            r"^audit\.log:7: Object missing required field auditID",
            id="pod",
        ),
        pytest.param(
            encode({**audit_event(), "kind": "Pod"}),
            errors.WrongKind,
            r"^audit\.log:7 has kind 'Pod'",
            id="kind",
        ),
        pytest.param(
            encode({**audit_event(), "apiVersion": "v1"}),
            errors.WrongKind,
            r"^audit\.log:7 has apiVersion 'v1'",
            id="version",
        ),
        pytest.param(
            encode([1, 2]), errors.WrongKind, r"^audit\.log:7: Expected object, got array", id="array"
        ),
        pytest.param(encode(None), errors.WrongKind, r"^audit\.log:7: Expected object, got null", id="null"),
        pytest.param(
            encode(without(audit_event(), "stage")),
            errors.WrongKind,
            r"^audit\.log:7: Object missing required field stage",
            id="no-stage",
        ),
        pytest.param(
            encode({**event_list([]), "items": "x"}),
            errors.WrongKind,
            r"^audit\.log:7 items: Expected array \| null, got str",
            id="items",
        ),
        pytest.param(
            encode(event_list([audit_event(), 5])),
            errors.WrongKind,
            r"^audit\.log:7 items\[1\]: Expected object, got int",
            id="bad-item",
        ),
        pytest.param(
            encode({**audit_event(), "user": "alice"}),
            errors.WrongKind,
            r"^audit\.log:7 user: Expected object \| null, got str",
            id="ill-typed-field",
        ),
        pytest.param(b"{broken", errors.MalformedBody, r"^audit\.log:7 is not valid JSON", id="not-json"),
    ],
)
def test_bad_lines_name_their_place(line: bytes, error: type[errors.InputError], message: str) -> None:
    with pytest.raises(errors.InputError, match=message) as caught:
        decode_line(line, "audit.log:7")
    assert type(caught.value) is error


# ---------------------------------------------------------------------------------------------
# from_mapping (an event given as Python values)


def test_from_mapping_checks_an_event_into_its_wire_form() -> None:
    raw = audit_event(audit_id="m1", verb="update", code=200)
    event = from_mapping(raw)
    assert mismatches([event], [raw]) == []
    assert event.response() == raw["responseObject"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param(without(audit_event(), "auditID"), "missing required field auditID", id="no-id"),
        pytest.param(
            {**audit_event(), "user": "alice"}, r"user: Expected object \| null, got str", id="user"
        ),
        pytest.param({**audit_event(), "kind": "Pod"}, "event has kind 'Pod'", id="kind"),
        pytest.param({**audit_event(), "verb": ""}, "event has no verb", id="empty-verb"),
    ],
)
def test_from_mapping_refuses_what_the_wire_form_would(document: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.WrongKind, match=message):
        from_mapping(document)


# ---------------------------------------------------------------------------------------------
# AuditConverter: stage and verb rules, counters


@pytest.mark.parametrize(
    ("stage", "outcome"),
    [
        pytest.param("RequestReceived", "dropped_stage", id="request-received"),
        pytest.param("ResponseStarted", "dropped_stage", id="response-started"),
        pytest.param("ResponseComplete", "kept", id="response-complete"),
        pytest.param("Panic", "kept", id="panic"),
    ],
)
def test_stage_rule(stage: str, outcome: str) -> None:
    converter = AuditConverter(KindResolver())
    event = convert(audit_event(stage=stage, verb="update", code=200), converter)
    assert (event is not None) == (outcome == "kept")
    assert converter.stats.counts == {outcome: 1}
    if event is not None:
        assert event.error == (stage == "Panic")


def test_panic_is_kept_as_an_error() -> None:
    event = kept(audit_event(verb="update", stage="Panic", code=500))
    assert event.error
    assert event.logs == (Log("error", "Panic: the apiserver panicked while serving this request"),)
    assert event.body is None


@pytest.mark.parametrize(
    ("verb", "outcome"),
    [
        *(pytest.param(verb, "dropped_read", id=verb) for verb in ("get", "list", "watch")),
        *(pytest.param(verb, "kept", id=verb) for verb in MUTATING),
    ],
)
def test_verb_rule(verb: str, outcome: str) -> None:
    converter = AuditConverter(KindResolver())
    event = convert(audit_event(verb=verb, code=200), converter)
    assert converter.stats.counts == {outcome: 1}
    if outcome == "kept":
        assert event is not None and event.tags["audit.verb"] == verb and event.title == f"admin {verb}"
    else:
        assert event is None


def test_stage_is_judged_before_verb() -> None:
    converter = AuditConverter(KindResolver())
    assert convert(audit_event(stage="RequestReceived", verb="get"), converter) is None
    assert converter.stats.counts == {"dropped_stage": 1}


def test_every_outcome_is_counted() -> None:
    converter = AuditConverter(
        KindResolver(),
        AuditFilter.from_strings(["events", "coordination.k8s.io/leases"], ["leader-election"]),
    )
    raws = [
        audit_event(audit_id="k1"),
        audit_event(audit_id="k2", verb="patch", code=200),
        audit_event(stage="RequestReceived"),
        audit_event(stage="ResponseStarted"),
        audit_event(verb="get", code=200),
        audit_event(verb="watch", code=200),
        audit_event(verb="list", code=200),
        without(audit_event(), "objectRef"),
        audit_event(resource="events", name="e1"),
        audit_event(resource="leases", group="coordination.k8s.io", verb="update", code=200),
        audit_event(userAgent="kube-controller-manager/v1.33.0/leader-election"),
        audit_event(name="", with_bodies=False),
        without(audit_event(), "requestReceivedTimestamp", "stageTimestamp"),
    ]
    events = convert_all(converter, [from_mapping(raw) for raw in raws])
    assert [e.event_id for e in events] == ["k1", "k2"]
    assert converter.stats.counts == Counter(
        kept=2,
        dropped_stage=2,
        dropped_read=3,
        dropped_no_object=1,
        dropped_excluded_resource=2,
        dropped_excluded_user_agent=1,
        dropped_no_name=1,
        dropped_no_time=1,
    )


def test_stats_accumulate_across_calls() -> None:
    converter = AuditConverter(KindResolver())
    for _ in range(3):
        convert(audit_event(verb="get"), converter)
    converter.stats.add("kept", 2)
    assert converter.stats.counts == {"dropped_read": 3, "kept": 2}


@pytest.mark.parametrize(
    "object_ref",
    [
        pytest.param(None, id="null"),
        pytest.param({}, id="empty"),
        pytest.param({"resource": "", "name": "x"}, id="empty-resource"),
        pytest.param({"namespace": "default", "name": "x"}, id="no-resource"),
    ],
)
def test_requests_without_an_object_are_dropped(object_ref: dict[str, Any] | None) -> None:
    converter = AuditConverter(KindResolver())
    assert convert({**audit_event(), "objectRef": object_ref}, converter) is None
    assert convert(without(audit_event(), "objectRef"), converter) is None
    assert converter.stats.counts == {"dropped_no_object": 2}


@pytest.mark.parametrize(
    "timestamps",
    [
        pytest.param({}, id="none"),
        pytest.param({"requestReceivedTimestamp": "yesterday"}, id="unparsable-received"),
        pytest.param(
            {"requestReceivedTimestamp": "2024-05-01T10:00:00Z", "stageTimestamp": "soon"},
            id="unparsable-stage",
        ),
    ],
)
def test_requests_without_a_usable_time_are_dropped(timestamps: dict[str, str]) -> None:
    converter = AuditConverter(KindResolver())
    raw = {**without(audit_event(), "requestReceivedTimestamp", "stageTimestamp"), **timestamps}
    assert convert(raw, converter) is None
    assert converter.stats.counts == {"dropped_no_time": 1}


# ---------------------------------------------------------------------------------------------
# AuditFilter


def test_filter_from_strings_parses_resources_and_user_agents() -> None:
    parsed = AuditFilter.from_strings(
        [" events ", "coordination.k8s.io/leases", "", "apps/"], ["", "kube-scheduler"]
    )
    assert parsed.excluded_resources == {("", "events"), ("coordination.k8s.io", "leases")}
    assert parsed.excluded_user_agents == ("kube-scheduler",)


@pytest.mark.parametrize(
    ("resource", "group", "excluded"),
    [
        pytest.param("events", "", True, id="core-events"),
        pytest.param("leases", "coordination.k8s.io", True, id="leases"),
        pytest.param("events", "events.k8s.io", False, id="events-k8s-io-is-another-group"),
        pytest.param("leases", "example.com", False, id="leases-of-another-group"),
        pytest.param("pods", "", False, id="pods"),
        pytest.param("configmaps", "", False, id="configmaps"),
    ],
)
def test_excluded_resources(resource: str, group: str, excluded: bool) -> None:
    converter = AuditConverter(
        KindResolver(), AuditFilter.from_strings(["events", "coordination.k8s.io/leases"], [])
    )
    event = convert(audit_event(verb="update", code=200, resource=resource, group=group), converter)
    assert (event is None) == excluded
    assert converter.stats.counts == {"dropped_excluded_resource" if excluded else "kept": 1}


def test_excluded_resources_match_the_canonical_group() -> None:
    # A Deployment written through extensions/v1beta1 is the same object as through apps/v1.
    converter = AuditConverter(KindResolver(), AuditFilter.from_strings(["apps/deployments"], []))
    raw = audit_event(verb="update", code=200, resource="deployments", group="extensions", name="d")
    assert convert(raw, converter) is None
    assert converter.stats.counts == {"dropped_excluded_resource": 1}


@pytest.mark.parametrize(
    ("user_agent", "excluded"),
    [
        pytest.param("kube-scheduler/v1.33.0 (linux/amd64) kubernetes/abc/leader-election", True, id="match"),
        pytest.param("kubelet/v1.33.0 (linux/amd64)", True, id="second-pattern"),
        pytest.param("kubectl/v1.33.0 (linux/amd64)", False, id="other"),
        pytest.param("", False, id="empty"),
    ],
)
def test_excluded_user_agents(user_agent: str, excluded: bool) -> None:
    converter = AuditConverter(KindResolver(), AuditFilter.from_strings([], ["/leader-election", "kubelet/"]))
    raw = audit_event(verb="update", code=200, userAgent=user_agent)
    assert (convert(raw, converter) is None) == excluded
    assert converter.stats.counts == {"dropped_excluded_user_agent" if excluded else "kept": 1}


def test_event_without_user_agent_is_not_excluded() -> None:
    converter = AuditConverter(KindResolver(), AuditFilter.from_strings([], ["kubelet"]))
    event = kept(without(audit_event(verb="update", code=200), "userAgent"), converter)
    assert "audit.user_agent" not in event.tags


# ---------------------------------------------------------------------------------------------
# Names, namespaces, uids, kinds, versions


def test_create_takes_the_name_only_the_response_has() -> None:
    raw = audit_event(
        name="web-x7k2p",
        request_object={"kind": "Pod", "apiVersion": "v1", "metadata": {"generateName": "web-"}},
    )
    assert "name" not in raw["objectRef"]
    event = kept(raw)
    assert event.object.key == ObjectKey("c", "", "pods", "default", "web-x7k2p")


def test_create_takes_the_name_only_the_request_has() -> None:
    # At level Request there is no responseObject.
    raw = without(audit_event(name="cm-1", resource="configmaps", kind="ConfigMap", uid=""), "responseObject")
    event = kept(raw)
    assert event.object.key.name == "cm-1"
    assert event.body is None


def test_failed_generate_name_create_is_named_by_its_prefix() -> None:
    raw = audit_event(
        name="",
        code=409,
        request_object={"kind": "Pod", "apiVersion": "v1", "metadata": {"generateName": "web-"}},
    )
    raw["responseStatus"] = {"code": 409, "reason": "AlreadyExists", "message": 'pods "web-x" already exists'}
    event = kept(raw)
    assert event.object.key.name == "web-"
    assert event.error
    assert event.title == "admin create (Conflict)"
    assert event.logs == (Log("error", 'AlreadyExists: pods "web-x" already exists'),)


def test_create_without_any_name_is_dropped() -> None:
    converter = AuditConverter(KindResolver())
    raw = audit_event(name="", request_object={"kind": "Pod", "apiVersion": "v1", "metadata": {}}, code=422)
    assert convert(raw, converter) is None
    assert converter.stats.counts == {"dropped_no_name": 1}


def test_the_object_ref_name_wins_for_other_verbs() -> None:
    event = kept(audit_event(verb="update", code=200, name="web-0"))
    assert event.object.key.name == "web-0"


def test_namespace_comes_from_the_object_ref() -> None:
    event = kept(audit_event(namespace="team-a", name="p"))
    assert event.object.key == ObjectKey("c", "", "pods", "team-a", "p")


def test_namespace_falls_back_to_the_response() -> None:
    raw = audit_event(name="p")
    raw["responseObject"]["metadata"]["namespace"] = "team-b"
    del raw["objectRef"]["namespace"]
    assert kept(raw).object.key.namespace == "team-b"


def test_cluster_scoped_objects_have_no_namespace() -> None:
    raw = audit_event(resource="namespaces", kind="Namespace", namespace="", name="team-c", uid="ns-1")
    event = kept(raw)
    assert event.object == ObjectRef(
        ObjectKey("c", "", "namespaces", "", "team-c"), "ns-1", "Namespace", "v1"
    )


def test_a_cluster_scoped_object_is_keyed_without_the_namespace_its_ref_names() -> None:
    # DELETE /api/v1/namespaces/team-c logs objectRef.namespace "team-c"; the Namespace itself and a
    # custom cluster-scoped resource known from discovery are keyed in no namespace.
    deleted = audit_event(verb="delete", code=200, resource="namespaces", namespace="team-c", name="team-c")
    assert kept(deleted).object.key == ObjectKey("c", "", "namespaces", "", "team-c")
    resolver = KindResolver({("example.com", "Gadget"): ResourceInfo("gadgetries", False)})
    gadget = audit_event(verb="update", code=200, resource="gadgetries", group="example.com", name="g")
    assert kept(gadget, AuditConverter(resolver)).object.key.namespace == ""


def test_uid_comes_from_the_body_before_the_object_ref() -> None:
    raw = audit_event(verb="update", code=200, uid="from-body")
    raw["objectRef"]["uid"] = "from-ref"
    assert kept(raw).object.uid == "from-body"


def test_uid_comes_from_the_object_ref_without_a_body() -> None:
    raw = audit_event(verb="update", code=200, with_bodies=False)
    raw["objectRef"]["uid"] = "from-ref"
    assert kept(raw).object.uid == "from-ref"


def test_delete_takes_uid_and_resource_version_from_its_status_body() -> None:
    raw = audit_event(verb="delete", code=200, name="web-0", with_bodies=False)
    raw["responseObject"] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "777"},
        "status": "Success",
        "details": {"name": "web-0", "kind": "pods", "uid": "uid-gone"},
    }
    event = kept(raw)
    assert event.object.uid == "uid-gone"
    assert event.object.kind == "Pod"  # the Status is not the object: the kind is looked up
    assert event.tags["resource_version"] == "777"
    assert event.body is None


def test_kind_and_version_come_from_the_body() -> None:
    raw = audit_event(resource="widgets", group="example.com", kind="Widget", name="w", uid="w1")
    for side in ("requestObject", "responseObject"):
        raw[side]["apiVersion"] = "example.com/v1alpha2"
    event = kept(raw)
    assert event.object == ObjectRef(
        ObjectKey("c", "example.com", "widgets", "default", "w"), "w1", "Widget", "v1alpha2"
    )


def test_kind_is_looked_up_and_version_taken_from_the_ref_without_a_body() -> None:
    raw = audit_event(
        verb="patch", code=200, resource="deployments", group="apps", name="d", with_bodies=False
    )
    raw["objectRef"]["apiVersion"] = "v1beta2"
    event = kept(raw)
    assert (event.object.kind, event.object.version) == ("Deployment", "v1beta2")


def test_unknown_resource_without_a_body_has_no_kind() -> None:
    raw = audit_event(verb="patch", code=200, resource="widgets", group="example.com", with_bodies=False)
    assert kept(raw).object.kind == ""


def test_patch_ignores_its_request_body() -> None:
    # A patch request body is a patch document, not the object.
    raw = audit_event(verb="patch", code=200, with_bodies=False)
    raw["requestObject"] = {"metadata": {"labels": {"a": "b"}}}
    event = kept(raw)
    assert (event.object.uid, event.object.kind) == ("", "Pod")


def test_binding_subresource_keeps_the_pods_kind() -> None:
    # The scheduler binds a Pod by creating pods/binding with a Binding body; the object is the Pod.
    raw = audit_event(
        name="web-0",
        subresource="binding",
        user="system:kube-scheduler",
        request_object={
            "kind": "Binding",
            "apiVersion": "v1",
            "metadata": {"name": "web-0", "namespace": "default", "uid": "uid-web-0"},
            "target": {"kind": "Node", "name": "node-1"},
        },
        response_object={
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 201,
        },
    )
    raw["objectRef"]["name"] = "web-0"
    event = kept(raw)
    assert event.object.key == ObjectKey("c", "", "pods", "default", "web-0")
    assert event.title == "system:kube-scheduler create binding"
    assert event.object.kind == "Pod"


def test_scale_update_is_a_change_of_the_deployment() -> None:
    # The HPA controller updates deployments/scale with a Scale body; the response Scale carries
    # the Deployment's new resourceVersion.
    def scale(resource_version: str) -> dict[str, Any]:
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "uid": "u-d",
                "resourceVersion": resource_version,
            },
            "spec": {"replicas": 3},
        }

    raw = audit_event(
        verb="update",
        code=200,
        resource="deployments",
        group="apps",
        name="web",
        subresource="scale",
        request_object=scale("5"),
        response_object=scale("6"),
    )
    event = kept(raw)
    assert event.title == "admin update scale"
    assert event.tags["audit.subresource"] == "scale"
    assert event.body is None
    assert event.object.kind == "Deployment"
    assert event.tags["resource_version"] == "6"


def test_a_response_of_another_subresource_is_never_taken_for_the_object() -> None:
    # serviceaccounts/token answers with a TokenRequest: not the ServiceAccount, and not its version.
    token = {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": "builder", "namespace": "default", "resourceVersion": "900"},
        "status": {"token": "eyJ...", "expirationTimestamp": "2024-05-01T11:00:00Z"},
    }
    raw = audit_event(
        resource="serviceaccounts",
        kind="ServiceAccount",
        name="builder",
        subresource="token",
        request_object={**token, "status": {}},
        response_object=token,
    )
    raw["objectRef"]["name"] = "builder"
    event = kept(raw)
    assert event.object.kind == "ServiceAccount" and event.object.version == "v1"
    assert event.body is None
    assert event.write is not None and event.write.subresource == "token"


def test_the_resource_version_is_the_responses_not_the_one_an_update_was_based_on() -> None:
    based_on = audit_event(verb="update", code=200, with_bodies=False)
    based_on["objectRef"]["resourceVersion"] = "41"
    event = kept(based_on)
    assert "resource_version" not in event.tags
    assert event.write is not None
    assert (event.write.resource_version, event.write.precondition) == ("", "41")
    answered = audit_event(verb="update", code=200)
    answered["objectRef"]["resourceVersion"] = "41"
    answered["responseObject"]["metadata"]["resourceVersion"] = "42"
    event = kept(answered)
    assert event.tags["resource_version"] == "42"
    assert event.write is not None
    assert (event.write.verb, event.write.resource_version, event.write.precondition) == (
        "update",
        "42",
        "41",
    )


def _odd_metadata() -> dict[str, Any]:
    return {"name": ["web-0"], "namespace": 5, "uid": {"v": 1}, "resourceVersion": 101}


def test_body_metadata_of_the_wrong_type_is_treated_as_absent() -> None:
    # Bodies are not checked at the edge; the envelope's objectRef names the object instead.
    raw = audit_event(verb="update", code=200, namespace="team-a", name="web-0")
    raw["objectRef"]["uid"] = "from-ref"
    raw["responseObject"]["metadata"] = _odd_metadata()
    event = kept(raw)
    assert event.object.key == ObjectKey("c", "", "pods", "team-a", "web-0")
    assert event.object.uid == "from-ref"
    assert "resource_version" not in event.tags
    assert event.write is not None and event.write.resource_version == ""


def test_a_create_whose_response_name_is_not_text_is_named_by_its_request() -> None:
    raw = audit_event(name="web-7", uid="uid-web-7")
    raw["responseObject"]["metadata"] = _odd_metadata()
    event = kept(raw)
    assert event.object.key.name == "web-7"


def test_a_response_body_json_cannot_hold_as_python_values_is_treated_as_absent() -> None:
    # A 5,000-digit number is valid JSON but no float; the event keeps its other facts.
    raw = audit_event(verb="update", code=200, name="web-0", uid="uid-web-0")
    document = json.dumps(raw).replace(
        '"resourceVersion": "100"}}}', '"resourceVersion": "100"}, "n": ' + "7" * 5000 + "}}"
    )
    (event,) = decode_line(document.encode(), "audit.log:1")
    assert event.response() is None
    converted = AuditConverter(KindResolver()).convert(event, "c")
    assert converted is not None
    assert converted.object.key == ObjectKey("c", "", "pods", "default", "web-0")
    assert converted.object.uid == "uid-web-0"  # from the request, read when the response is unusable
    assert converted.body is None and not converted.error


# ---------------------------------------------------------------------------------------------
# Titles, tags, failures, users


def test_tags_of_a_plain_create() -> None:
    event = kept(audit_event(audit_id="id-1", name="web-0"))
    assert event.source is TraceSource.AUDIT
    assert event.event_id == "id-1"
    assert event.title == "admin create"
    assert event.tags == {
        "audit.id": "id-1",
        "audit.verb": "create",
        "audit.user": "admin",
        "audit.user_agent": "kubectl/v1.33.0",
        "audit.code": 201,
        "resource_version": "100",
        "audit.source_ip": "10.0.0.1",
    }
    assert not event.error and event.logs == ()
    assert event.body is not None and event.body["metadata"]["name"] == "web-0"


@pytest.mark.parametrize(
    ("code", "title"),
    [
        pytest.param(200, "admin update status", id="200"),
        pytest.param(201, "admin update status", id="201"),
        pytest.param(409, "admin update status (Conflict)", id="409"),
        pytest.param(500, "admin update status (Internal Server Error)", id="500"),
        pytest.param(599, "admin update status (599)", id="unknown-code"),
    ],
)
def test_subresource_title_and_tag(code: int, title: str) -> None:
    event = kept(audit_event(verb="update", subresource="status", code=code))
    assert event.title == title
    assert event.tags["audit.subresource"] == "status"
    assert event.tags["audit.code"] == code


def test_no_subresource_tag_without_subresource() -> None:
    assert "audit.subresource" not in kept(audit_event(verb="update", code=200)).tags


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        pytest.param(409, "Conflict", id="409"),
        pytest.param(422, "Invalid", id="422"),
        pytest.param(500, "InternalError", id="500"),
    ],
)
def test_failed_request_is_kept_as_an_error(code: int, reason: str) -> None:
    converter = AuditConverter(KindResolver())
    raw = audit_event(verb="update", code=code, name="web-0")
    raw["responseStatus"] = {
        "metadata": {},
        "status": "Failure",
        "reason": reason,
        "message": f'pods "web-0" failed with {code}',
        "code": code,
    }
    event = kept(raw, converter)
    assert converter.stats.counts == {"kept": 1}
    assert event.error
    assert event.title == f"admin update ({http.HTTPStatus(code).phrase})"
    assert event.logs == (Log("error", f'{reason}: pods "web-0" failed with {code}'),)
    assert event.tags["audit.code"] == code
    assert event.body is None


def test_failure_reason_and_message_from_the_status_body() -> None:
    raw = audit_event(verb="update", code=422, name="web-0")
    raw["responseObject"] = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "Invalid",
        "message": "spec.containers: Required value",
        "code": 422,
    }
    assert kept(raw).logs == (Log("error", "Invalid: spec.containers: Required value"),)


def test_failure_without_reason_uses_the_status_text() -> None:
    event = kept(audit_event(verb="update", code=503, name="web-0"))
    assert event.logs == (Log("error", "Service Unavailable"),)


def test_redirect_is_titled_but_not_an_error() -> None:
    event = kept(audit_event(verb="update", code=304, name="web-0"))
    assert event.title == "admin update (Not Modified)"
    assert not event.error and event.logs == ()


def test_impersonated_user_becomes_the_user() -> None:
    raw = audit_event(verb="update", code=200, user="system:admin", impersonatedUser={"username": "bob"})
    event = kept(raw)
    assert event.title == "bob update"
    assert event.tags["audit.user"] == "bob"
    assert event.tags["audit.impersonator"] == "system:admin"


def test_no_impersonator_without_impersonation() -> None:
    event = kept(audit_event(verb="update", code=200, user="alice"))
    assert event.tags["audit.user"] == "alice"
    assert "audit.impersonator" not in event.tags


def test_missing_user_is_unknown() -> None:
    event = kept(without(audit_event(verb="update", code=200), "user"))
    assert event.title == "unknown update" and event.tags["audit.user"] == "unknown"


# ---------------------------------------------------------------------------------------------
# Timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2024-05-01T10:00:00Z", us(2024, 5, 1, 10, 0, 0), id="seconds"),
        pytest.param("2024-05-01T10:00:00.123456Z", us(2024, 5, 1, 10, 0, 0, 123456), id="micro"),
        pytest.param("2024-05-01T10:00:00.5Z", us(2024, 5, 1, 10, 0, 0, 500000), id="tenths"),
        pytest.param("2024-05-01T12:00:00.000001+02:00", us(2024, 5, 1, 10, 0, 0, 1), id="offset"),
        pytest.param("2024-05-01T10:00:00.000002", us(2024, 5, 1, 10, 0, 0, 2), id="naive-is-utc"),
        pytest.param("1970-01-01T00:00:00Z", 0, id="epoch"),
        pytest.param("1969-12-31T23:59:59.999999Z", -1, id="before-epoch"),
    ],
)
def test_parse_time_us_is_exact(text: str, expected: int) -> None:
    assert parse_time_us(text) == expected


def test_event_times_are_exact_microseconds() -> None:
    raw = audit_event(received="2024-05-01T10:00:00.123456Z", completed="2024-05-01T10:00:01.000001Z")
    event = kept(raw)
    assert event.start_us == 1_714_557_600_123_456
    assert event.end_us == 1_714_557_601_000_001


def test_legacy_timestamp_stands_in_for_received() -> None:
    raw = without(audit_event(), "requestReceivedTimestamp", "stageTimestamp")
    raw["timestamp"] = "2017-09-11T19:55:05Z"
    event = kept(raw)
    assert event.start_us == event.end_us == us(2017, 9, 11, 19, 55, 5)


def test_stage_timestamp_alone_is_start_and_end() -> None:
    raw = without(audit_event(completed="2024-05-01T10:00:00.5Z"), "requestReceivedTimestamp")
    event = kept(raw)
    assert event.start_us == event.end_us == us(2024, 5, 1, 10, 0, 0, 500000)


def test_end_never_precedes_start() -> None:
    raw = audit_event(received="2024-05-01T10:00:01Z", completed="2024-05-01T10:00:00Z")
    event = kept(raw)
    assert event.end_us == event.start_us == us(2024, 5, 1, 10, 0, 1)


# ---------------------------------------------------------------------------------------------
# Owner links


def test_create_links_its_controller_owner() -> None:
    raw = audit_event(
        name="web-abc", uid="p1", owner=owner_ref("ReplicaSet", "web", uid="r1"), user=RS_CONTROLLER
    )
    event = kept(raw)
    assert event.owner is not None
    assert event.owner.child == event.object
    assert event.owner.owner == ObjectRef(
        ObjectKey("c", "apps", "replicasets", "default", "web"), "r1", "ReplicaSet", "v1"
    )


def test_controller_owner_is_chosen_over_a_non_controller_one() -> None:
    refs = [owner_ref("ConfigMap", "cm", api_version="v1", controller=False), owner_ref("ReplicaSet", "rs")]
    event = kept(with_owners(audit_event(), refs))
    assert event.owner is not None and event.owner.owner.key == ObjectKey(
        "c", "apps", "replicasets", "default", "rs"
    )


def test_first_owner_is_used_when_none_is_controller() -> None:
    refs = [owner_ref("ReplicaSet", "a", controller=False), owner_ref("ReplicaSet", "b", controller=False)]
    event = kept(with_owners(audit_event(), refs))
    assert event.owner is not None and event.owner.owner.key.name == "a"


def test_cluster_scoped_owner_has_no_namespace() -> None:
    # Mirror pods are owned by their Node.
    event = kept(audit_event(owner=owner_ref("Node", "node-1", api_version="v1")))
    assert event.owner is not None
    assert event.owner.owner.key == ObjectKey("c", "", "nodes", "", "node-1")
    assert event.owner.owner.kind == "Node"


def test_legacy_extensions_object_is_keyed_under_apps() -> None:
    raw = audit_event(resource="deployments", group="extensions", name="d", kind="Deployment")
    for side in ("requestObject", "responseObject"):
        raw[side]["apiVersion"] = "extensions/v1beta1"
    event = kept(raw)
    assert event.object.key == ObjectKey("c", "apps", "deployments", "default", "d")
    assert (event.object.kind, event.object.version) == ("Deployment", "v1beta1")


def test_legacy_extensions_owner_is_keyed_under_apps() -> None:
    raw = audit_event(
        resource="replicasets",
        group="apps",
        name="d-1",
        owner=owner_ref("Deployment", "d", api_version="extensions/v1beta1"),
    )
    event = kept(raw)
    assert event.owner is not None
    assert event.owner.owner.key == ObjectKey("c", "apps", "deployments", "default", "d")
    assert event.owner.owner.version == "v1beta1"


def test_unknown_custom_owner_kind_falls_back_to_its_plural() -> None:
    event = kept(audit_event(owner=owner_ref("WidgetPolicy", "w", api_version="example.com/v1")))
    assert event.owner is not None
    # An owner of unknown scope is assumed to live in its dependent's namespace.
    assert event.owner.owner.key == ObjectKey("c", "example.com", "widgetpolicies", "default", "w")


def test_discovered_owner_kind_uses_the_real_plural() -> None:
    converter = AuditConverter(KindResolver({("example.com", "Gadget"): ResourceInfo("gadgetries", False)}))
    event = kept(audit_event(owner=owner_ref("Gadget", "g", api_version="example.com/v1")), converter)
    assert event.owner is not None
    assert event.owner.owner.key == ObjectKey("c", "example.com", "gadgetries", "", "g")


@pytest.mark.parametrize(
    "verb", [pytest.param("delete", id="delete"), pytest.param("deletecollection", id="dc")]
)
def test_deletes_carry_no_owner_link(verb: str) -> None:
    event = kept(audit_event(verb=verb, code=200, owner=owner_ref("ReplicaSet", "a")))
    assert event.owner is None


@pytest.mark.parametrize(
    "refs",
    [
        pytest.param({"kind": "ReplicaSet", "name": "a"}, id="not-a-list"),
        pytest.param([], id="empty"),
        pytest.param(["ReplicaSet/a"], id="not-objects"),
        pytest.param([{"apiVersion": "apps/v1", "name": "a", "controller": True}], id="no-kind"),
        pytest.param([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": True}], id="no-name"),
    ],
)
def test_unusable_owner_references_give_no_link(refs: Any) -> None:
    assert kept(with_owners(audit_event(), refs)).owner is None


def test_owner_link_of_metadata() -> None:
    resolver = KindResolver()
    child = ObjectRef(ObjectKey("c", "", "pods", "ns", "p"), "p1", "Pod", "v1")
    link = owner_link(child, {"ownerReferences": [owner_ref("StatefulSet", "db")]}, resolver)
    assert link is not None and link.child == child
    assert link.owner == ObjectRef(
        ObjectKey("c", "apps", "statefulsets", "ns", "db"), "uid-db", "StatefulSet", "v1"
    )
    assert owner_link(child, {}, resolver) is None


@pytest.mark.parametrize(
    "reference",
    [
        pytest.param({"apiVersion": "apps/v1", "kind": ["StatefulSet"], "name": "db"}, id="kind-a-list"),
        pytest.param({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": 7}, id="name-a-number"),
        pytest.param({"apiVersion": "apps/v1", "kind": "", "name": "db"}, id="empty-kind"),
        pytest.param({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": ""}, id="empty-name"),
    ],
)
def test_an_ill_typed_owner_reference_gives_no_link(reference: dict[str, Any]) -> None:
    # Bodies are not checked at the edge, so an owner reference may hold anything.
    child = ObjectRef(ObjectKey("c", "", "pods", "ns", "p"), "p1", "Pod", "v1")
    assert owner_link(child, {"ownerReferences": [{**reference, "controller": True}]}, KindResolver()) is None


def test_an_owner_uid_that_is_not_text_is_left_empty() -> None:
    child = ObjectRef(ObjectKey("c", "", "pods", "ns", "p"), "p1", "Pod", "v1")
    link = owner_link(
        child, {"ownerReferences": [{**owner_ref("StatefulSet", "db"), "uid": 5}]}, KindResolver()
    )
    assert link is not None and link.owner.uid == ""


# ---------------------------------------------------------------------------------------------
# Real recorded audit logs


def _raw_events(path: Path) -> list[AuditEvent]:
    found: list[AuditEvent] = []
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        found.extend(decode_line(line, f"{path.name}:{number}"))
    return found


def test_falco_replicaset_controller_pods_link_to_replicasets(realdata: Path) -> None:
    raws = _raw_events(realdata / FALCO)
    assert len(raws) == 83
    converter = AuditConverter(KindResolver())
    events = convert_all(converter, raws)
    assert converter.stats.counts == {"kept": 80, "dropped_stage": 2, "dropped_read": 1}
    pod_creates = [
        e for e in events if e.tags["audit.user"] == RS_CONTROLLER and e.tags["audit.verb"] == "create"
    ]
    assert len(pod_creates) == 42
    for event in pod_creates:
        assert event.object.key.resource == "pods"
        assert event.owner is not None
        owner = event.owner.owner
        assert (owner.key.group, owner.key.resource, owner.kind) == ("apps", "replicasets", "ReplicaSet")
        assert owner.key.namespace == event.object.key.namespace
        assert event.object.key.name.startswith(owner.key.name + "-")
    assert sum(e.owner is not None for e in events) == 42


def test_audit2rbac_outcomes(realdata: Path) -> None:
    raws = _raw_events(realdata / AUDIT2RBAC)
    assert len(raws) == 757
    assert {raw.apiVersion for raw in raws} == {"audit.k8s.io/v1beta1"}
    converter = AuditConverter(KindResolver())
    events = convert_all(converter, raws)
    complete = [raw for raw in raws if raw.stage == "ResponseComplete"]
    mutations = [raw for raw in complete if raw.verb in MUTATING]
    assert converter.stats.counts == {
        "dropped_stage": 320,
        "dropped_read": len(complete) - len(mutations),
        "kept": len(mutations),
    }
    assert (len(complete), len(mutations)) == (437, 222)
    assert [e.event_id for e in events] == [raw.auditID for raw in mutations]
    failed = [
        raw.auditID
        for raw in mutations
        if raw.responseStatus is not None and (raw.responseStatus.code or 0) >= 400
    ]
    assert [e.event_id for e in events if e.error] == failed
    # Level Metadata: no bodies, so times come from the legacy ``timestamp`` and kinds from the table.
    assert all(e.body is None and e.start_us > 0 for e in events)
    assert {e.object.kind for e in events} == {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"spec": {"replicas": 2}}', {"spec": {"replicas": 2}}),
        (b'{"spec": ' + b"9" * 400 + b"}", None),
        (b'{"spec": 18446744073709551616}', {"spec": 18446744073709551616.0}),  # read as a double
        (b"", None),
    ],
)
def test_a_body_that_cannot_be_written_again_is_absent(raw: bytes, expected: object) -> None:
    # Bodies are written again (diffs, stored versions): one that orjson cannot write would fail the
    # store's write for its whole batch, so it is read as absent and the event keeps its other facts.
    assert auditwire.body_of(msgspec.Raw(raw)) == expected
