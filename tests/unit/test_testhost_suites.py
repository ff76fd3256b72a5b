"""The test-host harness's choice of Debian suite (tests/host/testhost.py): parsing, state
directories, the install a suite cannot do. Pure logic; nothing is built or booted."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))
import testhost


@pytest.fixture(autouse=True)
def default_suite(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TESTHOST_SUITE", "trixie")  # use_suite() sets it: restored afterwards
    yield
    testhost.use_suite(testhost.DEFAULT_SUITE)


def test_each_suite_has_its_own_state_directory() -> None:
    testhost.use_suite("bookworm")
    bookworm = (testhost.BUILD, testhost.ROOT, testhost.POOL, testhost.LOCK, testhost.NSPAWN_PID)
    testhost.use_suite("trixie")
    trixie = (testhost.BUILD, testhost.ROOT, testhost.POOL, testhost.LOCK, testhost.NSPAWN_PID)
    assert trixie[0] == testhost.REPO / ".build" / "host"  # where existing checkouts keep it
    assert bookworm[0] == testhost.REPO / ".build" / "host-bookworm"
    assert all(b.is_relative_to(bookworm[0]) for b in bookworm)
    assert all(t.is_relative_to(trixie[0]) for t in trixie)
    # the root's cache key tells the suites apart: a root of one is never taken for the other's
    testhost.use_suite("bookworm")
    key = testhost.root_spec().stamp()
    testhost.use_suite("trixie")
    assert testhost.root_spec().stamp() != key


def test_the_suite_is_passed_on_to_child_processes() -> None:
    testhost.use_suite("bookworm")
    assert os.environ["TESTHOST_SUITE"] == "bookworm"


@pytest.mark.parametrize(
    ("argv", "suite", "rest"),
    [
        (["test", "--suite", "bookworm", "-k", "logs"], "bookworm", ["-k", "logs"]),
        (["test", "--keep", "--suite=bookworm", "--install", "venv", "--", "-x"], "bookworm", ["-x"]),
        (["test", "-k", "x", "--suite", "bookworm"], "trixie", ["-k", "x", "--suite", "bookworm"]),
        (["exec", "--suite", "bookworm", "--", "ps", "--suite"], "bookworm", ["--", "ps", "--suite"]),
        (["down", "--suite", "bookworm"], "bookworm", None),
        (["up"], "trixie", None),
    ],
)
def test_suite_option(argv: list[str], suite: str, rest: list[str] | None) -> None:
    ns = testhost._parse(argv)
    assert ns.suite == suite
    if rest is not None:
        assert (ns.pytest_args if argv[0] == "test" else ns.cmd) == rest


def test_unknown_suite_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        testhost._parse(["test", "--suite", "sid"])
    assert exc.value.code == 2
    with pytest.raises(testhost.HarnessError, match="unknown suite 'sid'"):
        testhost.use_suite("sid")


def test_debian_install_is_refused_on_bookworm_with_the_reason() -> None:
    testhost.use_suite("bookworm")
    with pytest.raises(
        testhost.UnsupportedInstall, match=r"python3-typer 0\.7\.0 < 0\.15\.2.*--install venv"
    ):
        testhost.check_install_supported("debian")
    testhost.check_install_supported("venv")
    testhost.use_suite("trixie")
    testhost.check_install_supported("debian")


def test_skipped_combination_exits_0_without_building(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_build(force: bool = False) -> None:
        raise AssertionError("must not build")

    monkeypatch.setattr(testhost, "build", no_build)
    testhost.use_suite("bookworm")
    assert testhost.test(install="debian") == 0


def test_prebuild_option_names_suites_and_stays_out_of_pytests_args() -> None:
    ns = testhost._parse(["test", "--unit", "--prebuild", "bookworm", "--prebuild=trixie", "--", "-x"])
    assert ns.prebuild == ["bookworm", "trixie"] and ns.unit and ns.pytest_args == ["-x"]
    assert testhost._parse(["test", "-k", "x", "--prebuild", "bookworm"]).prebuild == []
    with pytest.raises(SystemExit) as exc:
        testhost._parse(["test", "--prebuild", "sid"])
    assert exc.value.code == 2


def test_workers_split_the_suite_into_a_parallel_run_and_the_serial_tests() -> None:
    ns = testhost._parse(["test", "--workers", "2", "--unit", "--", "-x", "-k", "pull"])
    assert ns.workers == 2 and ns.pytest_args == ["-x", "-k", "pull"]
    assert testhost._parse(["test", "-k", "x"]).workers == 1
    runs = testhost.e2e_argvs("py", ns.pytest_args, ns.workers)
    (_, parallel), (_, serial) = runs
    assert parallel[parallel.index("-n") + 1] == "2" and parallel[parallel.index("--dist") + 1] == "loadfile"
    assert parallel[-5:] == ["-m", "not serial", "-x", "-k", "pull"]
    assert serial[-5:] == ["-m", "serial", "-x", "-k", "pull"] and "-n" not in serial
    assert serial[-3:] == ["-x", "-k", "pull"]
    # one process: without workers, and when the caller's own -m picks the tests (only one -m counts)
    for args, workers in ((["-x"], 1), (["-m", "surface"], 2), (["-msurface"], 2)):
        ((_, only),) = testhost.e2e_argvs("py", args, workers)
        assert "-n" not in only and only[-len(args) :] == args and "serial" not in " ".join(only)
    with pytest.raises(SystemExit) as exc:
        testhost._parse(["test", "--workers", "0"])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("first", "second", "combined"),
    [(0, 0, 0), (0, 5, 0), (5, 0, 0), (5, 5, 5), (1, 0, 1), (0, 1, 1), (5, 2, 2), (1, 2, 1)],
)
def test_exit_codes_of_the_two_runs_combine(first: int, second: int, combined: int) -> None:
    assert testhost.combine_codes(first, second) == combined


def test_the_serial_run_follows_unless_the_first_was_cut_short() -> None:
    assert all(testhost.worth_going_on(code, []) for code in (0, 1, 5))
    assert not any(testhost.worth_going_on(code, []) for code in (2, 3, 4))  # interrupted, internal, usage
    assert not testhost.worth_going_on(1, ["-x"]) and not testhost.worth_going_on(1, ["--maxfail=2"])
    assert testhost.worth_going_on(0, ["-x"])
    # the caller's own workers: one run as asked; a -k that matches nothing stays pytest's 5
    ((_, only),) = testhost.e2e_argvs("py", ["-n", "3"], 2)
    assert only[-2:] == ["-n", "3"] and "--dist" not in only
    assert functools.reduce(testhost.combine_codes, [5]) == 5
    assert functools.reduce(testhost.combine_codes, [5, 5]) == 5
    for bad in (["--workers="], ["--workers", "\u00b2"], ["--workers", "17"]):
        with pytest.raises(SystemExit):
            testhost._parse(["test", *bad])
