"""docker's create fields for the run options beyond the basics (HostConfig CapAdd, ReadonlyRootfs,
Tmpfs, Mounts, Ulimits, ...; Config StopSignal, StopTimeout, Healthcheck), each turned into the text
of the run flag it stands for and checked by that flag's own parser (runopts, health), so the API
takes exactly what ``nspawnctl run`` takes. A wrong type or a refused value is a 400 naming the field."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument
from .http import ApiError

if TYPE_CHECKING:
    from ..client import RunOptions
    from ..health import HealthFlags
    from ..runflags import Mount
    from ..runopts import RunSettings

# HostConfig fields this module takes (translate.py refuses the others)
FIELDS = (
    "CapAdd", "CapDrop", "ReadonlyRootfs", "Tmpfs", "Privileged", "SecurityOpt", "Init", "Dns",
    "DnsSearch", "ExtraHosts", "Ulimits", "Devices", "ShmSize", "Sysctls", "CpusetCpus", "OomScoreAdj",
    "CpuShares", "MemorySwap", "MemorySwappiness", "CgroupnsMode", "Isolation", "VolumeDriver",
)  # fmt: skip
MOUNT_FIELDS = ("Type", "Source", "Target", "ReadOnly", "TmpfsOptions", "Consistency", "VolumeOptions")


@dataclass(frozen=True)
class Extra:
    """What the fields of this module add to the other run options."""

    settings: RunSettings
    mounts: list[Mount] = field(default_factory=list)
    stop_signal: str | None = None
    health: HealthFlags | None = None
    warnings: tuple[str, ...] = ()  # the create response's Warnings (what was discarded)

    def apply(self, options: RunOptions) -> RunOptions:
        """``options`` with these, as the CLI's run flags set them."""
        return replace(
            options,
            volumes=[*options.volumes, *(m.volume() for m in self.mounts if m.type == "bind")],
            named_volumes=[(m.source, m.target, m.read_only) for m in self.mounts if m.type == "volume"],
            volume_options={m.target: m.options for m in self.mounts if m.type == "volume"},
            settings=self.settings,
            stop_signal=self.stop_signal,
            health=self.health if self.health is not None else options.health,
        )


def _type(name: str, value: Any, kind: type, what: str) -> Any:
    """``value`` if it is a ``kind`` (JSON's true is no integer here), else a 400 naming the field."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ApiError(400, f"{name}: {what} is expected")
    return value


def _strings(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"{name}: a list of strings is expected")
    return value


def _bool(name: str, value: Any) -> bool:
    return bool(value is not None and _type(name, value, bool, "a boolean"))


def _int(name: str, value: Any) -> int | None:
    """None for null and docker's 0 (= not set)."""
    if value is None:
        return None
    return _type(name, value, int, "an integer") or None


def _str(name: str, value: Any) -> str | None:
    if value is None:
        return None
    return _type(name, value, str, "a string") or None


def _checked(name: str, parse: Callable[..., Any], *args: Any) -> Any:
    """``parse(*args)``; its InvalidArgument becomes a 400 naming the field."""
    try:
        return parse(*args)
    except InvalidArgument as e:
        raise ApiError(400, f"{name}: {e.message}" + (f" ({e.hint})" if e.hint else "")) from None


def _no_colon(name: str, text: str) -> str:
    """A value that goes into a flag's ``A:B`` text must not carry the separator itself."""
    if ":" in text:
        raise ApiError(400, f"{name}: {text[:80]!r} contains ':'")
    return text


def _tmpfs(value: Any) -> list[str]:
    name = "HostConfig.Tmpfs"
    if value is None:
        return []
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ApiError(400, f"{name}: an object of path: options strings is expected")
    return [f"{_no_colon(name, p)}:{o}" if o else _no_colon(name, p) for p, o in value.items()]


def _ulimits(value: Any) -> list[str]:
    name = "HostConfig.Ulimits"
    out = []
    for u in _type(name, value or [], list, "a list of {Name, Soft, Hard}"):
        u = _type(name, u, dict, "a list of {Name, Soft, Hard}")
        n, soft, hard = u.get("Name"), u.get("Soft", 0), u.get("Hard", 0)
        if not isinstance(n, str) or not all(type(v) is int for v in (soft, hard)):
            raise ApiError(400, f"{name}: Name a string, Soft and Hard integers are expected")
        if set(u) - {"Name", "Soft", "Hard"}:
            raise ApiError(400, f"{name}: only Name, Soft and Hard are known")
        out.append(f"{n}={soft}:{hard}")
    return out


