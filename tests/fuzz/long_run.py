"""The long fuzz run of `make fuzz`: many cases per surface, counted, never stopping at a failure.

    python -m tests.fuzz.long_run

``KELEMETRY_FUZZ_CASES`` (default 100000) cases per surface, ``KELEMETRY_FUZZ_SURFACES`` (default
``webhook,query,replay``), ``KELEMETRY_FUZZ_SEED`` (default 10; the same seed gives the same cases).
Progress and the summary go to stdout a line at a time, so the run can go to a file in the
background without a terminal. It prints the answers by status per surface, the lost and
duplicated acknowledged events and the first problems with their inputs, and exits 1 if any case
got a 5xx (or crashed replay) or lost an event.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from kelemetry import cli
from tests.fuzz import strategies
from tests.fuzz.harness import QueryHarness, ReplayHarness, Tally, WebhookHarness

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "deployment"
PROGRESS_EVERY = 1_000


def _drive(
    name: str,
    strategy: st.SearchStrategy[Any],
    check: Callable[[Any], list[str]],
    tally: Tally,
    cases: int,
    at: int,
) -> None:
    started = time.monotonic()

    @seed(at)
    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(case: Any) -> None:
        check(case)
        if tally.cases % PROGRESS_EVERY == 0:
            rate = tally.cases / (time.monotonic() - started)
            print(f"  {tally.line(name)} [{rate:.0f}/s]", flush=True)

    run()


def main() -> int:
    try:
        cases = int(os.environ.get("KELEMETRY_FUZZ_CASES", "100000"))
        at = int(os.environ.get("KELEMETRY_FUZZ_SEED", "10"))
    except ValueError as exc:
        print(f"fuzz: KELEMETRY_FUZZ_CASES and KELEMETRY_FUZZ_SEED are integers ({exc})", file=sys.stderr)
        return 2
    surfaces = [
        s.strip() for s in os.environ.get("KELEMETRY_FUZZ_SURFACES", "webhook,query,replay").split(",")
    ]
    unknown = set(surfaces) - {"webhook", "query", "replay"}
    if unknown:
        print(
            f"fuzz: unknown surface(s) {', '.join(sorted(unknown))}: webhook, query, replay", file=sys.stderr
        )
        return 2
    warnings.filterwarnings("ignore")
    # The collector logs every refusal; a long run would write millions of lines.
    logging.disable(logging.CRITICAL)
    tallies: dict[str, Tally] = {}
    # Stopped from outside (kill, or ^C), the run still prints what it counted so far.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        _run(surfaces, cases, at, tallies)
    except KeyboardInterrupt:
        print("fuzz: stopped before the end; counts so far", flush=True)
    except Exception as exc:
        # A bug of the fuzzer itself: still show what was counted, and fail.
        print(f"fuzz: the run failed ({type(exc).__name__}: {exc}); counts so far", flush=True)
        _summary(tallies)
        return 1
    return _summary(tallies)


def _run(surfaces: list[str], cases: int, at: int, tallies: dict[str, Tally]) -> None:
    with tempfile.TemporaryDirectory(prefix="kelemetry-fuzz-") as scratch:
        work = Path(scratch)
        for name in surfaces:
            print(f"fuzz: {name}, {cases} cases, seed {at}", flush=True)
            started = time.monotonic()
            if name == "webhook":
                webhook = WebhookHarness(work)
                tallies[name] = webhook.tally
                try:
                    _drive(name, strategies.batches(), webhook.check, webhook.tally, cases, at)
                finally:
                    webhook.close()
            elif name == "query":
                store = work / "sample.db"
                argv = ["replay", "--quiet", "--cluster", "tracetest", "--store", str(store)]
                if cli.main([*argv, str(SAMPLE / "audit.log"), str(SAMPLE / "events.jsonl")]) != 0:
                    raise SystemExit("fuzz: replaying the sample failed")
                queries = QueryHarness(store, work / "views.db", canary_every=100)
                tallies[name] = queries.tally
                try:
                    _drive(name, strategies.query_requests(), queries.check, queries.tally, cases, at)
                finally:
                    queries.close()
            else:
                replay = ReplayHarness(work)
                tallies[name] = replay.tally
                try:
                    _drive(name, strategies.replay_files(), replay.check, replay.tally, cases, at)
                finally:
                    replay.close()
            print(f"  done in {time.monotonic() - started:.0f} s", flush=True)


def _summary(tallies: dict[str, Tally]) -> int:
    print("fuzz summary", flush=True)
    failed = False
    for name, tally in tallies.items():
        print(f"  {tally.line(name)}")
        server_errors = sum(
            n for status, n in tally.statuses.items() if status.startswith("5") or status == "crashed"
        )
        failed = failed or bool(server_errors or tally.lost or tally.duplicated or tally.problems)
        for example in tally.examples:
            print(f"    - {example[:2_000]}")
    lost = sum(t.lost for t in tallies.values())
    print(f"lost acknowledged events: {lost}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
