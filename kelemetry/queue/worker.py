"""The worker role of scaled mode (to be built)."""

from __future__ import annotations

from kelemetry.errors import KelemetryError
from kelemetry.queue.layout import QueueSettings, WorkerSettings
from kelemetry.settings import TraceSettings


def serve(queue: QueueSettings, worker: WorkerSettings, trace: TraceSettings, host: str, port: int) -> int:
    raise KelemetryError("the worker role is not built yet")
