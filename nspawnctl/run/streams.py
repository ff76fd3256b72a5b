"""A journal stream each for the payload's stdout and stderr, then exec the program (nspawn).

systemd connects a unit's stdout and stderr to one journal stream when both go to the journal
(stderr is a dup of stdout), so a payload's two streams would be mixed for good. This opens two
connections to journald's stream socket from inside the unit, stdout at priority info (6) and
stderr at err (3) as docker's journald log driver records them, without level prefixes (a
payload line ``<3>...`` is output), puts them on fds 1 and 2, points $JOURNAL_STREAM at the new
stderr (nspawn's own messages then still go to the journal natively) and execs the program: the
same PID, so Type=notify and MainPID hold, and the same cgroup.

Each stream's header names the unit, as systemd's own streams do. journald takes a stream's unit
(``_SYSTEMD_UNIT``, the unit's ``LogExtraFields=``, ``_SYSTEMD_INVOCATION_ID``) from the cgroup
of the process that connected, read when the first line arrives; a short-lived payload has often
exited by then, and journald falls back to the header's unit. ``systemd-cat`` writes no unit
there: under load the lines of ``run --rm IMG echo hi`` lost every field that finds them.
The header (identifier, unit, priority, level prefix, forward to syslog, kmsg, console; one line
each) is what libsystemd's sd_journal_stream_fd() writes, plus the unit.

Standard library only, no package imports: the transient unit runs this file directly
(``python3 -I -S streams.py ...``: ~15 ms; it loads ``_socket`` rather than ``socket`` and no
``__future__``, see the imports); the hook's exec step calls :func:`attach` in-process.
When journald's socket cannot be reached the unit's own stream stays (stdout and stderr joined).
"""

import os  # and no `from __future__ import`: one module less to load in the unit's start
import sys

try:
    # socket's own C module: the socket module would add its import of enum, selectors and
    # collections and its IntEnum conversions, a third of this opener's start (the unit waits on
    # it); the same socket type with the same constants. Any Python without it has socket.
    import _socket as socket
except ImportError:  # pragma: no cover
    import socket  # type: ignore[no-redef]

SOCKET = "/run/systemd/journal/stdout"
STDOUT_PRIORITY = 6  # info
STDERR_PRIORITY = 3  # err
_SNDBUF = 8 * 1024 * 1024  # as sd_journal_stream_fd(): a burst of output does not block the payload


def header(identifier: str, unit: str, priority: int) -> bytes:
    """journald's stream header: identifier, unit, priority, level prefix, forward to syslog,
    to kmsg, to the console."""
    for value in (identifier, unit):
        if "\n" in value:
            raise ValueError(f"a newline in {value!r}")
    return f"{identifier}\n{unit}\n{priority}\n0\n0\n0\n0\n".encode()


def connect(identifier: str, unit: str, priority: int, path: str | None = None) -> int:
    """A new stream to journald; the caller owns the returned fd."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path or SOCKET)
        s.shutdown(socket.SHUT_RD)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
        except OSError:
            pass
        s.sendall(header(identifier, unit, priority))
    except BaseException:
        s.close()
        raise
    return s.detach()


def attach(identifier: str, unit: str, path: str | None = None) -> bool:
    """Put a stream each on fds 1 and 2; False (nothing changed) when journald is not there."""
    try:
        out = connect(identifier, unit, STDOUT_PRIORITY, path)
    except OSError:
        return False
    try:
        err = connect(identifier, unit, STDERR_PRIORITY, path)
    except OSError:
        os.close(out)
        return False
    for fd, target in ((out, 1), (err, 2)):
        os.dup2(fd, target)  # inheritable: nspawn hands both to the payload
        os.close(fd)
    st = os.fstat(2)
    os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    return True


def command(python: str, identifier: str, unit: str) -> list[str]:
    """The argv prefix that runs this file in front of a program (``--`` then the program)."""
    return [
        python,
        "-I",
        "-S",
        os.path.abspath(__file__),
        f"--identifier={identifier}",
        f"--unit={unit}",
        "--",
    ]


def main(argv: list[str]) -> int:
    opts: dict[str, str] = {}
    while argv and argv[0] != "--":
        key, sep, value = argv.pop(0).partition("=")
        if not sep or key not in ("--identifier", "--unit"):
            sys.stderr.write(f"streams.py: unknown argument {key!r}\n")
            return 2
        opts[key[2:]] = value
    program = argv[1:]
    if not program:
        sys.stderr.write("streams.py: usage: --identifier=ID --unit=UNIT -- PROGRAM [ARG...]\n")
        return 2
    attach(opts.get("identifier", ""), opts.get("unit", ""))
    try:
        os.execv(program[0], [os.path.basename(program[0]), *program[1:]])
    except OSError as e:
        sys.stderr.write(f"nspawnctl: cannot execute {program[0]}: {e.strerror}\n")  # stderr: priority err
    return 127


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
