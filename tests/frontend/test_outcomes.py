"""Benign outcomes (frontend.outcomes): which failed requests are routine and which are real failures,
and that every output agrees.

Rules, each with its counter-case: an update or patch answered 409 by a controller (a ``system:``
user, or another program that retried successfully) is benign, a person's 409 is not, nor a 409 on
create; a delete answered 404 after the object was already deleted (by a request or as the watch saw
it), or by a ``system:`` user, is benign, a person's delete of a name that never existed is not;
403, 422 and 500 stay failures whoever asked. On the recorded Deployment sample the controllers'
conflicts and kwok's repeated Pod deletes are benign in the tracing, tree and timeline modes, the
Jaeger JSON, the text tree and the JSON lines dump alike.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from aggregators import ids
from frontend import dump, jaegerjson, outcomes, query, text, transform
from frontend.modes import Base, DisplayMode, Scope
from frontend.types import ObjectQuery
from kelemetry.model import tags
from kelemetry.model.events import Log, TagValue, TraceSource
from kelemetry.model.objects import Incarnation, ObjectKey
from kelemetry.model.spans import SpanRecord, span_tags
from tests.frontend.conftest import SAMPLE_CLUSTER
from tests.lookups import assemble

RS_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
KEY = ObjectKey.make("c1", "", "pods", "default", "web-1-a")
_span_ids = itertools.count(1)


def request(
    verb: str,
    code: int,
    *,
    user: str = RS_CONTROLLER,
    agent: str = "kube-controller-manager/v1.31.0",
    at: int = 10,
    source: TraceSource = TraceSource.AUDIT,
    extra: dict[str, TagValue] | None = None,
) -> SpanRecord:
    failed = code >= 400
    span_tags: dict[str, TagValue] = {
        tags.TRACE_SOURCE: source.value,
        tags.AUDIT_VERB: verb,
        tags.AUDIT_USER: user,
        tags.AUDIT_USER_AGENT: agent,
        tags.AUDIT_CODE: code,
        **(extra or {}),
    }
    return SpanRecord(
        trace_id=1,
        span_id=next(_span_ids),
        parent_id=None,
        source=source,
        name=f"{user} {verb}",
        start_us=at,
        end_us=at + 5,
        key=KEY,
        object_id=ids.object_id(Incarnation(KEY, "")),
        window=0,
        uid="",
        kind="Pod",
        version="v1",
        tags=span_tags,
        logs=(Log("error", "Conflict: the object has been modified"),) if failed else (),
        error=failed,
    )


def watched_delete(at: int) -> SpanRecord:
    change = request("delete", 200, user="", agent="", at=at, source=TraceSource.CHANGE)
    return replace(change, tags={tags.TRACE_SOURCE: "change", tags.CHANGE_VERB: "delete"})


def reason_of(failed: SpanRecord, *others: SpanRecord) -> str | None:
    return outcomes.benign_reason(failed, [*others, failed])


KUBECTL = {"user": "alice", "agent": "kubectl/v1.31.0 (linux/amd64)"}


@pytest.mark.parametrize(
    ("failed", "others", "benign"),
    [
        pytest.param(request("update", 409), [], "conflict", id="service-account-update-409"),
        pytest.param(
            request("patch", 409, user="system:kube-scheduler", agent="kube-scheduler/v1.31"),
            [],
            "conflict",
            id="system-user-patch-409",
        ),
        pytest.param(
            request("update", 409, user="kubeadmiral", agent="kubeadmiral/v1.0"),
            [request("update", 200, user="kubeadmiral", agent="kubeadmiral/v1.0", at=20)],
            "conflict",
            id="program-409-retried-later",
        ),
        pytest.param(
            request("update", 409, user="kubeadmiral", agent="kubeadmiral/v1.0"),
            [request("update", 200, user="kubeadmiral", agent="kubeadmiral/v1.0", at=5)],
            None,
            id="program-409-not-retried",
        ),
        pytest.param(request("update", 409, **KUBECTL), [], None, id="persons-409"),
        pytest.param(
            request("patch", 409, **KUBECTL),
            [request("patch", 200, **KUBECTL, at=20)],
            None,
            id="persons-409-even-when-retried",
        ),
        pytest.param(request("create", 409), [], None, id="create-409-already-exists"),
        pytest.param(
            request("delete", 404, user="kwok", agent="kwok/v0.6"),
            [request("delete", 200, at=5)],
            "already deleted (by system:serviceaccount:kube-system:replicaset-controller)",
            id="repeated-delete-404",
        ),
        pytest.param(
            request("delete", 404, **KUBECTL),
            [watched_delete(at=5)],
            "already deleted (by the watch)",
            id="delete-404-after-a-watched-delete",
        ),
        pytest.param(request("delete", 404), [], "already gone", id="controllers-delete-404"),
        pytest.param(request("delete", 404, **KUBECTL), [], None, id="persons-delete-404-of-nothing"),
        pytest.param(
            request("delete", 404, **KUBECTL),
            [request("delete", 200, at=20)],
            None,
            id="delete-404-before-the-delete",
        ),
        pytest.param(request("update", 403), [], None, id="forbidden"),
        pytest.param(request("patch", 422), [], None, id="invalid"),
        pytest.param(request("update", 500), [], None, id="server-error"),
        pytest.param(request("get", 404), [], None, id="read-404"),
        pytest.param(request("update", 200), [], None, id="success-is-no-failure"),
    ],
)
def test_benign_or_a_real_failure(failed: SpanRecord, others: list[SpanRecord], benign: str | None) -> None:
    reason = reason_of(failed, *others)
    if benign is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(benign), reason


def test_a_benign_request_loses_the_error_flag_and_says_why() -> None:
    conflict = request("update", 409)
    fine = request("update", 200, at=20)
    forbidden = request("update", 403, at=30)
    marked = outcomes.classify([conflict, fine, forbidden])
    assert marked[1] is fine and marked[2] is forbidden
    benign = marked[0]
    assert (benign.span_id, benign.error) == (conflict.span_id, False)
    assert benign.tags[outcomes.OUTCOME] == "benign"
    assert str(benign.tags[outcomes.OUTCOME_REASON]).startswith("conflict: ")
    # The apiserver's answer is kept, as a response rather than an error.
    assert [(log.kind, log.message) for log in benign.logs] == [("response", conflict.logs[0].message)]
    exported = span_tags(benign)
    assert tags.ERROR not in exported and exported[outcomes.OUTCOME] == "benign"
    assert span_tags(forbidden)[tags.ERROR] is True
    # Nothing failed: the same list back.
    plain = [fine]
    assert outcomes.classify(plain) is plain


def test_a_folded_benign_request_reads_benign_not_error() -> None:
    (benign,) = outcomes.classify([request("update", 409)])
    fields = dict(transform.fold_record(benign).fields)
    assert "error" not in fields
    assert str(fields["benign"]).startswith("conflict: ")
    assert fields["response"] == "Conflict: the object has been modified"
    failed = dict(transform.fold_record(request("update", 403)).fields)
    assert "benign" not in failed and failed["error"] == "Conflict: the object has been modified"


# -- on the recorded sample, in every output


def test_the_samples_routine_failures_are_benign_everywhere(sample_store: Path) -> None:
    trace = assemble(sample_store, ObjectQuery(cluster=SAMPLE_CLUSTER, resource="deployments", name="demo"))
    stored = [node.span for node in trace.walk() if node.span.source is TraceSource.AUDIT]
    failed = [span for span in stored if span.error]
    # The recording's failures: controllers' 409s on update and kwok's repeated Pod deletes.
    assert {(span.tags[tags.AUDIT_VERB], span.tags[tags.AUDIT_CODE]) for span in failed} == {
        ("update", 409),
        ("delete", 404),
    }

    tree = transform.apply(trace, Base.TREE)
    shown = [span for span in tree.walk() if span.record is not None and span.source == "audit"]
    benign = [span for span in shown if span.tags.get(outcomes.OUTCOME) == "benign"]
    assert len(benign) == len(failed)
    assert not any(span.tags.get(tags.ERROR) for span in shown)
    timeline = transform.apply(trace, Base.TIMELINE)
    assert sum(span.tags.get(outcomes.OUTCOME) == "benign" for span in timeline.children) == len(failed)

    tracing = transform.apply(trace, Base.TRACING)
    logs = [dict(log.fields) for span in tracing.walk() for log in span.logs]
    assert sum("benign" in log for log in logs) == len(failed)
    assert not any("error" in log for log in logs)

    service = query.for_store(sample_store, keep_views=False)
    try:
        found = service.lookup_one(
            ObjectQuery(cluster=SAMPLE_CLUSTER, resource="deployments", name="demo"),
            DisplayMode(Base.TREE, Scope.FULL, 255),
        )
        view = service.view(found.view_id)
    finally:
        service.close()
    body = orjson.loads(jaegerjson.traces([view]))
    jaeger_tags = [{kv["key"]: kv["value"] for kv in span["tags"]} for span in body["data"][0]["spans"]]
    assert sum(t.get(outcomes.OUTCOME) == "benign" for t in jaeger_tags) == len(failed)
    assert not any(t.get("error") for t in jaeger_tags)
    rows = [orjson.loads(line) for line in dump.render_jsonl(view).splitlines()]
    assert sum(row["tags"].get(outcomes.OUTCOME) == "benign" for row in rows) == len(failed)
    assert not any(row["error"] for row in rows)
    drawn = text.render_tree(view)
    assert "ERROR" not in drawn and drawn.count("benign:") == len(failed)
