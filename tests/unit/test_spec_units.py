"""Pure builders: spec <-> .nspawn file, spec -> nspawn argv and transient unit properties."""

from __future__ import annotations

from pathlib import Path

import pytest

from nspawnctl.errors import InvalidArgument, InvalidName, InvalidReference
from nspawnctl.names import check_machine_name, generate_name
from nspawnctl.ref import ImageRef
from nspawnctl.run.escape import exec_arg, unit_value, unit_word
from nspawnctl.run.units import Launch, nspawn_argv, unit_name, unit_properties
from nspawnctl.spec import ContainerSpec, Limits, Volume, file_to_spec, spec_to_file
from nspawnctl.values import Cpus, MemoryBytes, PidsLimit

SPEC = ContainerSpec(
    name="web",
    id="0123456789abcdef0123456789abcdef",
    image="busybox:latest",
    image_id="sha256:" + "ab" * 32,
    created="2026-11-24T10:00:00+00:00",
    command=["sh", "-c", "echo $HOME > /out; echo 'it''s'"],
    env=["A=1", "B=two words", "C=$x"],
    volumes=[Volume("/srv/data", "/data"), Volume("/etc/a:b", "/a:b", read_only=True)],
    workdir="/tmp",
    user="nobody",
    hostname="web1",
    limits=Limits(memory=MemoryBytes(64 << 20), cpus=Cpus(500_000), pids=PidsLimit(50)),
)


def test_spec_round_trips_through_nspawn_file() -> None:
    f = spec_to_file(SPEC)
    text = f.render()
    assert "[Exec]" in text and "[Files]" in text and "[X-Nspawnctl]" in text
    assert "KillSignal=SIGTERM" in text
    from nspawnctl.nspawnfile import NspawnFile

    assert file_to_spec("web", NspawnFile.parse(text)) == SPEC


def test_boot_spec_uses_init_defaults() -> None:
    text = spec_to_file(SPEC.with_changes(boot=True, command=[])).render()
    assert "Boot=yes" in text and "KillSignal" not in text and "NotifyReady=yes" in text
    assert "Parameters" not in text


def test_nspawn_argv_keeps_unit_registers_and_reads_the_file() -> None:
    argv = nspawn_argv(SPEC, Path("/var/lib/machines"), Launch())
    assert argv[:5] == ["systemd-nspawn", "--quiet", "--keep-unit", "--register=yes", "--machine=web"]
    assert "--directory=/var/lib/machines/web" in argv
    assert "--settings=override" in argv and "--console=pipe" in argv
    # the payload is in the .nspawn file, never on the ExecStart line
    assert not any("echo" in a for a in argv)


def test_unit_properties_carry_limits_and_shape() -> None:
    props = {name: (sig, value) for name, sig, value in unit_properties(SPEC, Path("/p"), Launch())}
    assert props["MemoryMax"] == ("t", 64 * 1024 * 1024)
    assert props["CPUQuotaPerSecUSec"] == ("t", 500_000)
    assert props["TasksMax"] == ("t", 50)
    assert props["Delegate"] == ("b", True)
    assert props["KillMode"] == ("s", "mixed")
    assert props["Slice"] == ("s", "machine.slice")
    assert props["Type"] == ("s", "notify")
    assert props["LogExtraFields"] == ("aay", [f"NSPAWNCTL_CONTAINER_ID={SPEC.id}".encode()])
    assert props["LogRateLimitIntervalUSec"] == ("t", 1_000_000)  # not 0: journald's default
    assert props["LogRateLimitBurst"] == ("u", 1_000_000)
    sig, value = props["ExecStart"]
    assert sig == "a(sasb)" and value[0][0] == "/usr/bin/systemd-nspawn" and value[0][2] is False
    assert "AddRef" not in props and "StandardInputFileDescriptor" not in props


def test_unit_properties_optional_parts() -> None:
    launch = Launch(add_ref=True, attach_fds=(0, 1, 2), unified_cgroup=True, post=("/py", "-m", "x", "a$b"))
    props = {name: (sig, value) for name, sig, value in unit_properties(SPEC, Path("/p"), launch)}
    assert props["AddRef"] == ("b", True)
    assert props["StandardOutputFileDescriptor"] == ("h", 1)
    assert props["Environment"] == ("as", ["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1"])
    assert props["ExecStopPost"] == ("a(sasb)", [["/py", ["/py", "-m", "x", "a$$b"], True]])


def test_dollars_are_escaped_for_systemd() -> None:
    assert exec_arg("/pool/$HOME") == "/pool/$$HOME"
    assert exec_arg("/pool/%n") == "/pool/%n"  # no specifiers over D-Bus
    argv = unit_properties(SPEC, Path("/po$ol"), Launch())[1][2][0][1]
    assert "--directory=/po$$ol/web" in argv


