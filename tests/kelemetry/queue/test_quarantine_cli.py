"""`kelemetry quarantine --queue`: the scaled mode's quarantine, listed, sent back and purged, on a real
nats-server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from kelemetry import cli
from kelemetry.queue import layout
from kelemetry.queue.jetstream import JetStream, Message
from kelemetry.receivers import quarantined
from kelemetry.receivers.auditwire import decode_line
from tests.natsserver import NatsServer

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "deployment" / "audit.log"
PARTITIONS = 4


def _set_aside(server: NatsServer, count: int) -> list[str]:
    """``count`` sample events quarantined as a worker does; their audit IDs."""
    lines = [line for line in SAMPLE.read_bytes().splitlines() if line.strip()][:count]

    async def body() -> list[str]:
        stream = await JetStream.connect(layout.QueueSettings(url=server.url, partitions=PARTITIONS), "t")
        ids = []
        try:
            for index, line in enumerate(lines):
                event = decode_line(line, "sample")[0]
                ref = event.objectRef
                assert ref is not None
                partition = layout.partition_of(
                    ref.namespace or "", ref.resource or "", ref.name or "", PARTITIONS
                )
                await stream.quarantine(
                    partition,
                    quarantined.audit_body(event),
                    {
                        layout.HEADER_CLUSTER: "tracetest",
                        layout.HEADER_REASON: f"pipeline failed at linking: RuntimeError: case {index}",
                        layout.HEADER_SOURCE: "audit",
                    },
                )
                ids.append(str(event.auditID))
        finally:
            await stream.close()
        return ids

    return asyncio.run(body())


def _audit_messages(server: NatsServer) -> list[Message]:
    async def body() -> list[Message]:
        stream = await JetStream.connect(layout.QueueSettings(url=server.url, partitions=PARTITIONS), "t")
        found: list[Message] = []
        try:
            for partition in range(PARTITIONS):
                reader = await stream.reader(partition, 1)
                found += await reader.fetch(100, 1.0)
                await reader.close()
        finally:
            await stream.close()
        return found

    return asyncio.run(body())


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert cli.main(["quarantine", *argv, "--format", "json"]) == 0
    answer: dict[str, object] = json.loads(capsys.readouterr().out)
    return answer


def test_the_queue_quarantine_is_listed_with_reasons_sent_back_and_emptied(
    nats_server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _set_aside(nats_server, 3)
    listed = _json(capsys, "--queue", nats_server.url)
    assert listed["total"] == 3
    assert listed["by_reason"] == {"pipeline failed at linking": 3}
    items = listed["items"]
    assert isinstance(items, list)
    assert [item["audit_id"] for item in items] == ids
    assert {item["cluster"] for item in items} == {"tracetest"}

    assert cli.main(["quarantine", "--queue", nats_server.url]) == 0
    text = capsys.readouterr().out
    assert "3 quarantined inputs" in text and "case 0" in text

    assert _json(capsys, "--queue", nats_server.url, "--retry") == {"resent": 3}
    resent = _audit_messages(nats_server)
    assert len(resent) == 3
    assert {m.headers[layout.HEADER_CLUSTER] for m in resent} == {"tracetest"}
    events = [event for m in resent for event in decode_line(m.data, "resent")]
    assert sorted(str(e.auditID) for e in events) == sorted(ids)
    assert _json(capsys, "--queue", nats_server.url)["total"] == 0


def test_the_queue_quarantine_is_purged_whole_or_before_a_time(
    nats_server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    _set_aside(nats_server, 2)
    assert _json(capsys, "--queue", nats_server.url, "--purge", "--before", "1h") == {"purged": 0, "left": 2}
    assert _json(capsys, "--queue", nats_server.url, "--purge") == {"purged": 2, "left": 0}
    assert _json(capsys, "--queue", nats_server.url)["total"] == 0


def test_a_bad_or_unreachable_queue_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["quarantine", "--queue", "http://nowhere"]) == 2
    assert "is not a NATS address" in capsys.readouterr().err
