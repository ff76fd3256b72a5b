"""The archive endpoints' library side (stat, tar out, extraction into a container root that is a
plain directory, as for a stopped container), docker's stat header, and streamed request bodies."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest
from test_unpack import dir_, make_tar, reg, sym

from nspawnctl import files
from nspawnctl.errors import ArchiveError, InvalidArgument, NotFound, UnsafeArchive
from nspawnctl.store.copy import ContainerRoot, PathStat

h11 = pytest.importorskip("h11")

from apiserve import serve_one  # noqa: E402

from nspawnctl.api.handlers.archive import go_mode, rfc3339_nano, stat_header  # noqa: E402
from nspawnctl.api.http import ApiError, parse_target  # noqa: E402
from nspawnctl.api.routing import Router  # noqa: E402


@pytest.fixture
def ctr(tmp_path: Path) -> tuple[ContainerRoot, Path]:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("box\n")
    (root / "data").mkdir()
    (root / "linkdir").symlink_to("/data")  # absolute: the container's /data, never the host's
    (root / "etc-link").symlink_to("/etc/hostname")
    (root / "dangling").symlink_to("/nowhere")
    return ContainerRoot(str(root), "box"), root


def test_go_file_modes() -> None:
    assert go_mode(stat.S_IFDIR | 0o755) == (1 << 31) | 0o755
    assert go_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert go_mode(stat.S_IFREG | 0o4755) == (1 << 23) | 0o755
    assert go_mode(stat.S_IFCHR | 0o600) == (1 << 26) | (1 << 21) | 0o600
    assert go_mode(stat.S_IFDIR | 0o1777) == (1 << 31) | (1 << 20) | 0o777


def test_rfc3339_nano() -> None:
    assert rfc3339_nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert rfc3339_nano(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"


def test_stat_of_files_dirs_and_links(ctr: tuple[ContainerRoot, Path]) -> None:
    root, _ = ctr
    st = files.stat_path(root, "/etc/hostname")
    assert (st.name, st.size, stat.S_ISREG(st.mode), st.link_target) == ("hostname", 4, True, "")
    assert stat.S_ISDIR(files.stat_path(root, "/etc/").mode)
    link = files.stat_path(root, "/etc-link")
    assert stat.S_ISLNK(link.mode) and link.link_target == "/etc/hostname"
    assert files.stat_path(root, "/linkdir").link_target == "/data"
    assert files.stat_path(root, "/dangling").link_target == "/nowhere"
    assert files.stat_path(root, "/").name == "/"
    with pytest.raises(NotFound):
        files.stat_path(root, "/no/such")
    header = json.loads(base64.b64decode(stat_header(link)))
    assert (
        header["name"] == "etc-link"
        and header["mode"] & (1 << 27)
        and header["linkTarget"] == "/etc/hostname"
    )


def test_archive_path_is_the_tar_of_the_path(ctr: tuple[ContainerRoot, Path]) -> None:
    root, _ = ctr
    out = io.BytesIO()
    files.archive_path(root, "/etc", out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        assert tf.getnames() == ["etc", "etc/hostname"]
        assert tf.extractfile("etc/hostname").read() == b"box\n"  # type: ignore[union-attr]


def test_extract_into_a_symlinked_directory_stays_inside(
    ctr: tuple[ContainerRoot, Path], tmp_path: Path
) -> None:
    root, path = ctr
    data = make_tar(dir_("d"), reg("d/f", b"hi"), reg("top", b"x"), sym("d/abs", "/etc/shadow"))
    files.extract_archive(root, "/linkdir", io.BytesIO(data))
    assert (path / "data" / "d" / "f").read_bytes() == b"hi"
    assert (path / "data" / "top").read_bytes() == b"x"
    assert os.readlink(path / "data" / "d" / "abs") == "/etc/shadow"  # a link, never written through
    owner = (path / "data" / "top").stat()
    assert (owner.st_uid, owner.st_gid) == (path.stat().st_uid, path.stat().st_gid)


def test_extract_refuses_dotdot_and_writing_through_links(
    ctr: tuple[ContainerRoot, Path], tmp_path: Path
) -> None:
    root, path = ctr
    with pytest.raises(UnsafeArchive):
        files.extract_archive(root, "/data", io.BytesIO(make_tar(reg("../../escaped", b"no"))))
    assert not (tmp_path / "escaped").exists() and not (path / "escaped").exists()
    # a symlink in the archive, then a file through it: refused, nothing outside the root
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = make_tar(sym("esc", str(outside)), reg("esc/planted", b"no"))
    with pytest.raises(ArchiveError):
        files.extract_archive(root, "/data", io.BytesIO(evil))
    assert list(outside.iterdir()) == []


def test_extract_needs_an_existing_directory(ctr: tuple[ContainerRoot, Path]) -> None:
    root, _ = ctr
    data = make_tar(reg("f", b"x"))
    with pytest.raises(NotFound):
        files.extract_archive(root, "/missing", io.BytesIO(data))
    with pytest.raises(InvalidArgument, match="not a directory"):
        files.extract_archive(root, "/etc/hostname", io.BytesIO(data))


def test_no_overwrite_dir_non_dir(ctr: tuple[ContainerRoot, Path]) -> None:
    root, path = ctr
    over_dir = make_tar(reg("etc", b"x"))
    with pytest.raises(ArchiveError, match="cannot overwrite directory"):
        files.extract_archive(root, "/", io.BytesIO(over_dir), no_overwrite_dir_non_dir=True)
    assert (path / "etc").is_dir()
    with pytest.raises(ArchiveError, match="cannot overwrite non-directory"):
        files.extract_archive(
            root, "/etc", io.BytesIO(make_tar(dir_("hostname"))), no_overwrite_dir_non_dir=True
        )
    files.extract_archive(
        root, "/etc", io.BytesIO(make_tar(reg("hostname", b"new\n"))), no_overwrite_dir_non_dir=True
    )
    assert (path / "etc" / "hostname").read_text() == "new\n"


def test_keep_owners_shifts_nothing_on_an_unshifted_root(ctr: tuple[ContainerRoot, Path]) -> None:
    root, path = ctr
    files.extract_archive(
        root, "/data", io.BytesIO(make_tar(reg("o", b"x", uid=1234, gid=4321))), keep_owners=True
    )
    st = (path / "data" / "o").stat()
    assert (st.st_uid, st.st_gid) == (1234, 4321)


def test_stat_header_round_trip() -> None:
    st = PathStat("f", 3, stat.S_IFREG | 0o644, 0, "")
    assert json.loads(base64.b64decode(stat_header(st))) == {
        "name": "f",
        "size": 3,
        "mode": 0o644,
        "mtime": "1970-01-01T00:00:00Z",
        "linkTarget": "",
    }


def test_a_bad_request_target_is_a_400() -> None:
    with pytest.raises(ApiError) as e:
        parse_target("GET", "//[x/", {}, b"")
    assert e.value.status == 400


def test_a_streamed_body_passes_the_body_cap_and_the_connection_goes_on() -> None:
    """PUT archive's body is read as it comes (above max_body), then the next request answers."""
    seen: list[int] = []

    async def sink(ex: Any, id: str) -> None:
        n = 0
        async for chunk in ex.conn.body():
            n += len(chunk)
        seen.append(n)
        await ex.conn.reply(200, b"")

    async def ping(ex: Any) -> None:
        await ex.conn.reply(200, b"OK", content_type="text/plain")

    router = Router()
    router.add("PUT", "/containers/{id}/archive", sink, stream_body=True)
    router.add("GET", "/_ping", ping)

    async def main() -> bytes:
        task, creader, cwriter = await serve_one(router, max_body=1000, streams_body=router.streams_body)
        body = b"t" * 300_000
        cwriter.write(
            b"PUT /v1.44/containers/x/archive?path=/ HTTP/1.1\r\nHost: d\r\nContent-Length: %d\r\n\r\n"
            % len(body)
        )
        cwriter.write(body)
        cwriter.write(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        await cwriter.drain()
        got = await asyncio.wait_for(creader.read(), 10)
        cwriter.close()
        await asyncio.wait_for(task, 5)
        return got

    got = asyncio.run(main())
    assert seen == [300_000]
    assert got.count(b"HTTP/1.1 200") == 2 and got.endswith(b"OK")


# -- images/create: X-Registry-Auth -----------------------------------------------------------------
def _b64url(value: object, pad: bool = True) -> str:
    text = base64.urlsafe_b64encode(json.dumps(value).encode()).decode()
    return text if pad else text.rstrip("=")


def test_registry_auth_decodes_dockers_header() -> None:
    from nspawnctl.api.translate import registry_auth

    for pad in (True, False):
        auth = registry_auth(
            _b64url({"username": "alice", "password": "s3cr?t>", "serveraddress": "r:5000"}, pad)
        )
        assert auth.credentials == ("alice", "s3cr?t>") and auth.server == "r:5000"
    assert "s3cr" not in repr(auth)
    assert registry_auth(None).credentials is None
    assert registry_auth("e30=").credentials is None  # {}: what the CLI sends without a login
    assert registry_auth(_b64url({"serveraddress": "r"})).credentials is None
    basic = base64.b64encode(b"bob:pw").decode()
    assert registry_auth(_b64url({"auth": basic})).credentials == ("bob", "pw")


@pytest.mark.parametrize(
    "header",
    [
        "!!!",
        base64.b64encode(b"[1]").decode(),
        _b64url({"username": 5}),
        _b64url({"identitytoken": "tok"}),
        "a" * 20000,
    ],
)
def test_registry_auth_refuses_malformed_headers_without_quoting_them(header: str) -> None:
    from nspawnctl.api.translate import registry_auth

    with pytest.raises(ApiError) as e:
        registry_auth(header)
    assert e.value.status == 400 and header[:8] not in e.value.message.partition(":")[2]


def test_credentials_go_only_to_their_registry() -> None:
    from nspawnctl.api.handlers.images import credentials_for
    from nspawnctl.api.translate import RegistryAuth

    creds = ("alice", "pw")
    assert credentials_for("reg.test:5000/acc/bb:v1", RegistryAuth(creds)) == creds
    assert credentials_for("reg.test:5000/acc/bb:v1", RegistryAuth(creds, "reg.test:5000")) == creds
    assert (
        credentials_for("reg.test:5000/acc/bb:v1", RegistryAuth(creds, "https://reg.test:5000/v1/")) == creds
    )
    assert credentials_for("reg.test:5000/acc/bb:v1", RegistryAuth(creds, "other.test")) is None
    assert credentials_for("reg.test:5000/acc/bb:v1", RegistryAuth(None, "reg.test:5000")) is None


@pytest.mark.parametrize(
    "body",
    [
        {"Image": "x", "HostConfig": {"LogConfig": "s"}},
        {"Image": "x", "HostConfig": {"RestartPolicy": "s"}},
        {"Image": "x", "HostConfig": {"PortBindings": [1]}},
        {"Image": "x", "HostConfig": {"PortBindings": {"80/tcp": 5}}},
        {"Image": "x", "HostConfig": {"PortBindings": {"80/tcp": ["a"]}}},
        {"Image": "x", "HostConfig": {"LogConfig": {"Type": [1]}}},
        {"Image": "x", "HostConfig": "yes"},
    ],
)
def test_wrong_types_in_nested_create_fields_are_400s(body: Any) -> None:
    from nspawnctl.api.translate import create_options

    with pytest.raises(ApiError) as e:
        create_options(body, None)
    assert e.value.status == 400 and "HostConfig" in e.value.message


def test_an_error_reply_to_a_head_request_has_no_body_and_the_connection_goes_on() -> None:
    from test_api import exchange

    replies = exchange([b"HEAD /nope HTTP/1.1\r\nHost: d\r\n\r\n", b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n"])
    assert [(s, b) for s, _, b in replies] == [(404, b""), (200, b"OK")]


def test_archive_pipes_move_on_the_loop_while_many_copies_block() -> None:
    """More blocked copies than the loop's executor has threads: each has a thread of its own and
    its pipe is drained on the loop, so all finish (with the shared executor they would hang)."""
    from nspawnctl.api.pipes import own_thread, read_pipe, write_pipe

    size = 1 << 20

    async def one() -> int:
        r, w = os.pipe()
        os.set_blocking(r, False)

        def produce() -> None:
            with open(w, "wb") as out:
                out.write(b"x" * size)

        worker = own_thread(produce)
        n = 0
        try:
            while chunk := await read_pipe(r):
                n += len(chunk)
            await worker
        finally:
            os.close(r)
        r2, w2 = os.pipe()
        os.set_blocking(w2, False)
        got: list[int] = []

        def consume() -> None:
            with open(r2, "rb") as f:
                got.append(len(f.read()))

        reader = own_thread(consume)
        await write_pipe(w2, b"y" * size)
        os.close(w2)
        await reader
        return n + got[0]

    async def main() -> list[int]:
        return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(40))), 60)

    assert asyncio.run(main()) == [2 * size] * 40


