"""The btrfs send stream reader and the mapping of its operations to docker's diff kinds."""

from __future__ import annotations

import io
import os
import stat
import struct
from collections.abc import Iterable
from pathlib import Path

import pytest

from nspawnctl.errors import ArchiveError
from nspawnctl.store import changes as ch
from nspawnctl.store import sendstream as ss

P, TO, LINK = ss.A_PATH, ss.A_PATH_TO, ss.A_PATH_LINK


SNAP = (ss.SNAPSHOT, [(P, b"snap"), (1, b"\x01" * 16), (20, b"\x02" * 16)])  # UUID, CLONE_UUID


def stream(*cmds: tuple[int, list[tuple[int, bytes]]], version: int = 1, end: bool = True) -> bytes:
    body = [SNAP, *cmds]
    if end:
        body.append((ss.END, []))
    return ss.encode(version, body)


def st(mode: int, mtime_ns: int = 1_000_000_000) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0.0, 1.0, 0.0, 0, mtime_ns, 0))


# an image: /etc (dir), /etc/passwd, /etc/conf/a, /bin/sh, /var/log (dir), /var/log/old, /usr
IMAGE = {
    b"etc": st(stat.S_IFDIR | 0o755),
    b"etc/passwd": st(stat.S_IFREG | 0o644),
    b"etc/conf": st(stat.S_IFDIR | 0o755),
    b"etc/conf/a": st(stat.S_IFREG | 0o644),
    b"bin": st(stat.S_IFDIR | 0o755),
    b"bin/sh": st(stat.S_IFREG | 0o755),
    b"var": st(stat.S_IFDIR | 0o755),
    b"var/log": st(stat.S_IFDIR | 0o755),
    b"var/log/old": st(stat.S_IFREG | 0o644),
}


def diff(data: bytes, below: dict[bytes, list[bytes]] | None = None, limit: int = ch.LIMIT) -> list[str]:
    def walk(path: bytes) -> Iterable[bytes]:
        return (below or {}).get(path, [])

    result = ch.changes_from_stream(io.BytesIO(data), IMAGE.get, walk, limit)
    return [f"{c.letter} {c.path}" for c in result]


def test_new_file_made_under_an_orphan_name_is_added_with_its_directory_modified() -> None:
    data = stream(
        (ss.MKFILE, [(P, b"o257-7-0")]),
        (ss.RENAME, [(P, b"o257-7-0"), (TO, b"etc/new")]),
        (ss.UPDATE_EXTENT, [(P, b"etc/new")]),
        (ss.CHOWN, [(P, b"etc/new")]),
        (ss.CHMOD, [(P, b"etc/new")]),
        (ss.UTIMES, [(P, b"etc/new"), (ss.A_MTIME, ss.timespec(5))]),
        (ss.UTIMES, [(P, b"etc"), (ss.A_MTIME, ss.timespec(6))]),
    )
    assert diff(data) == ["C /etc", "A /etc/new"]


def test_modified_deleted_and_ancestors() -> None:
    data = stream(
        (ss.UPDATE_EXTENT, [(P, b"etc/conf/a")]),
        (ss.UNLINK, [(P, b"var/log/old")]),
        (ss.CHMOD, [(P, b"bin")]),
    )
    assert diff(data) == [
        "C /bin",
        "C /etc",
        "C /etc/conf",
        "C /etc/conf/a",
        "C /var",
        "C /var/log",
        "D /var/log/old",
    ]


def test_utimes_counts_only_a_changed_mtime_of_a_non_directory() -> None:
    same = stream((ss.UTIMES, [(P, b"etc/passwd"), (ss.A_MTIME, ss.timespec(1_000_000_000))]))
    assert diff(same) == []
    touched = stream((ss.UTIMES, [(P, b"etc/passwd"), (ss.A_MTIME, ss.timespec(2_000_000_000))]))
    assert diff(touched) == ["C /etc", "C /etc/passwd"]
    directory = stream((ss.UTIMES, [(P, b"var/log"), (ss.A_MTIME, ss.timespec(9))]))
    assert diff(directory) == []


def test_deleted_directory_is_listed_without_its_children() -> None:
    data = stream(
        (ss.UNLINK, [(P, b"etc/conf/a")]),
        (ss.RENAME, [(P, b"etc/conf"), (TO, b"o260-5-0")]),  # send may orphanize before rmdir
        (ss.RMDIR, [(P, b"o260-5-0")]),
    )
    assert diff(data) == ["C /etc", "D /etc/conf"]


def test_renamed_directory_is_deleted_and_added_with_what_is_below() -> None:
    data = stream(
        (ss.RENAME, [(P, b"etc/conf"), (TO, b"etc/conf2")]),
        (ss.UPDATE_EXTENT, [(P, b"etc/conf2/a")]),
    )
    assert diff(data, {b"etc/conf2": [b"etc/conf2/a"]}) == [
        "C /etc",
        "D /etc/conf",
        "A /etc/conf2",
        "A /etc/conf2/a",
    ]


