"""The `kelemetry` command as a user runs it: replay real audit logs, dump traces, apply retention
(`retain`, on stores stamped with arrival times through the store's clock seam), and every error
path ending in one line and a non-zero exit (no traceback).

Most cases call `cli.main` in-process for speed; a few run the installed console script to prove
the entry point itself works.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from kelemetry import cli
from kelemetry.store.sqlite import StoreReader
from tests.conftest import AUDIT2RBAC, FALCO
from tests.factories import audit_event, owner_ref, write_arrived

KELEMETRY = str(Path(sys.executable).with_name("kelemetry"))
RS = "nginx-deployment-559dddfd99"
POD = "nginx-deployment-559dddfd99-4klq4"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def falco_store(realdata: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    store = tmp_path / "k.db"
    code, _out, err = run(
        capsys, "replay", str(realdata / FALCO), "--store", str(store), "--cluster", "minikube"
    )
    assert code == 0, err
    return store


def dump_args(store: Path, *extra: str) -> list[str]:
    return [
        "dump",
        "--store",
        str(store),
        "--cluster",
        "minikube",
        "--resource",
        "replicasets",
        "--name",
        RS,
        *extra,
    ]


def test_replay_summary_counts_what_was_skipped(realdata: Path, tmp_path: Path, capsys) -> None:
    code, _out, err = run(
        capsys, "replay", str(realdata / FALCO), str(realdata / AUDIT2RBAC), "--store", str(tmp_path / "k.db")
    )
    assert code == 0
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("replayed 840 events from 2 file(s)")
    assert "traced" in summary and "read 216" in summary and "stage 322" in summary


def test_dump_tree_shows_replicaset_with_its_pod_and_create_request(falco_store: Path, capsys) -> None:
    code, out, err = run(capsys, *dump_args(falco_store))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"replicasets.apps/{RS}") and "looked up" in lines[0]
    pod_line = next(i for i, line in enumerate(lines) if f"pods/{POD}" in line)
    assert lines[pod_line].startswith("└── ") or lines[pod_line].startswith("├── ")
    request = lines[pod_line + 1]
    assert "create  by system:serviceaccount:kube-system:replicaset-controller  -> 201" in request
    assert request.index("create") > lines[pod_line].index("pods/")


def test_dump_json_is_jaeger_trace_json(falco_store: Path, capsys) -> None:
    code, out, _err = run(capsys, *dump_args(falco_store, "--format", "json"))
    assert code == 0
    document = json.loads(out)
    assert set(document) >= {"data", "total", "limit", "offset", "errors"}
    (trace,) = document["data"]
    # The view id of the classic dump's mode (tree, full scope, any depth), as the API names views.
    assert len(trace["traceID"]) == 32 and trace["traceID"].startswith("ff01ff0000e1e3e7")
    spans = {span["spanID"]: span for span in trace["spans"]}
    roots = [s for s in trace["spans"] if not s["references"]]
    assert len(roots) == 1
    for span in trace["spans"]:
        assert span["traceID"] == trace["traceID"] and span["processID"] in trace["processes"]
        for ref in span["references"]:
            assert ref["refType"] == "CHILD_OF" and ref["spanID"] in spans

    def tags(span: dict[str, Any]) -> dict[str, Any]:
        return {t["key"]: t["value"] for t in span["tags"]}

    (pod_span,) = [
        s for s in trace["spans"] if tags(s)["name"] == POD and tags(s).get("kelemetry.pseudo") is True
    ]
    assert tags(pod_span)["kind"] == "Pod" and pod_span["operationName"].endswith(f"/{POD}")
    owner = spans[pod_span["references"][0]["spanID"]]
    assert (tags(owner)["resource"], tags(owner)["name"]) == ("replicasets", RS)
    services = {p["serviceName"] for p in trace["processes"].values()}
    assert {"minikube replicasets", "pods", "audit"} <= services


def test_dump_jsonl_and_parquet(falco_store: Path, tmp_path: Path, capsys) -> None:
    # The log holds one request on this ReplicaSet's hierarchy, six times over (auditID d4aabba6-...):
    # the controller's create of the pod. So: the two object spans, then that one request.
    code, out, _err = run(capsys, *dump_args(falco_store, "--format", "jsonl"))
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(row["source"], row["name"]) for row in rows] == [
        ("object", RS),
        ("object", POD),
        ("audit", POD),
    ]
    request = rows[2]
    assert request["tags"]["audit.id"] == "d4aabba6-ae0f-449b-957d-4e74a31bcb64"
    assert request["started_at"] == "2019-06-26T19:11:30.150249Z"
    assert (request["verb"], request["code"]) == ("create", 201)
    target = tmp_path / "review.parquet"
    code, _out, _err = run(capsys, *dump_args(falco_store, "--format", "parquet", "--output", str(target)))
    assert code == 0
    table = pq.read_table(target)
    assert table.column("name").to_pylist() == [RS, POD, POD]
    assert table.column("source").to_pylist() == ["object", "object", "audit"]
    assert table.column("started_at").to_pylist()[2] == datetime(2019, 6, 26, 19, 11, 30, 150_249, tzinfo=UTC)


def test_dump_time_range(falco_store: Path, capsys) -> None:
    code, out, _err = run(
        capsys, *dump_args(falco_store, "--start", "2019-06-26T19:00:00Z", "--end", "2019-06-26T19:30:00Z")
    )
    assert code == 0 and POD in out
    code, _out, err = run(capsys, *dump_args(falco_store, "--start", "2020-01-01T00:00:00Z"))
    assert code == 1
    assert err.strip().startswith(
        f"kelemetry: error: replicasets/{RS} (cluster minikube) has no activity in the requested time range; "
        "it had no requests of its own, only objects it owns had: widen the range"
    )


def test_replaying_twice_changes_nothing(realdata: Path, falco_store: Path, capsys) -> None:
    reader = StoreReader(falco_store)
    before = reader.digest_rows()
    seq_before = {span.span_id: span for span in reader.all_spans()}
    max_seq = reader.max_seq()
    reader.close()
    code, _out, _err = run(
        capsys, "replay", str(realdata / FALCO), "--store", str(falco_store), "--cluster", "minikube"
    )
    assert code == 0
    reader = StoreReader(falco_store)
    assert reader.digest_rows() == before
    rewritten = [row for seq, row in reader.spans_after(max_seq, 10_000)]
    reader.close()
    # The falco file holds hand-edited variants of one request under the same audit ID (see the
    # realdata README); the last variant wins on every replay, so only those spans were rewritten,
    # back to the same content.
    ids = [json.loads(line)["auditID"] for line in (realdata / FALCO).read_text().splitlines()]
    duplicated = {audit_id for audit_id in ids if ids.count(audit_id) > 1}
    assert all(span.tags["audit.id"] in duplicated for span in rewritten)
    assert all(seq_before[span.span_id].tags == span.tags for span in rewritten)


def test_replay_gzip_and_own_events(tmp_path: Path, capsys) -> None:
    events = [
        audit_event(verb="create", resource="deployments", group="apps", name="demo", uid="d1"),
        audit_event(
            verb="create",
            resource="replicasets",
            group="apps",
            name="demo-1",
            uid="r1",
            owner=owner_ref("Deployment", "demo", uid="d1"),
        ),
        audit_event(
            verb="create", name="demo-1-a", uid="p1", owner=owner_ref("ReplicaSet", "demo-1", uid="r1")
        ),
    ]
    log = tmp_path / "audit.log.gz"
    with gzip.open(log, "wb") as out:
        out.write(b"".join(json.dumps(e).encode() + b"\n" for e in events))
    store = str(tmp_path / "k.db")
    assert run(capsys, "replay", str(log), "--store", store, "--quiet")[0] == 0
    code, out, _err = run(
        capsys, "dump", "--store", store, "--cluster", "default", "--resource", "pods", "--name", "demo-1-a"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("deployments.apps/demo")
    assert any(line.lstrip("│ ").startswith("└── replicasets.apps/demo-1") for line in lines)
    assert "looked up" in next(line for line in lines if "pods/demo-1-a" in line)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["dump", "--cluster", "c", "--resource", "pods", "--name", "nope"],
            "kelemetry: error: no object pods/nope (cluster c) in the store",
            id="unknown-object",
        ),
        pytest.param(
            ["dump", "--cluster", "c", "--resource", "pods", "--name", "x", "--since", "yesterday"],
            "kelemetry: error: invalid duration 'yesterday': use a number and a unit, e.g. 30m, 2h, 7d",
            id="bad-duration",
        ),
        pytest.param(
            ["dump", "--cluster", "c", "--resource", "pods", "--name", "x", "--start", "last tuesday"],
            "kelemetry: error: invalid time 'last tuesday': use RFC 3339, e.g. 2024-05-01T10:00:00Z",
            id="bad-time",
        ),
        pytest.param(
            [
                "dump",
                "--cluster",
                "c",
                "--resource",
                "pods",
                "--name",
                "x",
                "--start",
                "2024-05-02T00:00:00Z",
                "--end",
                "2024-05-01T00:00:00Z",
            ],
            "kelemetry: error: --start is after --end",
            id="inverted-range",
        ),
        pytest.param(
            [
                "dump",
                "--cluster",
                "c",
                "--resource",
                "pods",
                "--name",
                "x",
                "--since",
                "1h",
                "--start",
                "now",
            ],
            "kelemetry: error: use either --since or --start/--end, not both",
            id="since-and-start",
        ),
        pytest.param(
            ["replay", "/nonexistent/audit.log"],
            "kelemetry: error: cannot read /nonexistent/audit.log: no such file",
            id="missing-file",
        ),
    ],
)
def test_errors_are_one_line(tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    store = tmp_path / "k.db"
    run(capsys, "replay", "--quiet", "--store", str(store), str(_tiny_log(tmp_path)))
    code, out, err = run(capsys, *argv, "--store", str(store))
    assert code in (1, 2)
    assert err.strip() == message
    assert out == ""


def test_dump_without_a_store(tmp_path: Path, capsys) -> None:
    code, _out, err = run(
        capsys,
        "dump",
        "--store",
        str(tmp_path / "none.db"),
        "--cluster",
        "c",
        "--resource",
        "pods",
        "--name",
        "x",
    )
    assert code == 1
    assert err.startswith("kelemetry: error: no store at ") and err.count("\n") == 1


def test_replay_of_a_file_that_is_not_an_audit_log(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "deployment.yaml"
    bogus.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n")
    code, _out, err = run(capsys, "replay", "--quiet", "--store", str(tmp_path / "k.db"), str(bogus))
    assert code == 1
    assert err == (
        f"kelemetry: error: {bogus} holds no audit events or Kubernetes Events (1 unreadable record, the "
        "first at line 1: a Deployment (apps/v1) object, not an audit event or a Kubernetes Event)\n"
    )
    assert not (tmp_path / "k.db").exists()


def test_ambiguous_name_lists_namespaces(tmp_path: Path, capsys) -> None:
    log = tmp_path / "audit.log"
    log.write_text(
        "\n".join(json.dumps(audit_event(name="web", namespace=ns, uid=f"u-{ns}")) for ns in ("a", "b"))
        + "\n"
    )
    store = str(tmp_path / "k.db")
    assert run(capsys, "replay", "--quiet", "--store", store, str(log))[0] == 0
    code, _out, err = run(
        capsys, "dump", "--store", store, "--cluster", "default", "--resource", "pods", "--name", "web"
    )
    assert code == 1
    assert "ambiguous" in err and "--namespace 'a'" in err and "--namespace 'b'" in err
    code, out, _err = run(
        capsys,
        "dump",
        "--store",
        store,
        "--cluster",
        "default",
        "--resource",
        "pods",
        "--name",
        "web",
        "--namespace",
        "b",
    )
    assert code == 0 and "namespace b" in out


def _tiny_log(tmp_path: Path) -> Path:
    log = tmp_path / "tiny.log"
    log.write_text(json.dumps(audit_event()) + "\n")
    return log


def test_console_script_help_and_errors(tmp_path: Path) -> None:
    for argv in ([], ["serve"], ["replay"], ["retain"], ["dump"]):
        result = subprocess.run([KELEMETRY, *argv, "--help"], capture_output=True, text=True, check=False)
        assert result.returncode == 0 and "usage: kelemetry" in result.stdout
    result = subprocess.run(
        [
            KELEMETRY,
            "dump",
            "--store",
            str(tmp_path / "none.db"),
            "--cluster",
            "c",
            "--resource",
            "pods",
            "--name",
            "x",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    result = subprocess.run([KELEMETRY], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "usage: kelemetry" in result.stderr


def test_serve_refuses_a_bad_listen_address(tmp_path: Path) -> None:
    result = subprocess.run(
        [KELEMETRY, "serve", "--listen", "nowhere", "--store", str(tmp_path / "k.db")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "kelemetry: error: invalid --listen 'nowhere': use HOST:PORT, e.g. 127.0.0.1:8080"
    )


# -- retain

DAY_US = 86_400_000_000


def test_retain_reports_per_cluster_and_a_dry_run_changes_nothing(tmp_path: Path, capsys) -> None:
    store = tmp_path / "k.db"
    now = time.time_ns() // 1000
    write_arrived(store, "tracetest", now - 8 * DAY_US, traces=2)
    write_arrived(store, "staging", now - 9 * DAY_US, traces=1)
    write_arrived(store, "live", now - DAY_US, traces=3)
    args = ["retain", "--store", str(store)]

    code, out, err = run(capsys, *args, "--dry-run")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "cluster staging: 1 trace, 2 spans, 1 object would be removed",
        "cluster tracetest: 2 traces, 4 spans, 1 object would be removed",
        "total: 3 traces, 6 spans, 2 objects would be removed",
    ]
    reader = StoreReader(store)
    try:
        assert reader.counts() == {"spans_object": 6, "spans_audit": 6, "objects": 3}
    finally:
        reader.close()

    code, out, err = run(capsys, *args)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "cluster staging: 1 trace, 2 spans, 1 object removed",
        "cluster tracetest: 2 traces, 4 spans, 1 object removed",
        "total: 3 traces, 6 spans, 2 objects removed",
    ]
    assert run(capsys, *args) == (0, "nothing to remove\n", "")
    # A shorter age and a size limit reach the rest.
    code, out, _err = run(capsys, *args, "--retention", "12h", "--dry-run")
    assert out.splitlines()[0] == "cluster live: 3 traces, 6 spans, 1 object would be removed"
    code, out, _err = run(capsys, *args, "--retention", "forever", "--max-store-size", "1")
    assert out.splitlines() == [
        "cluster live: 3 traces, 6 spans, 0 objects removed",
        "total: 3 traces, 6 spans, 0 objects removed",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--retention", "7 days"], "invalid duration '7 days'", id="bad-duration"),
        pytest.param(["--max-store-size", "big"], "invalid size 'big'", id="bad-size"),
    ],
)
def test_retain_usage_errors_are_one_line(tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    store = tmp_path / "k.db"
    write_arrived(store, "c", 0, traces=1)
    code, out, err = run(capsys, "retain", "--store", str(store), *argv)
    assert (code, out) == (2, "")
    assert err.startswith(f"kelemetry: error: {message}") and err.count("\n") == 1


def test_retain_without_a_store_is_one_line_and_creates_none(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "none.db"
    assert run(capsys, "retain", "--store", str(missing)) == (
        2,
        "",
        f"kelemetry: error: no store at {missing}\n",
    )
    assert list(tmp_path.iterdir()) == []


def test_retain_on_a_store_of_an_older_kelemetry_says_to_replay(tmp_path: Path, capsys) -> None:
    store = tmp_path / "old.db"
    db = sqlite3.connect(store)
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema_version', '1');"
        "CREATE TABLE spans (span_id INTEGER PRIMARY KEY, end_us INTEGER NOT NULL);"
    )
    db.close()
    before = store.read_bytes()

    code, out, err = run(capsys, "retain", "--store", str(store))

    assert (code, out) == (1, "")
    assert err.startswith(f"kelemetry: error: {store} was written by an older kelemetry")
    assert "replay the audit logs into a new store" in err and err.count("\n") == 1
    assert store.read_bytes() == before


def test_retain_help_says_age_counts_from_arrival(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["retain", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Age counts from when data arrived in the store" in text
    assert "--dry-run" in text and "--max-store-size SIZE" in text
