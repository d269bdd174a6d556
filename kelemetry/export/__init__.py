"""Span export beyond the embedded store (OTLP)."""
