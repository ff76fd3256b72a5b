"""The Go-template subset of --format and inspect -f (gotemplate.py): what it prints, and what
it refuses (TemplateError: a usage error, exit 2)."""

from __future__ import annotations

import pytest

from nspawnctl.gotemplate import TemplateError, align, parse, parse_format, render, to_json, to_text

DATA = {
    "Name": "web",
    "State": {"Status": "running", "Running": True, "ExitCode": None, "Pid": 42},
    "Config": {"Labels": {"b": "2", "a": "x y", "dotted.key": "v"}, "Env": ["A=1", "B=2"], "Cmd": None},
    "NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}},
    "Html": "<a&b>",
    "Label": lambda key: {"tier": "web"}.get(key, ""),
}


@pytest.mark.parametrize(
    ("template", "out"),
    [
        ("{{.Name}}", "web"),
        ("{{ .State.Status }}", "running"),
        ("{{.State.Running}} {{.State.ExitCode}} {{.State.Pid}}", "true <nil> 42"),
        ("{{.Config.Labels}}", "map[a:x y b:2 dotted.key:v]"),
        ("{{.Config.Env}}", "[A=1 B=2]"),
        ('{{index .Config.Labels "dotted.key"}}', "v"),
        ('{{index .Config.Labels "missing"}}', "<no value>"),
        ("{{index .Config.Env 1}}", "B=2"),
        ('{{index .NetworkSettings.Ports "80/tcp" 0 "HostPort"}}', "8080"),
        ("{{json .NetworkSettings}}", '{"Ports":{"80/tcp":[{"HostIp":"","HostPort":"8080"}]}}'),
        ("{{json .Config.Cmd}}", "null"),
        ("{{json .Html}}", '"\\u003ca\\u0026b\\u003e"'),
        ("{{json .Name}}", '"web"'),
        ('{{.Label "tier"}}|{{.Label "none"}}', "web|"),
        ("{{.Name | upper}} {{lower .State.Status}}", "WEB running"),
        ('{{join .Config.Env ","}}', "A=1,B=2"),
        ('{{join (split "a:b:c" ":") "-"}}', "a-b-c"),
        ("{{len .Config.Env}}", "2"),
        ('{{truncate "abcdef" 3}} {{title "hello world"}}', "abc Hello World"),
        ("{{$.Name}}", "web"),
        ('{{"a\\tb"}}{{`raw\\t`}}', "a\tbraw\\t"),
        ("a  {{- .Name -}}  b", "awebb"),
        ("x{{/* a comment */}}y", "xy"),
        ("no actions", "no actions"),
        ("", ""),
    ],
)
def test_templates_print_as_go_does(template: str, out: str) -> None:
    assert parse(template).execute(DATA) == out


def test_json_of_the_whole_object_leaves_methods_out() -> None:
    assert to_json({"ID": "1", "Label": lambda k: k}) == '{"ID":"1"}'
    assert to_text({"x": [1, {"y": False}], "m": lambda: 1}) == "map[x:[1 map[y:false]]]"


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{{.Nope}}", "can't evaluate field Nope"),
        ("{{.State.Nope}}", "can't evaluate field Nope"),
        ("{{.Config.Cmd.X}}", "nil pointer evaluating .Config.Cmd.X"),
        ("{{.Name", "unclosed action"),
        ("{{}}", "empty command"),
        ("{{if .Name}}x{{end}}", "{{if}} is not supported"),
        ("{{range .Config.Env}}{{.}}{{end}}", "{{range}} is not supported"),
        ("{{exec .Name}}", 'function "exec" not defined'),
        ("{{.Name.__class__}}", "can't evaluate field __class__"),
        ('{{.Name "x"}}', "can't give argument to non-function"),
        ("{{index .Config.Env 5}}", "index out of range"),
        ("{{(.Name}}", "unclosed '('"),
        ("{{.Name | }}", "empty command"),
        ("{{ @ }}", "unexpected '@ '"),
        ('{{"\\q"}}', "unknown escape"),
        # review L1: these crashed with a traceback
        pytest.param("{{" + "(" * 5000 + ".Name" + ")" * 5000 + "}}", "nested '('", id="5000-parens"),
        ("{{join .Config.Env 5}}", "error calling join"),
        ("{{join .Config.Labels 5}}", "join wants a list"),
    ],
)
def test_bad_templates_are_usage_errors(template: str, words: str) -> None:
    with pytest.raises(TemplateError) as e:
        parse(template).execute(DATA)
    assert words in e.value.message
    assert e.value.exit_code == 2


def test_table_format_has_docker_headers_and_aligned_columns() -> None:
    fmt = parse_format("table {{.ID}}\\t{{.Names}}\\t{{.Status}}")
    assert fmt.table
    rows = [
        {"ID": "0123456789ab", "Names": "a", "Status": "Up"},
        {"ID": "ffff", "Names": "longer-name", "Status": "x"},
    ]
    headers = {"ID": "CONTAINER ID", "Names": "NAMES", "Status": "STATUS"}
    assert render(fmt, rows, headers, "") == (
        "CONTAINER ID   NAMES         STATUS\n"
        "0123456789ab   a             Up\n"
        "ffff           longer-name   x\n"
    )


def test_plain_format_is_one_line_per_row_and_a_bare_table_is_the_default() -> None:
    rows = [{"ID": "1", "Names": "a"}, {"ID": "2", "Names": "b"}]
    headers = {"ID": "CONTAINER ID", "Names": "NAMES"}
    assert render(parse_format("{{.ID}}\\t{{.Names}}"), rows, headers, "") == "1\ta\n2\tb\n"
    assert render(parse_format("table"), rows, headers, "table {{.Names}}") == "NAMES\na\nb\n"


def test_a_misspelt_field_fails_even_without_rows() -> None:
    with pytest.raises(TemplateError, match="can't evaluate field Nmes"):
        render(parse_format("{{.Nmes}}"), [], {"Names": "NAMES"}, "")


def test_align_pads_to_ten_at_least_and_not_the_last_cell() -> None:
    assert align(["a\tb\tc", "long-cell-x\td\te"]) == "a             b         c\nlong-cell-x   d         e\n"
