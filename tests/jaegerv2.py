"""The Jaeger v2 configuration every test and benchmark starts: OTLP in, one storage backend, the
query API out, each on its own loopback port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MEMORY: dict[str, Any] = {"memory": {"max_traces": 100000}}


def badger(folder: Path) -> dict[str, Any]:
    """Badger storage in ``folder``: a restarted Jaeger keeps its spans."""
    return {
        "badger": {
            "directories": {"keys": str(folder / "keys"), "values": str(folder / "values")},
            "ephemeral": False,
        }
    }


def config(
    *,
    name: str,
    backend: dict[str, Any],
    query: int,
    query_grpc: int,
    otlp_grpc: int,
    otlp_http: int,
    batch_timeout: str = "200ms",
    log_level: str = "info",
) -> dict[str, Any]:
    """The `--config` document of a Jaeger whose storage ``backend`` is called ``name``."""
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": log_level}},
        },
        "extensions": {
            "jaeger_query": {
                "storage": {"traces": name},
                "http": {"endpoint": f"127.0.0.1:{query}"},
                "grpc": {"endpoint": f"127.0.0.1:{query_grpc}"},
            },
            "jaeger_storage": {"backends": {name: backend}},
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{otlp_grpc}"},
                    "http": {"endpoint": f"127.0.0.1:{otlp_http}"},
                }
            }
        },
        "processors": {"batch": {"timeout": batch_timeout}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": name}},
    }
