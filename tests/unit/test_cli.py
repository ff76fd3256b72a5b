"""The CLI without systemd: help texts, argument pass-through, errors and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import nspawnctl
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


@pytest.mark.parametrize("args", [["ps", "--json"], ["inspect", "--json", "nosuch"], ["inspect", "nosuch"]])
def test_json_errors_are_valid_json_and_said_once(tmp_path: Path, args: list[str]) -> None:
    env = {"NSPAWNCTL_POOL": str(tmp_path), "NSPAWNCTL_STORE": str(tmp_path)}
    proc = cli(*args, env=env)
    assert proc.returncode == 125
    assert proc.stderr == ""  # the error once: as JSON on stdout, and nothing else
    assert len(proc.stdout.splitlines()) == 1
    err = json.loads(proc.stdout)["error"]
    assert err["code"] == "pool-not-btrfs" and err["hint"]


def test_invalid_name_is_rejected_before_anything(tmp_path: Path) -> None:
    proc = cli("run", "--name", "bad_name!", "img", "true", env={"NSPAWNCTL_POOL": str(tmp_path)})
    assert proc.returncode != 0
    assert "nspawnctl: error:" in proc.stderr


def test_bad_option_values() -> None:
    proc = cli("run", "--memory", "lots", "img", "true")
    assert proc.returncode == 2 and "invalid size" in proc.stderr
    proc = cli("run", "-v", "./relative:/x", "img", "true")
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


# -- usage errors, as docker words them ------------------------------------------------------

USAGE = [
    (["run"], "missing argument 'IMAGE'", "see 'nspawnctl run --help'"),
    (["exec", "-it"], "missing argument 'CONTAINER'", "see 'nspawnctl exec --help'"),
    (["run", "--bogus", "img", "true"], "unknown flag: --bogus", "see 'nspawnctl run --help'"),
    (["create", "--bogus", "img"], "unknown flag: --bogus", "see 'nspawnctl create --help'"),
    (["exec", "--bogus", "ctr", "ls"], "unknown flag: --bogus", "see 'nspawnctl exec --help'"),
    (["run", "-d", "--name", "x", "--bogus=1", "img"], "unknown flag: --bogus", "see 'nspawnctl run --help'"),
    (["run", "-itz", "img"], "unknown shorthand flag: 'z' in -itz", "see 'nspawnctl run --help'"),
    (["ps", "--bogus"], "unknown flag: --bogus", "see 'nspawnctl ps --help'"),
    (["ps", "--jsn"], "unknown flag: --jsn", "did you mean --json? see 'nspawnctl ps --help'"),
    (["--bogus", "ps"], "unknown flag: --bogus", "see 'nspawnctl --help'"),
    (["rnu", "img"], 'unknown command "rnu"', "did you mean \"run\"? see 'nspawnctl --help'"),
    (["imgaes"], 'unknown command "imgaes"', "did you mean \"images\" or \"image\"? see 'nspawnctl --help'"),
    (
        ["image", "lss"],
        'unknown command "lss" for "nspawnctl image"',
        "did you mean \"ls\"? see 'nspawnctl image --help'",
    ),
    (["logs", "--tail"], "option '--tail' requires an argument", "see 'nspawnctl logs --help'"),
    (
        ["start", "-ai", "a", "b"],
        "you cannot start and attach multiple containers at once",
        "start one with -a/-i, or start them without -a",
    ),
]


@pytest.mark.parametrize(("args", "message", "hint"), USAGE, ids=[" ".join(u[0]) for u in USAGE])
def test_usage_errors_are_one_line_plus_hint_exit_2(args: list[str], message: str, hint: str) -> None:
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"nspawnctl: error: {message}", f"hint: {hint}"]
    assert proc.stdout == ""


def test_usage_error_under_json_is_the_envelope_only() -> None:
    for args in (["inspect", "--json"], ["images", "--json", "--bogus"], ["ps", "--json", "-z"]):
        proc = cli(*args)
        assert proc.returncode == 2 and proc.stderr == "", proc.stderr
        err = json.loads(proc.stdout)["error"]
        assert err["code"] == "usage" and err["hint"].startswith("see 'nspawnctl ") and err["message"]


@pytest.mark.parametrize("args", [[], ["image"], ["trust"], ["pool"]])
def test_a_bare_group_prints_its_help(args: list[str]) -> None:
    proc = cli(*args)
    assert proc.returncode == 0 and proc.stdout.startswith("Usage: nspawnctl") and proc.stderr == ""


def _run_command_and_ctx():  # type: ignore[no-untyped-def]
    group = _command()
    return group.commands["run"], group.make_context("nspawnctl", ["run"], resilient_parsing=True)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "args",
    [
        ["img", "--bogus", "-z"],  # after IMAGE everything is the payload's
        ["--name", "--bogus", "img"],  # the value of --name, refused later as a name
        ["--name=x", "-e", "A=1", "-eB=2", "-it", "--rm", "img"],
        ["-w", "/", "-u", "0", "--", "--img-with-dash"],
        ["-h"],
        [],
    ],
)
def test_leading_options_that_pass(args: list[str]) -> None:
    from nspawnctl.cli.usage import check_leading_options

    run, ctx = _run_command_and_ctx()
    check_leading_options(run, ctx, args, "nspawnctl run")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus", "img"], "unknown flag: --bogus"),
        (["-e", "A=1", "--nme", "x", "img"], "unknown flag: --nme"),
        (["-iq", "img"], "unknown shorthand flag: 'q' in -iq"),
    ],
)
def test_leading_options_that_are_refused(args: list[str], message: str) -> None:
    from nspawnctl.cli.usage import CommandLineError, check_leading_options

    run, ctx = _run_command_and_ctx()
    with pytest.raises(CommandLineError) as e:
        check_leading_options(run, ctx, args, "nspawnctl run")
    assert e.value.message == message and e.value.exit_code == 2
    assert e.value.hint is not None and e.value.hint.endswith("see 'nspawnctl run --help'")


def test_usage_of_recognises_the_installed_typers_exceptions() -> None:
    """Whatever module typer takes its click from, its usage errors are recognised by their shape."""
    from nspawnctl.cli.usage import Usage, usage_of

    group = _command()
    caught = []
    for name, args in (("ps", ["--bogus"]), ("run", []), ("logs", ["--tail"])):
        try:
            group.commands[name].make_context(name, args)  # type: ignore[attr-defined]
        except Exception as e:  # typer's (or click's) UsageError subclasses
            caught.append(usage_of(e, name))
    assert caught == [
        Usage("unknown flag: --bogus", "see 'ps --help'"),
        Usage("missing argument 'IMAGE'", "see 'run --help'"),
        Usage("option '--tail' requires an argument", "see 'logs --help'"),
    ]
    assert usage_of(ValueError("x")) is None and usage_of(typer.Exit(2)) is None


def test_unknown_command_suggestions() -> None:
    from nspawnctl.cli.usage import unknown_command

    e = unknown_command("stpo", ["stop", "start", "ps"], "nspawnctl")
    assert e.message == 'unknown command "stpo"' and e.hint == "did you mean \"stop\"? see 'nspawnctl --help'"
    e = unknown_command("zzz", ["stop"], "nspawnctl")
    assert e.hint == "see 'nspawnctl --help'"


@pytest.mark.parametrize(
    "args", [[*c, "--help"] for c in COMMANDS] + [["--version"], ["-h"]], ids=lambda a: " ".join(a)
)
def test_help_loads_no_library_module(args: list[str]) -> None:
    code = (
        "import sys\n"
        "from nspawnctl.cli.app import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "light = ('nspawnctl', 'nspawnctl.cli', 'nspawnctl.errors')\n"
        "ours = [m for m in sys.modules if m.startswith('nspawnctl.') and m not in light\n"
        "        and not m.startswith('nspawnctl.cli.')]\n"
        "heavy = [m for m in ('dbus_fast', 'dbus_next', 'requests', 'btrfsutil', 'gnupg', 'zstandard')\n"
        "         if m in sys.modules]\n"
        "sys.stderr.write(repr(ours + heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "[]"


def _loaded_by(code: str) -> list[str]:
    """The modules a fresh interpreter loads running ``code`` (beyond what it loads for ``pass``)."""
    wrapped = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "try:\n" + "".join(f"    {line}\n" for line in code.splitlines()) + "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "sys.stderr.write(repr(sorted(set(sys.modules) - before)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    loaded: list[str] = eval(proc.stderr.splitlines()[-1])
    return loaded


def test_version_loads_nothing_but_the_entry_point() -> None:
    """`nspawnctl --version` costs the interpreter's start and nothing more: no typer, no library."""
    loaded = _loaded_by("from nspawnctl.cli.entry import main\nmain(['--version'])")
    assert set(loaded) <= {"nspawnctl", "nspawnctl.cli", "nspawnctl.cli.entry"}, loaded


