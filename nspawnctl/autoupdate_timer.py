"""The daily auto-update timer, installed by ``nspawnctl auto-update --install-timer``.

podman ships podman-auto-update.{service,timer} in its package; nspawnctl may run from a venv or a
source checkout that systemd's PATH does not reach, so the service is rendered with the absolute
command of the nspawnctl that installs it (and the auto-update options given with it), written to
/etc/systemd/system atomically, and systemd is told over D-Bus (Reload, EnableUnitFiles,
StartUnit), as ``systemctl daemon-reload`` and ``enable --now`` would.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import Conflict, SystemdError

if TYPE_CHECKING:
    from .client import Client
    from .systemd.bus import Bus

SERVICE = "nspawnctl-auto-update.service"
TIMER = "nspawnctl-auto-update.timer"
MARK = "# Written by 'nspawnctl auto-update --install-timer'; '--uninstall-timer' removes it."


@dataclass(frozen=True)
class TimerUnits:
    """What install wrote (or uninstall removed): the two unit files."""

    service: Path
    timer: Path
    command: list[str]  # the service's ExecStart, unescaped


def command(argv0: str = sys.argv[0], executable: str = sys.executable) -> tuple[list[str], dict[str, str]]:
    """The running nspawnctl as an absolute command, plus the environment it needs: its script
    when it runs as one (the console script of a venv or a package), else this Python with
    ``-m nspawnctl`` and PYTHONPATH set when the package is not where that Python looks by itself
    (a source checkout run with PYTHONPATH)."""
    script = Path(argv0)
    if script.name not in ("__main__.py", "-c", "") and os.access(script, os.X_OK) and script.is_file():
        return [str(script.resolve(strict=True))], {}
    import site

    package_parent = str(Path(__file__).resolve().parent.parent)
    known = {*site.getsitepackages(), site.getusersitepackages()}
    env = {} if package_parent in known else {"PYTHONPATH": package_parent}
    return [str(Path(executable).absolute()), "-m", "nspawnctl"], env


def render_service(template: str, argv: list[str], env: dict[str, str]) -> str:
    """The shipped service with ``@EXEC@`` and ``@ENVIRONMENT@`` filled in, each word escaped for a
    unit file (systemd runs ExecStart= itself: no shell ever sees it)."""
    from .run.escape import unit_value, unit_word

    values = {
        "EXEC": " ".join(unit_word(a) for a in argv),
        "ENVIRONMENT": "\n".join(f"Environment={unit_value(f'{k}={v}')}" for k, v in sorted(env.items())),
        "MARK": MARK,
    }
    text = re.sub(r"@([A-Z]+)@", lambda m: values[m.group(1)], template)
    return re.sub(r"\n{3,}", "\n\n", text)


def booted() -> bool:
    """sd_booted(3): systemd is PID 1 (without it there is nothing to install a timer into)."""
    return Path("/run/systemd/system").is_dir()


def _check_booted() -> None:
    if not booted():
        raise SystemdError(
            "systemd is not the init system here (no /run/systemd/system): no timer can be installed",
            hint="run 'nspawnctl auto-update' from cron or by hand instead",
        )


def _existing_regular(path: Path) -> bool:
    """Whether ``path`` is a regular file (False when absent); anything else there is refused:
    a symlink (``systemctl link``, a mask to /dev/null), a directory, a FIFO are the admin's."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        raise Conflict(
            f"{path} exists and is not a regular file: it is left alone",
            hint=f"remove it (or 'systemctl unmask {path.name}') and try again",
        )
    return True


def _ours(path: Path) -> str | None:
    """The text of ``path`` when it is a unit this command wrote (its first line is MARK), None
    when there is none; an admin's own file of that name (or a non-regular one) is refused, so
    install never replaces and uninstall never deletes it."""
    if not _existing_regular(path):
        return None
    with open(path, "rb") as f:
        text = f.read(1 << 20).decode(errors="replace")
    if text.partition("\n")[0] != MARK:
        raise Conflict(
            f"{path} exists and was not written by nspawnctl: it is left alone",
            hint=f"remove it (or rename it) if nspawnctl should manage {path.name}",
        )
    return text


def write_unit(path: Path, text: str) -> None:
    """Write ``path`` atomically (temporary file + rename in the same directory), never over
    something that is not a regular file."""
    from .tempfiles import write_atomic

    _existing_regular(path)
    write_atomic(path, text, 0o644)


def _template(name: str) -> str:
    from importlib import resources

    try:
        return resources.files("nspawnctl.units").joinpath(name).read_text()
    except ModuleNotFoundError:  # a source checkout: units/ beside the package
        return (Path(__file__).resolve().parent.parent / "units" / name).read_text()


def install(client: Client, args: list[str], unit_dir: Path) -> TimerUnits:
    """Write the service (running this nspawnctl with ``args``: ``auto-update`` and its options)
    and the timer, reload systemd, enable and start the timer."""
    from .systemd.manager import Manager

    _check_booted()
    argv, env = command()
    argv = [*argv, *args]
    service, timer = unit_dir / SERVICE, unit_dir / TIMER
    before = {path: _ours(path) for path in (service, timer)}  # both checked before either is written
    try:
        write_unit(service, render_service(_template(SERVICE), argv, env))
        write_unit(timer, render_service(_template(TIMER), [], {}))

        async def go(bus: Bus) -> None:
            m = Manager(bus)
            await m.enable_unit_files([TIMER])  # reads the files on disk; then reload, as systemctl enable
            await m.reload()
            result = await m.start(TIMER)
            if result != "done":
                raise SystemdError(
                    f"starting {TIMER} failed ({result})", hint=f"see: systemctl status {TIMER}"
                )

        client.run(go)
    except BaseException:  # nothing half-made: the files as they were before this call
        for path, text in before.items():
            if text is None:
                path.unlink(missing_ok=True)
            else:
                write_unit(path, text)
        raise
    return TimerUnits(service, timer, argv)


def uninstall(client: Client, unit_dir: Path) -> list[Path]:
    """Stop and disable the timer, remove both files, reload systemd; the paths removed."""
    from .systemd.manager import Manager

    _check_booted()
    paths = [unit_dir / TIMER, unit_dir / SERVICE]
    present = [p for p in paths if _ours(p) is not None]

    async def off(bus: Bus) -> None:
        m = Manager(bus)
        await m.stop_if_loaded(TIMER)
        if present:
            await m.disable_unit_files([TIMER])

    client.run(off)
    for p in present:
        p.unlink(missing_ok=True)

    async def reload(bus: Bus) -> None:
        await Manager(bus).reload()

    client.run(reload)
    return present
