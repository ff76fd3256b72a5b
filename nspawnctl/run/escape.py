"""Escaping for the two places nspawnctl hands text to systemd; each applies to its own place only.

- :func:`exec_arg`: one argument of an Exec*= command line set over D-Bus (transient units):
  systemd does not expand specifiers there, but expands ``$VAR`` when it runs the command.
- :func:`unit_word` / :func:`unit_value`: one word written into a unit file (the drop-in), where
  systemd expands specifiers (``%n``) in nearly every setting, and ``$VAR`` on Exec lines only.
"""

from __future__ import annotations

import re

from ..errors import InvalidArgument

_NEEDS_QUOTES = re.compile(r"[\s\"'\\]")


def exec_arg(arg: str) -> str:
    """An argument of a D-Bus ExecStart=/ExecStartPre=/ExecStopPost=: ``$`` doubled (``$$`` is a
    literal dollar); nothing else is interpreted."""
    return arg.replace("$", "$$")


def unit_word(text: str) -> str:
    """One word of an Exec*= line in a unit file: ``%`` and ``$`` doubled, C-quoted when it holds
    blanks, quotes or backslashes; a lone ``;`` (a command separator there) as ``\\;``."""
    if text == ";":
        return "\\;"
    return _quote(text.replace("%", "%%").replace("$", "$$"), c_escapes=True)


def unit_value(text: str, *, c_escapes: bool = True) -> str:
    """One word of any other setting (Environment=, RequiresMountsFor=, ...): ``%`` doubled, quoted
    when needed; ``$`` has no meaning there and stays. ``c_escapes``: the setting unescapes C
    sequences (Environment= does, RequiresMountsFor= does not: a newline cannot be written)."""
    return _quote(text.replace("%", "%%"), c_escapes=c_escapes)


def _quote(text: str, *, c_escapes: bool) -> str:
    if "\n" in text and not c_escapes:
        raise InvalidArgument(f"{text!r} contains a newline, which a unit file cannot hold here")
    if not text or _NEEDS_QUOTES.search(text):
        text = text.replace("\\", "\\\\").replace('"', '\\"')
        return '"' + (text.replace("\n", "\\n") if c_escapes else text) + '"'
    return text
