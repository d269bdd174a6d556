"""Recorded audit log files (kelemetry.receivers.auditfiles).

Covers plain and gzip files (recognised by content, not name), blank and bad lines, EventList
lines, batching, progress reports, unreadable and truncated files, the one-line summary of what
could not be read (count, first place, a hint), and sniffing audit logs apart from Kubernetes
Events files. Other forms (YAML, pretty JSON, GKE exports, stdin, directories) are replayed in
tests/kelemetry/test_replay_inputs.py.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from kelemetry import errors
from kelemetry.receivers.auditfiles import FileStats, open_audit_file, read_audit_file, sniff
from kelemetry.receivers.auditwire import AuditEvent
from tests.factories import audit_event, event_list, mismatches


def write_lines(path: Path, lines: list[str], *, zipped: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if zipped else data)
    return path


def compact(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))


def read_all(path: Path, **kwargs: Any) -> tuple[list[list[AuditEvent]], FileStats]:
    stats = FileStats()
    batches = [list(batch) for batch in read_audit_file(str(path), stats, **kwargs)]
    return batches, stats


def ids(batches: list[list[AuditEvent]]) -> list[str]:
    return [event.auditID for batch in batches for event in batch]


class Progress:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


@pytest.mark.parametrize(
    ("name", "zipped"),
    [
        pytest.param("audit.log", False, id="plain"),
        pytest.param("audit.log", True, id="gzip-named-log"),
        pytest.param("audit.log.1.gz", True, id="gzip-named-gz"),
        pytest.param("audit.log.gz", False, id="plain-named-gz"),
    ],
)
def test_events_are_read_whatever_the_file_is_named(tmp_path: Path, name: str, zipped: bool) -> None:
    raws = [audit_event(audit_id=f"a{i}") for i in range(3)]
    path = write_lines(tmp_path / name, [compact(raw) for raw in raws], zipped=zipped)
    batches, stats = read_all(path)
    assert len(batches) == 1 and mismatches(batches[0], raws) == []
    assert (stats.lines, stats.events, stats.bad_lines) == (3, 3, 0)


def test_gzip_is_recognised_by_its_magic_bytes(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "audit.log", [compact(audit_event())], zipped=True)
    source, raw = open_audit_file(str(path))
    try:
        assert source is not raw
        assert json.loads(source.readline())["kind"] == "Event"
    finally:
        source.close()
        raw.close()
    plain = write_lines(tmp_path / "plain.gz", [compact(audit_event())])
    source, raw = open_audit_file(str(plain))
    try:
        assert source is raw and raw.tell() == 0
    finally:
        raw.close()


def test_blank_lines_are_ignored(tmp_path: Path) -> None:
    raws = [audit_event(audit_id="a1"), audit_event(audit_id="a2")]
    path = write_lines(tmp_path / "audit.log", ["", compact(raws[0]), "   ", "\t", "", compact(raws[1]), ""])
    batches, stats = read_all(path)
    assert len(batches) == 1 and mismatches(batches[0], raws) == []
    assert (stats.lines, stats.events, stats.bad_lines) == (7, 2, 0)


def test_windows_line_endings_are_read(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(
        b"\r\n".join(compact(audit_event(audit_id=f"a{i}")).encode() for i in range(2)) + b"\r\n"
    )
    batches, stats = read_all(path)
    assert ids(batches) == ["a0", "a1"] and stats.bad_lines == 0


def test_bad_lines_are_counted_and_summarized_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = [
        compact(audit_event(audit_id="a1")),
        "{broken",
        compact({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}}),
        "[1, 2]",
        compact({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "stage": "ResponseComplete"}),
        compact(event_list([audit_event(audit_id="in-list"), 3])),
        compact({**audit_event(), "user": "alice"}),
        compact({**audit_event(), "kind": "Pod"}),
        compact(audit_event(audit_id="a2")),
    ]
    path = write_lines(tmp_path / "audit.log", lines)
    with caplog.at_level(logging.DEBUG, logger="kelemetry.receivers"):
        batches, stats = read_all(path)
    # A list's good items are kept; its bad ones count one each ("[1, 2]" holds two).
    assert ids(batches) == ["a1", "in-list", "a2"]
    assert (stats.lines, stats.events, stats.bad_lines) == (9, 3, 8)
    assert (stats.first_bad, stats.hint) == ("line 2", "not valid JSON")
    assert stats.summary("audit.log") == (
        "audit.log: 8 unreadable records skipped, the first at line 2: not valid JSON"
    )
    assert caplog.records == []


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        pytest.param(
            compact({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}}),
            "a Pod (v1) object, not an audit event or a Kubernetes Event",
            id="manifest",
        ),
        pytest.param(
            compact({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "stage": "ResponseComplete"}),
            "not an audit event: object missing required field auditID",
            id="no-audit-id",
        ),
        pytest.param(
            compact({**audit_event(), "user": "alice"}),
            "not an audit event: user: Expected object | null, got str",
            id="wrong-type",
        ),
        pytest.param("apiVersion: v1", "looks like YAML inside a JSON lines file", id="yaml"),
        pytest.param("{", "looks like pretty-printed JSON mixed into a JSON lines file", id="pretty"),
        pytest.param(
            compact({"kind": "List", "apiVersion": "v1", "items": [{"kind": "Pod"}]}),
            "a Pod (no apiVersion) object, not an audit event or a Kubernetes Event",
            id="list-of-pods",
        ),
        pytest.param(
            compact({"insertId": "x", "logName": "l", "jsonPayload": {"message": "hi"}}),
            "a Cloud Logging entry with a jsonPayload, not an audit log entry",
            id="logging-json-payload",
        ),
        pytest.param(
            compact({"insertId": "x", "protoPayload": {"methodName": "google.container.v1.GetCluster"}}),
            "a Cloud Logging audit entry for 'google.container.v1.GetCluster', not a Kubernetes API request",
            id="logging-gcp-audit",
        ),
    ],
)
def test_the_first_unreadable_record_gets_a_hint(tmp_path: Path, line: str, hint: str) -> None:
    path = write_lines(tmp_path / "audit.log", [compact(audit_event(audit_id="a1")), line, line])
    batches, stats = read_all(path)
    assert ids(batches) == ["a1"]
    assert stats.first_bad in ("line 2", "line 2, item 1")
    assert stats.hint == hint
    assert stats.bad_lines == 2


def test_non_utf8_line_is_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(b"\xff\xfe\n" + compact(audit_event(audit_id="a1")).encode() + b"\n")
    batches, stats = read_all(path)
    assert ids(batches) == ["a1"]
    assert stats.bad_lines == 1


def test_a_line_whose_body_holds_a_number_beyond_any_float_is_read_without_its_body(tmp_path: Path) -> None:
    # Bodies are judged when read: such a body is treated as absent, and the line is not a bad line.
    huge = compact(audit_event(audit_id="huge", verb="update", code=200)).replace(
        '"resourceVersion":"100"}}}', '"resourceVersion":"100"},"n":' + "7" * 5000 + "}}"
    )
    path = write_lines(tmp_path / "audit.log", [huge, compact(audit_event(audit_id="next"))])
    batches, stats = read_all(path)
    assert ids(batches) == ["huge", "next"] and stats.bad_lines == 0
    assert batches[0][0].response() is None
    assert batches[0][0].request() is not None


@pytest.mark.parametrize(
    "odd",
    [
        {"kind": "Event", "apiVersion": ["audit.k8s.io/v1"]},
        {"kind": "Event", "apiVersion": {"group": "audit.k8s.io"}},
        {"kind": "EventList", "apiVersion": ["v1"], "items": [{"kind": "Event"}]},
    ],
)
def test_a_record_whose_api_version_is_not_a_string_is_unreadable_not_a_crash(
    tmp_path: Path, odd: dict[str, Any]
) -> None:
    # Found by tests/fuzz: the apiVersion was looked up in a set, and a list raised TypeError.
    path = tmp_path / "audit.log"
    path.write_text(json.dumps(odd) + "\n" + json.dumps(audit_event(audit_id="kept")) + "\n")
    stats = FileStats()
    events = [event.auditID for batch in read_audit_file(str(path), stats) for event in batch]
    assert events == ["kept"]
    assert stats.bad_lines == 1


def test_a_line_holding_a_number_beyond_a_double_still_yields_its_readable_events(tmp_path: Path) -> None:
    # Found by tests/fuzz: such a line was refused whole, and the valid events in it were lost.
    odd = audit_event(audit_id="odd")
    odd["user"] = 10**400
    line = json.dumps(event_list([audit_event(audit_id="kept"), odd]))
    path = tmp_path / "audit.log"
    path.write_text(line + "\n" + json.dumps(audit_event(audit_id="after")) + "\n")
    stats = FileStats()
    events = [event.auditID for batch in read_audit_file(str(path), stats) for event in batch]
    assert events == ["kept", "after"]
    assert (stats.bad_lines, stats.first_bad) == (1, "line 1, item 2")


def test_a_document_holding_a_number_of_5000_digits_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    # Found by tests/fuzz: Python's JSON decoder refuses to convert such a number with a ValueError
    # that is no JSONDecodeError, and `kelemetry replay` died with a traceback.
    path = tmp_path / "audit.json"
    path.write_text("[\n" + json.dumps(audit_event(audit_id="odd")) + ',\n{"n": ' + "9" * 5000 + "}\n]\n")
    stats = FileStats()
    assert [event.auditID for batch in read_audit_file(str(path), stats) for event in batch] == []
    assert stats.bad_lines >= 1


def test_event_list_lines_are_expanded(tmp_path: Path) -> None:
    first = [audit_event(audit_id="l1"), audit_event(audit_id="l2")]
    lines = [
        compact(event_list(first)),
        compact(audit_event(audit_id="bare")),
        compact(event_list([], "audit.k8s.io/v1beta1")),
    ]
    path = write_lines(tmp_path / "audit.log", lines)
    batches, stats = read_all(path)
    assert ids(batches) == ["l1", "l2", "bare"]
    assert (stats.lines, stats.events, stats.bad_lines) == (3, 3, 0)


def test_bare_events_without_api_version_are_read(tmp_path: Path) -> None:
    raw = {k: v for k, v in audit_event(audit_id="old").items() if k != "apiVersion"}
    batches, _ = read_all(write_lines(tmp_path / "audit.log", [compact(raw)]))
    assert len(batches) == 1 and mismatches(batches[0], [raw]) == []
    assert batches[0][0].apiVersion == ""


@pytest.mark.parametrize(
    ("count", "batch_lines", "sizes"),
    [
        pytest.param(5, 2, [2, 2, 1], id="remainder"),
        pytest.param(4, 2, [2, 2], id="exact"),
        pytest.param(3, 1, [1, 1, 1], id="one-per-batch"),
        pytest.param(3, 10, [3], id="one-batch"),
    ],
)
def test_batches_hold_batch_lines_events(
    tmp_path: Path, count: int, batch_lines: int, sizes: list[int]
) -> None:
    raws = [audit_event(audit_id=f"a{i}") for i in range(count)]
    path = write_lines(tmp_path / "audit.log", [compact(raw) for raw in raws])
    batches, stats = read_all(path, batch_lines=batch_lines)
    assert [len(batch) for batch in batches] == sizes
    assert mismatches([e for batch in batches for e in batch], raws) == []
    assert stats.events == count


@pytest.mark.parametrize("zipped", [pytest.param(False, id="plain"), pytest.param(True, id="gzip")])
def test_progress_ends_with_total_of_total(tmp_path: Path, zipped: bool) -> None:
    path = write_lines(
        tmp_path / "audit.log", [compact(audit_event(audit_id=f"a{i}")) for i in range(7)], zipped=zipped
    )
    total = path.stat().st_size
    progress = Progress()
    batches, _ = read_all(path, progress=progress, batch_lines=2)
    assert len(batches) == 4
    # One report per full batch, then the final one.
    assert len(progress.calls) == 4
    assert progress.calls[-1] == (total, total)
    assert all(reported_total == total for _, reported_total in progress.calls)
    done = [d for d, _ in progress.calls]
    assert done == sorted(done) and all(0 < d <= total for d in done)


def test_progress_of_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.log"
    path.write_bytes(b"")
    progress = Progress()
    batches, stats = read_all(path, progress=progress)
    assert batches == [] and stats == FileStats()
    assert progress.calls == [(0, 0)]


def test_every_line_is_decoded_and_the_converter_decides(tmp_path: Path) -> None:
    lines = [compact(audit_event(stage="RequestReceived")), compact(audit_event(verb="get", code=200))]
    batches, stats = read_all(write_lines(tmp_path / "audit.log", lines))
    assert [e.stage for e in batches[0]] == ["RequestReceived", "ResponseComplete"]
    assert stats.events == 2


def test_missing_file_is_one_line_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.log"
    with pytest.raises(errors.InputError) as caught:
        list(read_audit_file(str(missing)))
    message = str(caught.value)
    assert message == f"cannot read {missing}: No such file or directory"
    assert "\n" not in message
    assert caught.value.status == 400


def test_directory_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(errors.InputError, match="cannot read"):
        list(read_audit_file(str(tmp_path)))


def test_truncated_gzip_is_an_input_error(tmp_path: Path) -> None:
    lines = [compact(audit_event(audit_id=f"a{i}")) for i in range(50)]
    whole = write_lines(tmp_path / "whole.gz", lines, zipped=True)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(whole.read_bytes()[:-20])
    with pytest.raises(errors.InputError, match=rf"cannot read {cut} past line \d+"):
        list(read_audit_file(str(cut)))


def test_corrupt_gzip_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.log"
    bad.write_bytes(b"\x1f\x8b" + b"not really deflate data" * 4)
    with pytest.raises(errors.InputError, match=f"cannot read {bad}"):
        list(read_audit_file(str(bad)))


def test_stats_accumulate_across_files(tmp_path: Path) -> None:
    stats = FileStats()
    for name in ("a.log", "b.log"):
        path = write_lines(tmp_path / name, [compact(audit_event()), "{bad"])
        list(read_audit_file(str(path), stats))
    assert (stats.lines, stats.events, stats.bad_lines) == (4, 2, 2)


# ---------------------------------------------------------------------------------------------
# sniff


@pytest.mark.parametrize(
    ("lines", "zipped", "expected"),
    [
        pytest.param([compact(audit_event())], False, "audit", id="audit"),
        pytest.param([compact(audit_event())], True, "audit", id="audit-gzip"),
        pytest.param(
            [compact({k: v for k, v in audit_event().items() if k != "apiVersion"})],
            False,
            "audit",
            id="audit-without-api-version",
        ),
        pytest.param(
            ["", compact({"kind": "Event", "apiVersion": "v1", "metadata": {"name": "e"}})],
            False,
            "events",
            id="kube-event-after-blank",
        ),
        pytest.param(
            [compact({"type": "ADDED", "object": {"kind": "Event", "apiVersion": "events.k8s.io/v1"}})],
            True,
            "events",
            id="watch-event-gzip",
        ),
        pytest.param(["{broken"], False, "audit", id="bad-first-line"),
        pytest.param([""], False, "audit", id="blank"),
    ],
)
def test_sniff(tmp_path: Path, lines: list[str], zipped: bool, expected: str) -> None:
    assert sniff(str(write_lines(tmp_path / "input", lines, zipped=zipped))) == expected


def test_sniff_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(errors.InputError, match="cannot read"):
        sniff(str(tmp_path / "missing"))


def test_a_broken_first_line_does_not_stop_streaming(tmp_path: Path) -> None:
    lines = ['{"kind": "Event", broken}'] + [compact(audit_event(audit_id=f"a{i}")) for i in range(5)]
    path = write_lines(tmp_path / "audit.log", lines)
    progress = Progress()
    batches, stats = read_all(path, progress=progress, batch_lines=2)
    assert ids(batches) == [f"a{i}" for i in range(5)]
    assert (stats.bad_lines, stats.first_bad, stats.hint) == (1, "line 1", "not valid JSON")
    # Batches came out as the file was read, not after reading it whole.
    assert len(progress.calls) == 3 and progress.calls[0][0] < path.stat().st_size


@pytest.mark.parametrize("pretty", [pytest.param(False, id="json-lines"), pytest.param(True, id="pretty")])
def test_a_byte_order_mark_is_ignored(tmp_path: Path, pretty: bool) -> None:
    raws = [audit_event(audit_id="a1"), audit_event(audit_id="a2")]
    text = json.dumps(raws, indent=2) if pretty else "\n".join(compact(raw) for raw in raws)
    path = tmp_path / "audit.log"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    batches, stats = read_all(path)
    assert ids(batches) == ["a1", "a2"] and stats.bad_lines == 0
