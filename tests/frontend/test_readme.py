"""The README's own examples, run as written against `kelemetry serve` over the Deployment sample.

Every ``sh`` block of the sections about looking traces up and dumping them that calls ``curl`` or
``kelemetry`` runs in bash (``set -euo pipefail``) in a directory whose default store
(``kelemetry-data/kelemetry.db``) is the served one; only the server's address is put in for
``127.0.0.1:8080``. A block passes when it exits 0 and prints no ``null`` and no error; what the
examples promise is checked on their output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import Server, serving
from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
SAMPLE = REPO_ROOT / "samples" / "deployment"
SECTIONS = ("## The two commands", "## Looking traces up", "## Dumping a trace")
VENV_BIN = Path(sys.executable).parent


def examples() -> list[str]:
    """The runnable ``sh`` blocks of the README's lookup sections, in order."""
    text = README.read_text()
    blocks: list[str] = []
    for heading in SECTIONS:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        section = text[start : end if end != -1 else len(text)]
        for block in re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL):
            if "curl " in block or "kelemetry dump" in block:
                blocks.append(block)
    return blocks


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    work = tmp_path_factory.mktemp("readme")
    store = work / "kelemetry-data" / "kelemetry.db"
    store.parent.mkdir()
    replays = ("--replay", str(SAMPLE / "audit.log"), "--replay", str(SAMPLE / "events.jsonl"))
    with serving(work, "--store", str(store), "--cluster", "tracetest", *replays) as server:
        yield server, work


def run(block: str, server: Server, work: Path) -> subprocess.CompletedProcess[str]:
    script = block.replace("http://127.0.0.1:8080", server.base_url)
    script = script.replace(".venv/bin/kelemetry", str(VENV_BIN / "kelemetry"))
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_readme_has_examples_to_run() -> None:
    blocks = examples()
    assert len(blocks) >= 3
    assert any("/redirect" in block for block in blocks)
    assert any("/api/traces" in block for block in blocks)
    assert any("kelemetry dump" in block for block in blocks)


@pytest.mark.parametrize("index", range(len(examples())))
def test_a_readme_example_works_on_the_sample(served: tuple[Server, Path], index: int) -> None:
    server, work = served
    block = examples()[index]
    done = run(block, server, work)
    assert done.returncode == 0, (block, done.stdout, done.stderr, server.log_tail())
    assert done.stdout.strip(), block
    lines = done.stdout.splitlines()
    assert "null" not in lines, (block, done.stdout)
    assert "error" not in done.stderr.lower(), (block, done.stderr)
    if "jq '.data[0].spans | length'" in block:
        counts = [int(line) for line in lines if line.isdigit()]
        # The full tree first, then (where the block shows it) the object alone: one span.
        assert counts and counts[0] > 1 and all(count >= 1 for count in counts), (block, done.stdout)
    if "/api/kelemetry/objects" in block:
        assert "demo-5544f8b48c-b25t4" in lines
    if "jq -r .error" in block:
        assert "did you mean deployments.apps/demo in namespace default (cluster tracetest)?" in done.stdout
    if "jq -r '.data[].traceID'" in block:
        assert re.search(r"^ff[0-9a-f]{30}$", done.stdout, flags=re.MULTILINE), done.stdout
    if "parquet" in block:
        assert (work / "review.parquet").stat().st_size > 0
