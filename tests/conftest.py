"""Shared fixtures. Real data from other projects lives in ../shared/realdata (never copied here)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
REALDATA = REPO_ROOT.parent / "shared" / "realdata"
FALCO = "falco_k8s_audit_trace_events.jsonl"
AUDIT2RBAC = "audit2rbac_demo_v1beta1.jsonl"


@pytest.fixture
def realdata() -> Path:
    """The shared real-data folder; the one thing a test may skip on when it is absent."""
    if not (REALDATA / FALCO).exists():
        pytest.skip("../shared/realdata is not present")  # allowed-skip
    return REALDATA
