"""A small subset of Go's text/template, enough for docker's ``--format`` and ``inspect -f``.

Grammar (what is not listed is refused with a TemplateError, never guessed at)::

    template  := ( TEXT | "{{" ["- "] action [" -"] "}}" )*
    action    := "/*" ... "*/"                      a comment: prints nothing
               | pipeline
    pipeline  := command ( "|" command )*           a command's value is the next one's last argument
    command   := operand operand*                   FUNC ARG...; or .Method ARG...; or one operand
    operand   := "." | "$" | field | "$" field | STRING | RAWSTRING | NUMBER
               | "true" | "false" | "nil" | FUNC | "(" pipeline ")"
    field     := ( "." IDENT )+                     a key of the value (a dict), a chain of them

Functions: ``json`` (Go's encoding: compact, ``<>&`` escaped), ``index V KEY...``, ``join LIST
SEP``, ``split S SEP``, ``upper``, ``lower``, ``title``, ``len``, ``truncate S N``. A field whose
value is callable is a method (``{{.Label "k"}}``). No ``if``/``range``/variables.

Values print as Go's ``%v`` does: None as ``<nil>``, lists as ``[a b]``, dicts as ``map[k:v]``
(sorted keys), booleans as ``true``/``false``; ``index`` of a missing key is ``<no value>``. A
missing field is an error (docker's ``missingkey=error``). Nothing is ever evaluated as Python.
"""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidArgument


class TemplateError(InvalidArgument):
    """A template that does not parse, or that asks for what the value does not have (exit 2)."""

    code = "invalid-template"


class _NoValue:
    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE = _NoValue()
"""What ``index`` gives for a key the map does not have (Go prints it as ``<no value>``)."""

