#!/usr/bin/env python3
"""Fuzz one parser for a while: ``python3 tests/fuzz/run.py TARGET --minutes 10``.

Runs the target's hypothesis strategy (structured inputs plus mutations of its corpus) in
batches until the time is up, and stops at the first input that breaks the property (an
exception that is not an nspawnctl error, a hang, an escape, a leak): hypothesis shrinks it, and
it is saved as ``corpus/TARGET/crash-<sha>`` so that the unit tests replay it from then on.
``--replay`` runs the corpus alone. Targets: tar, oci, aci, nspawn, ref, api (or ``all``).
Run from the repository with the package importable (``PYTHONPATH=.`` or an install).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzz_targets
from fuzz_targets import CORPUS, TARGETS, Target, corpus_files
from hypothesis import HealthCheck, Phase, Verbosity, given, settings


def replay(target: Target) -> int:
    failed = 0
    for path in corpus_files(target.name):
        try:
            target.check(path.read_bytes())
        except Exception:
            failed += 1
            print(f"FAIL {path}", file=sys.stderr)
            traceback.print_exc()
    print(f"{target.name}: replayed {len(corpus_files(target.name))} corpus files, {failed} failed")
    return 1 if failed else 0


def _signature(e: BaseException) -> str:
    """What tells failures apart: the exception type and where it was raised."""
    tb = traceback.extract_tb(e.__traceback__)
    where = next((f for f in reversed(tb) if "fuzz_targets" not in f.filename), tb[-1]) if tb else None
    return f"{type(e).__name__} at {where.filename}:{where.lineno}" if where else type(e).__name__


def fuzz(target: Target, minutes: float, batch: int, keep_going: bool = False) -> int:
    """Return 0 when the time ran out with no failure, 1 after saving a failing input.

    ``keep_going``: save each failing input (not shrunk) and go on with a new batch until the
    time is up, counting the failures by kind, to measure past a known, unfixed one."""
    count = 0
    failing: list[bytes] = []
    kinds: dict[str, int] = {}

    @settings(
        max_examples=batch,
        deadline=None,
        database=None,
        phases=[Phase.generate] if keep_going else [Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        verbosity=Verbosity.quiet,  # the input goes to the corpus, not the terminal
    )
    @given(target.strategy())
    def prop(data: bytes) -> None:
        nonlocal count
        count += 1
        try:
            target.check(data)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            failing.append(data)
            raise

    def save(data: bytes) -> Path:
        folder = CORPUS / target.name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"crash-{hashlib.sha256(data).hexdigest()[:16]}"
        path.write_bytes(data)
        return path

    start = time.monotonic()
    end = start + minutes * 60
    batches = 0
    while time.monotonic() < end:
        try:
            prop()
            batches += 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            break
        except Exception as e:
            if not failing:
                raise  # the strategy or the harness broke, not the target
            path = save(failing[-1])  # hypothesis runs the shrunk example last
            elapsed = time.monotonic() - start
            if not keep_going:
                traceback.print_exc(limit=-12)
                print(f"{target.name}: FAILED after {count} examples in {elapsed:.0f} s; saved {path}")
                return 1
            kind = _signature(e)
            kinds[kind] = kinds.get(kind, 0) + 1
            print(f"{target.name}: failure after {count} examples in {elapsed:.0f} s: {kind}; saved {path}")
            failing.clear()
    elapsed = time.monotonic() - start
    failures = sum(kinds.values())
    summary = ", ".join(f"{n} x {k}" for k, n in kinds.items()) or "no failure"
    print(
        f"{target.name}: {count} examples in {elapsed:.0f} s ({count / max(elapsed, 1e-9):.1f}/s), "
        f"{batches} batches, {summary}"
    )
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=[*TARGETS, "all"])
    parser.add_argument("--minutes", type=float, default=1.0, help="how long to fuzz each target")
    parser.add_argument("--batch", type=int, default=500, help="examples per hypothesis run")
    parser.add_argument("--replay", action="store_true", help="only run the corpus through the target")
    parser.add_argument(
        "--skip", action="append", default=[], metavar="FILE", help="a corpus file not to mutate"
    )
    parser.add_argument("--keep-going", action="store_true", help="save each failure and go on")
    parser.add_argument("--no-header-bombs", action="store_true", help="tar: no oversized extended headers")
    args = parser.parse_args()
    fuzz_targets.SKIP_SEEDS.update(args.skip)
    fuzz_targets.HEADER_BOMBS = not args.no_header_bombs
    names = list(TARGETS) if args.target == "all" else [args.target]
    rc = 0
    for name in names:
        target = TARGETS[name]
        rc |= replay(target) if args.replay else fuzz(target, args.minutes, args.batch, args.keep_going)
    return rc


if __name__ == "__main__":
    sys.exit(main())
