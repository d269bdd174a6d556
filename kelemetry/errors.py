"""The one error hierarchy of the project.

Third-party exceptions are wrapped at the edge (``raise ... from exc``) so callers only ever
catch these::

    KelemetryError
    ├── InputError            bad user or wire input; carries an HTTP status for the edges
    │   ├── BodyTooLarge      413
    │   ├── MalformedBody     400 (not JSON, not UTF-8)
    │   ├── WrongKind         422 (JSON, but not an audit Event/EventList)
    │   └── Unsupported       501 (the trace backend in use cannot answer this question)
    ├── BacklogFull           the ingest backlog is over its limit (429, the sender retries)
    ├── NotFound              the object or trace asked for is not known
    ├── StoreError            the embedded store could not be opened or written
    │   ├── StoreUnavailable  writes are failing or the disk is nearly full: the webhook answers
    │   │                     503 (507 for space), the sender retries, nothing is acknowledged
    │   └── StoreRefused      the store refused this data (a constraint, a value it cannot hold):
    │                         retrying will not help, the data at fault is quarantined
    ├── QueueError            scaled mode: NATS JetStream is unreachable or refused a request
    │   └── QueueFull         the audit stream is at its size limit (429, the sender retries)
    ├── ExportError           the OTLP endpoint configuration is unusable
    └── BackendError          the trace backend the frontend reads (Jaeger) failed or is unreachable
"""

from __future__ import annotations


class KelemetryError(Exception):
    """Base of every error this project raises on purpose."""


class InputError(KelemetryError):
    """Input that we refuse; ``status`` is the HTTP status the edges answer with."""

    status = 400


class BodyTooLarge(InputError):
    status = 413


class MalformedBody(InputError):
    status = 400


class WrongKind(InputError):
    status = 422


class Unsupported(InputError):
    """A question the configured backend cannot answer (changes or object versions over Jaeger)."""

    status = 501


class BacklogFull(KelemetryError):
    """The durable backlog is full; answering 429 makes kube-apiserver retry later."""


class NotFound(KelemetryError):
    pass


class StoreError(KelemetryError):
    pass


class StoreRefused(StoreError):
    """The write failed because of what it held, not because of the store: the same write fails again."""


class StoreUnavailable(StoreError):
    """Nothing can be acknowledged now; ``status`` is what the webhook answers (the sender retries)."""

    def __init__(self, reason: str, status: int = 503) -> None:
        super().__init__(reason)
        self.status = status


class ExportError(KelemetryError):
    pass


class BackendError(KelemetryError):
    pass


class QueueError(KelemetryError):
    """Scaled mode: NATS JetStream is unreachable or refused a request (the webhook answers 503)."""


class QueueFull(QueueError):
    """The audit stream is at its size limit: workers are behind; the webhook answers 429."""
