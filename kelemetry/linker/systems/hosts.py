"""Which of our clusters is a federation system's host, when its member objects do not say.

KubeAdmiral, Karmada and KubeFed copy objects from their control plane (the "host": KubeAdmiral's
host cluster, the Karmada API server, KubeFed's host cluster) into member clusters, and the copies
name their origin only by namespace and name: none of the three writes the host's cluster name on a
member object. So the host is a fact about the fleet, not about the object, and it is resolved the
same way for every object of one system:

1. the host configured for this linker (a name as the system's operators call it; aliases apply);
2. otherwise an alias for one of the system's conventional host names (``Clusters.aliases`` maps
   e.g. ``karmada-apiserver`` or ``host`` to ours), so an alias is enough configuration;
3. otherwise the first conventional name that is one of our clusters: the system's own name for
   its host in its development setup (``kubeadmiral-host``, ``karmada-apiserver``), then ``host``;
4. when we do not know our clusters (a replay accepting any name), ``host``.

When our clusters are known and none of those is among them, member objects are refused — counted
and logged once per object — rather than hung under a guessed cluster that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from kelemetry.linker.links import Clusters, Refusal

GENERIC_HOST = "host"
"""The host's name when nothing else says it: short, and what a fleet sample would call it."""


@dataclass(frozen=True, slots=True)
class HostCluster:
    """How one federation linker finds its host cluster (see the module docstring for the order)."""

    linker: str
    conventional: tuple[str, ...]
    """The system's own names for its host, most specific first; ``host`` is always tried last."""
    configured: str | None = None

    def resolve(self, clusters: Clusters) -> str | Refusal:
        if self.configured:
            ours = clusters.ours(self.configured)
            if ours is None:
                return Refusal(self.linker, f"host cluster {self.configured!r} is not one of ours")
            return ours
        candidates = (*self.conventional, GENERIC_HOST)
        for name in candidates:
            if name in clusters.aliases:
                aliased = clusters.ours(name)
                if aliased is None:
                    return Refusal(
                        self.linker, f"host alias {name!r} → {clusters.aliases[name]!r} is not one of ours"
                    )
                return aliased
        if not clusters.names:
            return GENERIC_HOST
        for name in candidates:
            if name in clusters.names:
                return name
        return Refusal(
            self.linker,
            f"no host cluster: none of {', '.join(candidates)} is one of ours; "
            "configure the host or alias one of these names",
        )
