"""How long finding objects by what people type takes on a store of 100,000 objects.

Builds a store of Deployments, ReplicaSets and Pods (names like a cluster's:
``shop-042``, ``shop-042-7d9f8c6b5``, ``shop-042-7d9f8c6b5-x2x9k``) in 25 namespaces, then times
``/api/kelemetry/objects`` suggestions (exact name, prefix, a Pod's suffix, a uid, its first 8
characters, nothing matching) and the "did you mean" of a misspelt lookup through the query service,
as the API runs them. Prints the median and worst of 20 runs of each, in milliseconds.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from frontend.backend import StoreBackend
from frontend.query import QueryService
from frontend.types import ObjectQuery, Suggestion
from frontend.views import ViewStore
from kelemetry import errors
from kelemetry.model.objects import KnownObject, ObjectKey
from kelemetry.store.sqlite import SpanStore, StoreReader

OBJECTS = 100_000
RUNS = 20
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def suffix(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(length))


def build(path: Path) -> list[KnownObject]:
    rng = random.Random(12)
    rows: list[KnownObject] = []
    next_id = 1
    t0 = 1_795_418_700_000_000
    while len(rows) < OBJECTS:
        namespace = f"team-{len(rows) % 25:02d}"
        app = f"shop-{len(rows) // 6:05d}"
        deployment = KnownObject(
            next_id,
            ObjectKey("prod", "apps", "deployments", namespace, app),
            str(uuid.UUID(int=rng.getrandbits(128))),
            "Deployment",
            "v1",
            None,
            t0,
            t0 + next_id,
        )
        rs_name = f"{app}-{suffix(rng, 9)}"
        replicaset = KnownObject(
            next_id + 1,
            ObjectKey("prod", "apps", "replicasets", namespace, rs_name),
            str(uuid.UUID(int=rng.getrandbits(128))),
            "ReplicaSet",
            "v1",
            next_id,
            t0,
            t0 + next_id,
        )
        rows += [deployment, replicaset]
        for n in range(4):
            rows.append(
                KnownObject(
                    next_id + 2 + n,
                    ObjectKey("prod", "", "pods", namespace, f"{rs_name}-{suffix(rng, 5)}"),
                    str(uuid.UUID(int=rng.getrandbits(128))),
                    "Pod",
                    "v1",
                    next_id + 1,
                    t0,
                    t0 + next_id + n,
                )
            )
        next_id += 6
    store = SpanStore(path)
    for i in range(0, len(rows), 5_000):
        store.write([], rows[i : i + 5_000])
    store.close()
    return rows


def timed(label: str, call: Callable[[], object]) -> None:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    print(f"{label:<52} median {statistics.median(samples):7.2f} ms   worst {max(samples):7.2f} ms")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.db"
        rows = build(path)
        pod = next(row for row in reversed(rows) if row.key.resource == "pods")
        service = QueryService(StoreBackend(StoreReader(path)), ViewStore(None))
        backend = service.backend
        print(f"{len(rows)} objects ({path.stat().st_size / 1e6:.0f} MB store)")

        def suggest(text: str, resource: str | None = None) -> Callable[[], object]:
            return lambda: backend.suggest(Suggestion(resource=resource, text=text, limit=20))

        timed("exact name (shop-00042)", suggest("shop-00042"))
        timed("prefix (shop-0004), any resource", suggest("shop-0004"))
        timed(f"Pod suffix ({pod.key.name[-5:]}), pods", suggest(pod.key.name[-5:], "pods"))
        timed(f"Pod suffix ({pod.key.name[-5:]}), any resource", suggest(pod.key.name[-5:]))
        timed("uid", suggest(pod.uid))
        timed("uid, first 8 characters", suggest(pod.uid[:8]))
        timed("nothing matches (zzzzzz)", suggest("zzzzzz"))
        timed("no text (most recent 20)", suggest(""))

        def misspelt() -> None:
            try:
                service.lookup(ObjectQuery(cluster="", resource="deploy", name="shop-00042-x"))
            except errors.NotFound:
                return
            raise AssertionError("a misspelt name was found")

        timed("lookup of a name nothing has, with did-you-mean", misspelt)

        def by_suffix() -> None:
            try:
                service.lookup(ObjectQuery(cluster="", resource="po", name=pod.key.name[-5:]))
            except errors.NotFound as exc:
                assert pod.key.name in str(exc), exc
                return
            raise AssertionError("a Pod's suffix was found as a name")

        timed("lookup of a Pod by its suffix alone, did-you-mean", by_suffix)
        service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
