"""The payload's stdout and stderr: a journal stream each (the unit builders, run/streams.py),
told apart by priority when read back (journal.parse_line), followed until the source ends
(journal.follow)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nspawnctl.run import streams
from nspawnctl.run.units import Launch, exec_argv, journal_streams, unit_properties
from nspawnctl.spec import ContainerSpec
from nspawnctl.systemd import journal, sdjournal

SPEC = ContainerSpec(name="web", id="ab12", image="img", image_id="x", created="now", command=["sh"])
PY = "/usr/bin/python3"
OPENER = [PY, "-I", "-S", streams.__file__, "--identifier=web", "--unit=nspawnctl-web.service", "--"]


def test_output_to_the_journal_gets_a_stream_per_fd() -> None:
    argv = exec_argv(SPEC, Path("/p"), Launch(streams_python=PY))
    assert argv[:7] == OPENER and Path(argv[3]).is_file()
    assert argv[7] == "/usr/bin/systemd-nspawn" and "--console=pipe" in argv
    props = {n: v for n, _, v in unit_properties(SPEC, Path("/p"), Launch(streams_python=PY))}
    (start,) = props["ExecStart"]
    assert start[0] == PY and start[1][0] == "python3" and start[1][1:] == argv[1:]
    # inside a network namespace: the opener execs nsenter, which execs nspawn (one PID throughout)
    netns = exec_argv(SPEC, Path("/p"), Launch(streams_python=PY, netns="/run/netns/x"))
    assert netns[7:11] == ["/usr/bin/nsenter", "--net=/run/netns/x", "--", "/usr/bin/systemd-nspawn"]


def test_no_streams_of_our_own_when_attached_or_not_asked() -> None:
    attached = Launch(streams_python=PY, attach_fds=(0, 1, 2))
    assert journal_streams("web", attached) == []
    assert exec_argv(SPEC, Path("/p"), attached)[0] == "/usr/bin/systemd-nspawn"
    assert journal_streams("web", Launch()) == []


def test_the_stream_header_names_the_unit() -> None:
    assert streams.header("web", "nspawnctl-web.service", 3) == b"web\nnspawnctl-web.service\n3\n0\n0\n0\n0\n"
    with pytest.raises(ValueError):
        streams.header("a\nb", "u", 6)


def fake_journald(path: Path) -> tuple[socket.socket, list[bytes]]:
    """A listening stream socket that collects what each connection sends until it closes."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(8)
    got: list[bytes] = []

    def serve() -> None:
        for _ in range(2):
            conn, _ = srv.accept()
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                got.append(data)

    threading.Thread(target=serve, daemon=True).start()
    return srv, got


def test_the_opener_puts_a_stream_on_each_fd_and_execs(tmp_path: Path) -> None:
    sock = tmp_path / "stdout"
    srv, got = fake_journald(sock)
    code = (
        "import sys; from nspawnctl.run import streams; "
        f"streams.SOCKET = {str(sock)!r}; "
        "sys.argv[1:] = ['--identifier=web', '--unit=u.service', '--', '/bin/sh', '-c', "
        "'echo \"<3>out\"; echo err >&2; echo $JOURNAL_STREAM >&2']; "
        "raise SystemExit(streams.main(sys.argv[1:]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, cwd=Path.cwd())
    assert proc.returncode == 0 and proc.stdout == b"" and proc.stderr == b""
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    srv.close()
    by_priority = {data.split(b"\n")[2]: data.split(b"\n") for data in got}
    out, err = by_priority[b"6"], by_priority[b"3"]
    assert out[:7] == [b"web", b"u.service", b"6", b"0", b"0", b"0", b"0"] and out[7:] == [b"<3>out", b""]
    assert err[:2] == [b"web", b"u.service"] and err[7] == b"err"
    dev, _, ino = err[8].partition(b":")
    assert dev.isdigit() and ino.isdigit()  # nspawn sees its stderr is a journal stream


def test_without_journald_the_units_own_stream_stays(tmp_path: Path) -> None:
    assert streams.attach("web", "u.service", str(tmp_path / "nothing")) is False


def line(message: object, priority: str | None = "6", cursor: str = "c") -> bytes:
    data: dict[str, object] = {"MESSAGE": message, "__CURSOR": cursor, "__REALTIME_TIMESTAMP": "5"}
    if priority is not None:
        data["PRIORITY"] = priority
    return json.dumps(data).encode()


def test_priority_tells_the_streams_apart() -> None:
    out, err = journal.parse_line(line("out")), journal.parse_line(line("err", "3"))
    assert out is not None and err is not None
    assert (out.message, out.stderr) == (b"out", False)
    assert (err.message, err.stderr, err.priority) == (b"err", True, 3)
    # records of older runs (one stream, no priority of their own) are stdout
    old = journal.parse_line(line("old", None))
    assert old is not None and not old.stderr
    raw = journal.parse_line(line([0xFF, 0x41], "3"))
    assert raw is not None and raw.message == b"\xffA" and raw.stderr


FAKE_JOURNALCTL = """#!/bin/sh
# --follow: the backlog, one line a moment later, then wait forever (like journalctl -f)
case " $* " in
*" --sync "*) exit 0 ;;
*" --follow "*)
    echo '{first}'; echo '{second}'; sleep 0.3; echo '{third}'; exec sleep 600 ;;
*" --after-cursor=c3 "*) echo '{tail}' ;;
*) echo "unexpected: $*" >&2; exit 1 ;;
esac
"""


def test_follow_splits_streams_and_drains_after_the_source_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "journalctl"
    script.write_text(
        FAKE_JOURNALCTL.format(
            first=line("o1", "6", "c1").decode(),
            second=line("e1", "3", "c2").decode(),
            third=line("o2", "6", "c3").decode(),
            tail=line("e2", "3", "c4").decode(),
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")

    def no_libsystemd(matches: list[str]) -> None:
        raise sdjournal.JournalError("libsystemd is not usable")

    monkeypatch.setattr(sdjournal, "Journal", no_libsystemd)  # the journalctl fallback
    monkeypatch.setattr(sdjournal, "VARLINK_SOCKET", str(tmp_path / "no-varlink"))
    got: list[tuple[bool, bytes]] = []

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def until() -> None:  # the container ends after its third line
            while len(got) < 3:
                await asyncio.sleep(0.01)

        await journal.follow(["X=1"], lambda e: got.append((e.stderr, e.message)), until())
        return loop.time() - start

    took = asyncio.run(main())
    assert got == [(False, b"o1"), (True, b"e1"), (False, b"o2"), (True, b"e2")]
    assert took < 5  # journalctl -f was stopped, not waited for


def test_the_opener_says_when_it_cannot_execute(tmp_path: Path) -> None:
    argv = ["--identifier=web", "--unit=u.service", "--", str(tmp_path / "none")]
    # no journald (in a booted test host there is one: the opener would write its error there)
    code = (
        "import sys; from nspawnctl.run import streams; streams.SOCKET = '/nonexistent';"
        f" raise SystemExit(streams.main({argv!r}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert proc.returncode == 127
    assert (
        proc.stderr == f"nspawnctl: cannot execute {tmp_path / 'none'}: No such file or directory\n".encode()
    )
    bad = subprocess.run(
        [sys.executable, "-c", "from nspawnctl.run import streams; raise SystemExit(streams.main(['-x']))"]
    )
    assert bad.returncode == 2
