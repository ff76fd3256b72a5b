"""``events --since`` replays create, rename and destroy (issue 14): nspawnctl records them in
the journal itself (systemd logs none of them), so a container that is gone has its past too."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from conftest import CLI


def replay(nsp: CLI, since: float, image: str) -> list[dict[str, Any]]:
    proc = nsp("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
               "--filter", f"image={image}", "--format", "{{json .}}", timeout=60)  # fmt: skip
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_events_since_replays_create_rename_and_destroy_of_a_gone_container(nsp: CLI, busybox: str) -> None:
    since = time.time() - 1
    first, second = f"evlog-{uuid.uuid4().hex[:8]}", f"evlog-{uuid.uuid4().hex[:8]}"
    nsp.containers.update({first, second})
    nsp("create", "--name", first, busybox, "true")
    cid = nsp.json("inspect", first)[0]["Id"]
    nsp("rename", first, second)
    nsp("rm", second)
    deadline = time.monotonic() + 20
    while True:  # journald takes the records asynchronously: wait for the last one
        got = [(e["Action"], e["Actor"]["Attributes"]) for e in replay(nsp, since, busybox) if e["id"] == cid]
        if any(action == "destroy" for action, _ in got) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [(a, attrs["name"], attrs.get("oldName")) for a, attrs in got] == [
        ("create", first, None), ("rename", second, first), ("destroy", second, None),
    ], got  # fmt: skip
    assert all(attrs["image"] == busybox for _, attrs in got)
    # the journal holds them as nspawnctl's own records
    out = nsp("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}", timeout=60).stdout
    assert f"container destroy {cid} (image={busybox}, name={second})" in out
