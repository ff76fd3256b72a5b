"""A .nspawn settings file published beside an image, read as untrusted input.

systemd.nspawn(5) ignores privileged settings (capabilities, bind mounts, private users, the
network) in files outside /etc/systemd/nspawn and /run/systemd/nspawn. A file from a web server
deserves no more trust, so only the [Exec] keys that describe the payload become run defaults;
everything else is reported back so the caller can say it was ignored.
"""

from __future__ import annotations

import re

from ..errors import ArchiveError, InvalidArgument
from ..nspawnfile import NspawnFile, split_words
from ..spec import RunDefaults

__all__ = ["HONOURED", "settings_defaults"]

HONOURED = ("Boot", "Parameters", "Environment", "User", "WorkingDirectory")  # in section [Exec]
_TRUE = ("1", "yes", "y", "true", "t", "on")
_FALSE = ("0", "no", "n", "false", "f", "off")
_HINT = "the .nspawn file published with the image is malformed; tell its publisher"

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")


def settings_defaults(text: str, source: str) -> tuple[RunDefaults, list[str]]:
    """Run defaults from the honoured [Exec] keys of a .nspawn file, and every other key present
    as "Section.Key" (in file order, once each). `source` names the file in messages.

    Values are read as systemd does: the last Boot=, User=, WorkingDirectory= wins and an empty
    one resets it; Parameters= and Environment= accumulate words over lines (split like nspawn)
    and an empty one clears the list. Malformed input is an ArchiveError naming source and line.
    """
    control = _CONTROL.search(text)
    if control:
        # systemd also ends lines at NUL and CR, so such a file means something else to it than to us
        at = text.count("\n", 0, control.start()) + 1
        raise ArchiveError(
            f"invalid settings file {source}:{at}: control character {control.group()!r}",
            hint="a .nspawn file is plain text; ask its publisher to fix it",
        )
    try:
        f = NspawnFile.parse(text, source)
    except InvalidArgument as e:
        raise ArchiveError(f"invalid settings file {e.message}", hint=_HINT) from e

    ignored: list[str] = []
    for line in f.lines:
        if line.key is None or (line.section == "Exec" and line.key in HONOURED):
            continue
        key = f"{line.section}.{line.key}"
        if key not in ignored:
            ignored.append(key)

    def bad(key: str, value: str, why: str) -> ArchiveError:
        where = f"{source}:{lineno}" if (lineno := _line_of(text, key, value)) else source
        return ArchiveError(f"invalid settings file {where}: {key}={value}: {why}", hint=_HINT)

    def words(key: str) -> list[str]:
        out: list[str] = []
        for value in f.get_all("Exec", key):
            try:
                out.extend(split_words(value))
            except InvalidArgument as e:
                raise bad(key, value, e.message) from e
        return out

    boot = False
    if boot_value := f.get("Exec", "Boot"):
        if boot_value.lower() in _TRUE:
            boot = True
        elif boot_value.lower() not in _FALSE:
            raise bad("Boot", boot_value, "not a boolean (yes or no)")
    env = words("Environment")
    for assignment in env:
        name, eq, _ = assignment.partition("=")
        if not eq or not name or any(c.isspace() or not c.isprintable() for c in name):
            raise bad("Environment", assignment, "not a NAME=VALUE assignment")
    user = f.get("Exec", "User") or None
    if user is not None and (":" in user or any(c.isspace() for c in user)):
        raise bad("User", user, "not a user name or number")
    workdir = f.get("Exec", "WorkingDirectory") or None
    if workdir is not None and not workdir.startswith("/"):
        raise bad("WorkingDirectory", workdir, "not an absolute path")
    defaults = RunDefaults(command=words("Parameters"), env=env, workdir=workdir, user=user, boot=boot)
    return defaults, ignored


def _line_of(text: str, key: str, value: str) -> int | None:
    """The line of the [Exec] assignment of `key` that holds `value` (else the first one of `key`)."""
    section = None
    first = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
            continue
        name, eq, rest = stripped.partition("=")
        if section != "Exec" or not eq or name.strip() != key:
            continue
        rest = rest.strip().removesuffix("\\").strip()
        if value in rest or (rest and value.startswith(rest)):  # a continued line begins the value
            return lineno
        first = first or lineno
    return first