def test_copy_refuses_a_leader_pid_that_is_not_the_containers() -> None:
    """Review 15 #3: a PID machined named may have been reused by a host process; the copy must
    not join that process's namespaces (here: our own process, in no container's cgroup)."""
    from nspawnctl.store.copy import container_namespaces

    with pytest.raises(NotFound, match="stopped while files were being copied"):
        container_namespaces(os.getpid(), "c1")
    root = ContainerRoot("/nonexistent", "c1", os.getpid())
    with pytest.raises(NotFound):
        root.start(lambda fd: None, [])


def test_copy_refuses_a_leader_that_has_exited() -> None:
    from nspawnctl.store.copy import container_namespaces

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(NotFound):
        container_namespaces(pid, "c1")


def test_in_container_cgroup() -> None:
    from nspawnctl.store.copy import in_container_cgroup

    assert in_container_cgroup("0::/machine.slice/nspawnctl-c1.service/payload\n", "c1")
    assert in_container_cgroup("0::/machine.slice/systemd-nspawn@c1.service/payload\n", "c1")
    assert not in_container_cgroup("0::/machine.slice/nspawnctl-c10.service/payload\n", "c1")
    assert not in_container_cgroup("0::/system.slice/cron.service\n", "c1")
    assert not in_container_cgroup("0::/\n", "c1")


