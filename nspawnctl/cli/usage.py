"""Usage errors worded as docker words them, on every typer release nspawnctl supports.

typer up to 0.25 raises click's exceptions; from 0.26 on it raises those of its private copy of
click. Neither class is typer's public API, so the handler recognises a usage error by what it
has (``exit_code`` 2 and ``format_message()``), and the checks nspawnctl adds itself (unknown
commands, unknown flags before a payload command's IMAGE) raise ``CommandLineError``.
Imports nothing from the library: ``--help`` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import typer
import typer.core

from ..errors import InvalidArgument


class CommandLineError(InvalidArgument):
    """The command line itself is wrong (exit 2), as opposed to a value the library refused."""

    code = "usage"


@dataclass(frozen=True)
class Usage:
    """A usage error as the one handler prints it."""

    message: str
    hint: str


def help_hint(command_path: str) -> str:
    return f"see '{command_path} --help'"


def _sentence(text: str) -> str:
    """click's "Missing argument 'IMAGE'." as one of our lines: lower-case start, no full stop."""
    text = " ".join(text.strip().split())
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        text = text[0].lower() + text[1:]
    return text.rstrip(".")


def usage_of(exc: BaseException, command_path: str = "nspawnctl") -> Usage | None:
    """The usage error in one of click's (or typer's copy of click's) exceptions, else None.

    ``command_path`` names the command for the hint when the exception carries no context.
    """
    fmt = getattr(exc, "format_message", None)
    if getattr(exc, "exit_code", None) != 2 or not callable(fmt):
        return None
    ctx = getattr(exc, "ctx", None)
    hint = help_hint(getattr(ctx, "command_path", None) or command_path)
    option = getattr(exc, "option_name", None)
    if option and hasattr(exc, "possibilities"):  # click's NoSuchOption
        close = sorted(getattr(exc, "possibilities", None) or [])
        if close:
            hint = f"did you mean {' or '.join(close)}? {hint}"
        return Usage(f"unknown flag: {option}", hint)
    return Usage(_sentence(str(fmt())), hint)


def _options_of(command: Any, ctx: Any) -> dict[str, bool]:
    """Every option name of ``command`` -> whether it takes a value (help names included)."""
    names: dict[str, bool] = {name: False for name in getattr(ctx, "help_option_names", None) or ()}
    for param in getattr(command, "params", ()):
        if getattr(param, "param_type_name", None) != "option":
            continue
        takes_value = not (getattr(param, "is_flag", False) or getattr(param, "count", False))
        for name in [*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())]:
            names[name] = takes_value
    return names


def check_leading_options(command: Any, ctx: Any, args: Sequence[str], command_path: str) -> None:
    """Refuse an unknown option before the first positional argument, in docker's words.

    run/create/exec pass everything after IMAGE (CONTAINER) on to the payload, options included,
    so click is told to ignore unknown options: without this check ``run --bogus IMG`` would
    take ``--bogus`` for the image.
    """
    known = _options_of(command, ctx)
    hint = help_hint(command_path)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or arg == "-" or not arg.startswith("-"):
            return  # the first positional argument: from here on it is the payload's
        if arg.startswith("--"):
            name, eq, _ = arg.partition("=")
            if name not in known:
                raise CommandLineError(f"unknown flag: {name}", hint=_suggest_flag(name, known, hint))
            i += 2 if known[name] and not eq else 1
            continue
        # a cluster of short flags: -it, -e KEY=V, -eKEY=V
        for pos, char in enumerate(arg[1:], start=1):
            name = f"-{char}"
            if name not in known:
                raise CommandLineError(f"unknown shorthand flag: {char!r} in {arg}", hint=hint)
            if known[name]:
                i += 1 if pos < len(arg) - 1 else 2  # the rest of the token, or the next one
                break
        else:
            i += 1


def _suggest_flag(name: str, known: dict[str, bool], hint: str) -> str:
    import difflib  # only for a mistyped flag: not on the way of every command

    close = difflib.get_close_matches(name, [k for k in known if k.startswith("--")], n=2, cutoff=0.75)
    return f"did you mean {' or '.join(close)}? {hint}" if close else hint


class NspawnctlGroup(typer.core.TyperGroup):
    """typer's group, with docker's answers to a mistyped command and to a bare group name.

    A custom group class is typer's documented way (``typer.Typer(cls=...)``) to change how
    commands are resolved; it keeps click's parsing and only adds checks in front of it.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # `nspawnctl` (or `nspawnctl image`) alone prints the help and succeeds, as docker does;
        # typer >= 0.26 would raise a usage error carrying the help text instead.
        if not args and getattr(self, "no_args_is_help", False) and not ctx.resilient_parsing:
            typer.echo(ctx.get_help())
            raise typer.Exit(0)
        rest: list[str] = super().parse_args(ctx, args)
        return rest

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if ctx.resilient_parsing:  # completion and the like: click's own rules
            return super().resolve_command(ctx, args)
        if args and not args[0].startswith("-") and self.get_command(ctx, args[0]) is None:
            raise unknown_command(args[0], self.list_commands(ctx), ctx.command_path)
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            path = f"{ctx.command_path} {name}"
            if hasattr(ctx.obj, "command_path"):
                ctx.obj.command_path = path  # for the hint of an error that carries no context
            settings = getattr(command, "context_settings", None) or {}
            if settings.get("ignore_unknown_options"):
                check_leading_options(command, ctx, rest, path)
            if _json_option_value(command, rest) and hasattr(ctx.obj, "json"):
                ctx.obj.json = True  # so that a usage error of this command is JSON too
        return name, command, rest


def _json_option_value(command: Any, args: Sequence[str]) -> bool:
    """Whether ``command`` will run with --json on: its default, then the last --json/--no-json given.

    Known before parsing, so that an error while parsing this command's arguments is reported
    in the JSON envelope too (a payload command's own arguments never count: it has no --json).
    """
    for param in getattr(command, "params", ()):
        if "--json" in getattr(param, "opts", ()):
            value = bool(getattr(param, "default", False))
            for arg in args:
                if arg == "--":
                    break
                if arg == "--json":
                    value = True
                elif arg == "--no-json":
                    value = False
            return value
    return False


def unknown_command(name: str, commands: Sequence[str], command_path: str) -> CommandLineError:
    """docker's `unknown command "rnu"`, with the closest commands as the hint."""
    import difflib

    close = difflib.get_close_matches(name, list(commands), n=3, cutoff=0.6)
    hint = help_hint(command_path)
    if close:
        quoted = " or ".join(f'"{c}"' for c in close)
        hint = f"did you mean {quoted}? {hint}"
    where = f' for "{command_path}"' if " " in command_path else ""
    return CommandLineError(f'unknown command "{name}"{where}', hint=hint)
