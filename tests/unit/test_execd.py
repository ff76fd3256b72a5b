"""exec -d (run/execd.py): the environment stays out of systemd-run's command line and the unit,
and the argv is escaped for systemd's $VAR expansion."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nspawnctl.run.execd import env_file_text, systemd_run_argv, write_env


def test_argv_has_no_environment_and_dollars_are_doubled() -> None:
    argv = ["/usr/bin/nsenter", "--wd=/a$b", "--", "printf", "%s", "$HOME", "${X}", "$$", "plain"]
    cmd = systemd_run_argv("nspawnctl-exec-web-1.service", "web", argv, "nspawnctl/exec/x")
    assert not any(a.startswith(("--setenv", "-E")) for a in cmd)
    assert "--property=EnvironmentFile=/run/nspawnctl/exec/x/env" in cmd
    assert "--property=RuntimeDirectory=nspawnctl/exec/x" in cmd
    tail = cmd[cmd.index("--") + 1 :]
    want = ["/usr/bin/nsenter", "--wd=/a$$b", "--", "printf", "%s", "$$HOME", "$${X}", "$$$$", "plain"]
    assert tail == want


def test_env_file_quotes_what_systemd_would_interpret() -> None:
    text = env_file_text({"A": 'x "y" $Z `c` \\ d', "B": "l1\nl2", "C": ""})
    assert text == 'A="x \\"y\\" \\$Z \\`c\\` \\\\ d"\nB="l1\nl2"\nC=""\n'


def test_env_file_is_private(tmp_path: Path) -> None:
    d = tmp_path / "nspawnctl" / "exec" / "u"
    write_env(d, {"SECRET": "s"})
    assert stat.S_IMODE(os.stat(d.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(d / "env").st_mode) == 0o600
    assert (d / "env").read_text() == 'SECRET="s"\n'