def _devices(value: Any) -> list[str]:
    name = "HostConfig.Devices"
    out = []
    for d in _type(name, value or [], list, "a list of {PathOnHost, PathInContainer, CgroupPermissions}"):
        d = _type(name, d, dict, "a list of {PathOnHost, PathInContainer, CgroupPermissions}")
        host = _no_colon(name, _str(f"{name}.PathOnHost", d.get("PathOnHost")) or "")
        ctr = _no_colon(name, _str(f"{name}.PathInContainer", d.get("PathInContainer")) or "")
        perms = _no_colon(name, _str(f"{name}.CgroupPermissions", d.get("CgroupPermissions")) or "")
        out.append(":".join([host, ctr or host] + ([perms] if perms else [])))
    return out


def _sysctls(value: Any) -> list[str]:
    name = "HostConfig.Sysctls"
    if value is None:
        return []
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ApiError(400, f"{name}: an object of name: value strings is expected")
    return [f"{k}={v}" for k, v in value.items()]


def _mount_text(i: int, m: Any) -> str:
    """One ``HostConfig.Mounts`` entry as ``--mount`` text (CSV, quoted by the csv module)."""
    name = f"HostConfig.Mounts[{i}]"
    m = _type(name, m, dict, "an object")
    from .translate import empty  # docker's zero values, nested ({"Propagation": ""} asks nothing)

    for key, v in m.items():
        if key not in MOUNT_FIELDS and not empty(v, key):
            raise ApiError(400, f"{name}.{key}: not supported by nspawnctl's Docker API")
    fields = [f"type={_str(f'{name}.Type', m.get('Type')) or 'volume'}"]
    if source := _str(f"{name}.Source", m.get("Source")):
        fields.append(f"source={source}")
    fields.append(f"target={_str(f'{name}.Target', m.get('Target')) or ''}")
    if _bool(f"{name}.ReadOnly", m.get("ReadOnly")):
        fields.append("readonly")
    tmpfs = _type(f"{name}.TmpfsOptions", m.get("TmpfsOptions") or {}, dict, "an object")
    for key, v in tmpfs.items():
        if key == "SizeBytes" and (size := _int(f"{name}.TmpfsOptions.SizeBytes", v)):
            fields.append(f"tmpfs-size={size}")
        elif key == "Mode" and (mode := _int(f"{name}.TmpfsOptions.Mode", v)):
            fields.append(f"tmpfs-mode={mode:o}")
        elif key not in ("SizeBytes", "Mode") and not empty(v):
            raise ApiError(400, f"{name}.TmpfsOptions.{key}: not supported by nspawnctl's Docker API")
    fields += _volume_options(name, m.get("VolumeOptions"))
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


def _volume_options(name: str, value: Any) -> list[str]:
    """``Mounts[].VolumeOptions`` as --mount's volume-* fields: NoCopy, Labels, Subpath, and
    DriverConfig of the ``local`` driver without options (nspawnctl's volumes are directories)."""
    name = f"{name}.VolumeOptions"
    opts = _type(name, value or {}, dict, "an object")
    out = []
    for key, v in opts.items():
        if key == "NoCopy" and _bool(f"{name}.NoCopy", v):
            out.append("volume-nocopy")
        elif key == "Labels" and v:
            labels = _type(f"{name}.Labels", v, dict, "an object of strings")
            if not all(isinstance(x, str) and k for k, x in labels.items()):
                raise ApiError(400, f"{name}.Labels: an object of strings is expected")
            out += [f"volume-label={k}={x}" for k, x in labels.items()]
        elif key == "Subpath" and (sub := _str(f"{name}.Subpath", v)):
            out.append(f"volume-subpath={sub}")
        elif key == "DriverConfig" and v:
            driver = _type(f"{name}.DriverConfig", v, dict, "an object")
            kind = _str(f"{name}.DriverConfig.Name", driver.get("Name"))
            if kind not in (None, "local") or set(driver) - {"Name", "Options"} or driver.get("Options"):
                raise ApiError(
                    400, f"{name}.DriverConfig: only the local driver, without options, is supported"
                )
        elif key not in ("NoCopy", "Labels", "Subpath", "DriverConfig"):
            from .translate import empty

            if not empty(v):
                raise ApiError(400, f"{name}.{key}: not supported by nspawnctl's Docker API")
    return out


