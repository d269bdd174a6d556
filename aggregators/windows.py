"""Time windows: each object gets one span per window it is active in (aligned to the epoch)."""

from __future__ import annotations


def window_of(time_us: int, window_us: int) -> int:
    return time_us // window_us


def window_bounds(window: int, window_us: int) -> tuple[int, int]:
    start = window * window_us
    return start, start + window_us
