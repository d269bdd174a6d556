from tests.natsserver import nats_server  # noqa: F401
