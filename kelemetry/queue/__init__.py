"""Scaled mode: stateless webhook replicas and worker replicas over NATS JetStream.

``layout`` names what lives in JetStream and chooses partitions; ``jetstream`` is the one module
that talks to the server; ``webhook`` and ``worker`` are the two roles of ``kelemetry serve --queue``.
"""
