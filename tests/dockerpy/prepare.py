"""Put docker-py's test suite (a git checkout at TAG) into the test host's root for run.py.

PyPI's sdists of docker-py carry no tests: they come from its git repository, SOURCE (a URL or a
local clone, bare or not). Usage: prepare.py SOURCE TAG; prints the path inside the host.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))
import testhost

IN_HOST = "/opt/docker-py"


def main(source: str, tag: str) -> int:
    dest = testhost.ROOT / IN_HOST.lstrip("/")
    shutil.rmtree(dest, ignore_errors=True)
    if Path(source).exists():
        source = Path(source).resolve().as_uri()  # file://: --depth works for local clones too
    subprocess.run(
        [
            "git",
            "-c",
            "advice.detachedHead=false",
            "clone",
            "-q",
            "--depth",
            "1",
            "--branch",
            tag,
            source,
            str(dest),
        ],
        check=True,
    )
    print(IN_HOST)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
