"""The webhook role of scaled mode (to be built)."""

from __future__ import annotations

from kelemetry.errors import KelemetryError
from kelemetry.queue.layout import QueueSettings
from kelemetry.settings import TlsSettings, WebhookSettings


def serve(
    queue: QueueSettings, webhook: WebhookSettings, host: str, port: int, tls: TlsSettings | None
) -> int:
    raise KelemetryError("the webhook role is not built yet")