_KEYWORDS = ("if", "else", "end", "range", "with", "define", "template", "block", "break", "continue")
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<pipe>\|)
      | (?P<lparen>\()
      | (?P<rparen>\))
      | (?P<string>"(?:[^"\\\n]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<number>-?[0-9]+(?:\.[0-9]+)?)
      | (?P<field>\$?(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
      | (?P<dot>\.)
      | (?P<root>\$)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_STRING_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}


# -- the parsed form ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    path: tuple[str, ...]  # ("State", "Status") for .State.Status
    from_root: bool = False  # $.State.Status


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Func:
    name: str


@dataclass(frozen=True)
class Pipeline:
    commands: tuple[tuple[Any, ...], ...]  # each command: its operands
    source: str = ""


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and pipelines, in order."""

    parts: tuple[str | Pipeline, ...]
    source: str = ""
    fields: tuple[tuple[str, ...], ...] = field(default=())  # every field path used (for headers)

    def execute(self, data: Any) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(to_text(_run(part, data, data)))
        return "".join(out)


# -- parsing -----------------------------------------------------------------------------------
def parse(source: str) -> Template:
    """Parse ``source``; raises TemplateError naming what is wrong and where."""
    parts: list[str | Pipeline] = []
    fields: list[tuple[str, ...]] = []
    pos = 0
    while True:
        start = source.find("{{", pos)
        if start < 0:
            parts.append(source[pos:])
            break
        text = source[pos:start]
        end = source.find("}}", start + 2)
        if end < 0:
            raise TemplateError(f"template {source!r}: unclosed action (no '}}}}' after column {start + 1})")
        body = source[start + 2 : end]
        pos = end + 2
        if body.startswith("- ") or body == "-" or body.startswith("-\t") or body.startswith("-\n"):
            body = body[1:]
            text = text.rstrip()
        trim_right = body.endswith(" -") or body.endswith("\t-") or body.endswith("\n-")
        if trim_right:
            body = body[:-1]
        parts.append(text)
        stripped = body.strip()
        if stripped.startswith("/*") and stripped.endswith("*/"):
            pass  # a comment
        else:
            pipeline = _parse_pipeline(_tokens(body, source), source, body)
            parts.append(pipeline)
            fields.extend(_fields_of(pipeline))
        if trim_right:
            rest = source[pos:]
            pos += len(rest) - len(rest.lstrip())
    return Template(tuple(p for p in parts if p != ""), source, tuple(fields))


def _tokens(body: str, source: str) -> list[tuple[str, str]]:
    out = []
    i = 0
    while i < len(body):
        m = _TOKEN.match(body, i)
        if m is None:
            raise TemplateError(f"template {source!r}: unexpected {body[i:]!r} in action {{{{{body}}}}}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
        i = m.end()
    return out


def _parse_pipeline(tokens: list[tuple[str, str]], source: str, body: str) -> Pipeline:
    pipeline, rest = _pipeline(tokens, source, body)
    if rest:
        raise TemplateError(f"template {source!r}: unexpected {rest[0][1]!r} in {{{{{body}}}}}")
    return pipeline


MAX_DEPTH = 100  # nested '(' in one action: parsing and running them recurse


def _pipeline(
    tokens: list[tuple[str, str]], source: str, body: str, depth: int = 0
) -> tuple[Pipeline, list[tuple[str, str]]]:
    if depth > MAX_DEPTH:
        raise TemplateError(f"template {source!r}: more than {MAX_DEPTH} nested '(' in an action")
    commands: list[tuple[Any, ...]] = []
    current: list[Any] = []
    while tokens:
        kind, text = tokens[0]
        if kind == "rparen":
            break
        tokens = tokens[1:]
        if kind == "pipe":
            if not current:
                raise TemplateError(f"template {source!r}: missing command before '|' in {{{{{body}}}}}")
            commands.append(tuple(current))
            current = []
        elif kind == "lparen":
            inner, tokens = _pipeline(tokens, source, body, depth + 1)
            if not tokens or tokens[0][0] != "rparen":
                raise TemplateError(f"template {source!r}: unclosed '(' in {{{{{body}}}}}")
            tokens = tokens[1:]
            current.append(inner)
        else:
            current.append(_operand(kind, text, source, body))
    if not current:
        raise TemplateError(f"template {source!r}: empty command in {{{{{body}}}}}")
    commands.append(tuple(current))
    return Pipeline(tuple(commands), body.strip()), tokens


def _operand(kind: str, text: str, source: str, body: str) -> Any:
    if kind == "dot":
        return Field(())
    if kind == "root":
        return Field((), from_root=True)
    if kind == "field":
        root = text.startswith("$")
        return Field(tuple(text.removeprefix("$").split(".")[1:]), from_root=root)
    if kind == "string":
        return Literal(_unquote(text[1:-1], source))
    if kind == "raw":
        return Literal(text[1:-1])
    if kind == "number":
        return Literal(float(text) if "." in text else int(text))
    if kind == "ident":
        if text in ("true", "false"):
            return Literal(text == "true")
        if text == "nil":
            return Literal(None)
        if text in _KEYWORDS:
            raise TemplateError(
                f"template {source!r}: {{{{{text}}}}} is not supported",
                hint="nspawnctl's templates have fields, json, index and simple functions; no if/range",
            )
        if text not in FUNCTIONS:
            raise TemplateError(
                f'template {source!r}: function "{text}" not defined',
                hint=f"functions: {', '.join(sorted(FUNCTIONS))}",
            )
        return Func(text)
    raise TemplateError(f"template {source!r}: unexpected {text!r} in {{{{{body}}}}}")


def _unquote(text: str, source: str) -> str:
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt not in _STRING_ESCAPES:
                raise TemplateError(f"template {source!r}: unknown escape \\{nxt} in a string")
            out.append(_STRING_ESCAPES[nxt])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _fields_of(pipeline: Pipeline) -> list[tuple[str, ...]]:
    out = []
    for command in pipeline.commands:
        for operand in command:
            if isinstance(operand, Field) and operand.path:
                out.append(operand.path)
            elif isinstance(operand, Pipeline):
                out += _fields_of(operand)
    return out


# -- execution ---------------------------------------------------------------------------------
def _run(pipeline: Pipeline, dot: Any, root: Any) -> Any:
    value: Any = NO_VALUE
    for n, command in enumerate(pipeline.commands):
        piped = () if n == 0 else (value,)
        value = _command(command, piped, dot, root, pipeline)
    return value


def _command(command: tuple[Any, ...], piped: tuple[Any, ...], dot: Any, root: Any, where: Pipeline) -> Any:
    head, rest = command[0], command[1:]

    def args() -> list[Any]:
        return [_value(a, dot, root, where) for a in rest] + list(piped)

    if isinstance(head, Func):
        try:
            return FUNCTIONS[head.name](*args())
        except TemplateError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            raise TemplateError(f"error calling {head.name} at <{where.source}>: {e}") from None
    value = _value(head, dot, root, where)
    if callable(value):
        try:
            return value(*args())
        except (TypeError, ValueError, AttributeError) as e:
            raise TemplateError(f"wrong arguments at <{where.source}>: {e}") from None
    if rest or piped:
        raise TemplateError(f"at <{where.source}>: can't give argument to non-function {_describe(head)}")
    return value


def _value(operand: Any, dot: Any, root: Any, where: Pipeline) -> Any:
    if isinstance(operand, Literal):
        return operand.value
    if isinstance(operand, Pipeline):
        return _run(operand, dot, root)
    if isinstance(operand, Func):
        return FUNCTIONS[operand.name]()
    assert isinstance(operand, Field)
    value = root if operand.from_root else dot
    for i, name in enumerate(operand.path):
        if isinstance(value, Mapping) and name in value:
            value = value[name]
            continue
        shown = "." + ".".join(operand.path[: i + 1])
        if value is None:
            raise TemplateError(f"executing at <{where.source}>: nil pointer evaluating {shown}")
        raise TemplateError(
            f"executing at <{where.source}>: can't evaluate field {name}"
            + (f" (there are: {', '.join(_field_names(value))})" if isinstance(value, Mapping) else ""),
        )
    return value


def _field_names(value: Mapping[str, Any]) -> list[str]:
    return [str(k) for k in value if not callable(value[k])]


def _describe(operand: Any) -> str:
    if isinstance(operand, Field):
        return "." + ".".join(operand.path)
    return repr(operand)


# -- values as Go prints them ------------------------------------------------------------------
def to_text(value: Any) -> str:
    """Go's ``%v``: what ``{{.Field}}`` prints."""
    if value is None:
        return "<nil>"
    if value is NO_VALUE:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, Mapping):
        items = sorted((str(k), v) for k, v in value.items() if not callable(v))
        return "map[" + " ".join(f"{k}:{to_text(v)}" for k, v in items) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(to_text(v) for v in value) + "]"
    return str(value)