def test_kept_owners_outside_the_containers_range_are_refused(ctr: tuple[ContainerRoot, Path]) -> None:
    """Review 15 #10: a tar's uid shifted into a stored-shifted container must stay in its 64k
    range (70000 + shift is a neighbour's range), and a huge ID is an ArchiveError, not a 500."""
    root, path = ctr
    with pytest.raises(ArchiveError, match="outside the container's range"):
        files.extract_archive(
            root, "/data", io.BytesIO(make_tar(reg("big", b"x", uid=2**40))), keep_owners=True
        )
    os.chown(path, 100000, 100000)  # stored shifted
    with pytest.raises(ArchiveError, match="uid 70000 is outside"):
        files.extract_archive(
            root, "/data", io.BytesIO(make_tar(reg("o", b"x", uid=70000))), keep_owners=True
        )
    files.extract_archive(root, "/data", io.BytesIO(make_tar(reg("o", b"x", uid=5, gid=6))), keep_owners=True)
    st = (path / "data" / "o").stat()
    assert (st.st_uid, st.st_gid) == (100005, 100006)


def test_owner_for() -> None:
    from nspawnctl.store.copy import owner_for

    assert owner_for(100000, False)(-1, 2**40) == (100000, 100000)
    assert owner_for(100000, True)(0, 65535) == (100000, 165535)
    for bad in (-1, 65536):
        with pytest.raises(ArchiveError):
            owner_for(100000, True)(bad, 0)
        with pytest.raises(ArchiveError):
            owner_for(100000, True)(0, bad)
    assert owner_for(0, True)(2**32 - 2, 0) == (2**32 - 2, 0)
    with pytest.raises(ArchiveError):
        owner_for(0, True)(-5, 0)
