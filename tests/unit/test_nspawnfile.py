"""The .nspawn file: systemd's list quoting round-trips, and edits keep what we don't own."""

from __future__ import annotations

import pytest

from nspawnctl.errors import InvalidArgument
from nspawnctl.nspawnfile import NspawnFile, parse_boolean, quote_words, split_words
from nspawnctl.spec import file_to_spec, spec_to_file

TRICKY = [
    ["echo", "hi"],
    ["sh", "-c", 'echo $HOME; it\'s "quoted"'],
    ["a\\b", "c\\'d", 'e\\"f'],
    ["", "two  spaces", "\ttab"],
    ["--opt=x", "-c", "%n %i"],
    ["ünïcode", "$$", "${X}"],
]


@pytest.mark.parametrize("argv", TRICKY)
def test_quoting_round_trips(argv: list[str]) -> None:
    assert split_words(quote_words(argv)) == argv


def test_split_follows_systemd_rules() -> None:
    # quotes group and disappear, adjacent segments join, backslashes are kept with their character
    assert split_words("""a "b c" 'd'"e" f\\ g""") == ["a", "b c", "de", "f\\ g"]


@pytest.mark.parametrize("bad", [["ends\\"], ["line\nbreak"]])
def test_unrepresentable_arguments_are_refused(bad: list[str]) -> None:
    with pytest.raises(InvalidArgument):
        quote_words(bad)


SAMPLE = """# my container
[Exec]
Boot=no
Parameters=sleep 60
# keep this comment
SomeFutureKey=kept

[Files]
Bind=/srv:/srv

[X-Mine]
Foo=bar
"""


def test_edit_keeps_comments_unknown_keys_and_sections() -> None:
    f = NspawnFile.parse(SAMPLE)
    f.set_words("Exec", "Parameters", ["echo", "a b"])
    f.set("Network", "Private", "yes")
    out = f.render()
    assert "# my container" in out and "# keep this comment" in out
    assert "SomeFutureKey=kept" in out and "[X-Mine]\nFoo=bar" in out
    assert "Parameters=echo 'a b'" in out
    # the edited key stays where it was
    assert out.index("Parameters=") < out.index("# keep this comment")
    again = NspawnFile.parse(out)
    assert again.get_words("Exec", "Parameters") == ["echo", "a b"]
    assert again.get("Network", "Private") == "yes"


def test_empty_assignment_resets_a_list() -> None:
    f = NspawnFile.parse("[Exec]\nEnvironment=A=1\nEnvironment=\nEnvironment=B=2\n")
    assert f.get_words("Exec", "Environment") == ["B=2"]


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(InvalidArgument, match=r"web.nspawn:3"):
        NspawnFile.parse("[Exec]\nBoot=no\nthis is not an assignment\n", "web.nspawn")


@pytest.mark.parametrize("value", ["/a\n[Files]", "/a\rb", "/a\x00b"])
def test_values_with_line_breaks_are_refused(value: str) -> None:
    f = NspawnFile()
    with pytest.raises(InvalidArgument):
        f.set("Exec", "WorkingDirectory", value)


def test_assignments_keep_their_line_numbers() -> None:
    f = NspawnFile.parse("# c\n[Exec]\nBoot=no\nParameters=a \\\n  b\nUser=x\n", "w.nspawn")
    lines = {(a.key, a.lineno) for a in f.assignments()}
    assert lines == {("Boot", 3), ("Parameters", 4), ("User", 6)}
    assert f.where("Exec", "User") == "w.nspawn:6"
    assert f.where("Exec", "Hostname") == "w.nspawn"
    assert f.get_words("Exec", "Parameters") == ["a", "b"]


def test_a_section_nspawnctl_emptied_is_not_left_bare() -> None:
    f = NspawnFile.parse("[Exec]\nBoot=no\n\n[Network]\nZone=web\n\n[X-Mine]\nA=1\n")
    f.set("Network", "Zone", None)
    assert f.render() == "[Exec]\nBoot=no\n\n[X-Mine]\nA=1\n"
    # as spec_to_file does for a container on its own network
    f = NspawnFile.parse("[Network]\nVirtualEthernet=yes\nPort=8080:80\n")
    spec = file_to_spec("w", _with_id(f))
    assert "[Network]" not in spec_to_file(spec, f).render()


def test_a_users_empty_section_and_comments_survive() -> None:
    f = NspawnFile.parse("[Files]\n\n[Network]\n# my notes\nZone=web\n")
    f.set("Network", "Zone", None)
    f.set("Exec", "Boot", "no")
    out = f.render()
    assert "[Files]" in out and "[Network]\n# my notes" in out


def _with_id(f: NspawnFile) -> NspawnFile:
    g = f.copy()
    g.set("X-Nspawnctl", "Id", "x")
    return g


@pytest.mark.parametrize(
    "value, result",
    [
        *[("yes", True), ("True", True), ("on", True), ("1", True), ("y", True), ("t", True)],
        *[("no", False), ("FALSE", False), ("off", False), ("0", False), ("n", False), (" f ", False)],
    ],
)
def test_booleans_as_systemd_reads_them(value: str, result: bool) -> None:
    assert parse_boolean(value) is result


@pytest.mark.parametrize("value", ["", "maybe", "2", "yess"])
def test_not_booleans(value: str) -> None:
    with pytest.raises(InvalidArgument, match="not a boolean"):
        parse_boolean(value)


# Found by the fuzzer (tests/fuzz/corpus/nspawn): systemd continues a line only when it ends in an
# unescaped backslash, and a value nspawnctl writes must read back as itself.
@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("[Exec]\nUser=a\\\\\nBoot=no\n", [("User", "a\\\\"), ("Boot", "no")]),  # escaped: no join
        ("[Exec]\nUser=a\\\nb\n", [("User", "a b")]),  # one backslash: joined
        ("[Exec]\nUser=a\\\\\\\nb\n", [("User", "a\\\\ b")]),  # three: joined
    ],
)
def test_continuation_needs_an_unescaped_backslash(text: str, values: list[tuple[str, str]]) -> None:
    f = NspawnFile.parse(text)
    assert [(a.key, a.value) for a in f.assignments()] == values
    again = NspawnFile.parse(f.render())
    assert [(a.key, a.value) for a in again.assignments()] == values


def test_a_value_ending_in_a_backslash_is_not_written() -> None:
    f = NspawnFile.parse("[Exec]\nUser=a\n")
    with pytest.raises(InvalidArgument, match="backslash"):
        f.set("Exec", "User", "b\\")
    f.set("Exec", "User", "b\\\\")  # an escaped backslash reads back as itself
    assert NspawnFile.parse(f.render()).get("Exec", "User") == "b\\\\"


def test_a_last_line_left_ending_in_a_backslash_is_refused() -> None:
    # "a\ \" at the end of the file: systemd reads "a\", which could not be written back
    with pytest.raises(InvalidArgument, match=r"<string>:2: the last line ends in a backslash"):
        NspawnFile.parse("[Exec]\nUser=a\\ \\")
