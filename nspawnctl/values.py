"""Numbers the user sets on a container, each checked once, by its type's constructor.

``--memory``/``MemoryMax=``, ``--cpus``/``CPUs=`` and ``--pids-limit``/``TasksMax=`` reach
systemd as unsigned 64-bit numbers whose top value means "no limit", and the kernel refuses (or
silently ignores) what it cannot hold: a value that is NaN, infinite, negative, zero or too big
must never get that far. Every entry point (the CLI's flags, a definition ``apply`` reads, a
stored definition read back) builds these types, so no unchecked number reaches a unit. The same
goes for what a payload's ``execve()`` takes: variables and arguments within the kernel's limits.
"""

from __future__ import annotations

import re
import signal as signals
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import InvalidArgument

UINT64_MAX = (1 << 64) - 1  # systemd's "infinity" for MemoryMax=, TasksMax=, CPUQuotaPerSecUSec=


class BadValue(InvalidArgument):
    """A value of the wrong range or shape; ``reason`` says why without repeating the value, so
    a caller that names the value itself (``FILE:LINE: CPUs=inf: ...``) can use it alone."""

    def __init__(self, text: object, option: str | None, reason: str, hint: str | None = None) -> None:
        message = f"invalid value {_show(text)} for {option}: {reason}" if option else reason
        super().__init__(message, hint)
        self.reason = reason


def _show(text: object) -> str:
    s = str(text)
    return '"' + (s if len(s) <= 40 else s[:37] + "...") + '"'


