"""cli/quickrun.py: the forms of ``run`` read without typer give what the typer command gives, and
every other form is left to typer (its help, usage errors and exit codes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from nspawnctl.cli import app as app_module
from nspawnctl.cli import quickrun
from nspawnctl.cli.quickrun import QuickRun, parse

QUICK_FORMS = [
    ["run", "--rm", "img", "/bin/true"],
    ["run", "img"],
    ["run", "--rm", "--network", "host", "--userns", "host", "img", "/bin/true"],
    ["run", "--rm", "--net=none", "--userns=auto", "img"],
    ["run", "--name", "web", "-e", "A=1", "--env", "B=2", "--env=C=3", "img", "sh", "-c", "echo $A"],
    ["run", "--rm", "img", "sh", "-c", "x", "--rm", "-d", "--", "-e", "--help"],
    ["run", "--rm", "--network", "zone:z1", "img"],
    ["--pool", "/p", "--store=/s", "run", "--rm", "img", "true"],
    ["run", "-e", "HOME", "-e", "NSPAWNCTL_SURELY_UNSET", "img"],
]

TYPER_FORMS = [
    ["run"],
    ["run", "--rm"],
    ["run", "--help"],
    ["run", "-h"],
    ["run", "-d", "img"],
    ["run", "-it", "img", "sh"],
    ["run", "-i", "img"],
    ["run", "--rm", "--", "img"],
    ["run", "--name"],
    ["run", "--name", "--rm", "img"],
    ["run", "-eA=1", "img"],
    ["run", "-p", "80", "img"],
    ["run", "--rm=yes", "img"],
    ["run", "--nam", "x", "img"],
    ["--json", "run", "img"],
    ["--pool", "run", "img"],
    ["--version", "run", "img"],
    ["ps"],
    ["exec", "c", "run"],
    ["create", "img", "run"],
]


def test_the_common_forms_are_read() -> None:
    q = parse(["--pool", "/p", "run", "--rm", "--net", "host", "--name=x", "-e", "A=1", "img", "a", "-b"])
    assert q == QuickRun("/p", None, True, "x", "host", "auto", ["A=1"], "img", ["a", "-b"])


@pytest.mark.parametrize("args", TYPER_FORMS, ids=" ".join)
def test_everything_else_is_left_to_typer(args: list[str]) -> None:
    assert parse(args) is None


def _typer_run(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> dict[str, Any]:
    """What the typer ``run`` hands to the foreground run for ``args``."""
    seen: dict[str, Any] = {}

    def foreground(client: object, image: str, argv: list[str], opts: object, *rest: object) -> int:
        seen.update(image=image, argv=argv, opts=opts, rest=rest)
        return 0

    monkeypatch.setattr(quickrun, "foreground", foreground)
    monkeypatch.setattr(app_module.State, "client", lambda self: None)
    app_module._register("run")
    group = typer.main.get_command(app_module.app)
    # typer returns (not raises) typer.Exit's code when standalone_mode is off
    group.main(args=args, prog_name="nspawnctl", standalone_mode=False, obj=app_module.State())
    assert seen, "the typer run did not reach the foreground run"
    return seen


def _comparable(opts: Any) -> Any:
    """RunOptions' own equality (notices not compared); pull_options is a closure either way,
    compared by what it makes."""
    import dataclasses

    return dataclasses.replace(opts, pull_options=None)


@pytest.mark.parametrize("args", QUICK_FORMS, ids=" ".join)
def test_quick_forms_give_what_typer_gives(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    from nspawnctl.config import Paths

    q = parse(args)
    assert q is not None
    seen = _typer_run(monkeypatch, args)
    paths = Paths.from_env(q.pool, q.store)
    ours = quickrun.options(q, paths)
    assert (q.image, q.command) == (seen["image"], seen["argv"])
    assert seen["rest"] == (False, False)  # no -i, no -t
    assert _comparable(ours) == _comparable(seen["opts"])
    theirs = seen["opts"].pull_options()
    mine = ours.pull_options()  # type: ignore[misc]
    assert (mine.auth_file, mine.policy_file, mine.verify, mine.tls_verify) == (  # type: ignore[attr-defined]
        theirs.auth_file,
        theirs.policy_file,
        theirs.verify,
        theirs.tls_verify,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--rm", "img", "true"],
        ["run", "--network", "nonsense", "img"],
        ["run", "--userns", "x", "img"],
    ],
    ids=" ".join,
)
def test_quick_errors_are_said_as_the_app_says_them(tmp_path: Path, args: list[str]) -> None:
    """A library error on the quick path: the app's one line and hint, its exit code (the same
    command with --pids-limit, a form quickrun leaves to typer, fails the same way)."""
    env = {**os.environ, "NSPAWNCTL_POOL": str(tmp_path), "NSPAWNCTL_STORE": str(tmp_path)}

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        argv_ = [sys.executable, "-m", "nspawnctl", *argv]
        return subprocess.run(argv_, capture_output=True, text=True, env=env)

    assert parse(args) is not None
    quick, slow = cli(*args), cli(args[0], "--pids-limit", "5", *args[1:])
    assert quick.returncode == slow.returncode and quick.returncode in (2, 125)
    assert quick.stderr == slow.stderr and quick.stderr.startswith("nspawnctl: error: ")
    assert "hint: " in quick.stderr and quick.stdout == ""
