"""Saved views (frontend.views): what the last 16 hex digits of a view trace id stand for.

Covers: view numbers are derived from the view alone (same view → same number, in another process
too; any field changes it; positive 63-bit); save / load round trip; persistence across a reopen;
NotFound naming the view for an unknown number; a file that cannot be opened is a StoreError;
eviction of the least recently used views past ``max_views``; saves from many threads.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from frontend.views import ViewSpec, ViewStore
from kelemetry import errors
from kelemetry.model.objects import ObjectKey
from tests.conftest import REPO_ROOT

SPEC = ViewSpec("c1", "apps", "deployments", "default", "web", 1_714_557_600_000_000, 1_714_561_200_000_000)


class Clock:
    """The view store's clock (µs since the epoch): every reading is one µs later, so the order
    of uses is exact however fast the machine is."""

    def __init__(self) -> None:
        self.now_us = 1_000_000

    def __call__(self) -> int:
        self.now_us += 1
        return self.now_us


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ViewStore]:
    opened = ViewStore(tmp_path / "views.db")
    yield opened
    opened.close()


def pod_view(i: int) -> ViewSpec:
    return ViewSpec("c1", "", "pods", "default", f"web-{i}")


def stored_count(store: ViewStore) -> int:
    count: int = store._db.execute("SELECT COUNT(*) FROM views").fetchone()[0]
    return count


# -- numbers


def test_the_number_is_derived_from_the_view_alone() -> None:
    number = SPEC.number()
    assert number == ViewSpec(**{f: getattr(SPEC, f) for f in SPEC.__slots__}).number()
    assert 0 < number < 2**63
    others = {
        replace(SPEC, cluster="c2").number(),
        replace(SPEC, group="").number(),
        replace(SPEC, resource="replicasets").number(),
        replace(SPEC, namespace="prod").number(),
        replace(SPEC, name="web2").number(),
        replace(SPEC, start_us=None).number(),
        replace(SPEC, end_us=None).number(),
        replace(SPEC, start_us=None, end_us=None).number(),
        replace(SPEC, uid="u-1").number(),
    }
    assert number not in others and len(others) == 9


def test_a_view_without_a_uid_keeps_the_number_it_had_before_uids() -> None:
    # Views saved before incarnations were told apart are linked by this number.
    assert SPEC.number() == 3683235079259092741


def test_the_number_is_the_same_in_another_process() -> None:
    code = (
        "from frontend.views import ViewSpec; "
        "print(ViewSpec('c1', 'apps', 'deployments', 'default', 'web', "
        "1_714_557_600_000_000, 1_714_561_200_000_000).number())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert int(out) == SPEC.number()


def test_of_takes_the_key_and_range_apart() -> None:
    key = ObjectKey.make("c1", "apps", "deployments", "default", "web")
    spec = ViewSpec.of(key, SPEC.start_us, SPEC.end_us)
    assert spec == SPEC
    assert spec.key == key


# -- save and load


def test_save_then_load_round_trips(store: ViewStore) -> None:
    number = store.save(SPEC)
    assert number == SPEC.number()
    assert store.load(number) == SPEC
    open_ended = replace(SPEC, start_us=None, end_us=None)
    assert store.load(store.save(open_ended)) == open_ended
    one_incarnation = replace(SPEC, uid="u-1")
    assert store.load(store.save(one_incarnation)) == one_incarnation
    # Saving the same view again keeps one row.
    assert store.save(SPEC) == number
    assert stored_count(store) == 3


def test_views_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "views.db"
    first = ViewStore(path)
    number = first.save(SPEC)
    first.close()
    again = ViewStore(path)
    try:
        assert again.load(number) == SPEC
    finally:
        again.close()


def test_an_in_memory_store_works_and_forgets(tmp_path: Path) -> None:
    memory = ViewStore(None)
    try:
        assert memory.load(memory.save(SPEC)) == SPEC
    finally:
        memory.close()
    assert not list(tmp_path.iterdir())


def test_an_unknown_view_is_not_found_by_its_hex_number(store: ViewStore) -> None:
    store.save(SPEC)
    with pytest.raises(errors.NotFound) as caught:
        store.load(0x1234)
    assert str(caught.value) == (
        "view 0000000000001234 is not known here (views are kept per frontend; look the object up again)"
    )


def test_a_file_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    directory = tmp_path / "views.db"
    directory.mkdir()
    with pytest.raises(errors.StoreError, match=r"cannot open the view file .*views\.db"):
        ViewStore(directory)


def test_saves_from_many_threads_all_land(store: ViewStore) -> None:
    def work(offset: int) -> None:
        for i in range(50):
            store.save(pod_view(offset * 50 + i))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stored_count(store) == 400
    assert store.load(pod_view(399).number()) == pod_view(399)


# -- eviction


def test_past_max_views_the_least_recently_used_are_dropped(clock: Clock) -> None:
    store = ViewStore(None, max_views=3, clock=clock)
    try:
        numbers = [store.save(pod_view(i)) for i in range(5)]
        for number in numbers[2:]:
            assert store.load(number).name.startswith("web-")
        for number in numbers[:2]:
            with pytest.raises(errors.NotFound):
                store.load(number)
        assert stored_count(store) <= 3
    finally:
        store.close()


def test_a_long_run_of_saves_keeps_only_the_most_recent(clock: Clock) -> None:
    store = ViewStore(None, max_views=10, clock=clock)
    try:
        numbers = [store.save(pod_view(i)) for i in range(1000)]
        assert stored_count(store) <= 10
        for number in numbers[-10:]:
            store.load(number)
        with pytest.raises(errors.NotFound):
            store.load(numbers[0])
    finally:
        store.close()


def test_saving_a_view_again_makes_it_recent(clock: Clock) -> None:
    store = ViewStore(None, max_views=2, clock=clock)
    try:
        old = store.save(pod_view(0))
        store.save(pod_view(1))
        store.save(pod_view(0))
        for _ in range(997):
            store.save(pod_view(2))
        assert store.load(old) == pod_view(0)
        with pytest.raises(errors.NotFound):
            store.load(pod_view(1).number())
    finally:
        store.close()


def test_opening_a_view_counts_as_using_it(clock: Clock) -> None:
    """A shared URL that people keep opening is in use, even if nobody looks the object up again."""
    store = ViewStore(None, max_views=2, clock=clock)
    try:
        shared = store.save(pod_view(0))
        store.save(pod_view(1))
        assert store.load(shared) == pod_view(0)
        for _ in range(998):
            store.save(pod_view(2))
        assert store.load(shared) == pod_view(0)
        with pytest.raises(errors.NotFound):
            store.load(pod_view(1).number())
    finally:
        store.close()