def to_json(value: Any) -> str:
    """Go's ``json.Marshal``: compact, with ``<``, ``>`` and ``&`` escaped as it does."""
    text = jsonlib.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _plain(value: Any) -> Any:
    if value is NO_VALUE:
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if not callable(v)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, Mapping):
            value = value.get(key, NO_VALUE)
        elif isinstance(value, (list, tuple, str)) and isinstance(key, int) and not isinstance(key, bool):
            if not 0 <= key < len(value):
                raise TemplateError(f"index out of range: {key}")
            value = value[key]
        elif value is None or value is NO_VALUE:
            raise TemplateError("index of untyped nil")
        else:
            raise TemplateError(f"can't index item of type {type(value).__name__}")
    return value


def _join(items: Any, sep: str) -> str:
    if not isinstance(items, (list, tuple)):
        raise TemplateError("join wants a list")
    return sep.join(to_text(i) for i in items)


def _truncate(text: Any, n: int) -> str:
    s = to_text(text)
    return s[:n] if len(s) > n else s


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": lambda v: to_json(v),
    "index": _index,
    "join": _join,
    "split": lambda s, sep: to_text(s).split(sep),
    "upper": lambda s: to_text(s).upper(),
    "lower": lambda s: to_text(s).lower(),
    "title": lambda s: re.sub(r"\b[a-z]", lambda m: m.group().upper(), to_text(s)),
    "len": lambda v: len(v),
    "truncate": _truncate,
}


# -- docker's --format conventions -------------------------------------------------------------
def expand_escapes(text: str) -> str:
    """docker turns the two characters ``\\t`` (and ``\\n``) of a --format into a tab (newline)."""
    return text.replace("\\t", "\t").replace("\\n", "\n")


@dataclass(frozen=True)
class Format:
    """A parsed ``--format``: ``table`` or not, and its template (None for a bare ``table``)."""

    template: Template | None
    table: bool


def parse_format(text: str) -> Format:
    """docker's --format: ``table [TEMPLATE]`` (a header line, columns aligned) or a TEMPLATE."""
    text = expand_escapes(text)
    if text == "table" or text.startswith("table ") or text.startswith("table\t"):
        body = text[len("table") :].lstrip(" ")
        return Format(parse(body) if body else None, True)
    return Format(parse(text), False)


def render(fmt: Format, rows: list[Any], headers: Mapping[str, Any], default: str) -> str:
    """The lines ``--format`` prints for ``rows`` (dicts of the fields docker names). A table
    has a header line (each field replaced by its docker header) and aligned columns, as
    docker's tabwriter (minimum width 10, padding 3). Each field is checked on the header
    first (``headers``: each field's header text, a method's a callable giving it), so a
    misspelt field fails even when there are no rows."""
    template = fmt.template or parse_format(default).template or parse("")
    header = template.execute(headers)
    lines = [template.execute(r) for r in rows]
    if not fmt.table:
        return "".join(line + "\n" for line in lines)
    return align([header, *lines])


def align(lines: list[str], minwidth: int = 10, padding: int = 3) -> str:
    """Go's tabwriter (flags 0): tab-separated cells padded to their column's widest cell plus
    ``padding`` (at least ``minwidth``); a line's last cell is not padded."""
    cells = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for row in cells:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell) + padding, minwidth)
    out = []
    for row in cells:
        text = "".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + row[-1]
        out.append(text.rstrip() + "\n")
    return "".join(out)
