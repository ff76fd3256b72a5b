#!/usr/bin/env python3
"""Smoke check of an installed ``nspawnctl`` command: help, version and a usage error, exit codes.

What a user's first minute does, through the console script pip made (not ``python -m``), so a
missing dependency or an exception class that escapes the handler shows up as a failure here.
Needs no systemd and no pool. Usage: ``tests/smoke.py [PATH-TO-nspawnctl]`` (default: on PATH).
"""

from __future__ import annotations

import json
import subprocess
import sys


def check(exe: str, args: list[str], code: int, stdout_start: str, stderr: list[str]) -> str:
    proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
    shown = f"$ nspawnctl {' '.join(args)} -> {proc.returncode}\n{proc.stdout}{proc.stderr}"
    problems = []
    if proc.returncode != code:
        problems.append(f"exit code {proc.returncode}, expected {code}")
    if "Traceback" in proc.stderr:
        problems.append("a traceback")
    if not proc.stdout.startswith(stdout_start):
        problems.append(f"stdout does not start with {stdout_start!r}")
    if proc.stderr.splitlines() != stderr:
        problems.append(f"stderr is not {stderr!r}")
    if problems:
        raise SystemExit(f"smoke check failed: {'; '.join(problems)}\n{shown}")
    return proc.stdout


def main() -> int:
    exe = sys.argv[1] if len(sys.argv) > 1 else "nspawnctl"
    check(exe, ["--help"], 0, "Usage: nspawnctl", [])
    check(exe, ["run", "--help"], 0, "Usage: nspawnctl run", [])
    version = check(exe, ["--version"], 0, "nspawnctl ", [])
    missing = ["nspawnctl: error: missing argument 'IMAGE'", "hint: see 'nspawnctl run --help'"]
    check(exe, ["run"], 2, "", missing)
    check(
        exe,
        ["run", "--bogus", "img"],
        2,
        "",
        ["nspawnctl: error: unknown flag: --bogus", "hint: see 'nspawnctl run --help'"],
    )
    check(
        exe,
        ["rnu"],
        2,
        "",
        ['nspawnctl: error: unknown command "rnu"', "hint: did you mean \"run\"? see 'nspawnctl --help'"],
    )
    out = check(exe, ["inspect", "--json"], 2, '{"error": ', [])
    assert json.loads(out)["error"]["code"] == "usage", out
    print(f"smoke check passed: {exe} ({version.strip()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
