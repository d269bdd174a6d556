"""The fair share every worker computes alone, and the partitions it tries and gives up first."""

from __future__ import annotations

import pytest

from kelemetry.queue import leases


def test_three_workers_on_sixteen_partitions_settle_at_six_five_five() -> None:
    members = ["w-a", "w-b", "w-c"]
    shares = [leases.share(members, me, 16) for me in members]
    assert shares == [6, 5, 5]
    assert sum(shares) == 16


def test_the_share_counts_a_worker_missing_from_the_list_and_never_drops_a_partition() -> None:
    assert leases.share([], "alone", 4) == 4
    assert leases.share(["other"], "me", 4) == 2
    for count in range(1, 9):
        members = [f"w{i}" for i in range(count)]
        assert sum(leases.share(members, me, 7) for me in members) == 7


def test_candidates_skip_taken_partitions_and_start_at_a_point_of_the_worker() -> None:
    first = leases.candidates("w-a", 8, set())
    assert sorted(first) == list(range(8))
    assert leases.candidates("w-a", 8, {first[0]})[0] == first[1]
    assert leases.candidates("w-a", 8, set(range(8))) == []


def test_extras_are_the_highest_numbered() -> None:
    assert leases.extras([3, 0, 7, 5], 2) == [7, 5]
    assert leases.extras([1, 2], 0) == []


def test_a_worker_id_that_cannot_be_a_key_is_refused_by_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from kelemetry.cli import main

    argv = [
        "serve",
        "--queue",
        "nats://127.0.0.1:1",
        "--role",
        "worker",
        "--otlp-endpoint",
        "grpc://127.0.0.1:4317",
    ]
    assert main([*argv, "--worker-id", "two words"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "kelemetry: error: --worker-id 'two words': use letters, digits and - _ = . (at most 200)"
    ]
