"""Looking an object's trace up the way ``kelemetry dump`` does, for tests that check what a store holds.

The query service finds the one object a query names (its newest incarnation active in the range,
or the one the uid names) and the store backend assembles its hierarchy over the range; scopes and
display modes are left to the tests that are about them.
"""

from __future__ import annotations

from pathlib import Path

from frontend.backend import StoreBackend
from frontend.query import QueryService
from frontend.types import AssembledTrace, Found, ObjectQuery
from frontend.views import ViewStore
from kelemetry.store.sqlite import StoreReader


def _service(store: StoreReader | str | Path) -> QueryService:
    reader = store if isinstance(store, StoreReader) else StoreReader(store)
    return QueryService(StoreBackend(reader), ViewStore(None))


def _close(service: QueryService, store: StoreReader | str | Path) -> None:
    if isinstance(store, StoreReader):
        service.views.close()
    else:
        service.close()


def found(store: StoreReader | str | Path, query: ObjectQuery) -> Found:
    """The object ``query`` names and the other incarnations of its name (a reader passed in stays open)."""
    service = _service(store)
    try:
        return service.lookup_one(query)
    finally:
        _close(service, store)


def assemble(store: StoreReader | str | Path, query: ObjectQuery) -> AssembledTrace:
    """The merged hierarchy of the object ``query`` names over its range (a reader passed in stays open)."""
    service = _service(store)
    try:
        target = service.lookup_one(query).target
        return service.backend.trace(target, query.start_us, query.end_us)
    finally:
        _close(service, store)
