"""Where the query side reads spans from: one interface, two backends.

``StoreBackend`` reads the embedded store. ``frontend.jaegerstore.JaegerBackend`` reads a real
Jaeger through its query API (the collector then only exports OTLP). Both answer with the store's
own types (``KnownObject``, ``AssembledTrace``), so scopes, modes and rendering do not know which
one they got.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from frontend.assemble import AssembledTrace, ObjectQuery, trace_of
from kelemetry.model.objects import KnownObject
from kelemetry.store.sqlite import StoreReader


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    group: str
    resource: str
    kind: str
    objects: int


@dataclass(frozen=True, slots=True)
class Suggestion:
    cluster: str | None = None
    resource: str | None = None
    group: str | None = None
    namespace: str | None = None
    text: str = ""
    limit: int = 20


class Backend(Protocol):
    name: str

    def find_objects(self, query: ObjectQuery) -> list[KnownObject]:
        """Objects matching the query's key fields (cluster may be None: any)."""
        ...

    def trace(self, target: KnownObject, start_us: int | None, end_us: int | None) -> AssembledTrace:
        """The merged hierarchy ``target`` belongs to over the range; NotFound when it had no activity."""
        ...

    def clusters(self) -> list[str]: ...

    def resources(self, cluster: str | None) -> list[ResourceInfo]: ...

    def suggest(self, request: Suggestion) -> list[KnownObject]: ...

    def close(self) -> None: ...


class StoreBackend:
    name = "store"

    def __init__(self, reader: StoreReader) -> None:
        self.reader = reader

    def find_objects(self, query: ObjectQuery) -> list[KnownObject]:
        return self.reader.find_objects(
            cluster=query.cluster or None,
            resource=query.resource,
            name=query.name,
            namespace=query.namespace,
            group=query.group,
        )

    def trace(self, target: KnownObject, start_us: int | None, end_us: int | None) -> AssembledTrace:
        return trace_of(self.reader, target, start_us, end_us)

    def clusters(self) -> list[str]:
        return self.reader.clusters()

    def resources(self, cluster: str | None) -> list[ResourceInfo]:
        return [ResourceInfo(*row) for row in self.reader.resources(cluster)]

    def suggest(self, request: Suggestion) -> list[KnownObject]:
        return self.reader.suggest(
            cluster=request.cluster,
            resource=request.resource,
            group=request.group,
            namespace=request.namespace,
            text=request.text,
            limit=request.limit,
        )

    def close(self) -> None:
        self.reader.close()