def test_unit_file_words_are_escaped_for_their_setting() -> None:
    assert unit_word("/usr/bin/python3") == "/usr/bin/python3"
    assert unit_word("/a b/%x$y") == '"/a b/%%x$$y"'
    assert unit_word('say "hi"\\') == '"say \\"hi\\"\\\\"'
    assert unit_word("a\nb") == '"a\\nb"' and unit_word(";") == "\\;" and unit_word("") == '""'
    # $ means nothing outside Exec lines; specifiers are expanded nearly everywhere
    assert unit_value("NSPAWNCTL_POOL=/srv/$pool 50%") == '"NSPAWNCTL_POOL=/srv/$pool 50%%"'
    assert unit_value("/srv/pool") == "/srv/pool"
    with pytest.raises(InvalidArgument):
        unit_value("/a\nb", c_escapes=False)  # RequiresMountsFor= has no escapes for it


def test_unit_name() -> None:
    assert unit_name("web") == "nspawnctl-web.service"


@pytest.mark.parametrize("name", ["web", "a", "web-1", "my.app", "A1", "x" * 64])
def test_valid_names(name: str) -> None:
    assert check_machine_name(name) == name


@pytest.mark.parametrize("name", ["", "-web", "web-", "a..b", ".hidden", "a_b", "we b", "x" * 65, "a/b", "é"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidName):
        check_machine_name(name)


def test_generated_names_are_valid_and_unused() -> None:
    taken = {"merry-otter"}
    name = generate_name(taken)
    assert name not in taken and check_machine_name(name)


@pytest.mark.parametrize(
    ("text", "name", "tag"),
    [
        ("busybox", "busybox", "latest"),
        ("busybox:1.36", "busybox", "1.36"),
        ("127.0.0.1:5000/acc/bb:v1", "127.0.0.1:5000/acc/bb", "v1"),
        ("127.0.0.1:5000/acc/bb", "127.0.0.1:5000/acc/bb", "latest"),
        ("example.com/app", "example.com/app", "latest"),
    ],
)
def test_image_refs(text: str, name: str, tag: str) -> None:
    ref = ImageRef.parse(text)
    assert (ref.name, ref.tag) == (name, tag)


@pytest.mark.parametrize("text", ["", "UPPER", "a:b:c", "bad name", "x@sha256:00", "a/:b", ":tag"])
def test_bad_image_refs(text: str) -> None:
    with pytest.raises(InvalidReference):
        ImageRef.parse(text)


def test_anonymous_volume_is_a_container_path_alone() -> None:
    v = Volume.parse("/data")  # docker's -v /path: create gives it a random volume name
    assert (v.host, v.container, v.named) == ("", "/data", True)


@pytest.mark.parametrize("text", ["/a:/b:rw:x", "./rel:/b", "a", "/a:b", "-x:/b", "vol"])
def test_bad_volumes(text: str) -> None:
    with pytest.raises(InvalidArgument):
        Volume.parse(text)


def test_volume_parse() -> None:
    assert Volume.parse("/a:/b:ro") == Volume("/a", "/b", True)
    assert Volume.parse("/a:/b") == Volume("/a", "/b", False)


@pytest.mark.parametrize(
    ("restart", "stop_timeout", "want"),
    [("no", None, 10), ("always", None, 90), ("no", 300, 310), ("always", 300, 310), ("always", 5, 90)],
)
def test_stop_timeout_reaches_the_units_timeout(restart: str, stop_timeout: int | None, want: int) -> None:
    """systemd's own stop (machinectl stop, shutdown) waits as long as nspawnctl's stop does."""
    import dataclasses

    from nspawnctl.runopts import RunSettings

    spec = dataclasses.replace(SPEC, restart=restart, settings=RunSettings(stop_timeout=stop_timeout))
    props = {name: value for name, _, value in unit_properties(spec, Path("/p"), Launch())}
    assert props["TimeoutStopUSec"] == want * 1_000_000


def test_restart_policy_with_a_retry_count() -> None:
    """docker's --restart on-failure:N (and the API's MaximumRetryCount), on the transient unit."""
    import dataclasses

    from nspawnctl.spec import docker_restart_policy, parse_restart

    assert parse_restart("on-failure:42") == "on-failure:42"
    assert parse_restart("on-failure:0") == "on-failure"
    for bad in ("always:3", "on-failure:", "on-failure:x", "on-failure:-1", "never"):
        with pytest.raises(InvalidArgument):
            parse_restart(bad)
    assert docker_restart_policy("on-failure:42") == {"Name": "on-failure", "MaximumRetryCount": 42}
    assert docker_restart_policy("always") == {"Name": "always", "MaximumRetryCount": 0}
    spec = dataclasses.replace(SPEC, restart="on-failure:2")
    props = {name: value for name, _, value in unit_properties(spec, Path("/p"), Launch())}
    assert props["Restart"] == "on-failure"
    assert props["StartLimitBurst"] == 3 and props["StartLimitIntervalUSec"] == 2**64 - 1
    assert file_to_spec(spec.name, spec_to_file(spec)).restart == "on-failure:2"  # generate keeps it
