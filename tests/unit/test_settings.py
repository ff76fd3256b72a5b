"""Tests for nspawnctl.formats.settings: a downloaded .nspawn file honours only harmless [Exec] keys."""

from __future__ import annotations

import pytest

from nspawnctl.errors import ArchiveError
from nspawnctl.formats.settings import settings_defaults
from nspawnctl.spec import RunDefaults

SRC = "https://example.com/images/foo.nspawn"


def test_honoured_keys() -> None:
    text = """\
# published with foo.tar.xz
[Exec]
Boot=no
Parameters=/usr/bin/app --greeting "hello world"
Parameters='second line' a\\ b
Environment=A=1 "B=two words"
Environment=C=3
User=app
WorkingDirectory=/srv/app
"""
    defaults, ignored = settings_defaults(text, SRC)
    assert defaults == RunDefaults(
        command=["/usr/bin/app", "--greeting", "hello world", "second line", "a\\ b"],
        env=["A=1", "B=two words", "C=3"],
        workdir="/srv/app",
        user="app",
        boot=False,
    )
    assert ignored == []


def test_privileged_and_unknown_keys_are_ignored_and_reported() -> None:
    text = """\
[Exec]
Boot=yes
Capability=all
PrivateUsers=no
Capability=CAP_SYS_ADMIN
[Files]
Bind=/:/host
BindReadOnly=/etc
[Network]
Private=no
[X-Nspawnctl]
ImageId=sha256:forged
[Exec]
MachineID=0123456789abcdef0123456789abcdef
"""
    defaults, ignored = settings_defaults(text, SRC)
    assert defaults == RunDefaults(boot=True)
    assert ignored == [
        "Exec.Capability",
        "Exec.PrivateUsers",
        "Files.Bind",
        "Files.BindReadOnly",
        "Network.Private",
        "X-Nspawnctl.ImageId",
        "Exec.MachineID",
    ]


def test_honoured_key_names_outside_exec_are_ignored() -> None:
    defaults, ignored = settings_defaults("[Files]\nUser=root\n[Network]\nBoot=yes\n", SRC)
    assert defaults == RunDefaults()
    assert ignored == ["Files.User", "Network.Boot"]


def test_empty_file() -> None:
    assert settings_defaults("", SRC) == (RunDefaults(), [])
    assert settings_defaults("# nothing\n\n[Exec]\n", SRC) == (RunDefaults(), [])


def test_last_value_wins_and_empty_resets() -> None:
    text = """\
[Exec]
Boot=yes
Boot=
User=a
User=b
WorkingDirectory=/x
WorkingDirectory=
Parameters=/bin/old
Parameters=
Parameters=/bin/new arg
Environment=OLD=1
Environment=
Environment=NEW=2
"""
    defaults, _ = settings_defaults(text, SRC)
    assert defaults == RunDefaults(command=["/bin/new", "arg"], env=["NEW=2"], user="b", boot=False)


@pytest.mark.parametrize("value", ["yes", "YES", "1", "true", "on", "y", "t"])
def test_boot_true(value: str) -> None:
    assert settings_defaults(f"[Exec]\nBoot={value}\n", SRC)[0].boot is True


@pytest.mark.parametrize("value", ["no", "0", "false", "Off", "n", "f"])
def test_boot_false(value: str) -> None:
    assert settings_defaults(f"[Exec]\nBoot=yes\nBoot={value}\n", SRC)[0].boot is False


def test_continuation_lines() -> None:
    defaults, _ = settings_defaults("[Exec]\nParameters=/bin/app \\\n  --flag\n", SRC)
    assert defaults.command == ["/bin/app", "--flag"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Boot=yes\n", f"invalid settings file {SRC}:1: assignment outside of a section"),
        ("[Exec]\n[broken\n", f"invalid settings file {SRC}:2: invalid section header '[broken'"),
        ("[Exec]\n\nnot an assignment\n", f"invalid settings file {SRC}:3: expected KEY=VALUE"),
        ("[Exec]\nBoot=maybe\n", f"invalid settings file {SRC}:2: Boot=maybe: not a boolean"),
        (
            "[Exec]\nUser=a\nParameters=/bin/sh 'unterminated\n",
            f"invalid settings file {SRC}:3: Parameters=/bin/sh 'unterminated: ",
        ),
        (
            "[Exec]\nEnvironment=A=1 NOEQUALS\n",
            f"invalid settings file {SRC}:2: Environment=NOEQUALS: not a NAME",
        ),
        ("[Exec]\n# c\nEnvironment==x\n", f"invalid settings file {SRC}:3: Environment==x: not a NAME=VALUE"),
        ("[Exec]\nUser=a:b\n", f"invalid settings file {SRC}:2: User=a:b: not a user name"),
        (
            "[Exec]\nWorkingDirectory=srv\n",
            f"invalid settings file {SRC}:2: WorkingDirectory=srv: not an absolute",
        ),
    ],
    ids=[
        "outside-section",
        "bad-section",
        "no-assignment",
        "bad-boolean",
        "bad-quote",
        "env-no-equals",
        "env-no-name",
        "user-colon",
        "relative-workdir",
    ],
)
def test_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(ArchiveError) as e:
        settings_defaults(text, SRC)
    assert str(e.value).startswith(message), str(e.value)
    assert e.value.hint


@pytest.mark.parametrize(
    "text", ["[Exec]\nUser=app\x00[Files]\x00Bind=/etc\n", "[Exec]\nUser=app\r[Files]\rBind=/\n"]
)
def test_control_characters_are_refused(text: str) -> None:
    """systemd ends lines at NUL and CR too: such a file could smuggle a trusted line in."""
    with pytest.raises(ArchiveError, match="control character"):
        settings_defaults(text, "x.nspawn")
