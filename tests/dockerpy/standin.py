"""What the stand-in for docker-py's test images (a busybox root served as alpine:3.10, alpine:latest
and busybox:latest) must have of alpine's for the tests to judge nspawnctl, not the image."""

from __future__ import annotations

from pathlib import Path

# alpine's own lines (its base image has them): api_exec_test runs `whoami` as postgres
ALPINE_PASSWD = "postgres:x:70:70:PostgreSQL user:/var/lib/postgresql:/bin/sh\n"
ALPINE_GROUP = "postgres:x:70:\n"
ALPINE_DIRS = ("var/opt",)  # api_exec_test runs `pwd` in /var/opt


def add_alpine_parts(root: Path) -> Path:
    """Add alpine's ``postgres`` account and its ``/var/opt`` to a busybox root."""
    for name, line in (("passwd", ALPINE_PASSWD), ("group", ALPINE_GROUP)):
        path = root / "etc" / name
        path.write_text(path.read_text() + line)
    for d in ALPINE_DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    return root
