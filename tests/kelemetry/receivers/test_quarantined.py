"""Quarantined bodies (kelemetry.receivers.quarantined): written and read back per source, described
for a person, and counted by the kind of their reason.

Covers: a Kubernetes Event and a watched version read back as written; a watched body that is not
{type, target, object} refused with a reason; the object and audit ids of each source (several
events of one batch shown as the first and how many more); an unreadable body described as blank;
reason kinds.
"""

from __future__ import annotations

import json

import pytest

from kelemetry import errors
from kelemetry.receivers import quarantined
from kelemetry.receivers.auditwire import encode_batch, from_mapping
from tests.factories import audit_event, kube_event


def test_an_event_and_a_watched_version_read_back_as_written() -> None:
    event = kube_event(kind="Pod", name="web-0", reason="Scheduled")
    assert quarantined.read_event(quarantined.event_body(event)) == event

    obj = {"metadata": {"name": "app", "namespace": "default"}, "spec": {"replicas": 2}}
    body = quarantined.watch_body("MODIFIED", ("apps", "v1", "deployments"), obj)
    assert quarantined.read_watch(body) == ("MODIFIED", ("apps", "v1", "deployments"), obj)


@pytest.mark.parametrize(
    "document",
    [{"type": "ADDED", "target": ["", "v1"], "object": {}}, {"type": 1, "target": ["", "v1", "pods"]}, []],
)
def test_a_watched_body_of_another_shape_is_refused(document: object) -> None:
    with pytest.raises(errors.WrongKind, match=r"not \{type, target, object\}"):
        quarantined.read_watch(json.dumps(document).encode())


def test_each_source_is_described_by_its_object_and_audit_ids() -> None:
    batch = encode_batch(
        [
            from_mapping(
                audit_event(verb="update", name="a", audit_id="id-2", resource="deployments", group="apps")
            ),
            from_mapping(
                audit_event(verb="patch", name="a", audit_id="id-1", resource="deployments", group="apps")
            ),
        ]
    )
    assert quarantined.describe("audit", batch) == quarantined.Described(
        "id-1 (+1 more)", "deployments.apps default/a"
    )
    scale = encode_batch(
        [from_mapping(audit_event(verb="patch", name="a", audit_id="s", subresource="scale"))]
    )
    assert quarantined.describe("audit", scale).object == "pods/scale default/a"
    event = quarantined.event_body(kube_event(kind="Pod", name="web-0", reason="Scheduled"))
    assert quarantined.describe("event", event) == quarantined.Described("", "Pod/default/web-0")
    watched = quarantined.watch_body("ADDED", ("", "v1", "configmaps"), {"metadata": {"name": "cm"}})
    assert quarantined.describe("watch", watched) == quarantined.Described("", "configmaps cm")
    for source in ("audit", "event", "watch", "unknown"):
        assert quarantined.describe(source, b"\x00 not json") == quarantined.Described("", "")


def test_reasons_are_counted_by_what_they_say_before_their_details() -> None:
    assert quarantined.reason_kind("pipeline failed at diff: KeyError: 'x'") == "pipeline failed at diff"
    assert quarantined.reason_kind("store refused: CHECK constraint failed") == "store refused"
    assert quarantined.reason_kind("no details") == "no details"


def test_a_body_orjson_cannot_write_is_kept_as_it_came() -> None:
    obj = {"metadata": {"name": "big"}, "spec": {"count": 2**70 + 1}}
    body = quarantined.watch_body("ADDED", ("example.com", "v1", "things"), obj)
    assert quarantined.read_watch(body)[2] == obj

    event = audit_event(name="a", audit_id="plain")
    (kept,) = json.loads(quarantined.audit_body(event))["items"]
    assert kept == event
