"""Running ``nft`` (UDP ports): argv lists only, failures become NetworkError. Links, addresses
and namespaces are made over netlink (kernel.py), without a process.

Tests replace :func:`run` (callers look it up on this module at call time).
"""

from __future__ import annotations

import subprocess

from ..errors import NetworkError

HINTS = {"nft": "install nftables (UDP ports are published through networkd's nft map)"}


def run(argv: list[str], input: str | None = None) -> str:
    """Run ``argv``; its stdout, or NetworkError carrying the command and its stderr."""
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise NetworkError(f"{argv[0]} not found", hint=HINTS.get(argv[0])) from None
    except subprocess.TimeoutExpired:
        raise NetworkError(f"{' '.join(argv)} timed out") from None
    if proc.returncode != 0:
        err = proc.stderr.strip() or f"exit status {proc.returncode}"
        raise NetworkError(f"{' '.join(argv)}: {err}")
    return proc.stdout


def try_run(argv: list[str], input: str | None = None) -> bool:
    """Best effort, for teardown: what is already gone is fine."""
    try:
        run(argv, input)
    except NetworkError:
        return False
    return True
