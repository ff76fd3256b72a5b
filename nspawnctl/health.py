"""Health checks with docker's semantics, run by systemd.

A container with a check gets a transient timer ``nspawnctl-health-NAME.timer`` (and its
``.service``) when its unit starts: BindsTo= and After= the container's unit, so systemctl and
machinectl show it and it stops with the container. The service runs ``python3 -m
nspawnctl.health NAME``, which enters the container as ``exec`` does (nsenter into its PID 1's
namespaces; no shell on the host side), records the result in ``STATE/health/NAME.json`` (docker's
Status, FailingStreak and the last five results) and acts on ``--health-on-failure``.

The check itself lives in the container's .nspawn definition (``[X-Nspawnctl] HealthCmd=`` and
friends), written once at create from the flags and the image's HEALTHCHECK, so ``generate``
round-trips it and every start (nspawnctl, machinectl, boot) re-arms the timer from the hook.
Kept import-light: the hook loads it on every start of a container that has a check.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .errors import InvalidArgument
from .nspawnfile import OWN_SECTION, NspawnFile, quote_words, split_words

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .client import Containers
    from .config import Paths
    from .healthstate import HealthState, Result

NS_PER_S = 1_000_000_000
DEFAULT_INTERVAL = 30 * NS_PER_S  # docker's defaults
DEFAULT_TIMEOUT = 30 * NS_PER_S
DEFAULT_RETRIES = 3
MIN_INTERVAL = NS_PER_S  # a systemd timer per check: more often than once a second is a busy loop
MAX_DURATION = 7 * 24 * 3600 * NS_PER_S  # a week: beyond it a "check" is no longer one
MAX_RETRIES = 1000
MAX_LOG_ENTRIES = 5  # docker's maxLogEntries
MAX_OUTPUT = 4096  # docker's maxOutputLen, in bytes
ON_FAILURE = ("none", "kill", "restart", "stop")  # podman's --health-on-failure
AUTO_UPDATE_POLICIES = ("registry", "local")  # podman's io.containers.autoupdate values
AUTO_UPDATE_LABEL = "io.containers.autoupdate"

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": NS_PER_S, "m": 60 * NS_PER_S}
_UNITS["h"] = 3600 * NS_PER_S
_PART = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)"  # compiled when first used (re caches)


def parse_duration(text: str, option: str, low: int = 0, high: int = MAX_DURATION) -> int:
    """A Go duration as docker's --health-* flags take it (``30s``, ``1m30s``, ``500ms``, ``0``)
    -> nanoseconds, within [low, high]. Exact decimal arithmetic: no NaN, no infinity, no float."""
    import re
    from fractions import Fraction  # only when a duration is parsed: spec.py imports this module

    t = text.strip()
    total = Fraction(0)
    if t != "0":
        pos = 0
        while pos < len(t):
            m = re.compile(_PART).match(t, pos)
            if m is None:
                raise InvalidArgument(
                    f"invalid {option} {text!r}",
                    hint="a duration like 30s, 1m30s, 500ms or 1h (units ns, us, ms, s, m, h)",
                )
            total += Fraction(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if not t:
            raise InvalidArgument(f"invalid {option} ''", hint="a duration like 30s")
    ns = int(total)
    if ns < low or ns > high:
        raise InvalidArgument(
            f"{option} {text!r} is out of range",
            hint=f"use a duration from {format_duration(low)} to {format_duration(high)}",
        )
    return ns


def format_duration(ns: int) -> str:
    """Nanoseconds as Go prints a duration (``1m30s``, ``500ms``, ``0s``): what parse_duration reads."""
    if ns == 0:
        return "0s"
    if ns % NS_PER_S:
        for unit in ("ms", "us", "ns"):
            if ns % _UNITS[unit] == 0:
                return f"{ns // _UNITS[unit]}{unit}"
    s = ns // NS_PER_S
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s or not (h or m) else "")


def parse_retries(value: int | str, what: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"invalid {what} {value!r}", hint="a whole number of failures") from None
    if not 0 <= n <= MAX_RETRIES:
        raise InvalidArgument(
            f"{what} {n} is out of range", hint=f"use 0 (docker's default: 3) to {MAX_RETRIES}"
        )
    return n


def parse_on_failure(text: str) -> str:
    if text not in ON_FAILURE:
        raise InvalidArgument(
            f"invalid --health-on-failure {text!r}", hint=f"use one of: {', '.join(ON_FAILURE)}"
        )
    return text


def check_test(test: list[str], what: str) -> list[str]:
    """docker's Healthcheck.Test: ["NONE"], ["CMD", argv...], ["CMD-SHELL", command]."""
    if not test or not all(isinstance(w, str) for w in test):
        raise InvalidArgument(f"{what}: the health check test is empty or not a list of strings")
    if any("\0" in w for w in test):  # no argv can carry a NUL
        raise InvalidArgument(f"{what}: the health check test contains a NUL character")
    kind = test[0]
    if kind == "NONE" and len(test) == 1:
        return test
    if kind == "CMD" and len(test) > 1 and test[1]:
        return test
    if kind == "CMD-SHELL" and len(test) == 2 and test[1].strip():
        return test
    raise InvalidArgument(
        f"{what}: invalid health check test {test!r}",
        hint='use ["CMD-SHELL", "command"], ["CMD", "program", "arg", ...] or ["NONE"]',
    )


