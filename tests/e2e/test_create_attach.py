"""``create -i/-t`` then ``start -a/-i`` (issue 14): docker's way to a container you come back to.
create keeps OpenStdin/Tty in the definition (``[X-Nspawnctl]``, as the API's create does),
``start -ai`` runs it in the foreground with our stdin or terminal and exits with its code (a
``-t`` container started without ``-a`` gets nspawn's terminal: test_detached_tty.py). Also
review #13: a rename that keeps the machine name (``my-app`` -> ``my_app``) is a rename event."""

from __future__ import annotations

import json
import select
import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import CLI, drive_pty


def test_create_i_then_start_ai_pipes_stdin_and_exits_with_the_code(
    nsp: CLI, busybox: str, tmp_path: Path
) -> None:
    name = nsp.name("ci")
    nsp("create", "-i", "--name", name, busybox, "sh", "-c", "read x; echo got $x; exit 3")
    config = nsp.json("inspect", name)[0]["Config"]
    assert (config["OpenStdin"], config["Tty"]) == (True, False)
    run = nsp("start", "-ai", name, input=b"hello\n", check=False)
    assert (run.returncode, run.stdout) == (3, "got hello\n"), run.stderr
    assert nsp.json("inspect", name)[0]["State"]["ExitCode"] == 3
    again = nsp("start", "--attach", "--interactive", name, input=b"again\n", check=False)
    assert (again.returncode, again.stdout) == (3, "got again\n"), again.stderr
    # generate recreates it: rm, apply the generated file, the same Config
    generated = nsp("generate", name).stdout
    assert "OpenStdin=yes" in generated and "Tty=" not in generated, generated
    (tmp_path / f"{name}.nspawn").write_text(generated)
    nsp("rm", name)
    nsp("apply", str(tmp_path))
    recreated = nsp.json("inspect", name)[0]["Config"]
    keys = ("OpenStdin", "Tty", "Cmd")
    assert {k: recreated[k] for k in keys} == {k: config[k] for k in keys}


def test_create_t_then_start_ai_under_a_terminal(nsp: CLI, busybox: str) -> None:
    name = nsp.name("ct")
    nsp("create", "-it", "--name", name, busybox, "sh")
    config = nsp.json("inspect", name)[0]["Config"]
    assert (config["OpenStdin"], config["Tty"]) == (True, True)
    assert "Tty=yes" in nsp("generate", name).stdout
    # -ai with a stdin that is no terminal: docker's error
    piped = nsp("start", "-ai", name, input=b"exit\n", check=False)
    assert piped.returncode == 2 and "the input device is not a TTY" in piped.stderr, piped.stderr
    out, code = drive_pty(["nspawnctl", "start", "-ai", name], b"tty; echo marker-$((6*7)); exit 4\n")
    assert b"marker-42" in out and b"/dev/pts/" in out, out
    assert b"echo marker" in out, out  # the terminal echoes what was typed
    assert code == 4


def test_start_a_shows_output_and_exit_code_and_errors_like_docker(nsp: CLI, busybox: str) -> None:
    name, other = nsp.name("ca"), nsp.name("ca")
    nsp("create", "--name", name, busybox, "sh", "-c", "echo to-out; echo to-err >&2; exit 5")
    nsp("create", "--name", other, busybox, "true")
    run = nsp("start", "-a", name, check=False)
    assert (run.returncode, run.stdout, run.stderr) == (5, "to-out\n", "to-err\n")
    # -i of a container created without -i: docker attaches no stdin, the rest as -a
    run = nsp("start", "-i", name, input=b"ignored\n", check=False)
    assert (run.returncode, run.stdout) == (5, "to-out\n")
    two = nsp("start", "-a", name, other, check=False)
    assert two.returncode == 2 and "you cannot start and attach multiple containers at once" in two.stderr
    assert "hint:" in two.stderr
    missing = nsp("start", "-a", "no-such-ctr-x", check=False)
    assert missing.returncode != 0 and "nspawnctl: error:" in missing.stderr and "hint:" in missing.stderr


def test_rename_keeping_the_machine_name_is_an_event(nsp: CLI, busybox: str) -> None:
    name = nsp.name("rn")  # my-app -> my_app: the machine name stays, only the name as given changes
    given = name.replace("-", "_")
    since = time.time() - 1
    live = subprocess.Popen(
        ["nspawnctl", "events", "--since", f"{since:.3f}", "--until", f"{time.time() + 60:.3f}",
         "--format", "{{json .}}", "--filter", "event=create", "--filter", "event=rename"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen: list[dict[str, Any]] = []

    def next_of(action: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not select.select([live.stdout], [], [], 1)[0]:
                continue
            event = json.loads(live.stdout.readline())  # type: ignore[union-attr]
            if event["id"] == cid and event["Action"] == action:
                return event
        return None

    try:
        nsp("create", "--name", name, busybox, "true")
        cid = nsp.json("inspect", name)[0]["Id"]
        assert next_of("create") is not None  # it follows (past what --since replayed): no rename missed
        nsp("rename", name, given)
        assert nsp.json("inspect", given)[0]["Name"] == given
        renamed = next_of("rename")
    finally:
        live.terminate()
        live.wait(10)
    assert renamed is not None
    attrs = renamed["Actor"]["Attributes"]
    assert (attrs["oldName"], attrs["name"]) == (name, given)
    # and replayed from nspawnctl's journal record
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not seen:  # journald takes the record asynchronously
        proc = nsp("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                   "--filter", "event=rename", "--format", "{{json .}}", timeout=60)  # fmt: skip
        seen = [e for e in map(json.loads, proc.stdout.splitlines()) if e["id"] == cid]
        if not seen:
            time.sleep(0.2)
    assert len(seen) == 1, seen
    attrs = seen[0]["Actor"]["Attributes"]
    assert (attrs["oldName"], attrs["name"]) == (name, given)
