"""Containers with a terminal (``-t``) that nobody is attached to: docker's ``run -dt``, ``run -dit``,
and ``start``/``restart`` of a ``create -t`` container, ``apply`` and ``machinectl start`` of its
definition. All of them run with systemd-nspawn's own terminal (``--console=read-only``): the
payload's stdin, stdout and stderr are a pty, its output goes to the journal (``logs``: one stream,
stdout, as docker's for a tty), and it gets no input, so ``run -dit IMG sh`` stays up for ``exec``.
``attach`` to one shows its output only, says so, and Ctrl-C or the detach keys detach."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path

from conftest import CLI, wait_for


def pid1_stdin(nsp: CLI, name: str) -> str:
    """What the payload's stdin is (PID 1 in the container), seen by an ``exec``: the container
    runs, or the exec fails."""
    return nsp("exec", name, "readlink", "/proc/1/fd/0").stdout.strip()


def is_terminal(path: str) -> bool:
    return path == "/dev/console" or path.startswith("/dev/pts/")


def status(nsp: CLI, name: str) -> str:
    return str(nsp.json("inspect", name)[0]["State"]["Status"])


def interrupt(proc: subprocess.Popen[bytes]) -> bytes:
    """Ctrl-C to an attach (it detaches), and what it wrote on stderr since; killed if it stays."""
    try:
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_dit_shell_stays_up_for_exec_and_attach_shows_output_only(nsp: CLI, busybox: str) -> None:
    name = nsp.name("dit")
    assert nsp("run", "-dit", "--name", name, busybox, "sh").stdout.strip() == name
    # a shell whose stdin were at its end (/dev/null) would have exited by now: the exec needs it up
    assert is_terminal(pid1_stdin(nsp, name)), pid1_stdin(nsp, name)
    config = nsp.json("inspect", name)[0]["Config"]
    assert (config["Tty"], config["OpenStdin"]) == (True, True)
    # what is written to its terminal goes to the logs
    nsp("exec", name, "sh", "-c", "echo on-its-terminal > /proc/1/fd/1")
    nsp.wait_logs(name, "on-its-terminal")

    # attach: output only, said on stderr; typed input is not forwarded; Ctrl-C detaches
    proc = subprocess.Popen(
        ["nspawnctl", "attach", name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out = b""
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"echo typed-into-attach\n")
        proc.stdin.flush()
        os.set_blocking(proc.stdout.fileno(), False)

        def seen() -> bool:  # written until the attach, which follows the journal from now, shows it
            nonlocal out
            nsp("exec", name, "sh", "-c", "echo via-attach > /proc/1/fd/1")
            deadline = time.monotonic() + 2
            while b"via-attach" not in out and time.monotonic() < deadline:
                if select.select([proc.stdout], [], [], 0.2)[0]:
                    out += proc.stdout.read() or b""  # type: ignore[union-attr]
            return b"via-attach" in out

        wait_for("attach to show the terminal's output", seen)
    finally:
        err = interrupt(proc)
    text = err.decode()
    assert proc.returncode == 0, text
    assert "has a terminal that takes no input" in text and f"nspawnctl exec -it {name} sh" in text
    assert "(Ctrl-C or the detach keys detach;" in text  # -i: the attach reads them
    assert "detached" in text
    assert b"typed-into-attach" not in out  # not forwarded: no echo of it, no output of it
    assert "typed-into-attach" not in nsp("logs", name).stdout
    assert status(nsp, name) == "running"  # the shell ignores SIGINT; the attach went
    # the detach keys end it too (the rest of the input is dropped)
    keys = nsp("attach", name, input=b"echo typed-again\n\x10\x11", timeout=60)
    assert "detached" in keys.stderr and "typed-again" not in keys.stdout, keys
    assert status(nsp, name) == "running"

    nsp("stop", "-t", "2", name)
    assert status(nsp, name) == "exited"


def test_run_dt_output_in_logs_on_one_stream(nsp: CLI, busybox: str) -> None:
    name = nsp.name("dt")
    nsp("run", "-dt", "--name", name, busybox, "sh", "-c", "tty; echo hi; echo to-err >&2")
    wait_for("the payload to exit", lambda: status(nsp, name) == "exited")
    nsp.wait_logs(name, "to-err")
    logs = nsp("logs", name)
    lines = [line.rstrip("\r") for line in logs.stdout.splitlines()]
    assert is_terminal(lines[0]), lines
    # a terminal has one stream, as docker's logs of a tty container: stderr is in stdout
    assert lines[1:] == ["hi", "to-err"], lines
    assert logs.stderr == ""
    assert nsp.json("inspect", name)[0]["State"]["ExitCode"] == 0


def test_create_t_then_start_and_restart_without_a(nsp: CLI, busybox: str) -> None:
    name = nsp.name("ct")
    nsp("create", "-t", "--name", name, busybox, "sh", "-c", "echo up-$(tty); exec sleep 1000")
    nsp("start", name)
    assert is_terminal(pid1_stdin(nsp, name))
    assert "up-/dev/" in nsp.wait_logs(name, "up-/dev/")
    nsp("restart", "-t", "1", name)
    assert status(nsp, name) == "running"
    assert is_terminal(pid1_stdin(nsp, name))
    assert nsp.wait_logs(name, "up-/dev/", count=2).count("up-/dev/") == 2
    nsp("stop", "-t", "1", name)


def test_apply_and_machinectl_start_give_it_its_terminal(nsp: CLI, busybox: str) -> None:
    """The definition's own unit (systemd-nspawn@NAME, the hook's ExecStart): as a start by us."""
    name = nsp.name("tapply")
    nsp("create", "-it", "--name", name, busybox, "sh")
    text = nsp("generate", name).stdout
    assert "Tty=yes" in text
    defs = Path("/var/tmp") / f"nspawnctl-ttyapply-{name}"
    defs.mkdir()
    try:
        (defs / f"{name}.nspawn").write_text(text)
        nsp("rm", "-f", name)
        assert nsp("apply", str(defs)).stdout == f"{name} created\n"
        assert nsp("generate", name).stdout == text
        assert is_terminal(pid1_stdin(nsp, name))
        nsp("stop", "-t", "1", name)  # its shell ignores SIGTERM (machinectl terminate would wait)
        subprocess.run(["machinectl", "start", name], check=True, timeout=60)
        wait_for("machinectl start", lambda: status(nsp, name) == "running")
        assert is_terminal(pid1_stdin(nsp, name))
    finally:
        for f in defs.iterdir():
            f.unlink()
        defs.rmdir()


def test_attach_to_a_dt_container_without_i_says_only_ctrl_c_detaches(nsp: CLI, busybox: str) -> None:
    """``run -dt`` without ``-i``: nothing reads the attach's input, so its notice names Ctrl-C
    only, not the detach keys; and it is said only once the container is found running."""
    name = nsp.name("dt-noi")
    nsp("run", "-dt", "--name", name, busybox, "sh", "-c", "exec sleep 1000")
    proc = subprocess.Popen(
        ["nspawnctl", "attach", name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    said = b""
    try:
        assert proc.stderr is not None
        os.set_blocking(proc.stderr.fileno(), False)

        def noticed() -> bool:  # the attach follows it once the notice is out
            nonlocal said
            if select.select([proc.stderr], [], [], 0.2)[0]:
                said += proc.stderr.read() or b""  # type: ignore[union-attr]
            return b"\n" in said or proc.poll() is not None

        wait_for("attach's notice", noticed)
    finally:
        rest = interrupt(proc)
    text = (said + rest).decode()
    assert proc.returncode == 0, text
    assert "has a terminal that takes no input" in text and "(Ctrl-C detaches;" in text, text
    assert "detach keys" not in text and "detached" in text, text
    assert status(nsp, name) == "running"
    nsp("stop", "-t", "1", name)
    # not running: the error only, no notice of a terminal it would follow
    stopped = nsp("attach", name, check=False)
    assert stopped.returncode != 0 and "not running" in stopped.stderr, stopped
    assert "has a terminal" not in stopped.stderr, stopped.stderr
