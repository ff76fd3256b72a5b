"""nspawnctl's own journal records of what systemd does not log: a container's create, rename,
destroy, pause and unpause. ``events --since`` replays them (run/events.py) beside PID 1's
records of the units' starts and stops.

One datagram of journald's native protocol per event (``/run/systemd/journal/socket``), with
the event in fields of its own, so a replay asks the journal's index for them by MESSAGE_ID. It
is a record, never a condition: no journal (a container build, a test), a full socket buffer or
any other error loses the record and nothing else."""

from __future__ import annotations

import socket

MESSAGE_ID = "bf188fdea07f4b19a5b69f9b79f47766"
"""Ours (a random 128-bit ID, as sd-id128 makes them): nspawnctl's container event records."""
JOURNAL_SOCKET = "/run/systemd/journal/socket"
ACTIONS = ("create", "rename", "destroy", "pause", "unpause")


def entry(action: str, cid: str, name: str, image: str, old_name: str | None = None) -> bytes:
    """The native-protocol datagram (``KEY=VALUE`` lines; no value holds a line feed: names,
    IDs and image references cannot)."""
    fields = {
        "MESSAGE": f"container {action} {name}" + (f" (was {old_name})" if old_name else ""),
        "MESSAGE_ID": MESSAGE_ID,
        "PRIORITY": "6",
        "SYSLOG_IDENTIFIER": "nspawnctl",
        "NSPAWNCTL_EVENT": action,
        "NSPAWNCTL_CONTAINER_ID": cid,
        "NSPAWNCTL_CONTAINER_NAME": name,
        "NSPAWNCTL_IMAGE": image,
    }
    if old_name:
        fields["NSPAWNCTL_OLD_NAME"] = old_name
    return "".join(f"{k}={v.replace(chr(10), ' ')}\n" for k, v in fields.items()).encode()


def record(action: str, cid: str, name: str, image: str, old_name: str | None = None) -> None:
    """Send the record to journald; any failure is ignored (see the module's docstring)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.setblocking(False)
            s.sendto(entry(action, cid, name, image, old_name), JOURNAL_SOCKET)
    except OSError:
        pass
