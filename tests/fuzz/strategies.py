"""Hypothesis strategies for realistic-but-odd input: audit batches, query parameters, replay files.

Audit events start valid (``tests.factories.audit_event``) and are then bent one field at a time:
wrong JSON types, nulls, missing fields, huge numbers, deep nesting, long and non-ASCII strings,
timestamps far in the past or future. Valid events carry ids starting ``ok-`` and odd ones
``odd-``, so a check can tell which events must be stored once a batch is acknowledged.
"""

from __future__ import annotations

import copy
import gzip
import itertools
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import yaml
from hypothesis import strategies as st

from tests.factories import audit_event, event_list, kube_event

CLUSTER = "fuzz"
NAMES = ("web-0", "web-1", "api")
# (group, resource): a core resource, a grouped one, and one the kind table may not know.
RESOURCES = (("", "pods"), ("", "configmaps"), ("apps", "deployments"))
VERBS = ("create", "update", "patch", "delete")

_ids = itertools.count(1)


class Huge:
    """A JSON number too long for most decoders (Python's int() refuses more than 4,300 digits)."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def token(self) -> str:
        return f"\x00huge:{self.digits}\x00"


def to_json(value: Any) -> bytes:
    """JSON text of ``value``, with each `Huge` written as a bare number of its length."""
    text = json.dumps(value, default=lambda o: o.token() if isinstance(o, Huge) else str(o))
    # The placeholder is a JSON string holding \u0000 escapes: swap it for the number itself.
    while '"\\u0000huge:' in text:
        start = text.index('"\\u0000huge:')
        end = text.index('\\u0000"', start + 1)
        digits = int(text[start + len('"\\u0000huge:') : end])
        text = text[:start] + "9" * digits + text[end + len('\\u0000"') :]
    return text.encode("utf-8", "surrogatepass")


def nested(depth: int, leaf: Any = "x") -> Any:
    value: Any = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


# -- odd values

TIMES = st.sampled_from(
    [
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59.999999999Z",
        "0001-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2262-04-12T00:00:00Z",
        "2024-02-30T10:00:00Z",
        "2024-05-01T10:00:00",
        "2024-05-01T10:00:00.123456789+05:45",
        "2024-05-01 10:00:00Z",
        "yesterday",
        "",
        "2024-05-01T25:61:61Z",
        "+275760-09-13T00:00:00Z",
    ]
)

LONG_STRINGS = st.integers(1_000, 60_000).map(lambda n: "x" * n)
TEXT = st.text(max_size=40)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.just(2**64 - 1),
    st.just(-(2**63)),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
ODD_VALUES: st.SearchStrategy[Any] = st.one_of(
    SCALARS,
    LONG_STRINGS,
    TIMES,
    st.integers(400, 6_000).map(Huge),
    st.integers(50, 400).map(nested),
    st.lists(SCALARS, max_size=4),
    st.dictionaries(TEXT, SCALARS, max_size=4),
    st.sampled_from(["\u202e\u0000<script>alert(1)</script>", "ü" * 300, "\ud83d\ude00" * 50, "../../etc"]),
)

DELETE = object()
"""A mutation that removes the field."""

FIELDS = (
    "kind",
    "apiVersion",
    "level",
    "auditID",
    "stage",
    "requestURI",
    "verb",
    "user",
    "user.username",
    "user.groups",
    "user.uid",
    "impersonatedUser",
    "userAgent",
    "sourceIPs",
    "objectRef",
    "objectRef.resource",
    "objectRef.namespace",
    "objectRef.name",
    "objectRef.uid",
    "objectRef.apiGroup",
    "objectRef.apiVersion",
    "objectRef.subresource",
    "objectRef.resourceVersion",
    "responseStatus",
    "responseStatus.code",
    "responseStatus.status",
    "responseStatus.message",
    "responseStatus.details",
    "requestReceivedTimestamp",
    "stageTimestamp",
    "timestamp",
    "annotations",
    "requestObject",
    "responseObject",
    "requestObject.kind",
    "requestObject.metadata",
    "requestObject.metadata.name",
    "requestObject.metadata.uid",
    "requestObject.metadata.resourceVersion",
    "requestObject.metadata.ownerReferences",
    "requestObject.metadata.labels",
    "responseObject.metadata",
    "responseObject.metadata.uid",
    "responseObject.metadata.deletionTimestamp",
    "responseObject.metadata.managedFields",
    "responseObject.spec",
    "responseObject.data",
    "responseObject.items",
)
_TIME_FIELDS = frozenset({"requestReceivedTimestamp", "stageTimestamp", "timestamp"})


def set_path(document: dict[str, Any], path: str, value: Any) -> None:
    """Set (or, with `DELETE`, remove) a dotted path, making the dicts on the way as needed."""
    *parents, last = path.split(".")
    here: Any = document
    for part in parents:
        if not isinstance(here.get(part), dict):
            here[part] = {}
        here = here[part]
    if value is DELETE:
        here.pop(last, None)
    else:
        here[last] = value


@dataclass
class Batch:
    """One webhook body and what it holds."""

    body: bytes
    valid_ids: list[str] = field(default_factory=list)
    odd_ids: list[str] = field(default_factory=list)
    keys: set[tuple[str, str, str, str]] = field(default_factory=set)
    """(group, resource, namespace, name) of every valid event: the objects whose views must answer."""

    def describe(self) -> str:
        return self.body[:2_000].decode("utf-8", "replace")

    def __repr__(self) -> str:
        # Hypothesis prints a failing case; 60,000-character fields would bury the point.
        return f"Batch({self.describe()[:1_500]!r}, valid={self.valid_ids}, odd={self.odd_ids})"


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    group, resource = draw(st.sampled_from(RESOURCES))
    name = draw(st.sampled_from(NAMES))
    verb = draw(st.sampled_from(VERBS))
    minute = draw(st.integers(0, 59))
    second = draw(st.integers(0, 59))
    code = {"create": 201, "delete": 200}.get(verb, 200)
    return audit_event(
        verb=verb,
        group=group,
        resource=resource,
        name=name,
        uid=f"uid-{resource}-{name}",
        code=code,
        received=f"2024-05-01T10:{minute:02d}:{second:02d}.000000Z",
        completed=f"2024-05-01T10:{minute:02d}:{second:02d}.010000Z",
        audit_id=f"ok-{next(_ids)}",
    )


@st.composite
def odd_events(draw: st.DrawFn) -> dict[str, Any]:
    event = copy.deepcopy(draw(valid_events()))
    event["auditID"] = f"odd-{next(_ids)}"
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(FIELDS))
        if path in _TIME_FIELDS and draw(st.booleans()):
            value: Any = draw(TIMES)
        else:
            value = draw(st.one_of(st.just(DELETE), ODD_VALUES))
        set_path(event, path, value)
    return event


def key_of(event: dict[str, Any]) -> tuple[str, str, str, str]:
    ref = event["objectRef"]
    return (
        ref.get("apiGroup", ""),
        ref["resource"],
        ref.get("namespace", ""),
        event["requestObject"]["metadata"]["name"],
    )


ENVELOPES = (
    "list",
    "list",
    "list",
    "list",
    "v1beta1",
    "lone event",
    "extra fields",
    "items null",
    "items object",
    "kind wrong",
    "api version wrong",
    "not json",
    "not utf-8",
    "top-level array",
)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    """A webhook body: mostly an EventList of valid and odd events, sometimes a broken envelope."""
    flags = draw(st.lists(st.booleans(), min_size=1, max_size=4))
    events = [draw(valid_events()) if valid else draw(odd_events()) for valid in flags]
    envelope = draw(st.sampled_from(ENVELOPES))
    batch = Batch(b"")
    for event in events:
        ident = event.get("auditID")
        if isinstance(ident, str) and ident.startswith("ok-"):
            batch.valid_ids.append(ident)
            batch.keys.add(key_of(event))
        elif isinstance(ident, str) and ident.startswith("odd-"):
            # An id the mutation replaced (``<script>``, a timestamp...) is drawn from a fixed pool
            # and recurs across batches for other objects, so it cannot be checked for uniqueness.
            batch.odd_ids.append(ident)
    document: Any = event_list(events)
    if envelope == "v1beta1":
        document["apiVersion"] = "audit.k8s.io/v1beta1"
    elif envelope == "lone event":
        document = events[0]
        batch.valid_ids = batch.valid_ids[:1] if batch.valid_ids[:1] == [events[0].get("auditID")] else []
        batch.odd_ids = [] if batch.valid_ids else batch.odd_ids[:1]
        # Only the first event is sent: the others' objects are not the batch's to look up.
        batch.keys = {key_of(events[0])} if batch.valid_ids else set()
    elif envelope == "extra fields":
        document["metadata"] = draw(ODD_VALUES)
        document[draw(TEXT)] = draw(ODD_VALUES)
    elif envelope in ("items null", "items object"):
        document["items"] = None if envelope == "items null" else {"0": events[0]}
        batch.valid_ids, batch.odd_ids, batch.keys = [], [], set()
    elif envelope == "kind wrong":
        document["kind"] = draw(st.one_of(ODD_VALUES, st.sampled_from(["Event", "Status", "List"])))
    elif envelope == "api version wrong":
        document["apiVersion"] = draw(st.one_of(ODD_VALUES, st.sampled_from(["v1", "audit.k8s.io/v2"])))
    elif envelope == "top-level array":
        document = events
    batch.body = to_json(document)
    if envelope == "not json":
        # Drawn independently of the body's length (its ids come from a counter), so the same
        # choices always draw the same way.
        cut = draw(st.integers(0, 2**20)) % max(1, len(batch.body))
        batch.body = batch.body[:cut] + draw(st.binary(min_size=1, max_size=20).filter(lambda b: b != b"\n"))
    elif envelope == "not utf-8":
        batch.body = batch.body.replace(b'"kubectl', b'"\xff\xfekubectl', 1) or b"\xff"
    return batch


# -- query parameters

SAMPLE_NAMES = ("demo", "demo-85dd8d7bd8", "demo-5544f8b48c", "nosuch", "")
QUERY_TIMES = st.one_of(
    st.sampled_from(
        [
            "2026-11-23T07:25:00Z",
            "2026-11-23T07:00:00Z",
            "2026-11-23T07:25:00",
            "2026-11-23T07:25:00+14:00",
            "1795418700",
            "1795418700000",
            "1795418700000000",
            "1795418700000000000",
            "9223372036854775807",
            "9223372036854775808",
            "99999999999999999999999999999",
            "0",
            "-1",
            "1e400",
            "1.5",
            ".",
            "NaN",
            "inf",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "2026-13-40T99:99:99Z",
            "now",
            "   ",
            "\u0661\u0662",
            "²³",
        ]
    ),
    st.integers(-(2**80), 2**80).map(str),
    TEXT,
    LONG_STRINGS,
)
LOOKBACKS = st.one_of(
    st.sampled_from(["1h", "2h30m", "7d", "1w", "custom", "0", "99999999999999999999d", "1.5h", "h", "-1h"]),
    TEXT,
)
TAGS_JSON = st.one_of(
    st.sampled_from(
        [
            '{"resource":"deployments","name":"demo"}',
            '{"name":"demo"}',
            "{",
            "[1]",
            "null",
            '{"a":1}',
            '{"a":{"b":"c"}}',
            '"x"',
            '{"name":"' + "d" * 50_000 + '"}',
            "9" * 5_000,
        ]
    ),
    st.dictionaries(TEXT, TEXT, max_size=3).map(json.dumps),
    TEXT,
)
TRACE_IDS = st.one_of(
    st.sampled_from(
        [
            "ff21000000e1e3e70000000000001234",
            "ff20000000" + "0" * 22,
            "ffffffffffffffffffffffffffffffff",
            "0" * 32,
            "FF21000000E1E3E70000000000001234",
            "ff2100",
            "zz" * 16,
            "f" * 64,
        ]
    ),
    st.text(alphabet="0123456789abcdefABCDEF", min_size=0, max_size=40),
    st.builds(
        lambda d, n: f"ff{d}{n}",
        st.text("0123456789abcdef", min_size=8, max_size=8),
        st.text("0123456789abcdef", min_size=22, max_size=22),
    ),
    TEXT,
    LONG_STRINGS,
)
PARAM_VALUES = st.one_of(
    st.sampled_from(
        ["", "tracetest", "apps", "deployments", "deploy", "default", "pods", "admin", "true", "x"]
    ),
    st.sampled_from(SAMPLE_NAMES),
    st.integers(-(2**70), 2**70).map(str),
    TEXT,
    LONG_STRINGS,
)

ENDPOINTS: dict[str, tuple[str, ...]] = {
    "/api/services": (),
    "/api/operations": ("service",),
    "/api/traces": ("service", "operation", "tags", "tag", "start", "end", "lookback", "limit", "traceID"),
    "/api/traces/{id}": ("start", "end"),
    "/api/services/{id}/operations": (),
    "/redirect": ("cluster", "group", "resource", "namespace", "name", "ts", "uid"),
    "/api/kelemetry/modes": (),
    "/api/kelemetry/clusters": (),
    "/api/kelemetry/resources": ("cluster",),
    "/api/kelemetry/objects": ("cluster", "resource", "group", "namespace", "q", "limit"),
    "/api/kelemetry/lookup": (
        "cluster",
        "group",
        "resource",
        "namespace",
        "name",
        "start",
        "end",
        "mode",
        "uid",
    ),
    "/api/kelemetry/views/{id}": (),
    "/api/kelemetry/changes": (
        "cluster",
        "group",
        "resource",
        "namespace",
        "user",
        "verb",
        "errors",
        "start",
        "end",
        "limit",
        "cursor",
        "histogram",
    ),
    "/api/kelemetry/revisions": ("cluster", "group", "resource", "namespace", "name", "uid", "at"),
    "/api/kelemetry/manifest": (
        "cluster",
        "group",
        "resource",
        "namespace",
        "name",
        "uid",
        "at",
        "rv",
        "format",
    ),
    "/api/kelemetry/manifest/diff": (
        "cluster",
        "group",
        "resource",
        "namespace",
        "name",
        "uid",
        "at",
        "rv",
        "to",
        "toRv",
    ),
}
# What a sensible client sends, so that many requests get past the first refusal to the store.
SENSIBLE = {
    "cluster": "tracetest",
    "group": "apps",
    "resource": "deployments",
    "namespace": "default",
    "name": "demo",
    "ts": "2026-11-23T07:25:00Z",
    "service": "tracing [full tree]",
    "operation": "tracetest",
    "tags": '{"resource":"deployments","name":"demo"}',
    "lookback": "1h",
    "start": "1795416000000000",
    "end": "1795420000000000",
    "at": "2026-11-23T07:25:00Z",
    "to": "2026-11-23T07:23:31Z",
}
PARAM_STRATEGIES: dict[str, st.SearchStrategy[str]] = {
    "start": QUERY_TIMES,
    "end": QUERY_TIMES,
    "ts": QUERY_TIMES,
    "at": QUERY_TIMES,
    "to": QUERY_TIMES,
    "lookback": LOOKBACKS,
    "tags": TAGS_JSON,
    "traceID": TRACE_IDS,
    "mode": st.one_of(st.sampled_from(["21000000", "00000000", "99999999", "2100", "zz"]), TEXT),
    "service": st.one_of(st.sampled_from(["tracing", "tree [full tree]", "grouped", "nope"]), TEXT),
    "cursor": st.one_of(st.sampled_from(["1795418700000000:1", "x:y", ":", "-1:-1", "9" * 400 + ":1"]), TEXT),
}


@dataclass
class Request:
    path: str
    params: list[tuple[str, str]]

    def __repr__(self) -> str:
        return f"Request({self.path[:300]!r}, {[(k, v[:300]) for k, v in self.params]!r})"


@st.composite
def query_requests(draw: st.DrawFn) -> Request:
    """A GET to one of the query side's endpoints, with sensible, odd and missing parameters."""
    route = draw(st.sampled_from(sorted(ENDPOINTS)))
    path = route
    if "{id}" in route:
        path = route.replace("{id}", quote(draw(TRACE_IDS), safe="") or "x")
    params: list[tuple[str, str]] = []
    for name in ENDPOINTS[route]:
        how = draw(st.sampled_from(("sensible", "sensible", "odd", "absent")))
        if how == "absent" or (how == "sensible" and name not in SENSIBLE):
            continue
        values = (
            [SENSIBLE[name]]
            if how == "sensible"
            else draw(st.lists(PARAM_STRATEGIES.get(name, PARAM_VALUES), min_size=1, max_size=2))
        )
        params.extend((name, value) for value in values)
    # The client refuses URLs over 64 KiB, so one 50,000-character value per request at most.
    budget = 60_000 - len(quote(path))
    kept = []
    for name, value in params:
        budget -= len(quote(value)) + len(name) + 2
        kept.append((name, value if budget >= 0 else value[:100]))
    return Request(path if len(quote(path)) < 60_000 else path[:100], kept)


