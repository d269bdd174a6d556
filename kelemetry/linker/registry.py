"""The linkers by name: an explicit registry, consulted in order after the ownerReference.

``DEFAULT`` is every built-in linker that reads only keys its own system reserves
(``kelemetry.kubewharf.io/``, ``kubeadmiral.io/``, ``work.karmada.io/``, ``kubefed.io/``,
``offloading.liqo.io/``): on a cluster without that system it never fires, and it costs a few
dictionary lookups per object without a controller owner. The three whose member objects do not
name their host (KubeAdmiral, Karmada, KubeFed) refuse rather than guess when our clusters are known
and none is the host by configuration, alias or conventional name (`kelemetry.linker.systems.hosts`).
``rules`` is not a default: it does nothing without a rules file, and whoever configures the file
turns it on (`registry` takes the loaded rules).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

from kelemetry.linker.links import LinkerFactory
from kelemetry.linker.systems import annotation, karmada, kubeadmiral, kubefed, liqo, rules

DEFAULT = ("annotation", "kubeadmiral", "karmada", "kubefed", "liqo")


def registry(
    *, hosts: Mapping[str, str] | None = None, user_rules: Sequence[rules.Rule] = ()
) -> dict[str, LinkerFactory]:
    """Factories by linker name.

    Args:
        hosts: a federation linker's name → its host cluster, as configured (e.g.
            ``{"karmada": "fed-prod"}``); linkers not named here find their host themselves.
        user_rules: the rules of the ``rules`` linker (`rules.load_rules`).
    """
    hosts = hosts or {}
    return {
        "annotation": annotation.ParentLinkAnnotation,
        "kubeadmiral": partial(kubeadmiral.KubeAdmiralLinker, hosts.get("kubeadmiral")),
        "karmada": partial(karmada.KarmadaLinker, hosts.get("karmada")),
        "kubefed": partial(kubefed.KubeFedLinker, hosts.get("kubefed")),
        "liqo": liqo.LiqoLinker,
        "rules": partial(rules.RuleLinker, tuple(user_rules)),
    }
