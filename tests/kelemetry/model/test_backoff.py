"""The retry policy shared by the watches, the OTLP follower and discovery."""

from __future__ import annotations

import pytest

from kelemetry.model.backoff import Backoff


def test_delays_grow_to_the_cap_and_start_over_after_a_success() -> None:
    retry = Backoff(initial_seconds=0.5, factor=2, cap_seconds=3).start()
    assert [retry.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert retry.failures == 5
    retry.succeeded()
    assert retry.failed() == 0.5


@pytest.mark.parametrize(
    "bad", [{"initial_seconds": 0}, {"factor": 0.5}, {"initial_seconds": 5, "cap_seconds": 1}]
)
def test_a_policy_that_would_not_back_off_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**bad)
