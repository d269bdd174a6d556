"""/metrics read back with the Prometheus client's own parser, as Prometheus would read it."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[str, float]:
    """Every sample as ``name{label="value",...}`` (labels sorted by name) → value. Raises
    ``ValueError`` on anything Prometheus' text format does not allow."""
    flat: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            key = f"{sample.name}{{{labels}}}" if labels else sample.name
            if key in flat:
                raise ValueError(f"sample {key} appears twice")
            flat[key] = sample.value
    return flat
