"""The CLI without systemd: help texts, argument pass-through, errors and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from nspawnctl.cli import app as app_module
from nspawnctl.cli.containers import _docker_since, parse_signal, parse_size, read_env_file
from nspawnctl.cli.output import human_duration, human_size
from nspawnctl.errors import InvalidArgument

COMMANDS = [
    [],
    ["pull"],
    ["import"],
    ["images"],
    ["tag"],
    ["rmi"],
    ["image"],
    ["image", "inspect"],
    ["image", "prune"],
    ["login"],
    ["logout"],
    ["trust"],
    ["trust", "add"],
    ["trust", "list"],
    ["trust", "rm"],
    ["create"],
    ["run"],
    ["start"],
    ["stop"],
    ["kill"],
    ["restart"],
    ["rm"],
    ["ps"],
    ["logs"],
    ["exec"],
    ["inspect"],
    ["pool"],
    ["pool", "init"],
    ["pool", "check"],
]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nspawnctl", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_every_command_has_help(cmd: list[str]) -> None:
    proc = cli(*cmd, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage: nspawnctl" in proc.stdout
    assert len(proc.stdout.splitlines()) >= 4


def _command():  # type: ignore[no-untyped-def]
    app_module._register()
    return typer.main.get_command(app_module.app)


def test_payload_argv_is_passed_exactly() -> None:
    group = _command()
    run = group.commands["run"]  # type: ignore[attr-defined]
    ctx = run.make_context(
        "run", ["-d", "--name", "x", "img", "sh", "-c", "echo hi", "--rm", "-d", "--", "-e"]
    )
    assert list(ctx.params["command"]) == ["sh", "-c", "echo hi", "--rm", "-d", "--", "-e"]
    assert ctx.params["detach"] is True and ctx.params["rm"] is False and ctx.params["name"] == "x"
    ex = group.commands["exec"]  # type: ignore[attr-defined]
    ctx = ex.make_context("exec", ["-it", "web", "ls", "-la", "/"])
    assert (
        list(ctx.params["command"]) == ["ls", "-la", "/"] and ctx.params["tty"] and ctx.params["interactive"]
    )


def test_pool_not_btrfs_is_a_clear_error(tmp_path: Path) -> None:
    env = {"NSPAWNCTL_POOL": str(tmp_path / "pool"), "NSPAWNCTL_STORE": str(tmp_path / "store")}
    (tmp_path / "pool").mkdir()
    (tmp_path / "store").mkdir()
    proc = cli("images", env=env)
    assert proc.returncode == 125
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("nspawnctl: error: the container pool") and "not on btrfs" in lines[0]
    assert "nspawnctl pool init" in proc.stderr
    assert not any((tmp_path / "store").iterdir())  # nothing was created


def test_json_errors_are_valid_json(tmp_path: Path) -> None:
    env = {"NSPAWNCTL_POOL": str(tmp_path), "NSPAWNCTL_STORE": str(tmp_path)}
    proc = cli("ps", "--json", env=env)
    assert proc.returncode == 125
    err = json.loads(proc.stdout)["error"]
    assert err["code"] == "pool-not-btrfs" and err["hint"]


def test_invalid_name_is_rejected_before_anything(tmp_path: Path) -> None:
    proc = cli("run", "--name", "bad_name!", "img", "true", env={"NSPAWNCTL_POOL": str(tmp_path)})
    assert proc.returncode != 0
    assert "nspawnctl: error:" in proc.stderr


def test_bad_option_values() -> None:
    proc = cli("run", "--memory", "lots", "img", "true")
    assert proc.returncode == 2 and "invalid size" in proc.stderr
    proc = cli("run", "-v", "relative:/x", "img", "true")
    assert proc.returncode == 2 and "invalid volume" in proc.stderr
    proc = cli("logs", "--tail", "many", "web")
    assert proc.returncode == 2


def test_version() -> None:
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("nspawnctl ")


@pytest.mark.parametrize(
    ("text", "value"), [("64M", 64 << 20), ("1g", 1 << 30), ("512k", 512 << 10), ("100", 100)]
)
def test_sizes_are_binary_like_docker(text: str, value: int) -> None:
    assert parse_size(text) == value


def test_signals() -> None:
    assert parse_signal("TERM") == 15 and parse_signal("SIGHUP") == 1 and parse_signal("9") == 9
    with pytest.raises(InvalidArgument):
        parse_signal("NOPE")


def test_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_HOST", "h")
    f = tmp_path / "env"
    f.write_text("# comment\nA=1\n\nB=two words\nFROM_HOST\nUNSET_ONE\n")
    assert read_env_file(str(f)) == ["A=1", "B=two words", "FROM_HOST=h"]


def test_human_output() -> None:
    assert human_duration(0.2) == "Less than a second"
    assert human_duration(45) == "45 seconds"
    assert human_duration(180) == "3 minutes"
    assert human_duration(3 * 86400) == "3 days"
    assert human_size(5_300_000) == "5.3MB"
    assert _docker_since("10m") == "-10min" and _docker_since("2026-01-01") == "2026-01-01"
