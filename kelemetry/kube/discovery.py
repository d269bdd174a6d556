"""API discovery against a live cluster: the only module that imports the `kubernetes` client.

Discovery turns the cluster's APIResourceLists into the (group, kind) → resource table that
`kinds.KindResolver` consults before its built-in table, so owner references to custom resources
resolve to their real plural names.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import urllib3
from kubernetes import client, config

from kelemetry.errors import KelemetryError
from kelemetry.kube.kinds import ResourceInfo, split_api_version

logger = logging.getLogger(__name__)


def parse_resource_lists(lists: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], ResourceInfo]:
    """Fold APIResourceList documents into a kind table. Subresources ("pods/status") are not
    entries of their own; a ``status`` one marks its resource. Short names (``deploy``) are kept
    for reading resources as people type them."""
    table: dict[tuple[str, str], ResourceInfo] = {}
    for resource_list in lists:
        group, _version = split_api_version(str(resource_list.get("groupVersion", "")))
        items = [item for item in resource_list.get("resources") or () if isinstance(item, dict)]
        with_status = {
            str(item.get("name", "")).partition("/")[0]
            for item in items
            if str(item.get("name", "")).endswith("/status")
        }
        for item in items:
            name = str(item.get("name", ""))
            kind = str(item.get("kind", ""))
            if not name or not kind or "/" in name:
                continue
            short_names = tuple(str(short) for short in item.get("shortNames") or () if short)
            table.setdefault(
                (group, kind),
                ResourceInfo(name, bool(item.get("namespaced", False)), name in with_status, short_names),
            )
    return table


# Kubeconfigs already told that their TLS is not verified: urllib3 would say it on every request.
_INSECURE_TOLD: set[tuple[str | None, str | None]] = set()


def api_client_for(kubeconfig: str | None, context: str | None = None) -> Any:
    """A client for the cluster of a kubeconfig; a bad file is one clear error."""
    try:
        api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context
        )
    except Exception as exc:
        raise KelemetryError(f"cannot load kubeconfig {kubeconfig or '(default)'}: {exc}") from exc
    if not api_client.configuration.verify_ssl and (kubeconfig, context) not in _INSECURE_TOLD:
        _INSECURE_TOLD.add((kubeconfig, context))
        # Said once per kubeconfig here instead of once per request by urllib3.
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        logger.warning(
            "kubeconfig %s%s skips TLS verification (insecure-skip-tls-verify): "
            "the apiserver's identity is not checked",
            kubeconfig or "(default)",
            f" context {context}" if context else "",
        )
    return api_client


def discover(kubeconfig: str | None, context: str | None = None) -> dict[tuple[str, str], ResourceInfo]:
    """Read every served group-version of the cluster and return its kind table."""
    api_client = api_client_for(kubeconfig, context)
    # Raw responses (_preload_content=False) keep us independent of how each client release
    # models discovery documents; older apiservers omit fields newer models require.
    try:
        core: Any = client.CoreV1Api(api_client).get_api_resources(_preload_content=False)
        lists = [json.loads(core.data)]
        apis: Any = client.ApisApi(api_client).get_api_versions(_preload_content=False)
        groups = json.loads(apis.data)
        custom = client.CustomObjectsApi(api_client)
        for group in groups.get("groups") or ():
            for version in group.get("versions") or ():
                try:
                    response: Any = custom.get_api_resources(
                        group["name"], version["version"], _preload_content=False
                    )
                    lists.append(json.loads(response.data))
                except client.ApiException as exc:
                    # An aggregated API that is down must not stop the collector from starting.
                    logger.warning("discovery of %s failed: %s", version.get("groupVersion"), exc.reason)
        return parse_resource_lists(lists)
    except client.ApiException as exc:
        raise KelemetryError(f"API discovery failed: {exc.status} {exc.reason}") from exc
    except Exception as exc:
        raise KelemetryError(f"API discovery failed: {exc}") from exc
    finally:
        api_client.close()


def custom_resources(kubeconfig: str, context: str | None = None) -> list[tuple[str, str, str]]:
    """(group, served storage version, plural) of every CustomResourceDefinition of the cluster."""
    api_client = api_client_for(kubeconfig, context)
    try:
        response: Any = client.ApiextensionsV1Api(api_client).list_custom_resource_definition(
            _preload_content=False
        )
        found = []
        for crd in json.loads(response.data).get("items") or ():
            spec = crd.get("spec") or {}
            versions = [v for v in spec.get("versions") or () if v.get("served")]
            chosen = next((v for v in versions if v.get("storage")), versions[0] if versions else None)
            plural = (spec.get("names") or {}).get("plural")
            if chosen and plural and spec.get("group"):
                found.append((str(spec["group"]), str(chosen["name"]), str(plural)))
        return found
    except Exception as exc:
        raise KelemetryError(f"listing CustomResourceDefinitions failed: {exc}") from exc
    finally:
        api_client.close()
