"""The fuzz corpus (tests/fuzz/corpus/<target>/: seeds, and every input that once found a bug)
replayed through its target, and a short, derandomized run of each target's strategy.

The long runs are ``python3 tests/fuzz/run.py TARGET --minutes N`` (``make fuzz``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))

from fuzz_targets import TARGETS, corpus_files

CASES = [(name, path) for name in TARGETS for path in corpus_files(name)]
def test_every_target_has_a_corpus() -> None:
    assert {name for name, _ in CASES} == set(TARGETS)


@pytest.mark.parametrize(("target", "path"), CASES, ids=[f"{n}/{p.name}" for n, p in CASES])
def test_corpus_replays_cleanly(target: str, path: Path) -> None:
    TARGETS[target].check(path.read_bytes())


@pytest.mark.parametrize("target", list(TARGETS))
def test_short_fuzz_run(target: str) -> None:
    t = TARGETS[target]

    @settings(
        max_examples=20 if target == "tar" else 60,
        deadline=None,
        database=None,
        derandomize=True,  # the same examples every run: a red test is reproducible
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
    )
    @given(t.strategy())
    def prop(data: bytes) -> None:
        t.check(data)

    prop()
