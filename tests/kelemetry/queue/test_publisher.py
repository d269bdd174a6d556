"""From a batch to messages: partitions, chunks under the message limit, deterministic ids."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kelemetry import errors
from kelemetry.queue import layout, publisher
from kelemetry.receivers.auditwire import AuditEvent, decode_batch, encode_batch
from tests.factories import audit_event, event_list


def decoded(events: list[dict[str, object]]) -> list[AuditEvent]:
    return decode_batch(json.dumps(event_list(events)).encode())


def sized(i: int, size: int, namespace: str = "shop") -> dict[str, object]:
    return audit_event(
        namespace=namespace, audit_id=f"e-{i}", request_object={"kind": "Pod", "pad": "x" * size}
    )


@given(sizes=st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=30))
def test_chunks_stay_under_the_limit_and_keep_every_event_in_order(sizes: list[int]) -> None:
    events = decoded([sized(i, size) for i, size in enumerate(sizes)])
    limit = 4000
    (chunks,) = publisher.plan("c", events, 4, limit)
    assert all(len(chunk.data) <= limit for chunk in chunks)
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    back = [event.auditID for chunk in chunks for event in decode_batch(chunk.data)]
    assert back == [f"e-{i}" for i in range(len(sizes))]
    assert sum(chunk.events for chunk in chunks) == len(sizes)
    # Cut no more than needed: two neighbouring chunks would not have fitted in one.
    for first, second in itertools.pairwise(chunks):
        assert len(first.data) + len(second.data) - len(encode_batch([])) + 1 > limit


def test_an_event_bigger_than_the_limit_is_refused_by_its_audit_id() -> None:
    events = decoded([sized(0, 10), sized(1, 5000)])
    with pytest.raises(errors.BodyTooLarge, match="event 'e-1' is"):
        publisher.plan("c", events, 4, 4000)


def test_events_are_split_by_partition_keeping_their_order() -> None:
    events = decoded(
        [
            audit_event(namespace="a", audit_id="a1"),
            audit_event(namespace="b", audit_id="b1"),
            audit_event(resource="nodes", namespace="", name="n1", verb="patch", audit_id="n1"),
            audit_event(namespace="a", audit_id="a2"),
        ]
    )
    parts = publisher.split(events, 1024)
    assert parts[layout.partition_of("a", "", "", 1024)] == [events[0], events[3]]
    assert parts[layout.partition_of("", "nodes", "n1", 1024)] == [events[2]]
    assert sum(len(found) for found in parts.values()) == 4


def test_message_ids_depend_on_cluster_partition_index_and_bytes() -> None:
    ids = {
        publisher.message_id("c", 1, 0, b"x"),
        publisher.message_id("d", 1, 0, b"x"),
        publisher.message_id("c", 2, 0, b"x"),
        publisher.message_id("c", 1, 1, b"x"),
        publisher.message_id("c", 1, 0, b"y"),
        publisher.message_id("c1", 1, 0, b"x"),
        publisher.message_id("c", 11, 0, b"x"),
    }
    assert len(ids) == 7
    assert publisher.message_id("c", 1, 0, b"x") == publisher.message_id("c", 1, 0, b"x")