def _integer(value: object, option: str | None, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadValue(value, option, f"not a whole number of {what}")
    return value


def stored_number(text: str, scale: int, low: int, high: int) -> int | None:
    """A limit as an older version wrote it into a definition (a whole number, or Python's ``%g``
    of a float such as ``0.005`` or ``1e-05``), in whole units of ``1/scale``, brought into
    [low, high]; None for docker's "no limit" (0 or less). Anything but a finite number raises.

    Those versions checked less: a container they made must still list, inspect and start,
    with the nearest limit that is allowed now, rather than become unreadable."""
    t = text.strip()
    if len(t) > 64 or not re.fullmatch(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?", t):
        raise BadValue(text, None, "not a number")
    from decimal import Decimal  # loaded by the commands that read numbers, not by every one

    n = Decimal(t) * scale
    if n <= 0:
        return None
    return min(max(int(n.to_integral_value()), low), high)


# -- memory ----------------------------------------------------------------------------------------
MIN_MEMORY = 6 << 20  # docker's minimum: less does not even start a shell
# The kernel's memory counter holds at most LONG_MAX bytes (more reads as "max"); docker's is an
# int64 too. systemd takes UINT64_MAX as "infinity".
MAX_MEMORY = (1 << 63) - 1
_SIZE = re.compile(r"(?i)^\s*([0-9]+(?:\.[0-9]+)?)\s*([bkmgt]?)(?:i?b)?\s*$")
_SIZE_HINT = "a number with an optional unit b, k, m, g, t (powers of 1024): 512M, 2G"


@dataclass(frozen=True, order=True)
class MemoryBytes:
    """A memory limit in bytes (``MemoryMax=``): 6 MiB to 2^63-1."""

    bytes: int

    def __post_init__(self) -> None:
        n = _integer(self.bytes, None, "bytes")
        if not MIN_MEMORY <= n <= MAX_MEMORY:
            raise BadValue(
                n,
                None,
                f"a memory limit must be from {MIN_MEMORY} bytes (6M) to {MAX_MEMORY} bytes",
                hint=_SIZE_HINT,
            )

    @classmethod
    def parse(cls, text: str, option: str | None = "--memory") -> MemoryBytes:
        """``64M``, ``1.5g``, ``512MiB``, ``100000000``: docker's and systemd's units, exactly
        (no float rounding, so 2^63 is never read as 2^63-1)."""
        n = parse_bytes(text, option)
        try:
            return cls(n)
        except BadValue as e:
            raise BadValue(text, option, e.reason, e.hint) from None

    def __str__(self) -> str:
        return str(self.bytes)


def parse_bytes(text: str, option: str | None = "--memory") -> int:
    """A size in bytes: greater than 0 and below systemd's "infinity" (UINT64_MAX)."""
    m = _SIZE.match(text) if len(text) <= 64 else None
    if not m:
        raise BadValue(text, option, "invalid size", hint=_SIZE_HINT)
    from decimal import Decimal

    n = int(Decimal(m.group(1)) * 1024 ** "bkmgt".index((m.group(2) or "b").lower()))
    if n <= 0:
        raise BadValue(text, option, "invalid size: it must be greater than 0", hint=_SIZE_HINT)
    if n >= UINT64_MAX:
        raise BadValue(text, option, f"a size must be below {UINT64_MAX} bytes (16 EiB)", hint=_SIZE_HINT)
    return n


# -- CPUs ------------------------------------------------------------------------------------------
USEC_PER_CPU = 1_000_000  # CPUQuotaPerSecUSec= of one CPU
MIN_CPUS_USEC = 10_000  # docker's minimum, 0.01 CPU: CPUQuota=1%
# More CPUs than any Linux host has (NR_CPUS is at most 8192), yet far inside what systemd's
# CPUQuota= percentages and the kernel's cpu.max quota can hold.
MAX_CPUS = 10_000
_CPUS = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*$")
_CPUS_HINT = f"a number of CPUs from 0.01 to {MAX_CPUS}, e.g. 0.5 or 2"


@dataclass(frozen=True, order=True)
class Cpus:
    """A CPU limit, kept exactly as microseconds of CPU time per second (CPUQuotaPerSecUSec=)."""

    usec: int

    def __post_init__(self) -> None:
        n = _integer(self.usec, None, "microseconds")
        if not MIN_CPUS_USEC <= n <= MAX_CPUS * USEC_PER_CPU:
            raise BadValue(n, None, f"must be from 0.01 to {MAX_CPUS} CPUs", hint=_CPUS_HINT)

    @classmethod
    def parse(cls, text: str, option: str | None = "--cpus") -> Cpus:
        """A plain decimal (``0.5``, ``2``); no ``nan``, ``inf`` or exponents, at most 6 decimals."""
        m = _CPUS.match(text) if len(text) <= 64 else None
        if not m:
            raise BadValue(text, option, "not a number of CPUs", hint=_CPUS_HINT)
        from decimal import Decimal, InvalidOperation

        try:
            usec = Decimal(m.group(1)) * USEC_PER_CPU
        except InvalidOperation:
            raise BadValue(text, option, "not a number of CPUs", hint=_CPUS_HINT) from None
        if usec != usec.to_integral_value():
            raise BadValue(text, option, "too precise: at most 6 decimals", hint=_CPUS_HINT)
        try:
            return cls(int(usec))
        except BadValue as e:
            raise BadValue(text, option, e.reason, e.hint) from None

    @property
    def nano(self) -> int:
        """docker's NanoCpus."""
        return self.usec * 1000

    def quota_percent(self) -> str:
        """``CPUQuota=`` of a unit file: a percentage with at most two decimals, never 0."""
        hundredths = max(1, (self.usec + 50) // 100)
        whole, frac = divmod(hundredths, 100)
        return f"{whole}.{frac:02d}".rstrip("0").rstrip(".") + "%"

    def __str__(self) -> str:
        whole, frac = divmod(self.usec, USEC_PER_CPU)
        return f"{whole}.{frac:06d}".rstrip("0").rstrip(".")


# -- processes -------------------------------------------------------------------------------------
# The kernel's PID_MAX_LIMIT: pids.max refuses more, and systemd then runs the unit with no limit.
MAX_PIDS = 1 << 22


@dataclass(frozen=True, order=True)
class PidsLimit:
    """A limit on the container's tasks (``TasksMax=``): 1 to 4194304."""

    count: int

    def __post_init__(self) -> None:
        n = _integer(self.count, None, "processes")
        if not 1 <= n <= MAX_PIDS:
            raise BadValue(
                n, None, f"must be from 1 to {MAX_PIDS} processes", hint="the kernel allows no more"
            )

    @classmethod
    def parse(cls, text: str, option: str | None = "--pids-limit") -> PidsLimit:
        t = text.strip()
        if not t.isascii() or not t.isdigit():
            raise BadValue(text, option, "not a whole number of processes", hint=f"1 to {MAX_PIDS}")
        if len(t) > 20:  # no int() of a million digits
            raise BadValue(text, option, f"must be from 1 to {MAX_PIDS} processes")
        try:
            return cls(int(t))
        except BadValue as e:
            raise BadValue(text, option, e.reason, e.hint) from None

    def __str__(self) -> str:
        return str(self.count)


# -- times and signals ---------------------------------------------------------------------------
MAX_TIMEOUT = 365 * 24 * 3600  # a year: beyond it a "timeout" is a typo, and systemd's µs must hold it


def parse_timeout(text: str, option: str = "--time") -> float:
    """Seconds to wait (``stop -t``): a finite number from 0 to a year."""
    t = text.strip()
    if not re.fullmatch(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+", t):
        raise BadValue(text, option, "not a number of seconds", hint="e.g. 10 or 0.5")
    value = float(t)
    if value > MAX_TIMEOUT:
        raise BadValue(text, option, f"must be at most {MAX_TIMEOUT} seconds (a year)")
    return value


def parse_signal_number(text: str, option: str = "--signal") -> int:
    """A signal by name (TERM, SIGHUP, RTMIN+3) or number (1 to SIGRTMAX)."""
    t = text.strip().upper()
    hint = "use a name like TERM, SIGHUP or a number"
    if t.isascii() and t.isdigit():
        n = int(t) if len(t) < 4 else 0
        if not 1 <= n <= int(signals.SIGRTMAX):
            raise BadValue(text, option, f"signals are 1 to {int(signals.SIGRTMAX)}", hint=hint)
        return n
    name = t if t.startswith("SIG") else f"SIG{t}"
    m = re.fullmatch(r"SIGRTM(IN|AX)([+-][0-9]{1,2})?", name)
    if m:
        base = int(signals.SIGRTMIN if m.group(1) == "IN" else signals.SIGRTMAX)
        n = base + int(m.group(2) or 0)
        if not int(signals.SIGRTMIN) <= n <= int(signals.SIGRTMAX):
            raise BadValue(text, option, "outside SIGRTMIN..SIGRTMAX", hint=hint)
        return n
    try:
        return int(signals.Signals[name])
    except KeyError:
        raise BadValue(text, option, "not a signal", hint=hint) from None


# -- what execve() takes -----------------------------------------------------------------------
MAX_ARG_STRLEN = 32 * 4096  # the kernel's limit on one argument or variable, its NUL included
# execve() takes a quarter of the stack limit (2 MiB at the usual 8 MiB) for all arguments and
# variables; nspawn adds its own few. Half of it is the payload's.
MAX_EXEC_TOTAL = 1 << 20
# systemd reads a .nspawn file's lines up to 1 MiB (LONG_LINE_MAX); a longer one fails the start.
MAX_LINE = (1 << 20) - 1
_BREAKS = ("\n", "\r", "\0")


def check_env(env: Iterable[str], source: str = "-e", in_file: bool = True, bare: bool = False) -> list[str]:
    """``KEY=VALUE`` assignments a payload can get: a name, each within what ``execve()`` passes,
    no NUL, and (``in_file``: for a .nspawn file, not for ``exec``) no line break. ``bare``: a
    ``KEY`` alone is taken too (dockerd's create: the variable is unset). Returns them."""
    out = list(env)
    for e in out:
        key, sep, _ = e.partition("=")
        if not key or not (sep or bare):
            raise InvalidArgument(f"invalid environment variable {_show(e)} ({source})", hint="use KEY=VALUE")
        bad = next((c for c in (_BREAKS if in_file else ("\0",)) if c in e), None)
        if bad is not None:
            raise InvalidArgument(
                f"environment variable {_name(key)} ({source}) contains {_char(bad)}, which "
                + ("a .nspawn file cannot hold" if in_file else "no variable can hold"),
                hint="remove the line breaks and NUL characters from its value",
            )
        size = len(e.encode(errors="surrogateescape"))
        if size >= MAX_ARG_STRLEN:
            raise InvalidArgument(
                f"environment variable {_name(key)} ({source}) is {size} bytes; a program gets at "
                f"most {MAX_ARG_STRLEN - 1} bytes per variable (the kernel's MAX_ARG_STRLEN)",
                hint="pass big data in a file (-v) instead of a variable",
            )
    return out


def merge_env(image: list[str], own: list[str]) -> list[str]:
    """A container's environment: the image's variables, then its own (``-e``, the API's Env,
    the definition's); a variable set twice keeps its first place and its last value, as docker
    merges them (so a generated file, which lists the image's too, gives back the same list). A
    bare ``KEY`` (dockerd's unset, ``UnsetEnvironment=``) drops the image's KEY and stays last,
    so the definition keeps it."""
    merged: dict[str, str] = {}
    unset: dict[str, None] = {}
    for e in [*image, *own]:
        key, sep, value = e.partition("=")
        if sep:
            merged[key] = value
            unset.pop(key, None)
        else:
            merged.pop(key, None)
            unset[key] = None
    return [*(f"{k}={v}" for k, v in merged.items()), *unset]


def check_exec(argv: Iterable[str], env: Iterable[str], source: str = "the command") -> None:
    """The command line and the environment together within what ``execve()`` takes."""
    argv = list(argv)
    for word in argv:
        bad = next((c for c in _BREAKS if c in word), None)
        if bad is not None:
            raise InvalidArgument(
                f"an argument of {source} contains {_char(bad)}, which a .nspawn file cannot hold: "
                f"{_show(word)}",
                hint="pass such data in a file or through a shell's printf",
            )
        size = len(word.encode(errors="surrogateescape"))
        if size >= MAX_ARG_STRLEN:
            raise InvalidArgument(
                f"an argument of {source} is {size} bytes; a program gets at most "
                f"{MAX_ARG_STRLEN - 1} bytes per argument (the kernel's MAX_ARG_STRLEN)",
                hint="pass big data in a file (-v) instead",
            )
    total = sum(len(s.encode(errors="surrogateescape")) + 1 for s in [*argv, *env])
    if total > MAX_EXEC_TOTAL:
        raise InvalidArgument(
            f"the command line and environment add up to {total} bytes; nspawnctl passes at most "
            f"{MAX_EXEC_TOTAL} (execve() takes about 2 MiB, nspawn needs some of it)",
            hint="pass big data in a file (-v) instead of variables or arguments",
        )


def _name(key: str) -> str:
    return key if len(key) <= 60 and key.isprintable() else repr(key[:60])


def _char(c: str) -> str:
    return {"\n": "a line feed (LF)", "\r": "a carriage return (CR)", "\0": "a NUL character"}[c]
