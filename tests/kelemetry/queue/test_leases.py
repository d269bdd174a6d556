"""The fair share every worker computes alone, and the partitions it tries and gives up first."""

from __future__ import annotations

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
