"""The run/create flags as typed (:class:`SettingsInput`, ``--mount``'s :class:`Mount`) and their
check into :class:`~nspawnctl.runopts.RunSettings`: what the CLI's ``create``/``run`` and the
Docker API's create read. Out of :mod:`nspawnctl.runopts`, which every container's definition
needs (so a foreground ``run`` of the common forms loads it), because such a run never types these
flags: a dataclass costs ~0.5-1 ms to define at import (see :mod:`nspawnctl.status`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .cpumem import parse_cpu_shares, parse_memory_swap
from .errors import InvalidArgument
from .nspawnfile import parse_boolean
from .runopts import (
    BadValue,
    Device,
    RunSettings,
    Tmpfs,
    Ulimit,
    VolumeOptions,
    _bad,
    capabilities,
    check_path,
    parse_add_host,
    parse_bytes,
    parse_cgroupns,
    parse_cpuset,
    parse_dns,
    parse_dns_search,
    parse_isolation,
    parse_mac_address,
    parse_network_alias,
    parse_oom_score_adj,
    parse_security_opt,
    parse_stop_timeout,
    parse_subpath,
    parse_sysctl,
    parse_volume_driver,
)

if TYPE_CHECKING:
    from .spec import Volume


@dataclass
class SettingsInput:
    """The run/create flags as typed, turned into :class:`RunSettings` by :func:`build`."""

    read_only: bool = False
    tmpfs: list[str] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    security_opt: list[str] = field(default_factory=list)
    init: bool = False
    stop_timeout: str | None = None
    add_host: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    ulimit: list[str] = field(default_factory=list)
    device: list[str] = field(default_factory=list)
    shm_size: str | None = None
    sysctl: list[str] = field(default_factory=list)
    cpuset_cpus: str | None = None
    oom_score_adj: str | None = None
    cpu_shares: str | None = None
    memory_swap: str | None = None
    isolation: str | None = None
    volume_driver: str | None = None
    cgroupns: str | None = None
    mac_address: str | None = None
    network_alias: list[str] = field(default_factory=list)


def build(i: SettingsInput, mount_tmpfs: list[Tmpfs] | None = None) -> RunSettings:
    """Every flag checked at its type; the first bad one raises InvalidArgument."""
    plus, minus = capabilities(i.cap_add, i.cap_drop)
    if i.cgroupns is not None:
        parse_cgroupns(i.cgroupns)  # nothing to keep: nspawn's is always private
    sec = [parse_security_opt(s) for s in i.security_opt]
    tmpfs = [Tmpfs.parse(t) for t in i.tmpfs] + list(mount_tmpfs or [])
    ulimits: dict[str, Ulimit] = {}
    for text in i.ulimit:
        u = Ulimit.parse(text)
        ulimits[u.name] = u  # the last one of a name counts, as docker's
    sysctls = dict(parse_sysctl(s) for s in i.sysctl)
    shm = None if i.shm_size is None else parse_bytes(i.shm_size, "--shm-size")
    if shm is not None and shm <= 0:
        raise BadValue(i.shm_size, "--shm-size", "must be more than 0", hint="e.g. 64M")
    paths = [t.path for t in tmpfs] + (["/dev/shm"] if shm else [])
    for p in paths:
        if paths.count(p) > 1:
            raise InvalidArgument(f"two tmpfs mounts at {p}", hint="mount one file system per path")
    return RunSettings(
        read_only=i.read_only,
        tmpfs=tuple(tmpfs),
        cap_add=("all",) if i.privileged else plus,
        cap_drop=() if i.privileged else minus,
        privileged=i.privileged,
        no_new_privileges=_last_nnp(sec),
        seccomp_unconfined="seccomp=unconfined" in sec,
        init=i.init,
        stop_timeout=None if i.stop_timeout is None else parse_stop_timeout(i.stop_timeout),
        add_hosts=tuple(parse_add_host(h) for h in i.add_host),
        dns=tuple(parse_dns(d) for d in i.dns),
        dns_search=tuple(parse_dns_search(d) for d in i.dns_search),
        ulimits=tuple(ulimits.values()),
        devices=tuple(Device.parse(d) for d in i.device),
        shm_size=shm,
        sysctls=tuple(sysctls.items()),
        cpuset=None if i.cpuset_cpus is None else parse_cpuset(i.cpuset_cpus),
        oom_score_adj=None if i.oom_score_adj is None else parse_oom_score_adj(i.oom_score_adj),
        cpu_shares=None if i.cpu_shares is None else parse_cpu_shares(i.cpu_shares),
        memory_swap=None if i.memory_swap is None else parse_memory_swap(i.memory_swap),
        isolation=None if i.isolation is None else parse_isolation(i.isolation),
        volume_driver=None if i.volume_driver is None else parse_volume_driver(i.volume_driver),
        mac_address=None if i.mac_address is None else parse_mac_address(i.mac_address),
        network_aliases=tuple(dict.fromkeys(parse_network_alias(a) for a in i.network_alias)),
    )


def _last_nnp(security_opts: list[str]) -> bool:
    """The last no-new-privileges[=true|false] counts."""
    value = False
    for opt in security_opts:
        if opt in ("no-new-privileges", "new-privileges"):
            value = opt == "no-new-privileges"
    return value


# -- --mount --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mount:
    """One ``--mount`` in docker's CSV syntax; ``type`` bind | tmpfs | volume."""

    type: str
    target: str
    source: str | None = None
    read_only: bool = False
    tmpfs: Tmpfs | None = None
    options: VolumeOptions = VolumeOptions()  # type=volume's  # noqa: RUF009 (frozen)

    @classmethod
    def parse(cls, text: str) -> Mount:
        import csv

        try:
            fields = next(csv.reader([text]))
        except (csv.Error, StopIteration):
            raise _bad("--mount", text, "type=bind|tmpfs|volume,source=...,target=...") from None
        kind, source, target = "volume", None, None
        read_only = False
        size: str | None = None
        mode: str | None = None
        nocopy, subpath, labels = False, None, []
        for f in fields:
            key, eq, value = f.strip().partition("=")
            key = key.lower()
            if key == "type" and value in ("bind", "tmpfs", "volume"):
                kind = value
            elif key in ("source", "src") and value:
                source = value
            elif key in ("target", "dst", "destination") and value:
                target = value
            elif key in ("readonly", "ro"):
                try:
                    read_only = not eq or parse_boolean(value)
                except InvalidArgument:
                    raise _bad("--mount readonly", value, "true or false") from None
            elif key == "tmpfs-size" and value:
                size = value
            elif key == "tmpfs-mode" and value:
                mode = value
            elif key == "volume-nocopy":
                try:
                    nocopy = not eq or parse_boolean(value)
                except InvalidArgument:
                    raise _bad("--mount volume-nocopy", value, "true or false") from None
            elif key == "volume-subpath" and value:
                # bound from a file descriptor at each start, never by this path (run/subpaths.py)
                subpath = parse_subpath(value)
            elif key == "volume-label" and "=" in value and value.partition("=")[0]:
                labels.append(tuple(value.split("=", 1)))
            elif key == "volume-driver" and value:
                if value != "local":
                    raise _bad("--mount volume-driver", value, "volumes have only the 'local' driver")
            else:
                raise InvalidArgument(
                    f"invalid --mount field {f[:60]!r}",
                    hint="fields: type=bind|tmpfs|volume, source, target, readonly, tmpfs-size, tmpfs-mode, "
                    "volume-nocopy, volume-label, volume-subpath, volume-driver=local",
                )
        if target is None:
            raise _bad("--mount", text, "target=/path is required")
        target = check_path(target, "--mount target")
        options = VolumeOptions(nocopy, tuple((k, v) for k, v in labels), subpath)
        if options != VolumeOptions() and kind != "volume":
            raise InvalidArgument(
                f"--mount {text[:80]}: the volume-* fields need type=volume", hint="add type=volume"
            )
        if subpath and not source:
            raise InvalidArgument(
                f"--mount {text[:80]}: volume-subpath needs a volume's name in source=",
                hint="an anonymous volume is new and empty: it has no subdirectory yet",
            )
        if (size or mode) and kind != "tmpfs":
            raise InvalidArgument(
                f"--mount {text[:80]}: tmpfs-size and tmpfs-mode need type=tmpfs", hint="add type=tmpfs"
            )
        if kind == "tmpfs":
            if source:
                raise InvalidArgument(f"--mount {text[:80]}: a tmpfs has no source", hint="drop source=")
            opts = (
                (["ro"] if read_only else [])
                + ([f"size={size}"] if size else [])
                + ([f"mode={mode}"] if mode else [])
            )
            return cls(kind, target, None, read_only, Tmpfs.build(target, opts, f"--mount {text}"))
        if kind == "bind":
            if not source or not source.startswith("/"):
                raise InvalidArgument(
                    f"--mount {text[:80]}: a bind mount needs an absolute source=",
                    hint="e.g. type=bind,source=/srv/data,target=/data",
                )
        elif source is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", source):
            raise _bad(
                "volume name", source, "letters, digits, '_', '.', '-', starting with a letter or digit"
            )
        return cls(kind, target, source, read_only, None, options)

    def volume(self) -> Volume:
        """A bind mount as a -v volume."""
        from .spec import Volume

        assert self.source is not None
        return Volume(self.source, self.target, self.read_only)
