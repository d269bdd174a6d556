"""The readable dump layouts abbreviate (frontend.text): a snapshot as a one-line summary, long diff
values cut with "…" (the path always whole), long diffs and messages cut, and ``--full`` printing
everything as stored; on the recorded sample, ``kelemetry dump`` is short and readable by default
and ``--full`` gives back every character.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frontend import text
from kelemetry import cli
from tests.frontend.conftest import SAMPLE_CLUSTER

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "demo-5d8f7c9b4-x7k2q",
        "namespace": "default",
        "resourceVersion": "392",
        "deletionTimestamp": "2026-11-23T07:24:01Z",
        "labels": {f"label-{i}": "x" * 40 for i in range(20)},
    },
    "spec": {"nodeName": "node-1"},
    "status": {"phase": "Running"},
}


def test_a_snapshot_is_one_line_naming_the_object_and_its_state() -> None:
    snapshot = json.dumps(POD)
    (line,) = text.log_lines("snapshot", snapshot)
    assert line == (
        "Pod default/demo-5d8f7c9b4-x7k2q, resourceVersion 392, deletionTimestamp 2026-11-23T07:24:01Z, "
        f"phase Running, node node-1 ({len(snapshot):,} chars as JSON; --full shows it)"
    )
    assert text.log_lines("snapshot", snapshot, full=True) == [snapshot]
    # Not JSON (a store written by hand, a cut value): still one bounded line.
    (odd,) = text.log_lines("snapshot", "x" * 1000)
    assert len(odd) == text.LINE_CHARS and odd.endswith("…")


def test_long_diff_values_are_cut_and_the_path_kept() -> None:
    path = "status.conditions[type=Progressing]"
    line = f'{path} null -> {{"message":"{"m" * 300}"}}'
    (short,) = text.log_lines("diff", line)
    assert short.startswith(f"{path} null -> ")
    assert short.endswith("…") and len(short.split(" -> ")[1]) == text.VALUE_CHARS
    assert text.log_lines("diff", "spec.replicas 2 -> 4") == ["spec.replicas 2 -> 4"]
    assert text.log_lines("diff", line, full=True) == [line]


def test_a_long_diff_shows_its_first_lines_and_how_many_more() -> None:
    diff = "\n".join(f'metadata.labels.l{i} null -> "v"' for i in range(30))
    lines = text.log_lines("diff", diff)
    assert len(lines) == text.DIFF_LINES
    assert lines[:-1] == diff.splitlines()[: text.DIFF_LINES - 1]
    assert lines[-1] == f"… {30 - text.DIFF_LINES + 1} more lines (--full shows them)"
    assert text.log_lines("diff", diff, full=True) == diff.splitlines()


def test_a_long_message_is_cut() -> None:
    (line,) = text.log_lines("error", "Forbidden: " + "y" * 500)
    assert line.startswith("Forbidden: y") and len(line) == text.LINE_CHARS and line.endswith("…")


def _dump(store: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    argv = ["dump", "--store", str(store), "--cluster", SAMPLE_CLUSTER, "--resource", "deployments"]
    assert cli.main([*argv, "--name", "demo", *extra]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("mode", [[], ["--mode", "tracing"]], ids=["classic", "tracing"])
def test_the_sample_dump_is_readable_by_default_and_whole_with_full(
    sample_store: Path, capsys: pytest.CaptureFixture[str], mode: list[str]
) -> None:
    short = _dump(sample_store, capsys, *mode)
    whole = _dump(sample_store, capsys, *mode, "--full")
    longest = max(len(line) for line in short.splitlines())
    # Tree drawing and indentation come on top of the abbreviated text.
    assert longest <= text.LINE_CHARS + 40, longest
    assert max(len(line) for line in whole.splitlines()) > 1000
    assert "snapshot: Deployment default/demo, resourceVersion" in short
    assert '"kind":"Deployment"' not in short and '"kind":"Deployment"' in whole
    # Every object and request is still there: only the long values are shorter.
    assert short.count("\n") <= whole.count("\n")
    for line in whole.splitlines():
        if " by " in line and " -> " in line:  # a request's headline
            assert line in short