# -- replay files


@dataclass
class ReplayFile:
    data: bytes
    valid_ids: list[str]
    """Ids of valid events that the reading code must yield exactly once."""
    form: str

    def __repr__(self) -> str:
        return f"ReplayFile({self.form}, {self.data[:1_500]!r}, valid={self.valid_ids})"


def _garbage_lines() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=60).map(lambda b: b.replace(b"\n", b" ").replace(b"\r", b" ")),
        st.sampled_from(
            [b"{", b"[", b"}", b"null", b"42", b'"x"', b"---", b"- a", b"a: b", b"\xef\xbb\xbf{"]
        ),
        TEXT.map(lambda t: t.replace("\n", " ").replace("\r", " ").encode("utf-8", "surrogatepass")),
        st.integers(50, 300).map(lambda n: to_json(nested(n))),
    )


@st.composite
def replay_files(draw: st.DrawFn) -> ReplayFile:
    """An input as `kelemetry replay` reads it: JSON lines (maybe gzipped), a JSON document, YAML."""
    form = draw(st.sampled_from(("jsonl", "jsonl", "jsonl.gz", "array", "eventlist", "yaml", "mixed")))
    records: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(("valid", "valid", "odd", "garbage", "blank", "kube")))
        if kind == "valid":
            records.append(("valid", draw(valid_events())))
        elif kind == "odd":
            records.append(("odd", draw(odd_events())))
        elif kind == "kube":
            records.append(
                ("kube", kube_event(kind="Pod", name=draw(st.sampled_from(NAMES)), reason="Pulled"))
            )
        elif kind == "garbage" and form in ("jsonl", "jsonl.gz", "mixed"):
            records.append(("garbage", draw(_garbage_lines())))
        elif kind == "blank" and form in ("jsonl", "jsonl.gz", "mixed"):
            records.append(("blank", b"   "))
    valid_ids = [value["auditID"] for kind, value in records if kind == "valid"]
    first = next((kind for kind, _ in records if kind != "blank"), None)
    if first == "garbage":
        # The first record decides how a file is read (a YAML-looking first line makes the file
        # YAML, whose error ends the reading with a warning): the promise holds for JSON lines only.
        valid_ids = []
    documents = [value for kind, value in records if kind in ("valid", "odd", "kube")]
    if form in ("jsonl", "jsonl.gz", "mixed"):
        lines = [value if isinstance(value, bytes) else to_json(value) for _, value in records]
        data = b"\n".join(lines) + draw(st.sampled_from([b"\n", b"", b"\r\n"]))
        if form == "jsonl.gz":
            data = gzip.compress(data)
        if form == "mixed":
            # Only lines a JSON reader can split keep the promise; a document before them does not.
            data = draw(st.sampled_from([b"", b"\n", b"# comment\n"])) + data
            valid_ids = valid_ids if not data.startswith(b"#") else []
    elif form in ("array", "eventlist"):
        data = to_json(documents if form == "array" else event_list(documents))
        # A whole document with a number of more digits than Python converts is unreadable whole.
        valid_ids = valid_ids if b"9" * 4_300 not in data else []
    else:
        try:
            data = yaml.safe_dump_all(documents).encode() if documents else b"--- {}\n"
        except (yaml.YAMLError, RecursionError):
            data = b"---\n"
        # Odd values (huge numbers, deep nesting) may change how YAML reads the whole file: no promise.
        valid_ids = valid_ids if all(kind != "odd" for kind, _ in records) else []
    return ReplayFile(data, valid_ids, form)
