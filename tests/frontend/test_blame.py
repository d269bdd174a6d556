"""Field blame (frontend.blame) and both answers read back from Jaeger.

On samples/deployment: who set spec.replicas (admin's create and `kubectl scale` on the scale
subresource), the image, a prefix (spec.template), a field written through the status subresource
by a controller, the value at creation read from the stored create version. Synthetic: a name used
by two incarnations keeps two histories. The field parser's refusals. Through the Jaeger backend
(a stand-in Jaeger serving the sample as our OTLP export leaves it there): the same chain and
history, with the value at creation said to be unknown.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from frontend import blame, query
from frontend.backend import StoreBackend
from frontend.jaegerstore import JaegerBackend
from frontend.query import QueryService
from frontend.types import ObjectQuery
from frontend.views import ViewStore
from jaeger.client import JaegerClient
from kelemetry import cli, errors
from kelemetry.model.events import Log, TraceSource
from kelemetry.model.objects import ObjectKey
from kelemetry.model.spans import SpanRecord
from kelemetry.store.sqlite import SpanStore, StoreReader
from tests.factories import at, audit_event, new_pipeline
from tests.jaeger.fakejaeger import FakeJaeger, jaeger_traces, serving

CLUSTER = "tracetest"
LOOKBACK_US = 50 * 365 * 86_400 * 1_000_000
DEMO = ObjectQuery(cluster=CLUSTER, resource="deployments", namespace="default", name="demo")
IMAGE = "spec.template.spec.containers[name=nginx].image"


@pytest.fixture(scope="module")
def sample(sample_store: Path) -> Iterator[QueryService]:
    service = QueryService(StoreBackend(StoreReader(sample_store)), ViewStore(None))
    yield service
    service.close()


def history(answer: blame.Blame) -> list[tuple[str, str | None, str | None, str, str]]:
    (incarnation,) = answer.incarnations
    return [
        (
            entry.path,
            entry.old,
            entry.new,
            entry.request.user if entry.request else "?",
            entry.request.subresource if entry.request else "?",
        )
        for entry in incarnation.history
    ]


def test_spec_replicas_is_blamed_on_admins_create_and_scales(sample: QueryService) -> None:
    answer = sample.blame(DEMO, "spec.replicas")
    assert history(answer) == [
        ("spec.replicas", "null", "2", "admin", ""),
        ("spec.replicas", "2", "4", "admin", "scale"),
        ("spec.replicas", "4", "2", "admin", "scale"),
    ]
    current = answer.current
    assert current is not None and current.new == "2" and current.request is not None
    assert current.request.verb == "patch" and current.request.subresource == "scale"
    assert all(entry.proven and entry.source == "audit" for entry in answer.incarnations[0].history)
    assert answer.incarnations[0].deleted


def test_the_image_and_a_prefix_of_it(sample: QueryService) -> None:
    assert history(sample.blame(DEMO, IMAGE)) == [
        (IMAGE, "null", '"nginx:1.27"', "admin", ""),
        (IMAGE, '"nginx:1.27"', '"nginx:1.28"', "admin", ""),
    ]
    # A prefix collects what changed below it, each entry naming its exact path.
    below = history(sample.blame(DEMO, "spec.template"))
    assert below[0][0] == "spec.template" and below[0][1] == "null" and '"nginx:1.27"' in str(below[0][2])
    assert below[1:] == [(IMAGE, '"nginx:1.27"', '"nginx:1.28"', "admin", "")]


def test_a_status_field_written_through_the_status_subresource(sample: QueryService) -> None:
    answer = sample.blame(
        ObjectQuery(cluster=CLUSTER, resource="rs", name="demo-5544f8b48c"), "status.readyReplicas"
    )
    created, *rows = history(answer)
    # Its value at creation: the deployment-controller's new ReplicaSet had no status yet.
    assert created == (
        "status.readyReplicas",
        "null",
        "null",
        "system:serviceaccount:kube-system:deployment-controller",
        "",
    )
    assert rows and {row[3] for row in rows} == {"system:serviceaccount:kube-system:replicaset-controller"}
    assert {row[4] for row in rows} == {"status"}
    assert rows[-1][1:3] == ("4", "2")


def test_the_text_names_who_set_the_value_now(sample: QueryService) -> None:
    text = sample.blame(DEMO, "spec.replicas").text()
    assert text.startswith(
        "Deployment default/demo (cluster tracetest): spec.replicas\nnow: 2 — set by admin"
    )
    assert "by admin (kubectl) patch scale → 200 at 2026-11-23T07:23:31.278Z" in text


def test_the_text_names_the_path_below_a_prefix_that_holds_the_value_now(sample: QueryService) -> None:
    text = sample.blame(DEMO, "spec.template").text()
    assert text.splitlines()[1].startswith(f'now: {IMAGE} = "nginx:1.28" — set by admin at ')


def test_the_cli_json_as_the_issue_asks(sample_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["blame", "--store", str(sample_store), "--cluster", CLUSTER, "--resource", "deployments"]
    argv += ["--namespace", "default", "--name", "demo", "--field", "spec.replicas", "--format", "json"]
    assert cli.main(argv) == 0
    (answer,) = orjson.loads(capsys.readouterr().out)["data"]
    assert answer["current"]["request"]["user"] == "admin"
    assert answer["current"]["request"]["subresource"] == "scale"
    assert answer["field"] == "spec.replicas"


def test_a_bad_field_is_refused_with_where_it_goes_wrong(
    sample_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "blame",
        "--store",
        str(sample_store),
        "--resource",
        "deploy",
        "--name",
        "demo",
        "--field",
        "spec[x",
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err == "kelemetry: error: invalid field 'spec[x' at character 5: use [0], [\"key\"] or [name=value]\n"
    )


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("spec.replicas", ("spec", "replicas")),
        (IMAGE, ("spec", "template", "spec", "containers", ("name", "nginx"), "image")),
        (
            'metadata.annotations["deployment.kubernetes.io/revision"]',
            ("metadata", "annotations", "deployment.kubernetes.io/revision"),
        ),
        ("spec.ports[port=80]", ("spec", "ports", ("port", "80"))),
        ('spec.containers[name="a]b"].image', ("spec", "containers", ("name", "a]b"), "image")),
        ("spec.args[0]", ("spec", "args", 0)),
    ],
)
def test_fields_parse_as_the_diff_writes_them(text: str, segments: tuple[object, ...]) -> None:
    assert blame.parse_field(text) == segments
    assert blame.field_text(blame.parse_field(text)) == text


@pytest.mark.parametrize(
    "text", ["", "  ", "spec..replicas", ".spec", "spec[", "spec[name=x", "spec.re plicas", "spec!"]
)
def test_bad_fields_are_input_errors(text: str) -> None:
    with pytest.raises(errors.InputError):
        blame.parse_field(text)


def test_a_diff_line_whose_value_holds_the_arrow_is_split_where_the_old_value_is_whole() -> None:
    key = ObjectKey.make("c1", "", "configmaps", "default", "cm")
    span = SpanRecord(
        trace_id=1,
        span_id=2,
        parent_id=None,
        source=TraceSource.CHANGE,
        name="update (watched)",
        start_us=10,
        end_us=11,
        key=key,
        object_id=3,
        window=0,
        uid="u",
        kind="ConfigMap",
        version="v1",
        tags={"change.verb": "update"},
        logs=(Log("diff", 'data.rule "a -> b" -> "c"\ndata.other 1 -> 2'),),
    )
    (entry,) = blame.history([span], blame.parse_field("data.rule"))
    assert (entry.old, entry.new, entry.source, entry.proven, entry.request) == (
        '"a -> b"',
        '"c"',
        "change",
        False,
        None,
    )
    assert entry.note is not None and "not known" in entry.note


def test_incarnations_of_a_reused_name_are_kept_apart(tmp_path: Path) -> None:
    def deployment(
        verb: str, uid: str, replicas: int, second: int, audit_id: str, **extra: object
    ) -> dict[str, object]:
        body = {
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "uid": uid,
                "resourceVersion": str(100 + second),
            },
            "spec": {"replicas": replicas},
        }
        return audit_event(
            verb=verb,
            resource="deployments",
            group="apps",
            name="web",
            uid=uid,
            code=201 if verb == "create" else 200,
            audit_id=audit_id,
            request_object=body,
            response_object=body,
            **at(second),
            **extra,
        )

    stream = [
        deployment("create", "d-1", 1, 0, "first"),
        deployment("update", "d-1", 3, 2, "up", user="bob"),
        deployment("delete", "d-1", 3, 4, "gone"),
        deployment("create", "d-2", 5, 6, "second", user="carol"),
    ]
    path = tmp_path / "k.db"
    store = SpanStore(path)
    assert new_pipeline(store).process_audit(stream, "c1").failed == 0
    store.close()
    service = query.for_store(path, keep_views=False)
    try:
        answer = service.blame(ObjectQuery(cluster="c1", resource="deployments", name="web"), "spec.replicas")
        only_first = service.blame(
            ObjectQuery(cluster="c1", resource="deployments", name="web", uid="d-1"), "spec.replicas"
        )
    finally:
        service.close()
    newest, earlier = answer.incarnations
    assert (newest.uid, newest.deleted, earlier.uid, earlier.deleted) == ("d-2", False, "d-1", True)
    assert [(e.new, e.request.user if e.request else None) for e in newest.history] == [("5", "carol")]
    assert [(e.old, e.new, e.request.user if e.request else None) for e in earlier.history] == [
        ("null", "1", "admin"),
        ("1", "3", "bob"),
    ]
    assert answer.current is not None and answer.current.new == "5"
    assert [incarnation.uid for incarnation in only_first.incarnations] == ["d-1"]
    assert only_first.current is not None and only_first.current.new == "3"


# -- read back from Jaeger


@pytest.fixture(scope="module")
def jaeger(sample_store: Path) -> Iterator[FakeJaeger]:
    reader = StoreReader(sample_store)
    try:
        records = [record for _seq, record in reader.spans_after(0, 1_000_000)]
    finally:
        reader.close()
    with serving(FakeJaeger(traces=jaeger_traces(records))) as fake:
        yield fake


@pytest.fixture
def over_jaeger(jaeger: FakeJaeger) -> Iterator[QueryService]:
    service = QueryService(JaegerBackend(JaegerClient(jaeger.url), lookback_us=LOOKBACK_US), ViewStore(None))
    yield service
    service.close()


def test_jaeger_gives_the_same_chain_as_the_store(over_jaeger: QueryService, sample: QueryService) -> None:
    pod = ObjectQuery(cluster=CLUSTER, resource="pods", namespace="default", name="demo-5544f8b48c-bq8vc")
    for moment in (None, 1_795_418_611_600_000):
        remote = over_jaeger.explain(pod, moment).to_json()
        local = sample.explain(pod, moment).to_json()
        assert remote["chain"] == local["chain"]
        assert remote["summary"] == local["summary"] and remote["complete"]


def test_jaeger_blame_says_the_value_at_creation_is_not_known(
    over_jaeger: QueryService, sample: QueryService
) -> None:
    remote = over_jaeger.blame(DEMO, "spec.replicas")
    local = sample.blame(DEMO, "spec.replicas")
    created, *rest = remote.incarnations[0].history
    assert created.new is None and not created.proven
    assert created.note is not None and "not known" in created.note and "jaeger" in created.note.lower()
    assert created.request is not None and created.request.verb == "create"
    assert [entry.to_json() for entry in rest] == [
        entry.to_json() for entry in local.incarnations[0].history[1:]
    ]
    assert remote.current is not None and remote.current.request is not None
    assert remote.current.request.user == "admin" and remote.current.request.subresource == "scale"


def test_the_cli_reads_jaeger_with_jaeger_url(jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--jaeger-url", jaeger.url, "--lookback", "18000d", "--cluster", CLUSTER, "--resource", "deploy"]
    argv += ["--namespace", "default", "--name", "demo", "--format", "json"]
    assert cli.main(["blame", *argv, "--field", "spec.replicas"]) == 0
    (blamed,) = orjson.loads(capsys.readouterr().out)["data"]
    assert blamed["current"]["request"]["subresource"] == "scale"
    assert blamed["incarnations"][0]["history"][0]["new"] is None
    assert cli.main(["explain", *argv, "--at", "2026-11-23T07:23:32Z"]) == 0
    (explained,) = orjson.loads(capsys.readouterr().out)["data"]
    assert explained["chain"][-1]["request"]["user"] == "admin"
    assert [rollout["revision"] for rollout in explained["rollouts"]] == ["1", "2"]
