"""The command lookup behind docker's 127/126: as the payload's execvpe, inside the container's
root as a chroot would resolve it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nspawnctl.errors import CommandNotExecutable, CommandNotFound
from nspawnctl.run.lookup import DEFAULT_PATH, check_command, env_path, exec_failure, find_command


def program(path: Path, text: str = "\x7fELF", mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    program(r / "usr/bin/tool")
    program(r / "usr/bin/data", mode=0o644)
    program(r / "usr/local/bin/data")  # later in PATH than the one that is not executable
    program(r / "opt/app/run.sh", "#!/usr/bin/tool -x\necho\n")
    program(r / "opt/app/broken.sh", "#!/no/such/interpreter\n")
    program(r / "opt/app/plain", mode=0o600)
    (r / "bin").symlink_to("usr/bin")  # merged /usr, relative
    (r / "usr/bin/abs").symlink_to("/usr/bin/tool")  # absolute: inside the root, not the host's
    (r / "usr/bin/hostly").symlink_to("/usr/bin/env")  # the host has it; the container does not
    (r / "usr/bin/climb").symlink_to("../../../../../../usr/bin/tool")  # .. stops at the root
    (r / "etc").mkdir()
    return r


def check(
    root: Path, command: str, path: str = DEFAULT_PATH, workdir: str | None = None, **kw: object
) -> None:
    check_command(root, command, path=path, workdir=workdir, container="web", **kw)  # type: ignore[arg-type]


def state(root: Path, command: str, path: str = DEFAULT_PATH, workdir: str = "/") -> tuple[str, str]:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        found = find_command(fd, command, path, workdir)
    finally:
        os.close(fd)
    return found.state, found.path


def test_names_are_searched_in_path_as_execvpe_does(root: Path) -> None:
    assert state(root, "tool") == ("ok", "/usr/bin/tool")
    assert state(root, "tool", "/nowhere:/bin") == ("ok", "/usr/bin/tool")
    # a file that cannot be executed is skipped when an executable one follows ...
    assert state(root, "data", "/usr/bin:/usr/local/bin") == ("ok", "/usr/local/bin/data")
    # ... and reported when none does (execvpe: EACCES, a shell's 126)
    assert state(root, "data", "/usr/bin") == ("denied", "/usr/bin/data")
    assert state(root, "nosuch") == ("missing", "nosuch")
    # an empty PATH entry is the working directory
    assert state(root, "run.sh", ":/usr/bin", workdir="/opt/app") == ("ok", "/opt/app/run.sh")
    assert state(root, "run.sh", "/usr/bin")[0] == "missing"


def test_paths_resolve_inside_the_root_only(root: Path) -> None:
    assert state(root, "/bin/tool") == ("ok", "/usr/bin/tool")
    assert state(root, "/usr/bin/abs") == ("ok", "/usr/bin/tool")
    assert state(root, "/usr/bin/climb") == ("ok", "/usr/bin/tool")
    assert Path("/usr/bin/env").exists() and state(root, "/usr/bin/hostly")[0] == "missing"
    assert state(root, "./run.sh", workdir="/opt/app") == ("ok", "/opt/app/run.sh")
    assert state(root, "app/run.sh", workdir="/opt") == ("ok", "/opt/app/run.sh")
    assert state(root, "/etc") == ("directory", "/etc")
    assert state(root, "/etc/passwd/x")[0] == "missing"


def test_errors_are_docker_s_127_and_126(root: Path) -> None:
    check(root, "tool")
    with pytest.raises(CommandNotFound) as e:
        check(root, "nosuch")
    assert e.value.exit_code == 127 and e.value.code == "command-not-found"
    assert e.value.message == 'container web: exec: "nosuch": executable file not found in $PATH'
    assert e.value.hint and DEFAULT_PATH in e.value.hint
    with pytest.raises(CommandNotFound, match="no such file or directory"):
        check(root, "/nosuch")
    with pytest.raises(CommandNotExecutable) as denied:
        check(root, "/opt/app/plain")
    assert denied.value.exit_code == 126 and denied.value.code == "command-not-executable"
    assert "/opt/app/plain is not executable" in denied.value.message
    with pytest.raises(CommandNotExecutable, match="is a directory"):
        check(root, "/etc")


def test_a_script_needs_its_interpreter(root: Path) -> None:
    check(root, "/opt/app/run.sh")
    with pytest.raises(CommandNotFound, match="interpreter /no/such/interpreter is missing"):
        check(root, "/opt/app/broken.sh")
    with pytest.raises(CommandNotFound, match="interpreter"):
        check(root, "broken.sh", path="/opt/app")


def test_what_lies_below_a_volume_is_not_judged(root: Path) -> None:
    check(root, "/srv/tools/anything", mounts=["/srv/tools"])
    check(root, "anything", path="/srv/tools/bin", mounts=["/srv/tools/"])
    with pytest.raises(CommandNotFound):
        check(root, "/srv/toolsx/anything", mounts=["/srv/tools"])


def test_path_of_the_environment() -> None:
    assert env_path([]) == DEFAULT_PATH
    assert env_path(["A=1", "PATH=/a", "PATH=/b:/c"]) == "/b:/c"
    assert env_path(["PATHX=/a"]) == DEFAULT_PATH


def test_exec_failure_at_run_time() -> None:
    assert exec_failure([b"execv(dyn) failed: No such file or directory"]) == 127
    assert exec_failure([b"execv(/etc) failed: Permission denied"]) == 126
    assert exec_failure([b"execv(x) failed: Exec format error"]) == 126
    # the payload's own output, or more than nspawn's one line: the payload ran
    assert exec_failure([b"something else"]) is None
    assert exec_failure([b"execv(x) failed: No such file or directory", b"more"]) is None
    assert exec_failure([]) is None
