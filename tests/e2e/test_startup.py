"""What the installed command loads to start: `--version` nothing but its entry point, `ps` and
`run` only the CLI, the client and what they use (checked by module name, never timed; the times
are in the README's Performance section)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import CLI

# Libraries of other commands (pull, import, trust, login) and of help/progress output.
NOT_FOR_PS_OR_RUN = (
    "requests", "urllib3", "gnupg", "rich", "tarfile", "zstandard", "pydantic", "click", "http",
)
# The cli modules a container command may load: the entry point, the app and its helpers.
CLI_FOR_CONTAINERS = {"entry", "app", "usage", "output", "containers", "quickrun"}


# Runs the installed script as its shebang's Python does, then lists sys.modules at exit (atexit
# runs after the script's sys.exit; the quick run leaves by os._exit, which skips atexit, so that is
# wrapped too). runpy adds a few modules of its own, none of ours or a library.
DUMP = (
    "import atexit, os, runpy, sys\n"
    "dump = lambda: sys.stderr.write('\\nMODULES ' + ' '.join(sorted(sys.modules)) + '\\n')\n"
    "atexit.register(dump)\n"
    "real_exit = os._exit\n"
    "os._exit = lambda code: (atexit.unregister(dump), dump(), sys.stderr.flush(), real_exit(code))\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def loaded(*args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The modules ``nspawnctl ARGS`` has loaded when it exits."""
    script = shutil.which("nspawnctl")
    assert script, "nspawnctl is not installed"
    shebang = Path(script).read_text().splitlines()[0]
    assert shebang.startswith("#!/") and "python" in shebang, shebang
    proc = subprocess.run(
        [*shebang[2:].split(), "-c", DUMP, script, *args], capture_output=True, text=True, timeout=120
    )
    dump = [line for line in proc.stderr.splitlines() if line.startswith("MODULES ")]
    assert len(dump) == 1, proc.stderr
    return set(dump[0].split()[1:]), proc


def typer_footprint() -> set[str]:
    """The packages the installed typer loads itself (Debian 13's typer 0.15: click and rich): its
    choice, not nspawnctl's."""
    script = shutil.which("nspawnctl")
    assert script, "nspawnctl is not installed"
    python = Path(script).read_text().splitlines()[0][2:].split()
    code = "import sys, typer, typer.main; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([*python, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    return set(out.split())


def unexpected(names: set[str]) -> list[str]:
    """Modules that have no business in ps or run."""
    skip = typer_footprint()
    libs = [n for n in names if n.split(".")[0] in NOT_FOR_PS_OR_RUN and n.split(".")[0] not in skip]
    cli = [n for n in names if n.startswith("nspawnctl.cli.") and n.split(".")[2] not in CLI_FOR_CONTAINERS]
    return sorted(libs + cli)


def test_version_loads_no_typer_and_no_library() -> None:
    names, proc = loaded("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("nspawnctl "), proc.stderr
    ours = {n for n in names if n.startswith("nspawnctl")}
    assert ours == {"nspawnctl", "nspawnctl.cli", "nspawnctl.cli.entry"}
    assert not [n for n in names if n.split(".")[0] in ("typer", "click", "rich", "pydantic")]


def test_ps_loads_only_what_it_uses() -> None:
    names, proc = loaded("ps", "-a")
    assert proc.returncode == 0, proc.stderr
    assert "nspawnctl.cli.containers" in names and "nspawnctl.client" in names
    assert unexpected(names) == []


def test_run_loads_only_what_it_uses(nsp: CLI, busybox: str) -> None:
    name = nsp.name("startup")
    nsp.containers.add(name)
    names, proc = loaded("run", "--rm", "--name", name, busybox, "/bin/echo", "hi")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hi\n"
    assert "dbus_fast" in names  # it does talk to systemd
    assert unexpected(names) == []
    # the common forms of run are read without typer (cli/quickrun.py)
    assert not [n for n in names if n.split(".")[0] in ("typer", "click", "rich")]
    assert "nspawnctl.cli.app" not in names and "nspawnctl.cli.containers" not in names
    # IDs and names come from os.urandom (secrets loads hmac, hashlib's OpenSSL and random, ~2 ms);
    # the unit template is read through importlib.resources only where a drop-in is written
    assert not {"secrets", "hmac", "importlib.resources"} & names


@pytest.mark.parametrize("args", [["--help"], ["ps", "--help"], ["run", "--help"]])
def test_help_loads_no_library_module(args: list[str]) -> None:
    names, proc = loaded(*args)
    assert proc.returncode == 0 and "Usage: nspawnctl" in proc.stdout, proc.stderr
    ours = {n for n in names if n.startswith("nspawnctl.") and not n.startswith("nspawnctl.cli")}
    assert ours <= {"nspawnctl.errors"}, ours
    assert not [n for n in names if n.split(".")[0] in ("dbus_fast", "requests", "btrfsutil", "gnupg")]
