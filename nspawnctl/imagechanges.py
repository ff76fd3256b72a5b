"""Dockerfile instructions applied to an image's run defaults: what ``docker commit --change`` and
``docker import --change`` take (CMD, ENTRYPOINT, ENV, LABEL, WORKDIR, USER, EXPOSE, VOLUME,
STOPSIGNAL). Parsed before anything is made, so a bad one refuses the whole request."""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from .errors import InvalidArgument
from .spec import RunDefaults

SUPPORTED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")
_HINT = f"supported: {', '.join(SUPPORTED)}"


@dataclass(frozen=True)
class Changes:
    """Parsed instructions, applied in the order given."""

    steps: tuple[Callable[[RunDefaults], RunDefaults], ...] = ()

    def apply(self, defaults: RunDefaults) -> RunDefaults:
        for step in self.steps:
            defaults = step(defaults)
        return defaults


def _exec_form(text: str, what: str) -> list[str]:
    """``["a", "b"]`` (JSON array of strings) or the shell form, run by ``/bin/sh -c`` as docker's."""
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    if not text:
        raise InvalidArgument(f"{what}: a command is required")
    return ["/bin/sh", "-c", text]


def _pairs(text: str, what: str) -> list[tuple[str, str]]:
    """``K=V K2="v 2"`` or the legacy ``K V`` form."""
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise InvalidArgument(f"{what}: {e}") from None
    if words and "=" not in words[0]:
        key, _, value = text.partition(" ")
        return [(key, value.strip())] if value.strip() else _bad_pair(what, text)
    out = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            _bad_pair(what, word)
        out.append((key, value))
    if not out:
        _bad_pair(what, text)
    return out


def _bad_pair(what: str, text: str) -> list[tuple[str, str]]:
    raise InvalidArgument(f"{what}: {text!r} is not KEY=VALUE")


def _port(word: str) -> str:
    number, _, proto = word.partition("/")
    proto = proto or "tcp"
    if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"EXPOSE: {word!r} is not PORT[/tcp|udp|sctp]")
    return f"{int(number)}/{proto}"


def _step(instruction: str, text: str) -> Callable[[RunDefaults], RunDefaults]:
    replace = dataclasses.replace
    if instruction == "CMD":
        command = _exec_form(text, instruction)
        return lambda d: replace(d, command=command)
    if instruction == "ENTRYPOINT":
        entrypoint = _exec_form(text, instruction)
        return lambda d: replace(d, entrypoint=entrypoint)
    if instruction == "ENV":
        pairs = _pairs(text, instruction)

        def env(d: RunDefaults) -> RunDefaults:
            values = dict(e.partition("=")[::2] for e in d.env)
            values.update(pairs)
            return replace(d, env=[f"{k}={v}" for k, v in values.items()])

        return env
    if instruction == "LABEL":
        labels = dict(_pairs(text, instruction))
        return lambda d: replace(d, labels={**d.labels, **labels})
    if instruction == "WORKDIR":
        if not text.startswith("/"):
            raise InvalidArgument(f"WORKDIR: {text!r} is not an absolute path")
        return lambda d: replace(d, workdir=text)
    if instruction == "USER":
        if not text or any(c.isspace() for c in text) or text.count(":") > 1:
            raise InvalidArgument(f"USER: {text!r} is not USER[:GROUP]")
        user = text.partition(":")[0]  # nspawn's User= takes a user only (as pulled images)
        return lambda d: replace(d, user=None if user in ("root", "0") else user)
    if instruction == "EXPOSE":
        ports = [_port(w) for w in text.split()]
        return lambda d: replace(d, ports=[*d.ports, *(p for p in ports if p not in d.ports)])
    if instruction == "VOLUME":
        paths = _exec_form(text, instruction) if text.startswith("[") else text.split()
        if paths[:2] == ["/bin/sh", "-c"] or not all(p.startswith("/") for p in paths):
            raise InvalidArgument(f"VOLUME: {text!r} is not a list of absolute paths")
        return lambda d: replace(d, volumes=[*d.volumes, *(p for p in paths if p not in d.volumes)])
    if instruction == "STOPSIGNAL":
        from .runopts import parse_stop_signal

        signal = parse_stop_signal(text)
        return lambda d: replace(d, stop_signal=signal)
    raise InvalidArgument(f"{instruction}: not supported as a change", hint=_HINT)


def parse(lines: list[str]) -> Changes:
    """Each ``INSTRUCTION ARGS`` line (instruction case-insensitive); an unsupported or malformed
    one raises InvalidArgument naming it."""
    steps = []
    for line in lines:
        instruction, _, text = line.strip().partition(" ")
        if not instruction:
            continue
        steps.append(_step(instruction.upper(), text.strip()))
    return Changes(tuple(steps))
