"""`kelemetry dump --mode/--scope/--depth` and `kelemetry frontend`, as a user runs them, on the
replayed Deployment sample.

Covers: the tracing text view (requests and Events folded under their object, diffs split, the
delete's snapshot), the tree view for comparison, scopes on the classic tree, ``--format json``
(with or without ``--mode``) being byte for byte what the HTTP API serves for the same view, and
the refusals (``--mode`` with jsonl or parquet, bad ``--depth``, bad ``--mode``; bad ``frontend``
options) each ending with one ``kelemetry: error:`` line and exit status 2; ``frontend --help``.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from frontend import query
from kelemetry import cli
from kelemetry.app import build_app

with warnings.catch_warnings():
    # starlette 1.10 warns on importing its test client when httpx (the project's dev dependency)
    # is installed instead of httpx2; the warning is about the environment, not the code under test.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

CLUSTER = "tracetest"
DEMO_UID = "3eddc752-c366-47dd-853f-8173422d7ebd"
TREE_REQUEST = re.compile(r"^\s+\d{4}-\d\d-\d\dT[\d:.]+Z  audit: ")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def dump(store: Path, *extra: str, resource: str = "deployments", name: str = "demo") -> list[str]:
    return [
        "dump",
        "--store",
        str(store),
        "--cluster",
        CLUSTER,
        "--resource",
        resource,
        "--namespace",
        "default",
        "--name",
        name,
        *extra,
    ]


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2, (code, err)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("kelemetry: error: "), err
    assert message in err, err


# -- text


def test_tracing_text_folds_requests_and_events_under_their_objects(
    sample_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *dump(sample_store, "--mode", "tracing", "--scope", "full"))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"deployments.apps/demo  [Deployment, uid {DEMO_UID}]"
    # Requests and Events are log entries of the object, not spans of their own.
    assert not any(TREE_REQUEST.match(line) for line in lines)
    assert re.search(r"^  \S+Z  admin create$", out, re.MULTILINE)
    assert re.search(r"^  \S+Z  admin delete$", out, re.MULTILINE)
    assert re.search(r"^  \S+Z  admin patch scale$", out, re.MULTILINE)
    assert re.search(
        r"^  \S+Z  ScalingReplicaSet: Scaled up replica set demo-85dd8d7bd8 from 0 to 2$", out, re.M
    )
    assert "    code: 201" in lines
    assert "    verbose diff: metadata.generation 1 -> 2" in lines
    assert any(line.strip() == "status.observedGeneration 1 -> 2" for line in lines)
    # The delete's snapshot in one line; --full prints the object, managedFields dropped.
    assert any(line.startswith("    snapshot: Deployment default/demo, resourceVersion ") for line in lines)
    code, whole, err = run(capsys, *dump(sample_store, "--mode", "tracing", "--scope", "full", "--full"))
    assert code == 0, err
    snapshot = '    snapshot: {"apiVersion":"apps/v1","kind":"Deployment"'
    assert any(line.startswith(snapshot) for line in whole.splitlines())
    assert "managedFields" not in whole
    # The ReplicaSets one level down, their Pods below them.
    replicasets = [line for line in lines if line.startswith("    replicasets.apps/")]
    assert sorted(line.split()[0] for line in replicasets) == [
        "replicasets.apps/demo-5544f8b48c",
        "replicasets.apps/demo-85dd8d7bd8",
    ]
    assert sum(1 for line in lines if line.startswith("        pods/demo-")) == 8


def test_tree_text_shows_requests_as_spans(sample_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *dump(sample_store, "--mode", "tree", "--scope", "full"))
    assert code == 0, err
    assert sum(1 for line in out.splitlines() if TREE_REQUEST.match(line)) > 50
    assert re.search(r"^    \S+Z  audit: admin create$", out, re.MULTILINE)
    assert re.search(r"^    \S+Z  event: ScalingReplicaSet$", out, re.MULTILINE)


def test_ancestors_text_shows_the_owner_and_the_replicaset_alone(
    sample_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = dump(
        sample_store,
        "--mode",
        "tracing",
        "--scope",
        "ancestors",
        resource="replicasets",
        name="demo-85dd8d7bd8",
    )
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    objects = [
        line.strip().split()[0]
        for line in out.splitlines()
        if re.match(r"^\s*(deployments|replicasets|pods)[./]", line)
    ]
    assert objects == ["deployments.apps/demo", "replicasets.apps/demo-85dd8d7bd8"]


def test_a_scope_applies_to_the_classic_tree_too(
    sample_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, *dump(sample_store, "--scope", "object", resource="replicasets", name="demo-85dd8d7bd8")
    )
    assert code == 0, err
    assert out.startswith("replicasets.apps/demo-85dd8d7bd8  [ReplicaSet")
    assert "deployments.apps/demo" not in out and "pods/" not in out
    code, whole, _err = run(capsys, *dump(sample_store))
    assert code == 0 and whole.startswith("deployments.apps/demo  [Deployment")
    assert whole.count("pods/demo-") == 8


# -- JSON


@pytest.fixture(scope="module")
def api(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app `kelemetry frontend` serves, over the same store."""
    service = query.for_store(sample_store, tmp_path_factory.mktemp("views") / "views.db")
    yield TestClient(build_app(query=service), raise_server_exceptions=False)
    service.close()


