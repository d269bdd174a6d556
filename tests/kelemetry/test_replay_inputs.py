"""`kelemetry replay` on the audit logs and Events people have: GKE Cloud Logging exports (YAML,
JSON lines, a JSON array), the KHI YAML audit Event, `kubectl get events -o json|yaml`, pretty and
concatenated JSON, YAML streams, stdin, directories of rotated files; the one-line summary of what
could not be read; empty inputs refused without leaving a store behind; the bounded OTLP export.

Every format is checked by the spans it makes (user, verb, object, code), not only by its exit code.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kelemetry import cli
from kelemetry.model.spans import SpanRecord
from kelemetry.store.sqlite import StoreReader
from tests.factories import audit_event

KELEMETRY = str(Path(sys.executable).with_name("kelemetry"))
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
DEPLOYMENT_AUDIT = SAMPLES / "deployment" / "audit.log"
DEPLOYMENT_EVENTS = SAMPLES / "deployment" / "events.jsonl"
KHI_ENTRIES = [f"khi_k8s_audit_container_recorder_test_1_{i}.yaml" for i in (1, 2, 3)]
KHI_EVENT = "khi_oss_test-log.yaml"
KHI_POD = "nginx-deployment-surge-8655b4b8c5-xf5f4"
KHI_NAMESPACE = "1-2-deployment-update"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def spans_of(store: Path) -> list[SpanRecord]:
    reader = StoreReader(store)
    try:
        return reader.all_spans()
    finally:
        reader.close()


def requests_of(store: Path) -> set[tuple[str, str, str, str, str, str, Any]]:
    """(user, verb, resource, namespace, name, subresource, code) of every request span."""
    return {
        (
            str(s.tags["audit.user"]),
            str(s.tags["audit.verb"]),
            s.key.resource,
            s.key.namespace,
            s.key.name,
            str(s.tags.get("audit.subresource", "")),
            str(s.tags.get("audit.code")),
        )
        for s in spans_of(store)
        if s.source.value == "audit"
    }


def event_spans_of(store: Path) -> set[tuple[str, str, str, str]]:
    """(reason, resource, name, message) of every Kubernetes Event span."""
    return {
        (str(s.tags["event.reason"]), s.key.resource, s.key.name, s.logs[0].message if s.logs else "")
        for s in spans_of(store)
        if s.source.value == "event"
    }


def khi_documents(realdata: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load((realdata / name).read_text()) for name in KHI_ENTRIES]


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


KHI_REQUESTS = {
    (
        "system:serviceaccount:kube-system:replicaset-controller",
        "create",
        "pods",
        KHI_NAMESPACE,
        KHI_POD,
        "",
        "201",
    ),
    (
        "system:node:gke-sample-cluster-default-abcdefgh-abcd",
        "patch",
        "pods",
        KHI_NAMESPACE,
        KHI_POD,
        "status",
        "200",
    ),
}


# ---------------------------------------------------------------------------------------------
# GKE Cloud Logging exports and the KHI files


def test_gke_log_entries_as_yaml_make_request_spans(realdata: Path, tmp_path: Path, capsys) -> None:
    store = tmp_path / "k.db"
    files = [str(realdata / name) for name in KHI_ENTRIES]
    code, _out, err = run(capsys, "replay", "--quiet", "--store", str(store), "--cluster", "gke", *files)
    assert code == 0, err
    assert "warning" not in err
    assert requests_of(store) == KHI_REQUESTS
    spans = spans_of(store)
    # The create names its owner: the Pod sits under its ReplicaSet, as in a webhook-fed trace.
    pod = next(s for s in spans if s.source.value == "object" and s.key.name == KHI_POD)
    owner = next(s for s in spans if s.span_id == pod.parent_id)
    assert (owner.key.resource, owner.key.name) == ("replicasets", "nginx-deployment-surge-8655b4b8c5")
    assert pod.uid == "c0b4e00d-da76-4255-9a02-670d5b74aa3a"
    patches = [s for s in spans if s.tags.get("audit.verb") == "patch"]
    assert {s.tags["audit.id"] for s in patches} == {
        "c7842d26-11fe-446a-b985-b2b67ddbab09",
        yaml.safe_load((realdata / KHI_ENTRIES[2]).read_text())["insertId"],
    }
    assert all(s.tags["audit.source_ip"] == "10.146.0.7" for s in patches)
    assert all(str(s.tags["audit.user_agent"]).startswith("kubelet/v1.28.14") for s in patches)


def test_gke_update_with_a_response_is_diffed_against_the_create(
    realdata: Path, tmp_path: Path, capsys
) -> None:
    create = khi_documents(realdata)[0]
    # An update of the same Pod as GKE logs it (the same shape, another method), made from the create.
    update = json.loads(json.dumps(create))
    update["insertId"] = update["operation"]["id"] = "update-1"
    update["timestamp"] = "2024-01-01T01:00:05Z"
    update["protoPayload"]["methodName"] = "io.k8s.core.v1.pods.update"
    update["protoPayload"]["authenticationInfo"]["principalEmail"] = "alice@example.com"
    response = update["protoPayload"]["response"]
    response["metadata"]["labels"]["app"] = "nginx-canary"
    response["metadata"]["resourceVersion"] = "15500"
    update["protoPayload"]["request"] = response
    denied = json.loads(json.dumps(update))
    denied["insertId"] = denied["operation"]["id"] = "update-2"
    denied["protoPayload"]["authenticationInfo"]["principalEmail"] = "bob@example.com"
    denied["protoPayload"]["status"] = {"code": 7, "message": "pods is forbidden"}
    del denied["protoPayload"]["response"]
    path = tmp_path / "export.json"
    path.write_text(json.dumps([create, update, denied], indent=2))
    store = tmp_path / "k.db"
    code, _out, err = run(capsys, "replay", "--quiet", "--store", str(store), "--cluster", "gke", str(path))
    assert code == 0, err
    spans = {s.tags.get("audit.id"): s for s in spans_of(store)}
    assert spans["update-1"].tags["audit.user"] == "alice@example.com"
    assert spans["update-1"].tags["audit.code"] == 200
    diffs = [log.message for log in spans["update-1"].logs if log.kind == "diff"]
    assert diffs == ['metadata.labels.app "nginx-surge" -> "nginx-canary"']
    assert spans["update-2"].tags["audit.code"] == 403 and spans["update-2"].error
    assert any("pods is forbidden" in log.message for log in spans["update-2"].logs)


@pytest.mark.parametrize("form", ["jsonl", "array", "pretty-array", "yaml-stream"])
def test_gke_log_entries_in_every_export_form(realdata: Path, tmp_path: Path, capsys, form: str) -> None:
    entries = khi_documents(realdata)
    path = tmp_path / "export"
    if form == "jsonl":
        path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    elif form == "array":
        path.write_text(json.dumps(entries))
    elif form == "pretty-array":
        path.write_text(json.dumps(entries, indent=2))
    else:
        path.write_text(yaml.safe_dump_all(entries))
    store = tmp_path / "k.db"
    code, _out, err = run(capsys, "replay", "--quiet", "--store", str(store), "--cluster", "gke", str(path))
    assert code == 0, err
    assert requests_of(store) == KHI_REQUESTS
    assert err.startswith("replayed 3 events from 1 file(s)")


def test_khi_yaml_audit_event(realdata: Path, tmp_path: Path, capsys) -> None:
    store = tmp_path / "k.db"
    path = str(realdata / KHI_EVENT)
    code, _out, err = run(
        capsys, "replay", "--quiet", "--store", str(store), "--exclude-resource", "none", path
    )
    # A leader-election heartbeat: read, and left out by the default user-agent rule.
    assert code == 0, err
    assert err.startswith("replayed 1 events from 1 file(s)")
    assert "skipped: excluded_user_agent 1" in err


def test_khi_yaml_audit_event_makes_its_span(realdata: Path, tmp_path: Path) -> None:
    from kelemetry.receivers.auditfiles import read_input
    from kelemetry.store.sqlite import SpanStore
    from tests.factories import new_pipeline

    store = SpanStore(tmp_path / "k.db")
    pipeline = new_pipeline(store)
    for batch in read_input(str(realdata / KHI_EVENT)):
        pipeline.process_audit(batch.audit, "kind")
    store.close()
    assert requests_of(tmp_path / "k.db") == {
        ("system:kube-scheduler", "update", "leases", "kube-system", "kube-scheduler", "", "200")
    }


# ---------------------------------------------------------------------------------------------
# Kubernetes Events as kubectl and the API give them


def _events_store(tmp_path: Path, capsys, path: Path, name: str) -> Path:
    store = tmp_path / f"{name}.db"
    code, _out, err = run(
        capsys, "replay", "--quiet", "--store", str(store), "--cluster", "tracetest", str(path)
    )
    assert code == 0, err
    assert "warning" not in err
    return store


def test_kubectl_get_events_json_and_yaml_and_an_event_list(tmp_path: Path, capsys) -> None:
    events = lines_of(DEPLOYMENT_EVENTS)
    baseline = event_spans_of(_events_store(tmp_path, capsys, DEPLOYMENT_EVENTS, "baseline"))
    assert len(baseline) > 10
    assert any(
        reason == "ScalingReplicaSet" and resource == "deployments" for reason, resource, _, _ in baseline
    )

    # `kubectl get events -o json`: a List, four-space indented.
    listed = {"apiVersion": "v1", "items": events, "kind": "List", "metadata": {"resourceVersion": ""}}
    as_json = tmp_path / "events.json"
    as_json.write_text(json.dumps(listed, indent=4))
    # `kubectl get events -o yaml`.
    as_yaml = tmp_path / "events.yaml"
    as_yaml.write_text(yaml.safe_dump(listed))
    # The API's own EventList: its items carry neither kind nor apiVersion.
    bare = [{k: v for k, v in e.items() if k not in ("kind", "apiVersion")} for e in events]
    event_list = tmp_path / "eventlist.json"
    event_list.write_text(json.dumps({"kind": "EventList", "apiVersion": "v1", "items": bare}, indent=2))
    for path in (as_json, as_yaml, event_list):
        assert event_spans_of(_events_store(tmp_path, capsys, path, path.stem)) == baseline, path.name


# ---------------------------------------------------------------------------------------------
# Audit logs in other wrappings


ADMIN_CREATE = ("admin", "create", "deployments", "default", "demo", "", "201")


@pytest.mark.parametrize("form", ["pretty-eventlist", "pretty-array", "jq-concatenated", "yaml-stream"])
def test_audit_log_in_other_forms_gives_the_same_spans(tmp_path: Path, capsys, form: str) -> None:
    events = lines_of(DEPLOYMENT_AUDIT)
    baseline = requests_of(_events_store(tmp_path, capsys, DEPLOYMENT_AUDIT, "baseline"))
    assert ADMIN_CREATE in baseline
    path = tmp_path / "audit"
    if form == "pretty-eventlist":
        path.write_text(
            json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": events}, indent=2)
        )
    elif form == "pretty-array":
        path.write_text(json.dumps(events, indent=1))
    elif form == "jq-concatenated":
        path.write_text("\n".join(json.dumps(e, indent=2) for e in events) + "\n")
    else:
        path.write_text(yaml.safe_dump_all(events))
    assert requests_of(_events_store(tmp_path, capsys, path, form)) == baseline


def test_stdin_plain_and_gzip(tmp_path: Path) -> None:
    data = DEPLOYMENT_AUDIT.read_bytes()
    for name, payload in (("plain", data), ("gzip", gzip.compress(data))):
        store = tmp_path / f"{name}.db"
        done = subprocess.run(
            [KELEMETRY, "replay", "--quiet", "--store", str(store), "--cluster", "tracetest", "-"],
            input=payload,
            capture_output=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert ADMIN_CREATE in requests_of(store)


def test_empty_stdin_is_an_error_and_leaves_no_store(tmp_path: Path) -> None:
    store = tmp_path / "data" / "k.db"
    done = subprocess.run(
        [KELEMETRY, "replay", "--quiet", "--store", str(store), "-"],
        input=b"",
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.decode() == "kelemetry: error: standard input is empty: nothing to replay\n"
    assert not (tmp_path / "data").exists()


def test_a_directory_of_rotated_files(tmp_path: Path, capsys) -> None:
    baseline = requests_of(_events_store(tmp_path, capsys, DEPLOYMENT_AUDIT, "baseline"))
    lines = DEPLOYMENT_AUDIT.read_bytes().splitlines(keepends=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    third = len(lines) // 3
    # logrotate's names: the higher the number, the older the file.
    (logs / "audit.log.2.gz").write_bytes(gzip.compress(b"".join(lines[:third])))
    (logs / "audit.log.1").write_bytes(b"".join(lines[third : 2 * third]))
    (logs / "audit.log").write_bytes(b"".join(lines[2 * third :]))
    (logs / ".audit.log.swp").write_bytes(b"not a log")
    store = tmp_path / "dir.db"
    code, _out, err = run(capsys, "replay", "--store", str(store), "--cluster", "tracetest", str(logs))
    assert code == 0, err
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("replay ")] == [
        f"replay {logs / 'audit.log.2.gz'}",
        f"replay {logs / 'audit.log.1'}",
        f"replay {logs / 'audit.log'}",
    ]
    assert f"replayed {len(lines)} events from 3 file(s)" in err
    assert requests_of(store) == baseline


def test_directory_order_puts_rotated_files_first(tmp_path: Path) -> None:
    from kelemetry.receivers.auditfiles import expand

    for name in (
        "audit.log",
        "audit.log.1.gz",
        "audit.log.10.gz",
        "audit.log.2.gz",
        "audit-2024-05-01T10-00-00.000.log",
    ):
        (tmp_path / name).write_text("{}")
    (tmp_path / "sub").mkdir()
    assert [Path(p).name for p in expand(str(tmp_path))] == [
        "audit-2024-05-01T10-00-00.000.log",
        "audit.log.10.gz",
        "audit.log.2.gz",
        "audit.log.1.gz",
        "audit.log",
    ]


def test_an_empty_file_in_a_directory_is_skipped_with_one_line(tmp_path: Path, capsys) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "audit.log").write_bytes(DEPLOYMENT_AUDIT.read_bytes())
    (logs / "audit.log.1").write_bytes(b"")
    code, _out, err = run(capsys, "replay", "--quiet", "--store", str(tmp_path / "k.db"), str(logs))
    assert code == 0, err
    assert f"kelemetry: warning: {logs / 'audit.log.1'} is empty: nothing to replay; skipped\n" in err


# ---------------------------------------------------------------------------------------------
# What cannot be read: one line per file


def test_unreadable_records_are_summarized_once_per_file(tmp_path: Path, capsys) -> None:
    good = DEPLOYMENT_AUDIT.read_text().splitlines()
    broken = tmp_path / "audit.log"
    broken.write_text(
        "\n".join([good[0], good[1], "{oops", *good[2:10], "kind: Pod", "{", *good[10:]]) + "\n"
    )
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(
        yaml.safe_dump_all(
            [yaml.safe_load(line) for line in good[:3]] + [{"kind": "ConfigMap", "apiVersion": "v1"}]
        )
    )
    store = tmp_path / "k.db"
    code, _out, err = run(
        capsys,
        "replay",
        "--quiet",
        "--store",
        str(store),
        "--cluster",
        "tracetest",
        str(broken),
        str(manifests),
    )
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == [
        f"kelemetry: warning: {broken}: 3 unreadable records skipped, the first at line 3: not valid JSON",
        f"kelemetry: warning: {manifests}: 1 unreadable record skipped, the first at line "
        f"{_line_of_last_document(manifests)}: "
        "a ConfigMap (v1) object, not an audit event or a Kubernetes Event",
    ]
    assert "4 unreadable records" in err.splitlines()[-1]
    assert ADMIN_CREATE in requests_of(store)


def _line_of_last_document(path: Path) -> int:
    lines = path.read_text().splitlines()
    return max(i for i, line in enumerate(lines) if line == "---") + 2


# ---------------------------------------------------------------------------------------------
# Nothing to replay: exit 1, one line naming the file, no store left behind


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"", "{path} is empty: nothing to replay", id="empty"),
        pytest.param(b"\n\n  \n# only a comment\n", "{path} is empty: nothing to replay", id="blank"),
        pytest.param(
            b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n",
            "{path} holds no audit events or Kubernetes Events (1 unreadable record, the first at line 1: "
            "a Deployment (apps/v1) object, not an audit event or a Kubernetes Event)",
            id="manifest",
        ),
        pytest.param(
            b"hello\nworld\n",
            "{path} holds no audit events or Kubernetes Events (2 unreadable records, the first at line 1: "
            "not valid JSON)",
            id="text",
        ),
        pytest.param(
            gzip.compress(b'{"kind":"List","apiVersion":"v1","items":[{"kind":"Pod","apiVersion":"v1"}]}\n'),
            "{path} holds no audit events or Kubernetes Events "
            "(1 unreadable record, the first at line 1, item 1: "
            "a Pod (v1) object, not an audit event or a Kubernetes Event)",
            id="gzip-list-of-pods",
        ),
    ],
)
def test_nothing_to_replay_is_an_error_and_leaves_no_store(
    tmp_path: Path, capsys, content: bytes, message: str
) -> None:
    path = tmp_path / "input.log"
    path.write_bytes(content)
    data = tmp_path / "data"
    code, out, err = run(capsys, "replay", "--quiet", "--store", str(data / "k.db"), str(path))
    assert code == 1
    assert out == ""
    assert err == f"kelemetry: error: {message.format(path=path)}\n"
    assert not data.exists()


def test_a_failed_replay_keeps_an_existing_store(tmp_path: Path, capsys) -> None:
    store = tmp_path / "k.db"
    assert run(capsys, "replay", "--quiet", "--store", str(store), str(DEPLOYMENT_AUDIT))[0] == 0
    before = len(spans_of(store))
    empty = tmp_path / "bad.yaml"
    empty.write_text("kind: Pod\n")
    assert run(capsys, "replay", "--quiet", "--store", str(store), str(empty))[0] == 1
    assert len(spans_of(store)) == before


def test_a_failed_replay_into_a_new_store_in_an_existing_folder_removes_only_the_store(
    tmp_path: Path, capsys
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    bad = tmp_path / "bad.log"
    bad.write_text("{nope\n")
    assert run(capsys, "replay", "--quiet", "--store", str(tmp_path / "k.db"), str(bad))[0] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.log", "notes.txt"]


def test_an_empty_file_among_others_is_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    code, _out, err = run(
        capsys, "replay", "--quiet", "--store", str(tmp_path / "k.db"), str(DEPLOYMENT_AUDIT), str(empty)
    )
    assert code == 1
    assert err == f"kelemetry: error: {empty} is empty: nothing to replay\n"
    assert not (tmp_path / "k.db").exists()


def test_an_empty_directory_is_an_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "logs").mkdir()
    code, _out, err = run(
        capsys, "replay", "--quiet", "--store", str(tmp_path / "k.db"), str(tmp_path / "logs")
    )
    assert code == 1
    assert err == f"kelemetry: error: {tmp_path / 'logs'} is an empty directory: nothing to replay\n"


# ---------------------------------------------------------------------------------------------
# OTLP export after a replay: bounded


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_otlp_export_to_a_closed_port_gives_up_with_a_summary(tmp_path: Path, capsys, scheme: str) -> None:
    store = tmp_path / "k.db"
    endpoint = f"{scheme}://127.0.0.1:{_closed_port()}"
    log = tmp_path / "audit.log"
    log.write_text(json.dumps(audit_event(audit_id="one")) + "\n")
    started = time.monotonic()
    code, out, err = run(
        capsys, "replay", "--quiet", "--store", str(store), str(log), "--otlp-endpoint", endpoint
    )
    took = time.monotonic() - started
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith("replayed 1 events from 1 file(s)")
    assert len(lines) == 2, err  # no warning per attempt
    assert lines[1].startswith(
        f"kelemetry: error: OTLP export to {endpoint} gave up after 4 failed attempts in "
    )
    assert lines[1].endswith(
        f"(connection refused): 2 spans written to {store}, 0 exported; rerun the command to export the rest"
    )
    # Backoff 0.5 + 1 + 2 s between the four attempts, then it stops.
    assert 3.0 <= took < 30
    assert len(spans_of(store)) == 2


def test_serve_replay_takes_directories_and_stdin(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "audit.log").write_bytes(DEPLOYMENT_AUDIT.read_bytes())
    assert cli.parse_replays([f"east={logs}", "-"], "default") == [("east", str(logs)), ("default", "-")]
    with pytest.raises(cli.CliError, match="standard input"):
        cli.parse_replays(["-", "west=-"], "default")


def test_serve_refuses_an_empty_replay_before_it_serves(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    store = tmp_path / "k.db"
    code, out, err = run(
        capsys,
        "serve",
        "--listen",
        "127.0.0.1:1",
        "--store",
        str(store),
        "--replay",
        f"west={tmp_path / 'empty'}",
    )
    assert (code, out) == (1, "")
    assert err == f"kelemetry: error: {tmp_path / 'empty'} is an empty directory: nothing to replay\n"
    assert not store.exists()


def test_a_body_nested_deeper_than_can_be_stored_again_costs_only_its_version(tmp_path: Path) -> None:
    # orjson reads 1,024 levels but writes 254: such a body is read, and its version is kept bodiless
    # instead of failing the store's write for every event beside it (found by make fuzz).
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(300):
        deep = {"a": deep}
    event = audit_event(verb="update", resource="deployments", group="apps", name="web-0", code=200)
    event["responseObject"] = {**event["responseObject"], "spec": deep}
    log = tmp_path / "audit.log"
    log.write_text(json.dumps(event) + "\n")
    store = tmp_path / "k.db"
    assert cli.main(["replay", str(log), "--store", str(store), "--cluster", "c1"]) == 0
    reader = StoreReader(store)
    try:
        assert [s.tags.get("audit.id") for s in reader.all_spans() if s.source.value == "audit"] == [
            event["auditID"]
        ]
    finally:
        reader.close()
