"""Where the host programs a container start runs are: one lookup each, shared by the hook, the
unit builders, ``exec`` and the network code (import-light: the hook runs on every start)."""

from __future__ import annotations

import shutil

SEARCH_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"  # a unit's PATH does not matter: argv[0] is absolute
NSPAWN = "/usr/bin/systemd-nspawn"
NSENTER = "/usr/bin/nsenter"


def nspawn_binary() -> str:
    path = shutil.which("systemd-nspawn", path=SEARCH_PATH)
    if path is None:
        from ..errors import CommandFailed

        raise CommandFailed("systemd-nspawn is not installed", hint="install systemd-container")
    return path


def nsenter_binary() -> str:
    """util-linux's nsenter (runs nspawn inside a prepared netns, and ``exec``)."""
    return shutil.which("nsenter", path=SEARCH_PATH) or NSENTER