@dataclass(frozen=True)
class HealthConfig:
    """One container's check, every value checked and docker's defaults filled in."""

    test: list[str]  # ["CMD-SHELL", cmd] or ["CMD", argv...]; never ["NONE"] (then no config)
    interval: int = DEFAULT_INTERVAL  # nanoseconds, as docker's API
    timeout: int = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    start_period: int = 0
    on_failure: str = "none"
    start_interval: int = 0  # docker 25's: the rhythm during the start period (0: the interval)

    def argv(self) -> list[str]:
        """What runs in the container: CMD-SHELL through its /bin/sh -c, CMD as given."""
        if self.test[0] == "CMD-SHELL":
            return ["/bin/sh", "-c", self.test[1]]
        return list(self.test[1:])

    def to_docker(self) -> dict[str, Any]:
        """Config.Healthcheck in docker's inspect shape."""
        return {
            "Test": list(self.test),
            "Interval": self.interval,
            "Timeout": self.timeout,
            "Retries": self.retries,
            "StartPeriod": self.start_period,
            **({"StartInterval": self.start_interval} if self.start_interval else {}),
        }

    @property
    def start_phase(self) -> bool:
        """Checks run every ``start_interval`` during the start period (a timer of their own)."""
        return bool(self.start_interval and self.start_period)


@dataclass(frozen=True)
class HealthFlags:
    """The --health-* flags of run/create as given (None: not given); durations in ns."""

    cmd: str | None = None
    interval: int | None = None
    timeout: int | None = None
    retries: int | None = None
    start_period: int | None = None
    disabled: bool = False  # --no-healthcheck
    on_failure: str | None = None
    start_interval: int | None = None

    @property
    def any_check_flag(self) -> bool:
        values = (self.cmd, self.interval, self.timeout, self.retries, self.start_period, self.start_interval)
        return any(v is not None for v in values)


