"""bench/bench.py's pure parts: the interleaving order, the ratios and the Markdown rows the README's
Performance section is made from (the benchmark itself runs in tests/e2e/test_bench.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nspawnctl_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_interleaved_rotates_the_first_command_and_skips_the_warm_up(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(bench, "timed", lambda argv: calls.append(argv[0]) or float(len(calls)))
    samples = bench.interleaved({"a": ["a"], "b": ["b"], "c": ["c"]}, 3)
    assert calls == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert samples == {"a": [4.0, 9.0, 11.0], "b": [5.0, 7.0, 12.0], "c": [6.0, 8.0, 10.0]}


def test_ratios_targets_and_markdown(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    report = bench.Report()
    report.add("raw", "raw nspawn", [0.100, 0.300, 0.200], short="raw")
    report.add("fast", "`fast`", [0.25], "raw", 1.5)
    report.add("slow", "`slow`", [0.4], "raw", 1.5)
    report.add("orphan", "`a | b`", [0.1], "not-measured")  # its peer's group did not run
    assert [r.ms for r in report.rows] == pytest.approx([200.0, 250.0, 400.0, 100.0])
    assert report.get("fast").ratio == pytest.approx(1.25)
    assert report.get("orphan").ratio is None and report.get("orphan").peer is None
    assert "target ≤ 1.5x: MISSED" in capsys.readouterr().out
    assert report.markdown().splitlines()[2:] == [
        "| raw nspawn | 200 ms | - |  |  |  |",
        "| `fast` | 250 ms | 1.25x | raw | ≤ 1.5x | yes |",
        "| `slow` | 400 ms | 2.00x | raw | ≤ 1.5x | **no** |",
        "| `a \\| b` | 100 ms | - |  |  |  |",  # a pipe in a cell is escaped
    ]


def test_a_failing_command_is_a_broken_benchmark(bench: ModuleType) -> None:
    with pytest.raises(bench.BenchError, match="exited 3"):
        bench.timed(["sh", "-c", "exit 3"])