RANGE = ("2026-11-23T07:23:31Z", "2026-11-23T07:23:33Z")


@pytest.mark.parametrize(
    ("extra", "mode_id"),
    [
        pytest.param([], "01ff0000", id="classic"),
        pytest.param(["--start", RANGE[0], "--end", RANGE[1]], "01ff0000", id="classic-range"),
        pytest.param(["--scope", "object"], "00000000", id="classic-object"),
        pytest.param(["--mode", "tracing", "--scope", "full"], "21000000", id="tracing-full"),
        pytest.param(["--mode", "tracing"], "21ff0000", id="tracing"),
        pytest.param(["--mode", "grouped", "--scope", "children", "--depth", "1"], "34010000", id="grouped"),
        pytest.param(["--mode", "timeline", "--scope", "ancestors"], "12000000", id="timeline"),
    ],
)
def test_json_is_byte_for_byte_what_the_api_serves_for_the_view(
    sample_store: Path,
    api: TestClient,
    capsysbinary: pytest.CaptureFixture[bytes],
    extra: list[str],
    mode_id: str,
) -> None:
    argv = dump(sample_store, "--format", "json", *extra, resource="replicasets", name="demo-85dd8d7bd8")
    assert cli.main(argv) == 0
    from_cli = capsysbinary.readouterr().out

    # The UI's way to the same view: a lookup in the mode, then the view by its id.
    params = {
        "cluster": CLUSTER,
        "resource": "replicasets",
        "namespace": "default",
        "name": "demo-85dd8d7bd8",
        "mode": mode_id,
    }
    if "--start" in extra:
        params |= {"start": RANGE[0], "end": RANGE[1]}
    lookup = api.get("/api/kelemetry/lookup", params=params)
    assert lookup.status_code == 200, lookup.text
    (found,) = lookup.json()["data"]
    from_api = api.get(f"/api/traces/{found['viewId']}")
    assert from_api.status_code == 200, from_api.text

    assert from_cli == from_api.content
    (trace,) = json.loads(from_cli)["data"]
    assert trace["traceID"] == found["viewId"] and trace["traceID"].startswith(f"ff{mode_id}")
    assert len(trace["spans"]) > 1


# -- refusals


@pytest.mark.parametrize("output_format", ["parquet", "jsonl"])
def test_a_mode_with_a_row_per_span_format_is_refused(
    sample_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], output_format: str
) -> None:
    target = tmp_path / "out"
    argv = dump(sample_store, "--mode", "tracing", "--format", output_format, "--output", str(target))
    refused(capsys, argv, "--mode applies to the tree and json formats")
    assert not target.exists()


@pytest.mark.parametrize("depth", ["0", "256", "-1"])
def test_a_depth_out_of_range_is_refused(
    sample_store: Path, capsys: pytest.CaptureFixture[str], depth: str
) -> None:
    refused(
        capsys, dump(sample_store, "--mode", "tracing", "--depth", depth), "--depth must be between 1 and 255"
    )


@pytest.mark.parametrize(
    ("option", "value"), [("--depth", "three"), ("--mode", "fancy"), ("--scope", "siblings")]
)
def test_option_values_argparse_refuses_exit_2(
    sample_store: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(dump(sample_store, option, value))
    assert caught.value.code == 2
    _out, err = capsys.readouterr()
    assert f"argument {option}: invalid" in err


def test_frontend_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["frontend", "--help"])
    assert caught.value.code == 0
    out, _err = capsys.readouterr()
    for option in ("--listen", "--jaeger-url", "--lookback", "--views", "--store"):
        assert option in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--jaeger-url", "jaeger:16686"], "invalid Jaeger query URL 'jaeger:16686'"),
        (["--jaeger-url", "http://127.0.0.1:1", "--lookback", "forever"], "invalid duration 'forever'"),
        (["--listen", "8081"], "invalid --listen '8081'"),
    ],
)
def test_bad_frontend_options_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    refused(capsys, ["frontend", "--views", str(tmp_path / "views.db"), *extra], message)
    assert not (tmp_path / "views.db").exists()


def test_frontend_without_a_store_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "frontend", "--store", str(tmp_path / "none.db"))
    assert code == 1
    assert err.startswith(f"kelemetry: error: no store at {tmp_path / 'none.db'}") and err.count("\n") == 1
