"""Kelemetry for Python: a Kubernetes control-plane tracer.

The collector lives here: receivers turn audit events into model events, the pipeline hands them
to the aggregators, and the resulting spans go to the embedded store and, optionally, to OTLP.
"""

__version__ = "0.1.0"
