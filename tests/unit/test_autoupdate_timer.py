"""The auto-update timer's unit files: the command of the running nspawnctl, escaped for a unit
file, and written atomically never over what is not a regular file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from nspawnctl import autoupdate_timer as at
from nspawnctl.errors import Conflict, SystemdError


def test_a_console_script_is_run_by_its_absolute_path(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "nspawnctl"
    script.parent.mkdir()
    script.write_text("#!/usr/bin/python3\n")
    script.chmod(0o755)
    assert at.command(str(script), "/usr/bin/python3") == ([str(script)], {})


def test_python_m_runs_this_python_with_the_package_on_its_path() -> None:
    argv, env = at.command("/src/nspawnctl/__main__.py", sys.executable)
    assert argv == [sys.executable, "-m", "nspawnctl"]
    here = str(Path(at.__file__).resolve().parent.parent)
    assert env in ({}, {"PYTHONPATH": here})


def test_the_service_escapes_every_word_for_a_unit_file() -> None:
    template = "@MARK@\n[Service]\nType=oneshot\n@ENVIRONMENT@\nExecStart=@EXEC@\n"
    argv = ["/opt/my venv/bin/nspawnctl", "auto-update", "--ca-cert", "/etc/ca 100%$HOME.pem"]
    text = at.render_service(template, argv, {"PYTHONPATH": "/src/a b"})
    lines = text.splitlines()
    assert lines[0] == at.MARK
    assert 'Environment="PYTHONPATH=/src/a b"' in lines
    assert 'ExecStart="/opt/my venv/bin/nspawnctl" auto-update --ca-cert "/etc/ca 100%%$$HOME.pem"' in lines
    assert "\n\n\n" not in at.render_service(template, ["/x"], {})


def test_the_shipped_units_have_every_placeholder_filled() -> None:
    root = Path(__file__).resolve().parents[2] / "units"
    for name in (at.SERVICE, at.TIMER):
        text = at.render_service((root / name).read_text(), ["/usr/bin/nspawnctl", "auto-update"], {})
        assert "@" not in text and text.startswith(at.MARK), text
        assert ("ExecStart=/usr/bin/nspawnctl auto-update" in text.splitlines()) == (name == at.SERVICE)


def test_write_unit_replaces_a_regular_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / at.SERVICE
    at.write_unit(path, "one\n")
    inode = path.stat().st_ino
    at.write_unit(path, "two\n")
    assert path.read_text() == "two\n" and path.stat().st_ino != inode  # renamed over, not rewritten
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == [at.SERVICE]  # no temporary file left


@pytest.mark.parametrize("kind", ["symlink", "dangling", "fifo", "directory"])
def test_write_unit_leaves_what_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / at.TIMER
    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    if kind == "symlink":
        path.symlink_to(target)
    elif kind == "dangling":
        path.symlink_to("/dev/null-nope")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    with pytest.raises(Conflict, match="not a regular file"):
        at.write_unit(path, "new\n")
    assert target.read_text() == "keep\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([at.TIMER, "elsewhere"])


def test_without_systemd_as_init_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(at, "booted", lambda: False)
    with pytest.raises(SystemdError, match="systemd is not the init system") as e:
        at.install(None, ["auto-update"], tmp_path)  # type: ignore[arg-type]
    assert e.value.hint and "cron" in e.value.hint
    with pytest.raises(SystemdError):
        at.uninstall(None, tmp_path)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


class _FailingClient:
    """A client whose D-Bus step fails (EnableUnitFiles refused, say)."""

    def run(self, fn: object) -> None:
        raise SystemdError("EnableUnitFiles refused")


def test_an_admins_own_unit_of_that_name_is_neither_replaced_nor_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(at, "booted", lambda: True)
    own = tmp_path / at.SERVICE
    own.write_text("[Service]\nExecStart=/usr/local/bin/my-updater\n")
    with pytest.raises(Conflict, match="not written by nspawnctl"):
        at.install(_FailingClient(), ["auto-update"], tmp_path)  # type: ignore[arg-type]
    with pytest.raises(Conflict, match="not written by nspawnctl"):
        at.uninstall(_FailingClient(), tmp_path)  # type: ignore[arg-type]
    assert own.read_text() == "[Service]\nExecStart=/usr/local/bin/my-updater\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [at.SERVICE]


def test_a_failed_install_leaves_the_files_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(at, "booted", lambda: True)
    with pytest.raises(SystemdError, match="EnableUnitFiles refused"):
        at.install(_FailingClient(), ["auto-update"], tmp_path)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []  # nothing half-made
    earlier = f"{at.MARK}\n# an earlier install\n"
    (tmp_path / at.TIMER).write_text(earlier)
    with pytest.raises(SystemdError):
        at.install(_FailingClient(), ["auto-update"], tmp_path)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == [at.TIMER]
    assert (tmp_path / at.TIMER).read_text() == earlier
