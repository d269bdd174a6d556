"""The Jaeger boundary: Jaeger's query JSON model. Imports nothing of ours."""
