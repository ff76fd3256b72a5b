"""-u USER[:GROUP] checked at create against the image's /etc/passwd and /etc/group: what
systemd-nspawn's User= (a user of the container's database, no group) can run, said up front."""

from __future__ import annotations

from pathlib import Path

import pytest

from nspawnctl.errors import InvalidArgument, UserNotUsable
from nspawnctl.imageuser import nspawn_user

PASSWD = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nbroken line\nodd:x:7:x::/:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\nsecond:x:2000:app\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text(PASSWD)
    (r / "etc" / "group").write_text(GROUP)
    return r


def test_a_user_with_an_entry_is_written_alone(root: Path) -> None:
    assert nspawn_user(root, "app") == "app"
    assert nspawn_user(root, "1000") == "1000"


def test_the_primary_group_by_number_or_name_is_accepted_and_left_out(root: Path) -> None:
    assert nspawn_user(root, "1000:1000") == "1000"
    assert nspawn_user(root, "app:app") == "app"
    assert nspawn_user(root, "1000:app") == "1000"


def test_root_always_works_even_without_account_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for user in ("0", "root", "0:0", "root:root", "root:0"):
        assert nspawn_user(empty, user) == user.partition(":")[0]
    with pytest.raises(UserNotUsable, match="group 0"):
        nspawn_user(empty, "0:1000")


def test_a_user_without_an_entry_is_refused(root: Path) -> None:
    with pytest.raises(UserNotUsable, match=r"^user 4242 has no entry in the image's /etc/passwd") as e:
        nspawn_user(root, "4242")
    assert e.value.exit_code == 125 and e.value.hint and "adduser" in e.value.hint
    with pytest.raises(UserNotUsable, match=r"^user nobody has no entry"):
        nspawn_user(root, "nobody")
    with pytest.raises(UserNotUsable, match=r"^user odd has no entry"):  # a malformed line: no one
        nspawn_user(root, "odd")
    with pytest.raises(UserNotUsable, match=r"^the image's USER 4242 has no entry"):
        nspawn_user(root, "4242", given=False)


def test_another_group_is_refused(root: Path) -> None:
    for user in ("1000:2000", "app:second", "app:nosuch", "4242:1000"):
        with pytest.raises(UserNotUsable) as e:
            nspawn_user(root, user)
        assert e.value.hint
    with pytest.raises(UserNotUsable, match=r"runs in group 1000 .* not 2000") as e:
        nspawn_user(root, "1000:2000")
    assert e.value.hint and "-u 1000" in e.value.hint


def test_a_group_name_needs_the_image_group_file(root: Path) -> None:
    (root / "etc" / "group").unlink()
    assert nspawn_user(root, "1000:1000") == "1000"
    with pytest.raises(UserNotUsable):
        nspawn_user(root, "app:app")


def test_a_missing_passwd_refuses_every_user_but_root(root: Path) -> None:
    (root / "etc" / "passwd").unlink()
    with pytest.raises(UserNotUsable, match="no entry"):
        nspawn_user(root, "app")
    assert nspawn_user(root, "root") == "root"


def test_a_symlinked_passwd_never_leads_out_of_the_root(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "host-passwd"
    outside.write_text("intruder:x:4242:4242::/:/bin/sh\n")
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to(outside)  # absolute: resolved inside the root, not found
    with pytest.raises(UserNotUsable, match="no entry"):
        nspawn_user(root, "intruder")
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to("../" * 8 + str(outside).lstrip("/"))
    with pytest.raises(UserNotUsable, match="no entry"):
        nspawn_user(root, "4242")


def test_a_symlink_inside_the_root_is_followed_inside_it(root: Path) -> None:
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "etc" / "passwd").rename(root / "usr" / "lib" / "passwd")
    (root / "etc" / "passwd").symlink_to("/usr/lib/passwd")
    assert nspawn_user(root, "app") == "app"


def test_malformed_values_are_usage_errors(root: Path) -> None:
    for user in (":1000", "a:b:c", "ap p"):
        with pytest.raises(InvalidArgument) as e:
            nspawn_user(root, user)
        assert not isinstance(e.value, UserNotUsable)
