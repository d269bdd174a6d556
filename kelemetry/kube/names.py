"""Resources as people type them: ``deploy``, ``Deployment``, ``deployments.apps``, ``deployments.v1.apps``.

kubectl accepts a resource by its plural, its singular, its kind (in any case) or a short name, each
optionally qualified by ``.group`` or ``.version.group``; we accept the same spellings everywhere a
resource is named (the API's tags and ``/redirect``, the lookup API, the CLI). ``resolve`` is pure:
the caller hands it the resources it knows, in order of trust (API discovery of the connected
clusters, what the store has seen, the built-in table), and gets back every (group, resource) the
text can mean, best matches only, so the caller can refuse an ambiguous spelling with the choices.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# A version segment as Kubernetes spells them: v1, v2beta1, v1alpha3.
_VERSION = re.compile(r"^v\d+((alpha|beta)\d+)?$")

# How well a spelling matched, best first: the plural is what objects are keyed by, a kind or
# singular names the same thing less directly, and a short name is an abbreviation that a custom
# resource may also claim.
_BY_PLURAL, _BY_KIND, _BY_SHORT_NAME = 0, 1, 2


@dataclass(frozen=True, slots=True)
class ResourceName:
    """One resource and the names it answers to."""

    group: str
    resource: str
    kind: str = ""
    short_names: tuple[str, ...] = ()

    @property
    def qualified(self) -> str:
        """``deployments.apps``; core resources have no suffix (``pods``)."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    def rank(self, word: str) -> int | None:
        """How ``word`` (lower-cased) names this resource; None when it does not."""
        if word == self.resource:
            return _BY_PLURAL
        if self.kind and word == self.kind.lower():
            return _BY_KIND
        if word in self.short_names:
            return _BY_SHORT_NAME
        return None

    def merged(self, other: ResourceName) -> ResourceName:
        """This entry completed by a less trusted one for the same resource."""
        short = self.short_names + tuple(s for s in other.short_names if s not in self.short_names)
        return ResourceName(self.group, self.resource, self.kind or other.kind, short)


def readings(text: str) -> list[tuple[str, str | None]]:
    """The (word, group) pairs a typed resource can stand for, as kubectl reads them: ``deploy`` →
    the word alone; ``deployments.apps`` → group ``apps``; ``deployments.v1.apps`` → group ``apps``
    at version v1, or group ``v1.apps``."""
    word, dot, rest = text.strip().partition(".")
    word = word.lower()
    if not dot:
        return [(word, None)]
    rest = rest.lower()
    found: list[tuple[str, str | None]] = [(word, rest)]
    version, dot, group = rest.partition(".")
    if dot and _VERSION.match(version):
        found.append((word, group))
    elif not dot and _VERSION.match(rest):
        # "pods.v1": the core group at a version.
        found.append((word, ""))
    return found


def unite(*sources: Iterable[ResourceName]) -> list[ResourceName]:
    """One entry per (group, resource) from several sources, the earlier source's kind and short
    names first (discovery knows a custom resource's short names; the store knows its kind)."""
    table: dict[tuple[str, str], ResourceName] = {}
    for source in sources:
        for entry in source:
            slot = (entry.group, entry.resource)
            known = table.get(slot)
            table[slot] = entry if known is None else known.merged(entry)
    return list(table.values())


def resolve(text: str, known: Iterable[ResourceName]) -> list[ResourceName]:
    """Every resource ``text`` names among ``known``, best matches only: one entry is an answer,
    several an ambiguity to show, none an unknown resource."""
    entries = list(known)
    best: list[ResourceName] = []
    best_rank: int | None = None
    for word, group in readings(text):
        for entry in entries:
            if group is not None and entry.group != group:
                continue
            rank = entry.rank(word)
            if rank is None:
                continue
            if best_rank is None or rank < best_rank:
                best, best_rank = [entry], rank
            elif rank == best_rank and entry not in best:
                best.append(entry)
    return best


def nearest(text: str, candidates: Iterable[str], limit: int = 3) -> list[str]:
    """The candidates closest to ``text`` by edit distance, near enough to be a typo of it or to
    start with it ("deplyment" → "deployments", "demo-55" → "demo-5544f8b48c")."""
    wanted = text.lower()
    scored: list[tuple[int, str]] = []
    for candidate in dict.fromkeys(candidates):
        lower = candidate.lower()
        if wanted and (lower.startswith(wanted) or wanted in lower):
            scored.append((0, candidate))
            continue
        distance = edit_distance(wanted, lower)
        if distance <= max(2, len(wanted) // 3):
            scored.append((distance, candidate))
    scored.sort(key=lambda item: (item[0], len(item[1]), item[1]))
    return [candidate for _, candidate in scored[:limit]]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions), row by row."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, left in enumerate(a, 1):
        current = [i]
        for j, right in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (left != right)))
        previous = current
    return previous[-1]
