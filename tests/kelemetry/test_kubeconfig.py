"""Loading a cluster's kubeconfig: bad files are one clear error, and a kubeconfig that skips TLS
verification is said once for that cluster, not on every request of every watch."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import urllib3

from kelemetry.errors import KelemetryError
from kelemetry.kube.discovery import api_client_for

INSECURE = """apiVersion: v1
kind: Config
clusters:
- name: member
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: not-a-real-token}
contexts:
- name: member
  context: {cluster: member, user: admin}
current-context: member
"""


def test_insecure_kubeconfig_is_told_once_and_urllib3_stays_quiet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "member.kubeconfig"
    path.write_text(INSECURE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.WARNING, logger="kelemetry.kube.discovery"):
            for _ in range(3):
                api_client_for(str(path)).close()
        told = [r.getMessage() for r in caplog.records if "skips TLS verification" in r.getMessage()]
        assert told == [
            f"kubeconfig {path} skips TLS verification (insecure-skip-tls-verify): "
            "the apiserver's identity is not checked"
        ]
        warnings.warn("per request", urllib3.exceptions.InsecureRequestWarning, stacklevel=1)
    assert not [w for w in caught if issubclass(w.category, urllib3.exceptions.InsecureRequestWarning)]
    assert "not-a-real-token" not in caplog.text


def test_a_bad_kubeconfig_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.kubeconfig"
    path.write_text("clusters: [\n")
    with pytest.raises(KelemetryError, match="cannot load kubeconfig"):
        api_client_for(str(path))
