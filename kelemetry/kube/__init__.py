"""Kubernetes knowledge: kinds and resources (`kinds`), and the live cluster edge (`discovery`)."""
