"""The pure parts of run/execenv.py, the helper that runs ``exec`` under the payload's confinement."""

from __future__ import annotations

import sys

import pytest

from nspawnctl.run import execenv
from nspawnctl.run.runtime import exec_argv, signal_code

STATUS = "Name:\tsleep\nCapInh:\t00000000fdec8bff\nCapBnd:\t00000000fdec8bff\nNoNewPrivs:\t1\n"


def test_parse_status() -> None:
    s = execenv.parse_status(STATUS)
    assert s["CapBnd"] == "00000000fdec8bff" and s["NoNewPrivs"] == "1" and s["Name"] == "sleep"


def test_caps_to_drop() -> None:
    assert execenv.caps_to_drop(0x1FFFFFFFFFF, 40) == []
    assert execenv.caps_to_drop(1, 3) == [1, 2, 3]  # --cap-drop ALL --cap-add CHOWN
    assert 13 in execenv.caps_to_drop(0xFDEC8BFF, 40)  # CAP_NET_RAW dropped


PAYLOAD = "/machine.slice/nspawnctl-c.service/payload"
HYBRID = f"9:name=systemd:{PAYLOAD}\n8:pids:/\n0::{PAYLOAD}\n"
OWN = "9:name=systemd:/user.slice\n8:pids:/\n0::/user.slice\n"


def test_cgroup_moves_hybrid_and_unified() -> None:
    moves = execenv.cgroup_moves(
        execenv.parse_cgroups(HYBRID), execenv.parse_cgroups(OWN), "/sys/fs/cgroup/unified"
    )
    assert moves == [
        ("/sys/fs/cgroup/systemd", f"/sys/fs/cgroup/systemd{PAYLOAD}/cgroup.procs", True),
        ("/sys/fs/cgroup/unified", f"/sys/fs/cgroup/unified{PAYLOAD}/cgroup.procs", True),
    ]  # pids: the same cgroup, no move
    unified = execenv.cgroup_moves({"": "/machine.slice/x.service/payload"}, {"": "/"}, "/sys/fs/cgroup")
    assert unified == [
        ("/sys/fs/cgroup", "/sys/fs/cgroup/machine.slice/x.service/payload/cgroup.procs", True)
    ]
    v1 = execenv.cgroup_moves({"memory": "/a"}, {"memory": "/"}, "/sys/fs/cgroup")
    assert v1 == [("/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/a/cgroup.procs", False)]  # best effort


def test_args_round_trip() -> None:
    argv = execenv.argv("/py", 42, ["sh", "-c", "echo --wd"], "/w", 5, None)
    assert argv[:4] == ["/py", "-I", "-S", execenv.__file__]
    assert execenv.parse_args(argv[4:]) == (42, "/w", 5, 5, ["sh", "-c", "echo --wd"])
    assert execenv.parse_args(["--target", "7", "--", "true"]) == (7, None, None, None, ["true"])
    assert exec_argv(7, ["true"], None, None, None) == [
        sys.executable,
        "-I",
        "-S",
        execenv.__file__,
        "--target",
        "7",
        "--",
        "true",
    ]


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--target", "x", "--", "true"],
        ["--target", "1"],
        ["--user", "a:b", "--target", "1", "--", "t"],
        ["--bad", "1", "--", "t"],
    ],
)
def test_bad_args(args: list[str]) -> None:
    with pytest.raises(execenv.Failure) as e:
        execenv.parse_args(args)
    assert e.value.code == 2


def test_candidates_follow_execvp() -> None:
    assert execenv.candidates("/bin/sh", "/x") == ["/bin/sh"]
    assert execenv.candidates("sh", "/usr/bin::/bin") == ["/usr/bin/sh", "./sh", "/bin/sh"]


def test_signal_code() -> None:
    assert signal_code(-9) == 137 and signal_code(3) == 3


def test_is_frozen() -> None:
    assert execenv.is_frozen("populated 1\nfrozen 1\n")
    assert not execenv.is_frozen("populated 1\nfrozen 0\n") and not execenv.is_frozen("")


def test_the_commands_variables_travel_under_a_prefix_only() -> None:
    from nspawnctl.run.execenv import command_env, helper_env

    env = {"LD_PRELOAD": "/var/lib/machines/x/x.so", "PATH": "/bin", "A": "1=2"}
    helper = helper_env(env)
    # nothing the host's loader, libc or Python reads before the container is entered
    assert not {"LD_PRELOAD", "PATH", "A"} & set(helper)
    assert command_env({**helper, "LD_LIBRARY_PATH": "/x", "LC_CTYPE": "C.UTF-8"}) == env
    assert command_env({"NSPAWNCTL_EXEC_ENV_": "x"}) == {}