def test_renamed_file_and_a_new_file_in_its_place_is_modified() -> None:
    data = stream(
        (ss.RENAME, [(P, b"etc/passwd"), (TO, b"o258-1-0")]),
        (ss.MKFILE, [(P, b"o259-1-0")]),
        (ss.RENAME, [(P, b"o259-1-0"), (TO, b"etc/passwd")]),
        (ss.RENAME, [(P, b"o258-1-0"), (TO, b"etc/passwd.old")]),
    )
    assert diff(data) == ["C /etc", "C /etc/passwd", "A /etc/passwd.old"]


def test_existing_entry_moved_through_a_renamed_parent_keeps_its_origin() -> None:
    data = stream(
        (ss.RENAME, [(P, b"var"), (TO, b"o300-1-0")]),
        (ss.CHMOD, [(P, b"o300-1-0/log/old")]),
        (ss.RENAME, [(P, b"o300-1-0"), (TO, b"var")]),  # back where it was
    )
    assert diff(data) == ["C /var", "C /var/log", "C /var/log/old"]


def test_new_directory_with_children_made_before_it_is_placed() -> None:
    data = stream(
        (ss.MKDIR, [(P, b"o261-1-0")]),
        (ss.MKFILE, [(P, b"o262-1-0")]),
        (ss.RENAME, [(P, b"o262-1-0"), (TO, b"o261-1-0/f")]),
        (ss.SYMLINK, [(P, b"o261-1-0/l"), (LINK, b"f")]),
        (ss.RENAME, [(P, b"o261-1-0"), (TO, b"var/new")]),
        (ss.LINK, [(P, b"bin/sh2"), (LINK, b"bin/sh")]),
    )
    assert diff(data) == ["C /bin", "A /bin/sh2", "C /var", "A /var/new", "A /var/new/f", "A /var/new/l"]


def test_setup_paths_are_left_out_and_do_not_mark_their_directory() -> None:
    data = stream(
        (ss.MKFILE, [(P, b"o257-1-0")]),
        (ss.RENAME, [(P, b"o257-1-0"), (TO, b"etc/hostname")]),
        (ss.MKDIR, [(P, b"o258-1-0")]),
        (ss.RENAME, [(P, b"o258-1-0"), (TO, b"proc")]),
    )
    assert diff(data) == []


def test_odd_names_are_kept() -> None:
    data = stream((ss.MKFILE, [(P, b"o257-1-0")]), (ss.RENAME, [(P, b"o257-1-0"), (TO, b"a b\n\xff")]))
    assert diff(data) == ["A /" + os.fsdecode(b"a b\n\xff")]


def test_sorted_as_a_tree() -> None:
    data = stream(
        (ss.MKFILE, [(P, b"a-b")]),
        (ss.MKDIR, [(P, b"a")]),
        (ss.MKFILE, [(P, b"a/b")]),
    )
    assert diff(data) == ["A /a", "A /a/b", "A /a-b"]


def test_too_many_changes() -> None:
    data = stream(*[(ss.MKFILE, [(P, b"f%d" % i)]) for i in range(20)])
    with pytest.raises(ch.TooManyChanges):
        diff(data, limit=10)


def test_version_2_data_attribute_runs_to_the_end_of_its_command() -> None:
    payload = struct.pack("<HH", P, 10) + b"etc/passwd" + struct.pack("<H", ss.A_DATA) + b"\xff" * 70000
    write = struct.pack("<IHI", len(payload), ss.ENCODED_WRITE, 0) + payload
    head = ss.encode(2, [SNAP])
    data = head + write + struct.pack("<IHI", 0, ss.END, 0)
    assert diff(data) == ["C /etc", "C /etc/passwd"]


HEAD = ss.encode(1, [SNAP])  # a valid header and first command
V1 = ss.MAGIC + struct.pack("<I", 1)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"btrfs-strea",
        b"not-a-stream\0\1\0\0\0",
        ss.MAGIC + struct.pack("<I", 9) + HEAD[17:],  # unknown version
        V1 + struct.pack("<IHI", 0, ss.MKFILE, 0),  # does not start with a subvolume
        HEAD[:-1] + bytes([HEAD[-1] ^ 1]),  # first command's checksum wrong
        stream(end=False),  # no END
        stream()[:-3],  # cut in a command header
        HEAD + struct.pack("<IHI", 0xFFFFFFFF, ss.MKFILE, 0),  # huge command
        HEAD + struct.pack("<IHI", 100, ss.MKFILE, 0) + b"x" * 10,  # cut payload
        HEAD
        + struct.pack("<IHI", 6, ss.MKFILE, 0)
        + struct.pack("<HH", P, 60000)
        + b"ab",  # attribute overruns
        HEAD + struct.pack("<IHI", 3, ss.MKFILE, 0) + b"abc",  # truncated attribute header
        stream((ss.MKFILE, [(P, b"a"), (P, b"b")])),  # repeated attribute
        stream((ss.MKFILE, [])),  # no path
        stream((ss.MKFILE, [(P, b"/abs")])),
        stream((ss.MKFILE, [(P, b"a/../../etc")])),
        stream((ss.MKFILE, [(P, b"a//b")])),
        stream((ss.MKFILE, [(P, b"a\0b")])),
        stream((ss.MKFILE, [(P, b"x" * 5000)])),
        stream((ss.RENAME, [(P, b"etc/passwd")])),  # no destination
        stream((ss.UNLINK, [(P, b"")])),  # the root
    ],
)
def test_hostile_or_broken_streams_are_refused(data: bytes) -> None:
    with pytest.raises(ArchiveError):
        diff(data)