def _health(value: Any) -> HealthFlags | None:
    """Config.Healthcheck as the --health-* flags; durations in ns, 0 the default."""
    from ..health import MIN_INTERVAL, HealthFlags, parse_duration, parse_retries

    name = "Healthcheck"
    if value is None:
        return None
    h = _type(name, value, dict, "an object")
    test = _strings(f"{name}.Test", h.get("Test"))
    cmd: str | None = None
    if test and test[0] == "CMD-SHELL" and len(test) == 2:
        cmd = test[1]
    elif test and test != ["NONE"]:
        raise ApiError(400, f'{name}.Test: ["CMD-SHELL", COMMAND] or ["NONE"] is expected (as --health-cmd)')

    def duration(key: str, low: int = 0) -> int | None:
        ns = _int(f"{name}.{key}", h.get(key))
        return None if ns is None else _checked(f"{name}.{key}", parse_duration, f"{ns}ns", key, low)

    retries = _int(f"{name}.Retries", h.get("Retries"))
    for key in h:
        if key not in ("Test", "Interval", "Timeout", "Retries", "StartPeriod", "StartInterval"):
            raise ApiError(400, f"{name}.{key}: not supported by nspawnctl's Docker API")
    return HealthFlags(
        cmd=cmd,
        interval=duration("Interval", MIN_INTERVAL),
        timeout=duration("Timeout", 1),
        retries=None if retries is None else _checked(f"{name}.Retries", parse_retries, retries, "Retries"),
        start_period=duration("StartPeriod"),
        start_interval=duration("StartInterval", MIN_INTERVAL),
        disabled=test == ["NONE"],
    )


# SettingsInput's fields -> the create field each comes from (a refused value names it)
SOURCES = {
    "read_only": "HostConfig.ReadonlyRootfs", "tmpfs": "HostConfig.Tmpfs", "cap_add": "HostConfig.CapAdd",
    "cap_drop": "HostConfig.CapDrop", "privileged": "HostConfig.Privileged",
    "security_opt": "HostConfig.SecurityOpt", "init": "HostConfig.Init", "stop_timeout": "StopTimeout",
    "add_host": "HostConfig.ExtraHosts", "dns": "HostConfig.Dns", "dns_search": "HostConfig.DnsSearch",
    "ulimit": "HostConfig.Ulimits", "device": "HostConfig.Devices", "shm_size": "HostConfig.ShmSize",
    "sysctl": "HostConfig.Sysctls", "cpuset_cpus": "HostConfig.CpusetCpus",
    "oom_score_adj": "HostConfig.OomScoreAdj", "cpu_shares": "HostConfig.CpuShares",
    "memory_swap": "HostConfig.MemorySwap", "cgroupns": "HostConfig.CgroupnsMode",
    "isolation": "HostConfig.Isolation", "volume_driver": "HostConfig.VolumeDriver",
    "mac_address": "MacAddress",
}  # fmt: skip
# dockerd's warning when it drops MemorySwappiness (moby's verifyPlatformContainerResources): here
# always, as on a cgroup v2 host; systemd has no property for memory.swappiness
SWAPPINESS_DISCARDED = (
    "Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. "
    "Memory swappiness discarded."
)


def _mac(body: dict[str, Any]) -> str | None:
    """The container's MAC address: ``Config.MacAddress`` (API < 1.44, docker-py) or the endpoint's
    ``NetworkingConfig.EndpointsConfig.*.MacAddress`` (the docker CLI since API 1.44); one address,
    the container has one link."""
    macs = {m} if (m := _str("MacAddress", body.get("MacAddress"))) else set()
    networking = body.get("NetworkingConfig")
    endpoints = networking.get("EndpointsConfig") if isinstance(networking, dict) else None
    for net, ep in (endpoints if isinstance(endpoints, dict) else {}).items():
        if isinstance(ep, dict) and (
            m := _str(f"NetworkingConfig.EndpointsConfig.{net}.MacAddress", ep.get("MacAddress"))
        ):
            macs.add(m)
    if len({m.lower() for m in macs}) > 1:
        raise ApiError(400, "MacAddress: one address is expected (the container has one link)")
    return next(iter(macs), None)


