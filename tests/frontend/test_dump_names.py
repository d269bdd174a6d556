"""``kelemetry dump`` with names as people type them, on the recorded samples: no --cluster or
--namespace needed, kubectl spellings of the resource, one-line "did you mean" and "last active"
errors, and the cluster choices when a name is in several clusters."""

from __future__ import annotations

from pathlib import Path

import pytest

from kelemetry import cli
from tests.conftest import REPO_ROOT

DEMO_UID = "3eddc752-c366-47dd-853f-8173422d7ebd"


def dump(capsys: pytest.CaptureFixture[str], store: Path, *args: str) -> tuple[int, str, str]:
    code = cli.main(["dump", "--store", str(store), *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "resource", ["deploy", "Deployment", "deployments.apps", "deployments.v1.apps", "deployments"]
)
def test_dump_finds_the_deployment_without_cluster_or_namespace(
    capsys: pytest.CaptureFixture[str], sample_store: Path, resource: str
) -> None:
    code, out, err = dump(capsys, sample_store, "--resource", resource, "--name", "demo")
    assert (code, err) == (0, "")
    first = out.splitlines()[0]
    assert first.startswith("deployments.apps/demo  [Deployment, v1, namespace default, uid " + DEMO_UID)


def test_dump_of_a_pod_by_short_name(capsys: pytest.CaptureFixture[str], sample_store: Path) -> None:
    code, out, _ = dump(capsys, sample_store, "--resource", "po", "--name", "demo-5544f8b48c-b25t4")
    assert code == 0 and "pods/demo-5544f8b48c-b25t4" in out


def test_dump_of_a_misspelt_name_says_what_was_meant(
    capsys: pytest.CaptureFixture[str], sample_store: Path
) -> None:
    code, out, err = dump(capsys, sample_store, "--resource", "deploy", "--name", "dmeo")
    assert (code, out) == (1, "")
    assert err == (
        "kelemetry: error: no object deployments.apps/dmeo (any cluster) in the store; "
        "did you mean deployments.apps/demo in namespace default (cluster tracetest)?\n"
    )
    code, _, err = dump(capsys, sample_store, "--resource", "po", "--name", "b25t4")
    assert code == 1 and err.endswith(
        "did you mean pods/demo-5544f8b48c-b25t4 in namespace default (cluster tracetest)?\n"
    )


def test_dump_of_an_unknown_resource(capsys: pytest.CaptureFixture[str], sample_store: Path) -> None:
    code, _, err = dump(capsys, sample_store, "--resource", "deplyo", "--name", "demo")
    assert code == 1
    assert err == (
        "kelemetry: error: no object deplyo/demo (any cluster) in the store: unknown resource 'deplyo'; "
        "did you mean deploy?\n"
    )


def test_dump_outside_the_active_range_says_which_range_to_try(
    capsys: pytest.CaptureFixture[str], sample_store: Path
) -> None:
    code, _, err = dump(capsys, sample_store, "--resource", "deploy", "--name", "demo", "--since", "1h")
    assert code == 1 and len(err.splitlines()) == 1
    assert "has no activity in the requested time range; it was last active at 2026-11-23T07:23:33Z" in err
    since = err.split("try --since ")[1].split()[0]
    # The range the error proposes works.
    code, out, _ = dump(capsys, sample_store, "--resource", "deploy", "--name", "demo", "--since", since)
    assert code == 0 and out.startswith("deployments.apps/demo")
    code, out, _ = dump(
        capsys,
        sample_store,
        *("--resource", "deploy", "--name", "demo"),
        *("--start", "2026-11-23T07:23:30Z", "--end", "2026-11-23T07:23:34Z"),
    )
    assert code == 0 and out.startswith("deployments.apps/demo")


def test_an_ambiguous_resource_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], sample_store: Path
) -> None:
    code, _, err = dump(capsys, sample_store, "--resource", "deploy", "--group", "batch", "--name", "demo")
    assert code == 2
    assert err == "kelemetry: error: resource 'deploy' is in group 'apps', not group 'batch'\n"


@pytest.fixture(scope="module")
def two_clusters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Deployment sample replayed twice, as clusters east and west."""
    path = tmp_path_factory.mktemp("two") / "k.db"
    sample = REPO_ROOT / "samples" / "deployment"
    for cluster in ("east", "west"):
        argv = ["replay", "--quiet", "--cluster", cluster, "--store", str(path)]
        assert cli.main([*argv, str(sample / "audit.log"), str(sample / "events.jsonl")]) == 0
    return path


def test_a_name_in_two_clusters_lists_the_clusters(
    capsys: pytest.CaptureFixture[str], two_clusters: Path
) -> None:
    code, _, err = dump(capsys, two_clusters, "--resource", "deploy", "--name", "demo")
    assert code == 1
    assert err == (
        "kelemetry: error: deployments.apps/demo (any cluster) is ambiguous; narrow it with one of: "
        "--cluster 'east' --namespace 'default', --cluster 'west' --namespace 'default'\n"
    )
    code, out, _ = dump(capsys, two_clusters, "--resource", "deploy", "--name", "demo", "--cluster", "west")
    assert code == 0 and out.startswith("deployments.apps/demo")
