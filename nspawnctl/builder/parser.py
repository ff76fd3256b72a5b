"""A Dockerfile as a list of instructions (docker's reference, "Dockerfile reference"): parser
directives (``escape``; ``syntax`` is ignored), comments, line continuations, the exec (JSON)
and shell forms, ``--flag=value`` options, and ``$VAR``/``${VAR}``/``${VAR:-x}``/``${VAR:+x}``
substitution. Pure: the build (steps.py) decides what each instruction does. Every error names
its line."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..errors import InvalidArgument

MAX_DOCKERFILE = 1 << 20
"""Bytes a Dockerfile may have (docker's own are a few KiB)."""
MAX_STEPS = 500
"""Instructions a Dockerfile may have: each is a step with an image of its own."""

SUPPORTED = (
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "RUN",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
)
KNOWN_UNSUPPORTED = ("ONBUILD", "SHELL")
# the instructions docker expands variables in (the reference's "Environment replacement")
EXPANDED = ("ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")
# the options each instruction takes (others are refused, naming them)
FLAGS = {
    "ADD": ("chown", "from"),
    "COPY": ("chown", "from"),
    "FROM": ("platform",),
    "HEALTHCHECK": ("interval", "timeout", "start-period", "start-interval", "retries"),
}

_DIRECTIVE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")


@dataclass(frozen=True)
class Instruction:
    line: int  # where it starts (1-based)
    keyword: str  # upper case
    args: str  # the text after the keyword and its flags, continuations joined
    flags: dict[str, str] = field(default_factory=dict)
    exec_form: list[str] | None = None  # the args as a JSON array of strings, when they are one

    def __str__(self) -> str:
        flags = "".join(f"--{k}={v} " for k, v in self.flags.items())
        return f"{self.keyword} {flags}{self.args}".rstrip()


@dataclass(frozen=True)
class Dockerfile:
    instructions: list[Instruction]
    escape: str = "\\"


def _error(line: int, message: str, hint: str | None = None) -> InvalidArgument:
    return InvalidArgument(f"Dockerfile line {line}: {message}", hint=hint)


def parse(text: str) -> Dockerfile:
    """The instructions of a Dockerfile's text; raises InvalidArgument naming the line of the
    first thing it cannot take."""
    if len(text.encode()) > MAX_DOCKERFILE:
        raise InvalidArgument(f"the Dockerfile is larger than {MAX_DOCKERFILE} bytes")
    lines = text.splitlines()
    escape = "\\"
    start = 0
    seen: set[str] = set()
    for i, raw in enumerate(lines):  # directives: only at the very top, each once
        m = _DIRECTIVE.fullmatch(raw.strip())
        if not m:
            break
        key, value = m.group(1).lower(), m.group(2)
        if key in seen:
            raise _error(i + 1, f"the parser directive {key} is given twice")
        seen.add(key)
        if key == "escape":
            if value not in ("\\", "`"):
                raise _error(i + 1, f"escape: {value!r} is not \\ or `")
            escape = value
        start = i + 1  # syntax= and others: docker's frontend selection, nothing to do here
    instructions: list[Instruction] = []
    i = start
    while i < len(lines):
        first = i + 1
        stripped = lines[i].strip()
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        parts = []
        current = lines[i - 1].rstrip()
        while current.endswith(escape):
            parts.append(current[: -len(escape)])
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1  # comments and empty lines inside a continuation are dropped
            if i >= len(lines):
                current = ""
                break
            current = lines[i].rstrip()
            i += 1
        parts.append(current)
        joined = "".join(parts).strip()
        if joined:
            instructions.append(_instruction(first, joined))
        if len(instructions) > MAX_STEPS:
            raise _error(first, f"more than {MAX_STEPS} instructions")
    if not instructions:
        raise InvalidArgument("the Dockerfile has no instructions", hint="it must start with FROM")
    if instructions[0].keyword not in ("FROM", "ARG"):
        raise _error(
            instructions[0].line, f"{instructions[0].keyword} before FROM", hint="start with FROM IMAGE"
        )
    return Dockerfile(instructions, escape)


def _instruction(line: int, text: str) -> Instruction:
    keyword, _, rest = text.partition(" ")
    if "\t" in keyword:
        keyword, _, more = keyword.partition("\t")
        rest = more + " " + rest
    keyword = keyword.upper()
    rest = rest.strip()
    if keyword in KNOWN_UNSUPPORTED:
        raise _error(line, f"{keyword} is not supported by nspawnctl build", hint=_supported_hint())
    if keyword not in SUPPORTED:
        raise _error(line, f"unknown instruction: {keyword}", hint=_supported_hint())
    flags: dict[str, str] = {}
    while rest.startswith("--"):
        word, _, after = rest.partition(" ")
        name, sep, value = word[2:].partition("=")
        allowed = FLAGS.get(keyword, ())
        if not sep or name not in allowed:
            what = f"--{name}" if sep else word
            raise _error(
                line,
                f"{keyword} {what} is not supported",
                hint=f"{keyword} takes {', '.join('--' + a for a in allowed)}" if allowed else None,
            )
        flags[name] = value
        rest = after.strip()
    exec_form: list[str] | None = None
    if rest.startswith("["):
        try:
            loaded: object = json.loads(rest)
        except ValueError:
            loaded = None
        if isinstance(loaded, list) and all(isinstance(v, str) for v in loaded):
            exec_form = loaded
    if not rest:
        raise _error(line, f"{keyword} needs arguments")
    return Instruction(line, keyword, rest, flags, exec_form)


def _supported_hint() -> str:
    return f"supported: {', '.join(SUPPORTED)}"


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expand(text: str, values: dict[str, str], escape: str = "\\", line: int = 0) -> str:
    """``text`` with ``$NAME``, ``${NAME}``, ``${NAME:-word}`` and ``${NAME:+word}`` replaced
    from ``values`` (unset: empty); ``escape`` before ``$`` keeps it literal. Quotes are left
    for the instruction's own word splitting."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == escape and i + 1 < n and text[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        if c != "$" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        if text[i + 1] == "{":
            end = text.find("}", i + 2)
            if end < 0:
                raise _error(line, f"missing '}}' in {text!r}")
            body = text[i + 2 : end]
            m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:[-+])(.*))?", body, re.S)
            if not m:
                raise _error(line, f"bad substitution ${{{body}}}")
            name, op, word = m.group(1), m.group(2), m.group(3) or ""
            value = values.get(name)
            if op == ":-":
                out.append(value if value else expand(word, values, escape, line))
            elif op == ":+":
                out.append(expand(word, values, escape, line) if value else "")
            else:
                out.append(value or "")
            i = end + 1
            continue
        m = _NAME.match(text, i + 1)
        if not m:
            out.append(c)
            i += 1
            continue
        out.append(values.get(m.group(0), ""))
        i = m.end()
    return "".join(out)
