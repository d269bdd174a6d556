"""`kelemetry get`: the object at a moment on the CLI, on the replayed Deployment sample (and the
Secret sample for redaction): the manifest as YAML or JSON at a time or resourceVersion, the
revision list, unified and side-by-side diffs, and every refusal as one `kelemetry: error:` line
with its exit status (1 for nothing known then, 2 for bad usage)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kelemetry import cli
from tests.conftest import REPO_ROOT

SCALED_UP = "2026-11-23T07:23:31.278180Z"
BEFORE_SCALE = "2026-11-23T07:23:31.2Z"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def demo(store: Path, *extra: str) -> list[str]:
    return [
        "get",
        "--store",
        str(store),
        "--cluster",
        "tracetest",
        "--resource",
        "deployments",
        "--name",
        "demo",
        *extra,
    ]


def test_the_manifest_at_the_scale_request_and_before_it(
    sample_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, *demo(sample_store, "--at", SCALED_UP))
    assert code == 0
    assert out.startswith("# Deployment default/demo (uid 3eddc752-c366-47dd-853f-8173422d7ebd): rv 276 at ")
    assert "# reconstructed: the patch scale answered with part of the object only" in out
    manifest = yaml.safe_load(out)
    assert manifest["spec"]["replicas"] == 4 and manifest["metadata"]["resourceVersion"] == "276"
    code, out, _ = run(capsys, *demo(sample_store, "--at", BEFORE_SCALE))
    assert code == 0 and yaml.safe_load(out)["spec"]["replicas"] == 2


@pytest.mark.parametrize("typed", ["deploy", "Deployment", "deployments.apps"])
def test_the_object_is_named_as_kubectl_takes_it_in_any_cluster(
    sample_store: Path, capsys: pytest.CaptureFixture[str], typed: str
) -> None:
    argv = ["get", "--store", str(sample_store), "--resource", typed, "--name", "demo", "--at", SCALED_UP]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and yaml.safe_load(out)["spec"]["replicas"] == 4


def test_json_goes_to_stdout_and_what_it_is_to_stderr(
    sample_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *demo(sample_store, "--at", "2026-11-23T08:00:00Z", "--format", "json"))
    assert code == 0
    body = json.loads(out)
    assert body["kind"] == "Deployment" and body["metadata"]["resourceVersion"] == "392"
    assert "note: deleted at 2026-11-23T07:23:33.319759Z by admin" in err
    assert "its last known state: rv 392" in err


def test_by_resource_version_and_the_revision_list(
    sample_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, *demo(sample_store, "--rv", "296"))
    assert (
        code == 0
        and yaml.safe_load(out)["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    )
    code, out, _ = run(capsys, *demo(sample_store, "--list"))
    lines = out.splitlines()
    assert code == 0 and lines[0].endswith("27 revision(s)")
    assert lines[1].strip() == "rv 245 at 2026-11-23T07:23:30.571331Z by admin (create)"
    assert "rv 276" in lines[6] and "(reconstructed from a partial answer)" in lines[6]
    assert lines[-1].strip() == "deleted at 2026-11-23T07:23:33.319759Z by admin (delete)"


def test_unified_and_side_by_side_diffs(sample_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *demo(sample_store, "--rv", "245", "--diff-to-rv", "296"))
    assert code == 0
    assert out.startswith("--- rv 245 at 2026-11-23T07:23:30.571331Z by admin (create)\n+++ rv 296 ")
    assert "\n-  replicas: 2\n+  replicas: 4\n" in out and "\n+        image: nginx:1.28\n" in out
    code, out, _ = run(
        capsys, *demo(sample_store, "--rv", "245", "--diff-to", SCALED_UP, "--side-by-side", "--width", "100")
    )
    assert code == 0
    changed = [line for line in out.splitlines() if " | " in line]
    assert any(
        line.split(" | ")[0].strip() == "replicas: 2" and line.split(" | ")[1].strip() == "replicas: 4"
        for line in changed
    ), out
    assert all(len(line) <= 100 for line in out.splitlines()[1:])
    code, out, _ = run(capsys, *demo(sample_store, "--rv", "296", "--diff-to-rv", "296"))
    assert code == 0 and out.startswith("no difference between rv 296")


@pytest.mark.parametrize(
    ("extra", "status", "message"),
    [
        pytest.param(
            ("--at", "2026-11-23T07:00:00Z"),
            1,
            "the first known is rv 245 at 2026-11-23T07:23:30.571331Z",
            id="too-early",
        ),
        pytest.param(("--rv", "1"), 1, "no version 1 of Deployment default/demo", id="unknown-rv"),
        pytest.param(("--at", "soon"), 2, "invalid time 'soon'", id="bad-time"),
        pytest.param(("--side-by-side",), 2, "--side-by-side needs --diff-to", id="side-by-side-alone"),
    ],
)
def test_refusals_are_one_line_with_a_status(
    sample_store: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], status: int, message: str
) -> None:
    code, out, err = run(capsys, *demo(sample_store, *extra))
    assert code == status and out == ""
    assert err.startswith("kelemetry: error: ") and err.count("\n") == 1 and message in err, err


def test_an_unknown_object_is_not_found(sample_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = demo(sample_store)
    argv[argv.index("demo")] = "nope"
    code, _, err = run(capsys, *argv)
    assert code == 1 and err.startswith("kelemetry: error: no object deployments") and "nope" in err, err


def test_a_secret_is_shown_redacted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "k.db"
    log = REPO_ROOT / "samples" / "secret" / "audit.log"
    assert cli.main(["replay", "--quiet", "--cluster", "tracetest", "--store", str(store), str(log)]) == 0
    argv = ["get", "--store", str(store), "--cluster", "tracetest", "--resource", "secrets", "--name", "db"]
    code, out, _ = run(capsys, *argv, "--list")
    assert code == 0
    first_rv = out.splitlines()[1].split()[1]
    code, out, _ = run(capsys, *argv, "--rv", first_rv, "--format", "json")
    assert code == 0
    data = json.loads(out)["data"]
    assert set(data) == {"password", "user"} and all(v.startswith("<redacted") for v in data.values())
    assert "kelemetry-canary" not in out
