"""``-u USER[:GROUP]`` checked at create against the image's own account files.

systemd-nspawn's ``User=`` takes a user only and resolves it INSIDE the container (``getent``
against the container's database, nspawn-setuid.c): a user it cannot find fails the start
("Failed to resolve user"), and ``USER:GROUP`` is never accepted. So the create says it first,
from the image's /etc/passwd and /etc/group (read as a chroot would, never through a symlink out
of the root): the user needs a passwd entry (root needs none), and a ``:GROUP`` is accepted only
when it is the user's primary group, which nspawn gives it anyway: it is then left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidArgument, UserNotUsable

ROOT = ("root", "0")


@dataclass(frozen=True)
class Account:
    """One /etc/passwd entry: what nspawn's ``getent passwd`` would answer."""

    name: str
    uid: int
    gid: int


def nspawn_user(root: Path, user: str, given: bool = True) -> str:
    """The value for ``[Exec] User=`` of ``user`` (``USER[:GROUP]``, names or numbers) in the image
    whose root is ``root``: the user alone. UserNotUsable when nspawn could not run as it (no
    passwd entry, a group other than the primary one); ``given`` says it came from ``-u`` (else
    from the image's USER), for the message."""
    name, _, group = user.partition(":")
    if not name or ":" in group or any(c.isspace() for c in user):
        raise InvalidArgument(f"{user!r} is not USER[:GROUP]", hint="for example: -u app, -u 1000:1000")
    what = f"user {name}" if given else f"the image's USER {name}"
    if name in ROOT:
        account: Account | None = Account("root", 0, 0)  # nspawn switches to root without getent
    else:
        account = _find(_entries(root, "passwd"), name)
    if account is None:
        raise UserNotUsable(
            f"{what} has no entry in the image's /etc/passwd: systemd-nspawn runs the command "
            "as a user of the container's database",
            hint="add the user to the image (a build's RUN adduser, or a line in its /etc/passwd), "
            "or run as root (-u 0)",
        )
    if group and not _is_primary(root, group, account):
        raise UserNotUsable(
            f"{what} runs in group {account.gid} (its primary group in the image's /etc/passwd), "
            f"not {group}: systemd-nspawn takes a user only and gives it the groups of the "
            "container's database",
            hint=f"leave out :{group} (-u {name}), or make {group} the user's primary group in the image",
        )
    return name


def _is_primary(root: Path, group: str, account: Account) -> bool:
    if group.isdigit():
        return int(group) == account.gid
    if account.uid == 0 and group == "root":
        return True
    return any(
        len(e) > 2 and e[0] == group and e[2].isdigit() and int(e[2]) == account.gid
        for e in _entries(root, "group")
    )


def _find(entries: list[list[str]], name: str) -> Account | None:
    """The entry ``getent passwd NAME`` answers: by name, else (a number) the first with that UID."""
    found = [e for e in entries if e[0] == name]
    if not found and name.isdigit():
        found = [e for e in entries if int(e[2]) == int(name)]
    if not found:
        return None
    e = found[0]
    return Account(e[0], int(e[2]), int(e[3]))


def _entries(root: Path, file: str) -> list[list[str]]:
    """The well-formed lines of the image's /etc/``file`` (name:x:ID:...; a passwd line needs its
    GID too), split; none when the file is missing."""
    from .run.runtime import MAX_ACCOUNT_FILE, read_in_root

    try:
        text = read_in_root(root, f"/etc/{file}", MAX_ACCOUNT_FILE).decode(errors="replace")
    except OSError:  # missing, a component not a directory, a loop: nspawn finds no one either
        return []
    need = 4 if file == "passwd" else 3
    out = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= need and parts[0] and parts[2].isdigit() and (need < 4 or parts[3].isdigit()):
            out.append(parts)
    return out
