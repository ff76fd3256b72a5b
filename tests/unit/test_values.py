"""The value types of container limits: every text either gives a value systemd and the kernel
take as a limit, or is refused with the option's name; never NaN, infinity, 0 or a number that
reads as "no limit". Property style: many generated texts, a fixed seed (no extra dependency)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from nspawnctl.errors import InvalidArgument
from nspawnctl.nspawnfile import NspawnFile
from nspawnctl.spec import ContainerSpec, Limits, file_to_spec, spec_to_file
from nspawnctl.values import (
    MAX_ARG_STRLEN,
    MAX_CPUS,
    MAX_MEMORY,
    MAX_PIDS,
    MIN_MEMORY,
    UINT64_MAX,
    BadValue,
    Cpus,
    MemoryBytes,
    PidsLimit,
    check_env,
    check_exec,
    parse_bytes,
    parse_signal_number,
    parse_timeout,
)

RNG = random.Random(12)
HOSTILE = [
    "nan",
    "NaN",
    "-nan",
    "inf",
    "-inf",
    "infinity",
    "Infinity",
    "1e309",
    "1e3",
    "0x10",
    "0",
    "0.0",
    "-1",
    "-0",
    "",
    " ",
    "1,5",
    "½",
    "\u0661",
    "1_000",
    "99999999999999999999999",
    "18446744073709551615",
    "18446744073709551616",
    "9" * 5000,
    "1" + "0" * 100,
    "0.000000001",
    "+1",
    "1.2.3",
    "max",
]


def numbers(n: int = 400) -> list[str]:
    """Random decimal texts over many magnitudes, plus the hostile ones."""
    out = list(HOSTILE)
    for _ in range(n):
        exp = RNG.randint(-12, 30)
        out.append(f"{RNG.random() * 10.0**exp:.{RNG.randint(0, 12)}f}")
        out.append(str(RNG.randint(0, 1 << RNG.randint(1, 80))))
    return out


@pytest.mark.parametrize("unit", ["", "b", "k", "M", "g", "T", "KiB", "mb", "P", "E"])
def test_memory_is_in_range_or_refused(unit: str) -> None:
    for number in numbers(150):
        text = number + unit
        try:
            m = MemoryBytes.parse(text)
        except BadValue as e:
            assert e.message.startswith(f'invalid value "{text[:37]}') and "--memory" in e.message
            assert e.hint
            continue
        assert isinstance(m.bytes, int) and MIN_MEMORY <= m.bytes <= MAX_MEMORY < UINT64_MAX
        assert MemoryBytes.parse(str(m)) == m  # what the .nspawn file keeps reads back the same


def test_memory_is_exact_and_bounded() -> None:
    assert MemoryBytes.parse("64M").bytes == 64 << 20
    assert MemoryBytes.parse("1.5G").bytes == 3 << 29
    assert MemoryBytes.parse("8388607T").bytes == 8388607 << 40  # below 2^63, exactly
    for bad in ["8388608T", "99999999999999999999999G", "5M", "1", "0", "nan", "inf", "-1G"]:
        with pytest.raises(BadValue):
            MemoryBytes.parse(bad)
    with pytest.raises(BadValue):
        MemoryBytes(MAX_MEMORY + 1)
    with pytest.raises(BadValue):
        MemoryBytes(True)  # type: ignore[arg-type]
    assert parse_bytes("100") == 100  # a plain size has no memory minimum
    with pytest.raises(BadValue, match="below"):
        parse_bytes("16777216T")  # 2^64: systemd's infinity and beyond


def test_cpus_are_in_range_or_refused() -> None:
    for text in numbers():
        try:
            c = Cpus.parse(text)
        except BadValue as e:
            assert "--cpus" in e.message and e.hint
            continue
        value = float(text)
        assert math.isfinite(value) and 0.01 <= value <= MAX_CPUS
        assert 10_000 <= c.usec <= MAX_CPUS * 1_000_000 < UINT64_MAX  # CPUQuotaPerSecUSec > 0
        assert c.usec == round(value * 1_000_000)
        assert Cpus.parse(str(c)) == c
        percent = float(c.quota_percent().rstrip("%"))
        assert percent >= 1 and abs(percent - value * 100) <= 0.005 + 1e-9
        assert "e" not in c.quota_percent() and "e" not in str(c)


def test_cpus_examples() -> None:
    assert Cpus.parse("0.5").usec == 500_000 and str(Cpus.parse("0.5")) == "0.5"
    assert Cpus.parse("2").quota_percent() == "200%" and Cpus.parse("0.123").quota_percent() == "12.3%"
    assert Cpus.parse("10000").quota_percent() == "1000000%"  # never 1e+06%
    assert Cpus.parse("1.5").nano == 1_500_000_000
    for bad, why in [
        ("nan", "not a number"),
        ("inf", "not a number"),
        ("0", "from 0.01"),
        ("0.001", "from 0.01"),
        ("10001", "from 0.01"),
        ("0.0000001", "too precise"),
    ]:
        with pytest.raises(BadValue, match=why):
            Cpus.parse(bad)
    with pytest.raises(BadValue, match='invalid value "nan" for --cpus'):
        Cpus.parse("nan")


def test_pids_are_in_range_or_refused() -> None:
    for text in numbers():
        try:
            p = PidsLimit.parse(text)
        except BadValue as e:
            assert "--pids-limit" in e.message
            continue
        assert 1 <= p.count <= MAX_PIDS and str(p) == text.strip().lstrip("0")
    assert PidsLimit.parse("4194304").count == MAX_PIDS
    for bad in ["4194305", "99999999999999999999", "0", "-1", "1.5", "inf", "max", "1e3"]:
        with pytest.raises(BadValue):
            PidsLimit.parse(bad)


def test_limits_take_only_checked_values() -> None:
    with pytest.raises(TypeError):
        Limits(cpus=float("nan"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Limits(memory=1 << 70)  # type: ignore[arg-type]


def test_timeouts_and_signals() -> None:
    assert parse_timeout("10") == 10 and parse_timeout("0.5") == 0.5 and parse_timeout("0") == 0
    for bad in ["nan", "inf", "-1", "1e9", "99999999999", ""]:
        with pytest.raises(BadValue):
            parse_timeout(bad)
    assert parse_signal_number("TERM") == 15 and parse_signal_number("9") == 9
    assert parse_signal_number("RTMIN+3") > 32
    for bad in ["0", "65", "99999999999999999999", "NOPE", "RTMIN+99", "-9"]:
        with pytest.raises(BadValue):
            parse_signal_number(bad)


def _spec(**kw: object) -> ContainerSpec:
    return ContainerSpec(name="web", id="x" * 32, image="img", image_id="sha", created="now", **kw)  # type: ignore[arg-type]


def test_limits_survive_the_file() -> None:
    limits = Limits(MemoryBytes.parse("1.5G"), Cpus.parse("0.123456"), PidsLimit(77))
    f = spec_to_file(_spec(command=["true"], limits=limits))
    assert file_to_spec("web", NspawnFile.parse(f.render(), "web.nspawn")).limits == limits


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("CPUs", "nan"),
        ("CPUs", "inf"),
        ("CPUs", "-inf"),
        ("MemoryMax", "infinity"),
        ("MemoryMax", "lots"),
        ("TasksMax", "infinity"),
        ("TasksMax", "\u00b2"),
    ],
)
def test_a_stored_value_that_is_no_number_names_file_and_line(key: str, value: str) -> None:
    text = f"[Exec]\nParameters=true\n\n[X-Nspawnctl]\nId=abc\n{key}={value}\n"
    with pytest.raises(InvalidArgument) as e:
        file_to_spec("web", NspawnFile.parse(text, "/etc/systemd/nspawn/web.nspawn"))
    assert e.value.message.startswith(f"/etc/systemd/nspawn/web.nspawn:6: {key}={value}: ")
    assert "nspawnctl rm -f" in (e.value.hint or "")


def test_env_checks() -> None:
    assert check_env(["A=1", "B="]) == ["A=1", "B="]
    for bad in ["A", "=x", ""]:
        with pytest.raises(InvalidArgument, match="invalid environment variable"):
            check_env([bad])
    for c in "\n\r\0":
        with pytest.raises(InvalidArgument, match=r"FOO .* contains"):
            check_env([f"FOO=a{c}[Files]"])
    with pytest.raises(InvalidArgument, match=r"BIG .*MAX_ARG_STRLEN"):
        check_env(["BIG=" + "x" * MAX_ARG_STRLEN], "--env-file f")
    check_env(["OK=" + "x" * (MAX_ARG_STRLEN - 5)])
    with pytest.raises(InvalidArgument, match="add up to"):
        check_exec(["sh"], [f"V{i}=" + "x" * 100_000 for i in range(11)])
    with pytest.raises(InvalidArgument, match="contains a line feed"):
        check_exec(["sh", "-c", "a\nb"], [])


def test_cli_env_file_keeps_a_cr_in_its_value(tmp_path: Path) -> None:
    from nspawnctl.cli.containers import read_env_file

    f = tmp_path / "env"
    f.write_bytes(b"A=1\r\nB=2\n")
    assert read_env_file(str(f)) == ["A=1", "B=2"]  # CRLF is a line end
    f.write_bytes(b"A=1\rB=2\n")
    with pytest.raises(InvalidArgument, match=r"A .*carriage return"):
        read_env_file(str(f))
    f.write_bytes(b"BIG=" + b"x" * (3 << 20) + b"\n")
    with pytest.raises(InvalidArgument, match="BIG"):
        read_env_file(str(f))


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (b"Environment=A=1\rB=2\n", "carriage return"),
        (b"Environment=A=1\r[Files]\rBind=/:/host\n", "carriage return"),
        (b"Environment=A=1\0\n", "NUL"),
    ],
)
def test_apply_refuses_cr_and_nul_with_file_and_line(tmp_path: Path, raw: bytes, what: str) -> None:
    from nspawnctl import declare
    from nspawnctl.errors import DefinitionError

    path = tmp_path / "web.nspawn"
    path.write_bytes(b"[X-Nspawnctl]\nImage=img\n\n[Exec]\n" + raw)
    with pytest.raises(DefinitionError, match=f"^{path}:5: .*{what}"):
        declare.load(path)


def test_crlf_and_python_only_line_ends() -> None:
    f = NspawnFile.parse("[Exec]\r\nBoot=no\r\nEnvironment=A=x\x0b[Files]\x1cBind=/:/host\n", "f")
    assert f.get("Exec", "Boot") == "no" and f.get_all("Files", "Bind") == []  # no \v or \x1c line end
    assert f.get("Exec", "Environment") == "A=x\x0b[Files]\x1cBind=/:/host"


@pytest.mark.parametrize("key", ["CPUs", "MemoryMax", "TasksMax"])
@pytest.mark.parametrize("value", ["inf", "nan", "99999999999999999999999", "0", "-1"])
def test_apply_refuses_bad_limits_with_file_and_line(tmp_path: Path, key: str, value: str) -> None:
    from nspawnctl import declare
    from nspawnctl.errors import DefinitionError

    path = tmp_path / "web.nspawn"
    path.write_text(f"[X-Nspawnctl]\nImage=img\n{key}={value}\n")
    with pytest.raises(DefinitionError, match=f"^{path}:3: {key}={value}: "):
        declare.load(path)


def test_any_bad_stored_value_names_the_file() -> None:
    text = "[X-Nspawnctl]\nId=abc\nPublish=99999:1\n"
    with pytest.raises(InvalidArgument, match=r"^/etc/systemd/nspawn/web\.nspawn: port out of range"):
        file_to_spec(
            "web",
            NspawnFile.parse(text, "/etc/systemd/nspawn/web.nspawn"),
            Path("/etc/systemd/nspawn/web.nspawn"),
        )


def test_values_a_file_cannot_hold_are_refused_before_anything_is_written() -> None:
    for bad in ["a\nb", "a\rb", "a\0b", "a\udcffb", "x" * (1 << 20)]:
        with pytest.raises(InvalidArgument):
            spec_to_file(_spec(command=["true"], hostname=bad))