def test_version_fast_path_says_what_the_app_says(capsys: pytest.CaptureFixture[str]) -> None:
    from nspawnctl.cli import entry

    for main in (entry.main, app_module.main):
        with pytest.raises(SystemExit) as e:
            main(["--version"])
        assert e.value.code == 0
    fast, full = capsys.readouterr().out.splitlines()
    assert fast == full == f"nspawnctl {nspawnctl.__version__}"


def test_the_console_script_is_the_light_entry_point() -> None:
    """The installed command is bin/nspawnctl (no entry-point wrapper, which imports ``re``): it
    imports the light entry point and nothing else."""
    import tomllib

    root = Path(__file__).parents[2]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    project = pyproject["project"]
    assert "scripts" not in project
    assert pyproject["tool"]["setuptools"]["script-files"] == ["bin/nspawnctl"]
    assert project["version"] == nspawnctl.__version__
    launcher = (root / "bin" / "nspawnctl").read_text()
    assert launcher.startswith("#!/usr/bin/env python3\n")
    code = [line for line in launcher.splitlines()[1:] if line and not line.startswith("#")]
    assert code == ["from nspawnctl.cli.entry import main", "raise SystemExit(main())"]


def _registered(module: str) -> list[str]:
    import importlib

    app = typer.Typer()
    app.callback()(lambda: None)  # a group even when the module registers one command
    importlib.import_module(f"nspawnctl.cli.{module}").register(app)
    return list(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("module", list(app_module.COMMAND_MODULES))
def test_command_table_is_what_the_modules_register(module: str) -> None:
    assert _registered(module) == list(app_module.COMMAND_MODULES[module])


def test_help_lists_every_command() -> None:
    proc = cli("--help")
    listed = [line.split()[0] for line in proc.stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert sorted(listed) == sorted(c for names in app_module.COMMAND_MODULES.values() for c in names)


def test_global_options_are_the_ones_command_of_skips() -> None:
    root = _command()
    ctx = root.make_context("nspawnctl", ["ps"], resilient_parsing=True)
    takes_value, flags = set(), set(ctx.help_option_names)
    for param in root.params:
        names = {*param.opts, *param.secondary_opts}
        (flags if getattr(param, "is_flag", False) else takes_value).update(names)
    completion = set(app_module.COMPLETION_OPTIONS)  # flags in newer typers, optional values before
    assert completion <= takes_value | flags
    assert takes_value - completion == set(app_module.GLOBAL_VALUE_OPTIONS)
    assert flags - completion == set(app_module.GLOBAL_FLAGS)
    assert app_module.command_of(["--install-completion", "bash"]) is None


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["ps"], "ps"),
        (["--pool", "/p", "--store=/s", "run", "--rm", "img"], "run"),
        (["--store", "ps", "images"], "images"),  # "ps" is --store's value here
        (["-h"], None),
        (["--version", "image", "ls"], "image"),
        ([], None),
        (["--bogus", "ps"], None),  # click reports the flag: every command is registered
        (["--", "ps"], None),
    ],
)
def test_command_of(args: list[str], command: str | None) -> None:
    assert app_module.command_of(args) == command


