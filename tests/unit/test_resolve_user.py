"""exec -u / the health check's user lookup: the container's /etc/passwd and /etc/group are read
as root on the host, so a symlink in the container never leads to a host file, only a regular
file is read, and only up to a bound."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from nspawnctl.errors import CommandFailed
from nspawnctl.run.runtime import MAX_ACCOUNT_FILE, resolve_user

PASSWD = "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"
GROUP = "root:x:0:\nstaff:x:50:\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text(PASSWD)
    (r / "etc" / "group").write_text(GROUP)
    return r


def test_names_and_numbers_are_looked_up_in_the_container(root: Path) -> None:
    assert resolve_user(root, "app") == (1000, 1001)
    assert resolve_user(root, "app:staff") == (1000, 50)
    assert resolve_user(root, "7:8") == (7, 8)
    assert resolve_user(root, None) == (None, None)
    with pytest.raises(CommandFailed, match="unknown user 'nobody'"):
        resolve_user(root, "nobody")


def test_a_symlink_inside_the_root_is_resolved_inside_it(root: Path) -> None:
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "etc" / "passwd").rename(root / "usr" / "lib" / "passwd")
    (root / "etc" / "passwd").symlink_to("/usr/lib/passwd")  # absolute: from the container's root
    assert resolve_user(root, "app") == (1000, 1001)


@pytest.mark.parametrize("absolute", [True, False])
def test_a_symlink_never_leads_to_a_host_file(root: Path, tmp_path: Path, absolute: bool) -> None:
    host = tmp_path / "host-passwd"  # a host file the container names by path
    host.write_text("evil:x:4242:4242::/:/bin/sh\n")
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to(host if absolute else Path(*[".."] * 64) / host.relative_to("/"))
    with pytest.raises(CommandFailed, match="unknown user 'evil'"):
        resolve_user(root, "evil")


def test_a_fifo_is_refused_without_blocking(root: Path) -> None:
    (root / "etc" / "passwd").unlink()
    os.mkfifo(root / "etc" / "passwd")
    errors: list[BaseException] = []

    def look() -> None:
        try:
            resolve_user(root, "app")
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=look, daemon=True)  # before the fix it blocked in open()
    t.start()
    t.join(5)
    assert not t.is_alive(), "resolve_user blocked on a FIFO"
    assert len(errors) == 1 and isinstance(errors[0], CommandFailed)
    assert str(errors[0]) == "the container's /etc/passwd is not a regular file"


def test_the_read_is_bounded(root: Path) -> None:
    with open(root / "etc" / "passwd", "wb") as f:  # sparse: no disk, but past the bound
        f.truncate(MAX_ACCOUNT_FILE)
        f.seek(0, os.SEEK_END)
        f.write(b"\nbig:x:7:7::/:/bin/sh\n")
    with pytest.raises(CommandFailed, match=r"the container's /etc/passwd is larger than 4 MiB") as e:
        resolve_user(root, "big")
    assert e.value.hint
