"""How long to wait before trying again: one policy value, shared by every retry loop.

The watches reconnecting to an apiserver, the OTLP follower resending to a backend that is down
and API discovery waiting for a cluster all back off the same way: exponentially from ``initial``
up to ``cap``, back to ``initial`` after a success. A loop owns a `Retry` (its state) made from the
policy, so the policies themselves stay immutable values that settings can carry.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_seconds: float = 0.5
    factor: float = 2.0
    cap_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.initial_seconds <= 0 or self.factor < 1 or self.cap_seconds < self.initial_seconds:
            raise ValueError(f"invalid backoff {self}")

    def start(self) -> Retry:
        return Retry(self)


class Retry:
    """The state of one retry loop: ``failed()`` gives the delay before the next attempt."""

    def __init__(self, policy: Backoff) -> None:
        self.policy = policy
        self._next = policy.initial_seconds
        self.failures = 0

    def failed(self) -> float:
        delay = self._next
        self._next = min(delay * self.policy.factor, self.policy.cap_seconds)
        self.failures += 1
        return delay

    def succeeded(self) -> None:
        self._next = self.policy.initial_seconds


WATCH = Backoff(initial_seconds=0.5, cap_seconds=10.0)
"""Watches: reconnect fast after a blip, but do not hammer an apiserver that is down."""
EXPORT = Backoff(initial_seconds=0.5, cap_seconds=5.0)
"""OTLP export: short enough that spans reach a restarted backend within seconds."""
DISCOVERY = Backoff(initial_seconds=2.0, cap_seconds=60.0)
"""API discovery of a cluster that did not answer at start."""
