"""store/images.build_pins: the images a running build pins (its record under state/builds);
a dead build's pins (its PID and start time gone) and records that do not parse pin nothing."""

from __future__ import annotations

import json
from pathlib import Path

from nspawnctl.store.files import owner
from nspawnctl.store.images import BUILD_RECORDS, build_pins


def test_only_live_builds_pin(tmp_path: Path) -> None:
    d = tmp_path / BUILD_RECORDS
    d.mkdir()
    (d / "live.json").write_text(json.dumps({"owner": owner(), "containers": [], "pins": ["sha256:a"]}))
    (d / "dead.json").write_text(json.dumps({"owner": "999999999:1", "containers": [], "pins": ["sha256:b"]}))
    (d / "odd.json").write_text(json.dumps({"owner": "x:y", "pins": ["sha256:c"]}))
    (d / "old.json").write_text(json.dumps({"owner": owner(), "containers": []}))  # no pins yet
    (d / "bad.json").write_text("{")
    (d / "list.json").write_text("[]")
    assert build_pins(tmp_path) == {"sha256:a": "live"}
    assert build_pins(tmp_path / "none") == {}
