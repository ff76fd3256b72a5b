"""The Dockerfile parser of nspawnctl build (nspawnctl.builder.parser): directives, comments,
continuations, the exec form, flags, variable substitution, and errors naming their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from nspawnctl.builder.parser import MAX_STEPS, expand, parse
from nspawnctl.errors import InvalidArgument


def test_instructions_continuations_and_comments() -> None:
    df = parse(
        "# a comment\n"
        "from busybox AS base\n"
        "\n"
        "RUN echo one && \\\n"
        "    # inside a continuation: dropped\n"
        "\n"
        "    echo two\n"
        'CMD ["sh", "-c", "echo hi"]\n'
        'ENV A=1 B="two words"\n'
        "COPY --chown=1:2 a b /dst/\n"
    )
    kinds = [(i.line, i.keyword) for i in df.instructions]
    assert kinds == [(2, "FROM"), (4, "RUN"), (8, "CMD"), (9, "ENV"), (10, "COPY")]
    run = df.instructions[1]
    assert run.args == "echo one &&     echo two"
    assert run.exec_form is None
    assert df.instructions[2].exec_form == ["sh", "-c", "echo hi"]
    copy = df.instructions[4]
    assert copy.flags == {"chown": "1:2"} and copy.args == "a b /dst/"
    assert str(copy) == "COPY --chown=1:2 a b /dst/"


def test_escape_directive_and_syntax_ignored() -> None:
    df = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\nRUN echo a `\n  b\nWORKDIR C:\\dir\n")
    assert df.escape == "`"
    assert df.instructions[1].args == "echo a   b"
    assert df.instructions[2].args == "C:\\dir"


def test_not_json_is_shell_form() -> None:
    df = parse("FROM x\nCMD [not json]\n")
    assert df.instructions[1].exec_form is None


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", None, "no instructions"),
        ("RUN x\n", 1, "RUN before FROM"),
        ("FROM x\n\nFROB y\n", 3, "unknown instruction: FROB"),
        ('FROM x\nSHELL ["bash"]\n', 2, "SHELL is not supported"),
        ("FROM x\nRUN --mount=type=cache x\n", 2, "RUN --mount"),
        ("FROM x\nCOPY --chmod=644 a b\n", 2, "COPY --chmod"),
        ("FROM x\nWORKDIR\n", 2, "WORKDIR needs arguments"),
        ("# escape=x\nFROM x\n", 1, "escape"),
    ],
)
def test_bad_input_names_the_line(text: str, line: int | None, words: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse(text)
    assert words in e.value.message
    if line is not None:
        assert e.value.message.startswith(f"Dockerfile line {line}:")


def test_step_and_size_bounds() -> None:
    with pytest.raises(InvalidArgument, match="more than"):
        parse("FROM x\n" + "ENV A=1\n" * MAX_STEPS)
    with pytest.raises(InvalidArgument, match="larger than"):
        parse("FROM x\n# " + "x" * (1 << 20))


def test_expand() -> None:
    values = {"A": "1", "E": ""}
    assert expand("$A ${A} x${A}y $B.", values) == "1 1 x1y ."
    assert expand("${B:-def} ${A:-def} ${E:-e} ${A:+alt} ${B:+alt}", values) == "def 1 e alt "
    assert expand("\\$A $", values) == "$A $"
    assert expand("`$A", values, escape="`") == "$A"
    with pytest.raises(InvalidArgument, match="missing"):
        expand("${A", values)
    with pytest.raises(InvalidArgument, match="bad substitution"):
        expand("${A?x}", values)


def test_dockerignore_rules() -> None:
    from nspawnctl.builder.ignore import Ignore

    ig = Ignore.parse("# comment\n.git\n*.log\n!keep.log\n**/cache\nbuild/*.o\n/abs\n")
    assert ig.excluded(".git") and ig.excluded(".git/config")  # a directory hides what is below
    assert ig.excluded("a.log") and not ig.excluded("keep.log")  # the last matching line wins
    assert not ig.excluded("sub/a.log")  # '*' stays within one part
    assert ig.excluded("cache/x") and ig.excluded("a/b/cache/y")
    assert ig.excluded("build/m.o") and not ig.excluded("build/m.c")
    assert ig.excluded("abs") and not ig.excluded("src/main.c")
    assert not Ignore.parse("").excluded("anything")


def test_healthcheck_instruction() -> None:
    from nspawnctl.builder.parser import parse as parse_df
    from nspawnctl.builder.steps import _healthcheck

    df = parse_df(
        "FROM x\nHEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost\n"
        'HEALTHCHECK CMD ["true"]\nHEALTHCHECK NONE\nHEALTHCHECK --interval=bad CMD x\n'
    )
    first, exec_form, none, bad = df.instructions[1:]
    hc = _healthcheck(first)
    assert hc["Test"] == ["CMD-SHELL", "wget -q localhost"]
    assert hc["Interval"] == 5_000_000_000 and hc["Retries"] == 2
    assert _healthcheck(exec_form)["Test"] == ["CMD", "true"]
    assert _healthcheck(none) == {"Test": ["NONE"]}
    with pytest.raises(InvalidArgument, match="Dockerfile line 5"):
        _healthcheck(bad)


def test_open_regular_refuses_fifos_symlinks_and_the_root(tmp_path: Path) -> None:
    """A stranger's Dockerfile or /etc/passwd may be a FIFO (a read would block the build) or a
    symlink out of the tree: rootpath.open_regular opens regular files inside the root only."""
    import os

    from nspawnctl.store import rootpath

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "out").symlink_to("/etc/hostname")  # resolved inside the root: no etc/ there
    root = os.open(tmp_path, rootpath.DIR_READ)
    try:
        fd = rootpath.open_regular(root, "Dockerfile")
        assert os.read(fd, 100) == b"FROM scratch\n"
        os.close(fd)
        for bad in ("fifo", "/", "missing", "out"):
            with pytest.raises(OSError):
                rootpath.open_regular(root, bad)
    finally:
        os.close(root)
