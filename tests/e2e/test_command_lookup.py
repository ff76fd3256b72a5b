"""A command the container lacks ends as docker's: 127 (not there) or 126 (not executable), with
one error line and a hint on stderr, for run (foreground, -d, --rm), start and exec."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from conftest import CLI, subvolumes


def assert_error(out: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert out.returncode == code, out
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("nspawnctl: error: ") and lines[1].startswith("hint: ")
    for w in words:
        assert w in lines[0]


def test_run_of_a_missing_command_is_127_and_leaves_a_created_container(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    out = nsp("run", "--name", name, busybox, "nosuch", "arg", check=False)
    assert_error(out, 127, 'exec: "nosuch": executable file not found in $PATH')
    assert nsp.json("inspect", name)[0]["State"]["Status"] == "created"  # as docker leaves it
    # start says the same
    assert_error(nsp("start", name, check=False), 127, '"nosuch"')
    # -d too, before printing a name
    detached = nsp.name()
    assert_error(nsp("run", "-d", "--name", detached, busybox, "/nosuch", check=False), 127, "no such file")
    assert nsp.json("inspect", detached)[0]["State"]["Status"] == "created"


def test_run_rm_of_a_missing_command_leaves_nothing(nsp: CLI, busybox: str) -> None:
    for args in (["--rm"], ["--rm", "-d"]):
        name = nsp.name()
        assert_error(nsp("run", *args, "--name", name, busybox, "nosuch", check=False), 127, "not found")
        assert name not in nsp("ps", "-aq").stdout.split()
        assert name not in subvolumes()
        assert not Path(f"/etc/systemd/nspawn/{name}.nspawn").exists()


def test_run_of_what_cannot_be_executed_is_126(nsp: CLI, busybox: str) -> None:
    assert_error(
        nsp("run", "--rm", busybox, "/etc/passwd", check=False), 126, "permission denied", "not executable"
    )
    assert_error(nsp("run", "--rm", busybox, "/etc", check=False), 126, "is a directory")
    assert_error(nsp("run", "--rm", "-d", busybox, "/etc/passwd", check=False), 126)


def test_the_lookup_follows_path_workdir_and_volumes(nsp: CLI, busybox: str, tmp_path: Path) -> None:
    # a relative path from the working directory, a name through the image's PATH
    assert nsp("run", "--rm", "-w", "/bin", busybox, "./echo", "rel").stdout == "rel\n"
    assert nsp("run", "--rm", "-e", "PATH=/nowhere:/bin", busybox, "echo", "path").stdout == "path\n"
    assert_error(nsp("run", "--rm", "-e", "PATH=/nowhere", busybox, "echo", check=False), 127, "$PATH")
    # a program on a volume is not in the image: it is not judged before it runs
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho from the volume\n")
    tool.chmod(0o755)
    out = nsp("run", "--rm", "-v", f"{tmp_path}:/opt/tools", busybox, "/opt/tools/tool")
    assert out.stdout == "from the volume\n"


def test_exec_of_a_missing_command_is_127_and_126(nsp: CLI, busybox: str) -> None:
    name = nsp.name()
    nsp("run", "-d", "--name", name, busybox, "sleep", "300")
    assert_error(nsp("exec", name, "nosuch", check=False), 127, 'exec: "nosuch": executable file not found')
    assert_error(nsp("exec", name, "/etc/passwd", check=False), 126, "not executable")
    # resolved in the running container: a script made there, whose interpreter is missing
    nsp(
        "exec",
        name,
        "sh",
        "-c",
        "printf '#!/no/interpreter\\n' > /tmp/s; chmod +x /tmp/s; cp /bin/busybox /tmp/busybox",
    )
    assert_error(nsp("exec", name, "/tmp/s", check=False), 127, "interpreter /no/interpreter")
    assert nsp("exec", name, "/tmp/busybox", "echo", "made at run time").stdout == "made at run time\n"


def test_a_command_that_fails_to_execute_at_run_time_is_still_127(
    nsp: CLI, busybox_dir: Path, workdir: Path
) -> None:
    """What the lookup cannot see (a dynamically linked program without its loader in the image)
    fails in nspawn's exec: the foreground run still ends with 127, not nspawn's 1."""
    root = workdir / "no-loader-root"
    if not root.exists():
        shutil.copytree(busybox_dir, root, symlinks=True)
        shutil.copy2("/usr/bin/true", root / "bin" / "dyn")  # Debian's: needs /lib64/ld-linux-*.so
    ref = f"e2e/no-loader-{nsp.name()}:latest"
    nsp.images.add(ref)
    nsp("import", str(root), ref)
    out = nsp("run", "--rm", ref, "dyn", check=False)
    assert out.returncode == 127
    assert out.stdout == "" and "No such file or directory" in out.stderr
    # a detached run records the same exit code (the post step reads nspawn's line back)
    name = nsp.name()
    nsp("run", "-d", "--name", name, ref, "dyn")
    deadline = time.monotonic() + 30
    while nsp.json("inspect", name)[0]["State"]["Status"] != "exited":
        assert time.monotonic() < deadline, "the container did not exit"
        time.sleep(0.2)
    assert nsp.json("inspect", name)[0]["State"]["ExitCode"] == 127
    assert "(127)" in [line for line in nsp("ps", "-a").stdout.splitlines() if line.split()[-1:] == [name]][0]