def _swappiness(value: Any) -> tuple[str, ...]:
    """HostConfig.MemorySwappiness: 0-100 (-1 or null: unset), accepted and discarded with
    dockerd's warning, never silently."""
    name = "HostConfig.MemorySwappiness"
    if value is None or value == -1:
        return ()
    n = _type(name, value, int, "an integer")
    if not 0 <= n <= 100:
        raise ApiError(400, f"{name}: {n}: the range is 0-100")
    return (SWAPPINESS_DISCARDED,)


def translate(body: dict[str, Any], host: dict[str, Any]) -> Extra:
    """The run settings of a create body (``host`` its HostConfig, an object)."""
    from ..runflags import Mount, SettingsInput, build
    from ..runopts import parse_stop_signal

    h = "HostConfig."
    mounts: list[Mount] = []
    for i, m in enumerate(_type(f"{h}Mounts", host.get("Mounts") or [], list, "a list of objects")):
        mounts.append(_checked(f"{h}Mounts[{i}]", Mount.parse, _mount_text(i, m)))
    shm = _int(f"{h}ShmSize", host.get("ShmSize"))
    oom = _int(f"{h}OomScoreAdj", host.get("OomScoreAdj"))
    shares = _int(f"{h}CpuShares", host.get("CpuShares"))
    swap = _int(f"{h}MemorySwap", host.get("MemorySwap"))
    timeout = body.get("StopTimeout")  # null is unset, 0 a real value (stop kills at once)
    given: dict[str, Any] = {
        "read_only": _bool(f"{h}ReadonlyRootfs", host.get("ReadonlyRootfs")),
        "tmpfs": _tmpfs(host.get("Tmpfs")),
        "cap_add": _strings(f"{h}CapAdd", host.get("CapAdd")),
        "cap_drop": _strings(f"{h}CapDrop", host.get("CapDrop")),
        "privileged": _bool(f"{h}Privileged", host.get("Privileged")),
        "security_opt": _strings(f"{h}SecurityOpt", host.get("SecurityOpt")),
        "init": _bool(f"{h}Init", host.get("Init")),
        "stop_timeout": None if timeout is None else str(_type("StopTimeout", timeout, int, "an integer")),
        "add_host": _strings(f"{h}ExtraHosts", host.get("ExtraHosts")),
        "dns": _strings(f"{h}Dns", host.get("Dns")),
        "dns_search": _strings(f"{h}DnsSearch", host.get("DnsSearch")),
        "ulimit": _ulimits(host.get("Ulimits")),
        "device": _devices(host.get("Devices")),
        "shm_size": None if shm is None else str(shm),
        "sysctl": _sysctls(host.get("Sysctls")),
        "cpuset_cpus": _str(f"{h}CpusetCpus", host.get("CpusetCpus")),
        "oom_score_adj": None if oom is None else str(oom),
        "cpu_shares": None if shares is None else str(shares),
        "memory_swap": None if swap is None else str(swap),
        "cgroupns": _str(f"{h}CgroupnsMode", host.get("CgroupnsMode")),
        "isolation": _str(f"{h}Isolation", host.get("Isolation")),
        "volume_driver": _str(f"{h}VolumeDriver", host.get("VolumeDriver")),
        "mac_address": _mac(body),
    }
    for key, value in given.items():  # each field alone first, so a refusal names its field
        if value:
            _checked(SOURCES[key], build, SettingsInput(**{key: value}))
    settings = _checked(f"{h}Mounts", build, SettingsInput(**given), [m.tmpfs for m in mounts if m.tmpfs])
    signal = _str("StopSignal", body.get("StopSignal"))
    return Extra(
        settings=settings,
        mounts=mounts,
        stop_signal=None if signal is None else _checked("StopSignal", parse_stop_signal, signal),
        health=_health(body.get("Healthcheck")),
        warnings=_swappiness(host.get("MemorySwappiness")),
    )
