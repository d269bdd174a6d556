"""The partition of an object: by namespace when namespaced, by resource and name when not."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kelemetry.queue import layout

names = st.text(min_size=1, max_size=60)
counts = st.integers(min_value=1, max_value=layout.MAX_PARTITIONS)


@given(namespace=names, resource=st.text(max_size=30), name=st.text(max_size=60), partitions=counts)
def test_a_partition_is_in_range(namespace: str, resource: str, name: str, partitions: int) -> None:
    assert 0 <= layout.partition_of(namespace, resource, name, partitions) < partitions
    assert 0 <= layout.partition_of("", resource, name, partitions) < partitions


@given(namespace=names, resource=st.text(max_size=30), a=st.text(max_size=60), b=st.text(max_size=60))
def test_a_namespaced_object_goes_by_its_namespace_alone(
    namespace: str, resource: str, a: str, b: str
) -> None:
    # Everything of one namespace (a Deployment, its ReplicaSets and Pods) lands on one worker.
    assert layout.partition_of(namespace, resource, a, 16) == layout.partition_of(namespace, "pods", b, 16)


@given(resource=st.text(min_size=1, max_size=30), name=st.text(max_size=60), partitions=counts)
def test_a_cluster_scoped_object_goes_by_resource_and_name(resource: str, name: str, partitions: int) -> None:
    first = layout.partition_of("", resource, name, partitions)
    assert first == layout.partition_of("", resource, name, partitions)


def test_cluster_scoped_objects_spread_over_the_partitions() -> None:
    nodes = {layout.partition_of("", "nodes", f"node-{i}", 16) for i in range(200)}
    assert len(nodes) == 16


def test_namespaces_spread_over_the_partitions() -> None:
    assert len({layout.partition_of(f"team-{i}", "pods", "p", 16) for i in range(200)}) == 16


def test_the_subjects_and_keys_name_the_partition() -> None:
    assert layout.audit_subject(3) == "kelemetry.audit.3"
    assert layout.quarantine_subject(3) == "kelemetry.quarantine.3"
    assert layout.lease_key(3) == "lease.3"
    assert layout.progress_key(3) == "part.3"
    assert layout.state_name(3) == "part-3"


def test_check_url() -> None:
    assert layout.check_url("nats://127.0.0.1:4222") is None
    assert layout.check_url("nats://a:4222, nats://b:4222") is None
    assert "not a NATS address" in (layout.check_url("http://a:4222") or "")
    assert "invalid port" in (layout.check_url("nats://a:port") or "")
    assert layout.QueueSettings(url="nats://a:1, nats://b:2").servers() == ["nats://a:1", "nats://b:2"]