# What each command may load of the other command modules (images.py uses registry.py's options
# and registers transfer.py's image save|load, files.py uses its --change, system.py images.py's
# output): everything else stays unimported.
COMMAND_DEPS = {
    "images": {"registry", "transfer"},
    "files": {"transfer"},
    "system": {"images", "registry", "transfer"},
}


@pytest.mark.parametrize(
    "args", [["ps"], ["run"], ["stop"], ["images"], ["trust", "list"], ["system", "prune"]]
)
def test_a_command_imports_only_its_own_cli_module(args: list[str]) -> None:
    module = next(m for m, names in app_module.COMMAND_MODULES.items() if args[0] in names)
    loaded = _loaded_by(f"from nspawnctl.cli.entry import main\nmain({[*args, '--help']!r})")
    others = {m for m in app_module.COMMAND_MODULES if f"nspawnctl.cli.{m}" in loaded} - {module}
    assert others <= COMMAND_DEPS.get(module, set()), others


def test_ps_and_run_load_no_library_they_do_not_use() -> None:
    """What ps and run import (the CLI, the client, the runtime) pulls in no HTTP, signature,
    archive, decompression or progress-bar library: those belong to pull, import and trust."""
    loaded = _loaded_by(
        "import nspawnctl.cli.containers, nspawnctl.client, nspawnctl.run.runtime, nspawnctl.systemd.bus"
    )
    unused = {"requests", "urllib3", "gnupg", "rich", "tarfile", "zstandard", "http", "pydantic", "click"}
    unused -= _typer_footprint()  # typer 0.15 (Debian 13's) loads click and rich itself
    assert [m for m in loaded if m.split(".")[0] in unused] == []


def _typer_footprint() -> set[str]:
    """The packages typer itself loads: a choice of the installed typer, not of nspawnctl."""
    return {m.split(".")[0] for m in _loaded_by("import typer, typer.main")}


@pytest.mark.skipif(
    tuple(int(p) for p in typer.__version__.split(".")[:2]) >= (0, 29),
    reason="typer >= 0.29 (which pyproject.toml excludes) coerces every option through pydantic",
)
def test_a_command_loads_no_pydantic() -> None:
    loaded = _loaded_by("from nspawnctl.cli.entry import main\nmain(['ps', '--help'])")
    heavy = {"pydantic", "rich"} - _typer_footprint()
    assert [m for m in loaded if m.split(".")[0] in heavy] == []


@pytest.mark.parametrize("bad", ["\u00b2", "9" * 5000, "\u0663"])
def test_signals_of_digits_int_refuses(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_signal(bad)
