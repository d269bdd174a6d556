"""The recorded Deployment sample as a store, for the query surface (the query tests' fixture)."""

from tests.frontend.conftest import sample_store

__all__ = ["sample_store"]