def image_healthcheck(doc: object) -> dict[str, Any] | None:
    """An OCI/docker config's ``Healthcheck`` checked and kept in docker's shape (durations in ns,
    0: the default), or None when absent. InvalidArgument names the field."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise InvalidArgument("config.Healthcheck is not an object")
    test = doc.get("Test")
    out: dict[str, Any] = {"Test": check_test(test if isinstance(test, list) else [], "config.Healthcheck")}
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        v = doc.get(key, 0)
        if not isinstance(v, int) or isinstance(v, bool) or not (0 <= v <= MAX_DURATION):
            raise InvalidArgument(f"config.Healthcheck.{key} {v!r} is not a duration in nanoseconds")
        if v or key != "StartInterval":  # docker 25's key: only where the image has it
            out[key] = v
    retries = doc.get("Retries", 0)
    if not isinstance(retries, int) or isinstance(retries, bool):
        raise InvalidArgument(f"config.Healthcheck.Retries {retries!r} is not a number")
    out["Retries"] = parse_retries(retries, "config.Healthcheck.Retries")
    return out


def resolve(image: dict[str, Any] | None, flags: HealthFlags) -> HealthConfig | None:
    """The container's check as docker merges it: each flag given replaces the image's value,
    --no-healthcheck (or an image's ["NONE"] without --health-cmd) means none."""
    if flags.disabled:
        if flags.any_check_flag:
            raise InvalidArgument(
                "--no-healthcheck conflicts with --health-* options", hint="drop one of them"
            )
        return None
    image = image or {}
    if flags.cmd is not None:
        if not flags.cmd.strip():
            raise InvalidArgument(
                "--health-cmd is empty", hint="say what to run, e.g. --health-cmd 'test -f /ok'"
            )
        test = ["CMD-SHELL", flags.cmd]
    else:
        test = list(image.get("Test") or [])
    if not test or test == ["NONE"]:
        if flags.any_check_flag:
            raise InvalidArgument(
                "--health-interval, --health-timeout, --health-retries and --health-start-period "
                "need a check",
                hint="add --health-cmd (the image has no HEALTHCHECK)",
            )
        return None

    def pick(flag: int | None, key: str, default: int) -> int:
        return flag if flag is not None else (image.get(key) or default)

    return HealthConfig(
        test=test,
        # an image's interval below a second runs every second (a systemd timer per check)
        interval=max(MIN_INTERVAL, pick(flags.interval, "Interval", DEFAULT_INTERVAL)),
        timeout=pick(flags.timeout, "Timeout", DEFAULT_TIMEOUT),
        retries=pick(flags.retries, "Retries", DEFAULT_RETRIES),
        start_period=pick(flags.start_period, "StartPeriod", 0),
        on_failure=flags.on_failure or "none",
        start_interval=max(MIN_INTERVAL, si) if (si := pick(flags.start_interval, "StartInterval", 0)) else 0,
    )


# -- the definition ([X-Nspawnctl] keys) --------------------------------------------------------
KEYS = (
    "HealthCmd",
    "HealthInterval",
    "HealthTimeout",
    "HealthRetries",
    "HealthStartPeriod",
    "HealthStartInterval",
    "HealthOnFailure",
)


def to_file(config: HealthConfig | None, f: NspawnFile) -> None:
    if config is None:
        for key in KEYS:
            f.set(OWN_SECTION, key, None)
        return
    f.set(OWN_SECTION, "HealthCmd", encode_test(config.test))
    f.set(OWN_SECTION, "HealthInterval", format_duration(config.interval))
    f.set(OWN_SECTION, "HealthTimeout", format_duration(config.timeout))
    f.set(OWN_SECTION, "HealthRetries", str(config.retries))
    f.set(OWN_SECTION, "HealthStartPeriod", format_duration(config.start_period))
    start_interval = format_duration(config.start_interval) if config.start_interval else None
    f.set(OWN_SECTION, "HealthStartInterval", start_interval)
    f.set(OWN_SECTION, "HealthOnFailure", None if config.on_failure == "none" else config.on_failure)


def encode_test(test: list[str]) -> str:
    """``HealthCmd=``'s value: systemd-quoted words; a test with a line break (an image's
    multi-line HEALTHCHECK) as a one-line JSON array instead, which a .nspawn line can hold and
    quoted words cannot (no test's first word starts with "[", so the two never mix up)."""
    if any("\n" in w or "\r" in w for w in test):
        return json.dumps(test)
    return quote_words(test)


def decode_test(value: str, what: str) -> list[str]:
    """The test of a ``HealthCmd=`` value (see encode_test), checked."""
    if value.lstrip().startswith("["):
        try:
            test = json.loads(value)
        except ValueError:
            raise InvalidArgument(f"{what}: not a JSON array of strings: {value!r}") from None
        return check_test(test if isinstance(test, list) else [], what)
    return check_test(split_words(value), what)


def check_key(key: str, value: str) -> None:
    """One [X-Nspawnctl] key of the check (or AutoUpdate=), for ``apply``'s FILE:LINE errors."""
    if key == "HealthCmd":
        decode_test(value, "HealthCmd=")
    elif key == "HealthInterval":
        parse_duration(value, "HealthInterval=", MIN_INTERVAL)
    elif key == "HealthTimeout":
        parse_duration(value, "HealthTimeout=", 1)
    elif key == "HealthStartPeriod":
        parse_duration(value, "HealthStartPeriod=")
    elif key == "HealthStartInterval":
        parse_duration(value, "HealthStartInterval=", MIN_INTERVAL)
    elif key == "HealthRetries":
        parse_retries(value, "HealthRetries=")
    elif key == "HealthOnFailure":
        parse_on_failure(value)
    elif key == "AutoUpdate":
        parse_auto_update(value, "AutoUpdate=")


def from_file(f: NspawnFile) -> HealthConfig | None:
    """The check a definition holds; a bad value raises InvalidArgument naming FILE:LINE."""
    value = f.get(OWN_SECTION, "HealthCmd")
    if not value:
        return None

    def at(key: str) -> str:
        return f.where(OWN_SECTION, key)

    test = decode_test(value, at("HealthCmd"))
    if test == ["NONE"]:
        return None

    def duration(key: str, default: int, low: int = 0) -> int:
        v = f.get(OWN_SECTION, key)
        return default if v is None else parse_duration(v, f"{at(key)}: {key}=", low)

    retries = f.get(OWN_SECTION, "HealthRetries")
    on_failure = f.get(OWN_SECTION, "HealthOnFailure") or "none"
    if on_failure not in ON_FAILURE:
        raise InvalidArgument(
            f"{at('HealthOnFailure')}: HealthOnFailure={on_failure} is not one of {ON_FAILURE}"
        )
    return HealthConfig(
        test=test,
        interval=duration("HealthInterval", DEFAULT_INTERVAL, MIN_INTERVAL),
        timeout=duration("HealthTimeout", DEFAULT_TIMEOUT, 1),
        retries=DEFAULT_RETRIES
        if retries is None
        else parse_retries(retries, f"{at('HealthRetries')}: HealthRetries="),
        start_period=duration("HealthStartPeriod", 0),
        on_failure=on_failure,
        start_interval=0 if f.get(OWN_SECTION, "HealthStartInterval") is None
        else duration("HealthStartInterval", 0, MIN_INTERVAL),
    )


def parse_auto_update(value: str | None, what: str) -> str | None:
    if value is None or value == "":
        return None
    if value == "image":  # podman's older name for registry
        return "registry"
    if value not in AUTO_UPDATE_POLICIES:
        raise InvalidArgument(
            f"invalid {what} {value!r}", hint=f"use one of: {', '.join(AUTO_UPDATE_POLICIES)}"
        )
    return value


def auto_update_from_file(f: NspawnFile) -> str | None:
    value = f.get(OWN_SECTION, "AutoUpdate")
    return (
        None if not value else parse_auto_update(value, f"{f.where(OWN_SECTION, 'AutoUpdate')}: AutoUpdate=")
    )


# -- the timer ----------------------------------------------------------------------------------
Properties = list[tuple[str, str, "Any"]]  # (name, D-Bus signature, value) of a transient unit


def timer_name(name: str, start_phase: bool = False) -> str:
    """The check's timer; ``start_phase``: the one of the start period (--health-start-interval)."""
    return f"nspawnctl-health{'start' if start_phase else ''}-{name}.timer"


def service_name(name: str, start_phase: bool = False) -> str:
    return f"nspawnctl-health{'start' if start_phase else ''}-{name}.service"


def timer_units(
    name: str,
    config: HealthConfig,
    container_unit: str,
    python: str,
    environment: list[str],
    start_phase: bool = False,
) -> tuple[list[tuple[str, str, Any]], list[tuple[str, str, Any]]]:
    """(timer properties, service properties) for StartTransientUnit: the first check one
    interval after the start, then one interval after each check began (docker's rhythm).

    With --health-start-interval (``config.start_phase``) a second pair (``start_phase``) checks
    every start interval from the start, and the check stops that timer once the container is
    healthy or the start period is over; the main timer's first check is at the end of the
    start period."""
    interval_us = (config.start_interval if start_phase else config.interval) // 1000
    first_us = config.start_period // 1000 if config.start_phase and not start_phase else interval_us
    timer: list[tuple[str, str, Any]] = [
        ("Description", "s", f"nspawnctl health check timer of {name}"),
        ("BindsTo", "as", [container_unit]),
        ("After", "as", [container_unit]),
        ("PartOf", "as", [container_unit]),
        ("TimersMonotonic", "a(st)", [["OnActiveSec", first_us], ["OnUnitActiveSec", interval_us]]),
        ("AccuracyUSec", "t", max(1000, min(1_000_000, interval_us // 10))),
        ("RemainAfterElapse", "b", False),
    ]
    argv = [python, "-m", "nspawnctl.health", *(["--start-phase"] if start_phase else []), name]
    service: list[tuple[str, str, Any]] = [
        ("Description", "s", f"nspawnctl health check of {name}"),
        ("Type", "s", "oneshot"),
        ("ExecStart", "a(sasb)", [[python, argv, False]]),
        ("Environment", "as", environment),
        ("CollectMode", "s", "inactive-or-failed"),
        # the check's own timeout, plus what a restart on failure may take
        ("TimeoutStartUSec", "t", config.timeout // 1000 + 300_000_000),
    ]
    return timer, service


def arm(paths: Paths, name: str, config: HealthConfig, container_unit: str, environment: list[str]) -> None:
    """Reset the state to "starting" and start the timer (from the unit's pre-start hook).
    A timer that is up already (a restart by Restart=) is kept; one on its way out is waited for."""
    import sys
    import time

    from .healthstate import HealthState, write_state
    from .systemd.bus import Bus, BusError, run_sync
    from .systemd.manager import Manager

    write_state(paths, name, HealthState(started=time.time()))
    pairs = []
    for phase in (False, True) if config.start_phase else (False,):
        timer, service = timer_units(name, config, container_unit, sys.executable, environment, phase)
        pairs.append((timer_name(name, phase), service_name(name, phase), timer, service))

    async def go(bus: Bus) -> None:
        import asyncio

        manager = Manager(bus)

        def body(props: list[tuple[str, str, Any]]) -> list[Any]:
            return [[k, bus.variant(sig, v)] for k, sig, v in props]

        async def start(timer_unit: str, service_unit: str, timer: Properties, service: Properties) -> None:
            for _ in range(50):
                try:
                    await manager.call(
                        "StartTransientUnit",
                        "ssa(sv)a(sa(sv))",
                        [timer_unit, "fail", body(timer), [[service_unit, body(service)]]],
                    )
                    return
                except BusError as e:
                    if not e.name.endswith("UnitExists"):
                        raise
                state = (await manager.states([timer_unit])).get(timer_unit)
                if state is not None and state.active_state in ("active", "activating"):
                    return
                await manager.reset_failed(timer_unit)
                await asyncio.sleep(0.1)  # the stopped one is garbage-collected in a moment
            raise BusError("org.freedesktop.systemd1.UnitExists", f"{timer_unit} stays loaded")

        for pair in pairs:
            await start(*pair)

    run_sync(go)


def end_start_phase(name: str) -> None:
    """Stop the start period's timer (its check, running now, goes on to its end)."""
    from .systemd.bus import Bus, run_sync
    from .systemd.manager import Manager

    async def go(bus: Bus) -> None:
        await Manager(bus).queue_stop(timer_name(name, start_phase=True))

    run_sync(go)


# -- one check ----------------------------------------------------------------------------------
def run_check(paths: Paths, name: str, start_phase: bool = False) -> HealthState | None:
    """Run the check once in the running container, record it, act on failure. None: the
    container has no check or is not running (nothing recorded). ``start_phase``: run by the
    start period's timer, which is stopped once the container is healthy or the period is over."""
    state = _run_check(paths, name)
    if start_phase:
        import time

        config = _store_config(paths, name)
        since = time.time() - (state.started if state else 0.0)
        over = config is None or since >= config.start_period / NS_PER_S
        if state is None or state.status != "starting" or over:
            end_start_phase(name)
    return state


def _store_config(paths: Paths, name: str) -> HealthConfig | None:
    from .client import Client

    return Client(paths).containers.store.get(name).health


def _run_check(paths: Paths, name: str) -> HealthState | None:
    import subprocess

    from .client import Client
    from .errors import ContainerNotRunning, NspawnctlError
    from .healthstate import Result, truncate_output

    client = Client(paths)
    containers = client.containers
    spec = containers.store.get(name)
    config = spec.health
    if config is None:
        return None
    start = _now_iso()
    try:
        cmd = containers.exec_command(name, config.argv())
    except ContainerNotRunning:
        return None  # stopped meanwhile: nothing to check
    except NspawnctlError as e:  # the check's program is missing: a failed check, as docker's
        return _record(paths, name, config, Result(start, _now_iso(), e.exit_code, e.message), containers)
    try:
        code, output = run_bounded(cmd.argv, cmd.env, config.timeout / NS_PER_S, MAX_OUTPUT + 1)
        result = Result(start, _now_iso(), code, truncate_output(output))
    except subprocess.TimeoutExpired:
        result = Result(
            start, _now_iso(), -1, f"Health check exceeded timeout ({format_duration(config.timeout)})"
        )
    except OSError as e:
        result = Result(start, _now_iso(), -1, f"cannot run the health check: {e}")
    return _record(paths, name, config, result, containers)


def run_bounded(argv: list[str], env: dict[str, str], timeout: float, keep: int) -> tuple[int, bytes]:
    """Run ``argv`` (stdout and stderr in one pipe): its exit code and the first ``keep`` bytes of
    its output. The rest is read and dropped as it comes, so a check that writes without end
    (``yes``) neither fills this root process's memory nor blocks on a full pipe.
    subprocess.TimeoutExpired (the command killed) after ``timeout`` seconds."""
    import selectors
    import subprocess
    import time

    deadline = time.monotonic() + timeout
    kept = bytearray()
    with subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    ) as proc:  # on the way out (a timeout too) the pipe is closed and the command reaped
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    _kill_group(proc.pid)
                    raise subprocess.TimeoutExpired(argv, timeout)
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                if len(kept) < keep:
                    kept += chunk[: keep - len(kept)]
        try:
            code = proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            raise
    return code, bytes(kept)


def _kill_group(pid: int) -> None:
    """SIGKILL the check's session (nsenter and the command it forked into the container)."""
    import signal

    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _record(
    paths: Paths, name: str, config: HealthConfig, result: Result, containers: Containers
) -> HealthState:
    import time

    from .healthstate import HealthState, action, advance, read_state, write_state

    before = read_state(paths, name) or HealthState(started=time.time())
    after = advance(before, result, config, time.time())
    write_state(paths, name, after)
    what = action(before, after, config)
    if what is not None:
        start_action(paths, name, what)
    return after


def action_unit(name: str) -> str:
    return f"nspawnctl-health-{name}-on-failure.service"


def start_action(paths: Paths, name: str, what: str) -> None:
    """Run --health-on-failure in a transient unit of its own, not in the check's service: a
    restart stops the container, which stops the timer, which cannot go away (and be armed again
    by the start) while the service it triggered still runs. One at a time: a second is dropped."""
    import sys

    from .run.hook import paths_environment
    from .systemd.bus import Bus, BusError, run_sync
    from .systemd.manager import Manager

    argv = [sys.executable, "-m", "nspawnctl.health", "--on-failure", what, name]
    props: list[tuple[str, str, Any]] = [
        ("Description", "s", f"nspawnctl health check of {name}: {what} on failure"),
        ("Type", "s", "oneshot"),
        ("ExecStart", "a(sasb)", [[sys.executable, argv, False]]),
        ("Environment", "as", paths_environment(paths)),
        ("CollectMode", "s", "inactive-or-failed"),
    ]

    async def go(bus: Bus) -> None:
        body = [[k, bus.variant(sig, v)] for k, sig, v in props]
        try:
            await Manager(bus).call(
                "StartTransientUnit", "ssa(sv)a(sa(sv))", [action_unit(name), "fail", body, []]
            )
        except BusError as e:
            if not e.name.endswith("UnitExists"):
                raise

    run_sync(go)


def act(paths: Paths, name: str, what: str) -> None:
    """--health-on-failure through the library, as ``nspawnctl restart|kill|stop`` would."""
    from .client import Client

    containers = Client(paths).containers
    if what == "restart":
        containers.restart(name)
    elif what == "kill":
        containers.kill(name)
    elif what == "stop":
        containers.stop(name)


def _now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="microseconds")


def main(argv: list[str] | None = None) -> int:
    """``python3 -m nspawnctl.health NAME``: the timer's service (``--on-failure ACTION NAME``:
    the unit start_action starts). One line per failure, no traceback."""
    import sys

    from .config import Paths
    from .errors import NspawnctlError

    args = sys.argv[1:] if argv is None else argv
    if len(args) == 3 and args[0] == "--on-failure" and args[1] in ON_FAILURE:
        try:
            act(Paths.from_env(), args[2], args[1])
        except NspawnctlError as e:
            sys.stderr.write(f"nspawnctl: {args[1]} of unhealthy {args[2]}: {e.message}\n")
            return 1
        return 0
    start_phase = bool(args) and args[0] == "--start-phase"
    if start_phase:
        args = args[1:]
    if len(args) != 1:
        sys.stderr.write("usage: python3 -m nspawnctl.health [--on-failure ACTION|--start-phase] NAME\n")
        return 2
    try:
        state = run_check(Paths.from_env(), args[0], start_phase)
    except NspawnctlError as e:
        sys.stderr.write(f"nspawnctl: health check of {args[0]}: {e.message}\n")
        return 1
    if state is not None:
        last = state.log[-1] if state.log else None
        sys.stdout.write(f"{args[0]}: {state.status} (exit {last.exit_code if last else '?'})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