def test_encode_and_commands_round_trip() -> None:
    data = stream(
        (ss.MKFILE, [(P, b"f")]), (ss.UTIMES, [(P, b"f"), (ss.A_MTIME, ss.timespec(3_000_000_007))])
    )
    cmds = list(ss.commands(io.BytesIO(data)))
    assert [c.cmd for c in cmds] == [ss.SNAPSHOT, ss.MKFILE, ss.UTIMES, ss.END]
    assert cmds[2].mtime_ns() == 3_000_000_007


def test_directories_nspawn_made_only_for_its_mount_points_are_left_out() -> None:
    data = stream(
        (ss.MKDIR, [(P, b"o257-1-0")]),
        (ss.RENAME, [(P, b"o257-1-0"), (TO, b"var/log/o")]),  # an unrelated name first
        (ss.RENAME, [(P, b"var/log/o"), (TO, b"var/log/journal")]),
        (ss.MKDIR, [(P, b"usr")]),
        (ss.MKDIR, [(P, b"srv")]),
        (ss.MKDIR, [(P, b"srv/journal")]),
    )
    # /srv/journal is not a setup path: /srv is the payload's
    assert diff(data) == ["A /srv", "A /srv/journal"]


def test_what_the_payload_wrote_below_a_setup_path_is_kept() -> None:
    data = stream(
        (ss.MKDIR, [(P, b"usr")]), (ss.MKFILE, [(P, b"usr/tool")]), (ss.UNLINK, [(P, b"etc/passwd")])
    )
    assert diff(data) == ["C /etc", "D /etc/passwd", "A /usr", "A /usr/tool"]


def test_the_root_itself_is_never_listed() -> None:
    data = stream(
        (ss.CHMOD, [(P, b"")]),
        (ss.CHOWN, [(P, b"")]),
        (ss.UTIMES, [(P, b""), (ss.A_MTIME, ss.timespec(1))]),
    )
    assert diff(data) == []


def test_sweep_removes_a_dead_diffs_snapshot_only(tmp_path: Path) -> None:
    """Plain directories stand in for the snapshots (btrfs.delete removes those too)."""
    import fcntl

    pool, state = tmp_path / "pool", tmp_path / "state"
    state.mkdir()
    dead, live = ch.PREFIX + "0" * 16, ch.PREFIX + "1" * 16
    staging = ch.PREFIX + "2" * 16 + ".create"  # a create of a container named "diff-222…"
    for name in (dead, live, staging, "web"):
        (pool / name / "etc").mkdir(parents=True)
    (state / f".diff-{'0' * 16}.lock").touch()
    held = os.open(state / f".diff-{'1' * 16}.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        ch.sweep(pool, state)
    finally:
        os.close(held)
    assert sorted(os.listdir(pool)) == sorted([live, staging, "web"])
    assert os.listdir(state) == [f".diff-{'1' * 16}.lock"]


def test_the_pool_walk_and_lstat_never_follow_a_symbolic_link(tmp_path: Path) -> None:
    """review17 #5: a payload's ``mv /var/run /var/run2`` (Debian's /var/run -> /run) must not make
    the diff list the host's directory, nor stat host files through a link on the way."""
    from nspawnctl.store.changes import _lstat_in, _walker

    host = tmp_path / "host"
    (host / "sub").mkdir(parents=True)
    (host / "secret").write_text("x")
    snap = tmp_path / "snap"
    (snap / "var").mkdir(parents=True)
    (snap / "var" / "run2").symlink_to(host)
    (snap / "new" / "deep").mkdir(parents=True)
    (snap / "new" / "deep" / "f").write_text("y")
    (snap / "new" / "link").symlink_to(host)
    walk = _walker(snap, 100)
    assert list(walk(b"var/run2")) == []
    assert sorted(walk(b"new")) == [b"new/deep", b"new/deep/f", b"new/link"]
    lstat = _lstat_in(snap)
    assert lstat(b"var/run2/secret") is None and lstat(b"var/run2") is not None
    assert lstat(b"new/../var") is None
    assert lstat(b"new/deep/f") is not None


def test_the_text_form_escapes_what_could_forge_a_line_or_reach_the_terminal() -> None:
    """review17 #12: a payload's file name is one line of `container diff` output."""
    from nspawnctl.cli.system import escape_path

    assert escape_path(b"etc/app.conf") == b"etc/app.conf"
    assert escape_path(b"odd name\tz") == b"odd name\tz"  # a tab forges nothing
    assert escape_path("caf\u00e9".encode()) == "caf\u00e9".encode()  # not UTF-8 bytes: as they are
    assert escape_path(b"a\nC /etc/shadow") == b"a\\x0aC /etc/shadow"
    assert escape_path(b"\x1b[2J\\x\x7f") == b"\\x1b[2J\\x5cx\\x7f"
