"""Each issue-14 command's ``--help`` documents the docker flags it takes (issue 14: "each new flag
documented in --help"), and ``run``/``create --help`` every flag the README's "docker run flags"
table says they take. The help is rendered in-process (one CLI for all), wide so no flag is wrapped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from nspawnctl.cli import app as app_module

README = Path(__file__).resolve().parents[2] / "README.md"

HELP_FLAGS: dict[str, list[str]] = {
    "ps": ["--filter", "--format", "-n", "--last", "-l", "--latest", "--no-trunc", "-q", "-a"],
    "images": ["--format", "-q", "--no-trunc"],
    "inspect": ["-f", "--format", "--type"],
    "port": [],
    "exec": ["-d", "--detach", "--env-file", "-e", "--env", "-w", "--workdir", "-u", "--user", "-i", "-t"],
    "logs": ["--until", "--since", "-f", "--follow", "-t", "--timestamps", "-n", "--tail"],
    "volume create": ["--label"],
    "volume ls": ["-q", "--quiet"],
    "volume inspect": [],
    "volume rm": ["-f", "--force"],
    "volume prune": ["-a", "--all", "--filter", "-f", "--force"],
    "system prune": ["-a", "--all", "--volumes", "-f", "--force"],
    "system df": [],
    "container prune": ["-f", "--force"],
    "auto-update": ["--dry-run", "--install-timer", "--uninstall-timer", "--rollback"],
    "healthcheck run": [],
    "wait": ["--condition"],
    "rename": [],
    "pause": [],
    "unpause": [],
    "update": ["--memory", "-m", "--cpus", "--pids-limit", "--restart", "--cpu-shares"],
    "top": [],
    "stats": ["--no-stream", "--format", "-a"],
    "events": ["--since", "--until", "--filter", "--format"],
    "attach": ["--sig-proxy", "--no-stdin", "--detach-keys"],
}

# A row whose status starts so is not a flag nspawnctl's run/create take: "not yet", "not supported",
# "not applicable", "not as a flag"; "on `attach`" (a flag of another command).
NOT_TAKEN = ("not ", "on `")


def run_table_flags() -> list[str]:
    """The flags of the README's "docker run flags" rows that run/create take (done, partly, or
    mapped: ``--security-opt``'s two options, ``--cgroupns private``, ...)."""
    table = README.read_text().split("### docker run flags", 1)[1].split("\n\n#", 1)[0]
    flags = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if not line.startswith("| `-") or len(cells) < 2 or cells[1].startswith(NOT_TAKEN):
            continue
        for token in re.findall(r"`([^`]+)`", cells[0]):
            flags += [part.split()[0] for part in token.split(", ") if part.startswith("-")]
    return flags


@pytest.fixture(scope="module")
def command() -> typer.Typer:
    """The CLI (click is typer's own, not a dependency of ours: only typer's API is used)."""
    app_module._register()
    return app_module.app


def help_text(command: typer.Typer, words: str) -> str:
    result = CliRunner().invoke(command, [*words.split(), "--help"], terminal_width=250)
    assert result.exit_code == 0, (words, result.output)
    assert result.output.startswith(f"Usage: nspawnctl {words} "), result.output
    return result.output


def documented(flag: str, text: str) -> bool:
    """Whether ``flag`` is in the options list (not only a prefix of a longer flag)."""
    return re.search(r"(?<![\w-])" + re.escape(flag) + r"(?![\w-])", text) is not None


@pytest.mark.parametrize("words", list(HELP_FLAGS))
def test_help_documents_the_flags(command: typer.Typer, words: str) -> None:
    text = help_text(command, words)
    missing = [f for f in HELP_FLAGS[words] if not documented(f, text)]
    assert not missing, (words, missing, text)
    # each option says what it does: its line has text after the flags (or the line below has)
    lines = text.split("Options:", 1)[1].splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("-"):
            said = re.split(r"\s{2,}", line.strip(), maxsplit=1)[1:] or [lines[i + 1].strip()]
            assert said[0] and not said[0].startswith("-"), line


def test_the_run_table_counts_mapped_rows() -> None:
    flags = run_table_flags()
    assert len(flags) > 50 and "--stop-timeout" in flags and "--pull" in flags, flags
    for mapped in ("--security-opt", "--cgroupns", "--isolation", "--volume-driver"):
        assert mapped in flags, mapped
    for absent in ("--cidfile", "--detach-keys", "--sig-proxy", "--annotation"):
        assert absent not in flags, absent


@pytest.mark.parametrize("cmd", ["run", "create"])
def test_run_and_create_help_list_every_flag_the_readme_says_they_take(
    command: typer.Typer, cmd: str
) -> None:
    text = help_text(command, cmd)
    not_create = {"-d", "--detach"}  # docker create has no -d
    missing = [
        f for f in run_table_flags() if not (cmd == "create" and f in not_create) and not documented(f, text)
    ]
    assert not missing, (cmd, missing)


@pytest.mark.parametrize("words", ["ps", "volume ls", "network ls"])
def test_name_filters_say_which_patterns_they_take(command: typer.Typer, words: str) -> None:
    """name=/id= take a name or part of one with ``.``, ``[...]`` and ``^``/``$`` only (listfilters'
    name_pattern: no user regex runs), not any REGEX; the help says so."""
    text = " ".join(help_text(command, words).split())  # rich wraps the option's text: one line
    assert "REGEX" not in text, text
    keys = "name=NAME, id=ID" if words == "network ls" else "name=NAME"
    assert f"{keys} (part of it: . any character, [abc] classes, ^/$ anchors)" in text, text
