"""Fixtures shared by the query-side tests: the recorded Deployment sample replayed into a store."""

from __future__ import annotations

from pathlib import Path

import pytest

from kelemetry import cli
from tests.conftest import REPO_ROOT

SAMPLE = REPO_ROOT / "samples" / "deployment"
SAMPLE_CLUSTER = "tracetest"


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``kelemetry replay`` of samples/deployment (audit log and Events) into a fresh store.

    Read-only for the tests: views are kept in each test's own file, never beside this store.
    """
    path = tmp_path_factory.mktemp("sample") / "k.db"
    argv = ["replay", "--quiet", "--cluster", SAMPLE_CLUSTER, "--store", str(path)]
    code = cli.main([*argv, str(SAMPLE / "audit.log"), str(SAMPLE / "events.jsonl")])
    assert code == 0
    return path
