"""The payload's stdout and stderr: a journal stream each (the unit builders), told apart by
priority when read back (journal.parse_line), followed until the source ends (journal.follow)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from nspawnctl.run.units import Launch, exec_argv, journal_streams, unit_properties
from nspawnctl.spec import ContainerSpec
from nspawnctl.systemd import journal

SPEC = ContainerSpec(name="web", id="ab12", image="img", image_id="x", created="now", command=["sh"])
CAT = "/usr/bin/systemd-cat"
CAT_ARGS = ["--identifier=web", "--level-prefix=false", "--priority=6", "--stderr-priority=3", "--"]


def test_output_to_the_journal_gets_a_stream_per_fd() -> None:
    argv = exec_argv(SPEC, Path("/p"), Launch(journal_cat=CAT))
    assert argv[:6] == [CAT, *CAT_ARGS]
    assert argv[6] == "/usr/bin/systemd-nspawn" and "--console=pipe" in argv
    (start,) = dict((n, v) for n, _, v in unit_properties(SPEC, Path("/p"), Launch(journal_cat=CAT)))[
        "ExecStart"
    ]
    assert start[0] == CAT and start[1][0] == "systemd-cat" and start[1][1:] == argv[1:]
    # inside a network namespace: systemd-cat execs nsenter, which execs nspawn (one PID throughout)
    netns = exec_argv(SPEC, Path("/p"), Launch(journal_cat=CAT, netns="/run/netns/x"))
    assert netns[6:10] == ["/usr/bin/nsenter", "--net=/run/netns/x", "--", "/usr/bin/systemd-nspawn"]


def test_no_streams_of_our_own_when_attached_or_without_systemd_cat() -> None:
    attached = Launch(journal_cat=CAT, attach_fds=(0, 1, 2))
    assert journal_streams("web", attached) == []
    assert exec_argv(SPEC, Path("/p"), attached)[0] == "/usr/bin/systemd-nspawn"
    assert journal_streams("web", Launch()) == []


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
