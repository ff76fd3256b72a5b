"""What a container is: a frozen spec, stored as the container's .nspawn file.

The .nspawn file is the definition (systemd-nspawn reads it itself with ``--settings=override``,
and so does ``machinectl start``); nspawnctl's own keys go to ``[X-Nspawnctl]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import InvalidArgument
from .nspawnfile import OWN_SECTION, NspawnFile


@dataclass(frozen=True)
class RunDefaults:
    """What an image asks ``run`` to do when the user says nothing (ACI manifest, .nspawn, OCI config)."""

    command: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)  # "KEY=VALUE"
    workdir: str | None = None
    user: str | None = None  # "user" or "user:group", names or numbers
    boot: bool = False  # the image is an OS to boot (a .nspawn file with Boot=yes)
    ports: list[str] = field(default_factory=list)  # declared, not published: "8080/tcp", "http:8080/tcp"
    volumes: list[str] = field(default_factory=list)  # declared mount points: "/data", "name:/data:ro"
    # An OCI image's Entrypoint: ``run IMAGE ARGS`` keeps it and replaces ``command`` (its Cmd).
    # ACI and .nspawn images have none: their command is what ARGS replace, as before.
    entrypoint: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # OCI config Labels, shown by inspect
    stop_signal: str | None = None  # OCI StopSignal ("SIGQUIT"); None: SIGTERM


@dataclass(frozen=True)
class Volume:
    host: str
    container: str
    read_only: bool = False

    @classmethod
    def parse(cls, text: str) -> Volume:
        """``HOST:CONTAINER[:ro|rw]`` as docker's ``-v``; both paths absolute."""
        parts = text.split(":")
        ro = False
        if len(parts) == 3 and parts[2] in ("ro", "rw"):
            ro = parts[2] == "ro"
            parts = parts[:2]
        if len(parts) != 2 or not all(p.startswith("/") for p in parts):
            raise InvalidArgument(
                f"invalid volume {text!r}", hint="use -v /host/path:/container/path[:ro], both absolute"
            )
        return cls(parts[0], parts[1], ro)

    def bind_value(self) -> str:
        # nspawn's Bind= splits on ':' with backslash escapes.
        return f"{_escape_colon(self.host)}:{_escape_colon(self.container)}"

    def __str__(self) -> str:
        return f"{self.host}:{self.container}" + (":ro" if self.read_only else "")


def _escape_colon(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:")


def _unescape_colon(text: str) -> list[str]:
    out, cur, i = [], [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if text[i] == ":":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(text[i])
        i += 1
    out.append("".join(cur))
    return out


@dataclass(frozen=True)
class Limits:
    memory: int | None = None  # bytes -> MemoryMax
    cpus: float | None = None  # CPUs -> CPUQuotaPerSecUSec
    pids: int | None = None  # -> TasksMax


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    id: str
    image: str  # the reference as the user gave it
    image_id: str
    created: str
    command: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    volumes: list[Volume] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    boot: bool = False
    limits: Limits = field(default_factory=Limits)
    auto_remove: bool = False
    # The leading words of ``command`` that are the entrypoint (the image's, or --entrypoint);
    # ``command`` is always the whole argv, as the .nspawn file's Parameters= has it.
    entrypoint: list[str] = field(default_factory=list)
    stop_signal: str | None = None  # what ``stop`` sends the payload; None: SIGTERM

    @property
    def cmd(self) -> list[str]:
        """``command`` without its entrypoint: docker's Cmd."""
        n = len(self.entrypoint)
        return self.command[n:] if self.command[:n] == self.entrypoint else self.command

    def with_changes(self, **kw: object) -> ContainerSpec:
        return replace(self, **kw)  # type: ignore[arg-type]


def spec_to_file(spec: ContainerSpec, base: NspawnFile | None = None) -> NspawnFile:
    """Write ``spec`` into ``base`` (a new file by default), keeping everything else in it."""
    f = base or NspawnFile()
    f.set("Exec", "Boot", "yes" if spec.boot else "no")
    f.set_words("Exec", "Parameters", spec.command or None)
    f.set_all("Exec", "Environment", [_quote_env(e) for e in spec.env])
    f.set("Exec", "WorkingDirectory", spec.workdir)
    f.set("Exec", "User", spec.user)
    f.set("Exec", "Hostname", spec.hostname)
    # An app payload is PID 1 and gets SIGTERM on stop (nspawn's default would be SIGKILL at once),
    # or the image's StopSignal; a booted init gets nspawn's own default, SIGRTMIN+3 (orderly shutdown).
    f.set("Exec", "KillSignal", None if spec.boot else spec.stop_signal or "SIGTERM")
    f.set("Exec", "NotifyReady", "yes" if spec.boot else None)
    f.set_all("Files", "Bind", [v.bind_value() for v in spec.volumes if not v.read_only])
    f.set_all("Files", "BindReadOnly", [v.bind_value() for v in spec.volumes if v.read_only])
    own = {
        "Id": spec.id,
        "Image": spec.image,
        "ImageId": spec.image_id,
        "Created": spec.created,
        "MemoryMax": None if spec.limits.memory is None else str(spec.limits.memory),
        "CPUs": None if spec.limits.cpus is None else f"{spec.limits.cpus:g}",
        "TasksMax": None if spec.limits.pids is None else str(spec.limits.pids),
        "AutoRemove": "yes" if spec.auto_remove else None,
    }
    for key, value in own.items():
        f.set(OWN_SECTION, key, value)
    f.set_words(OWN_SECTION, "Entrypoint", spec.entrypoint or None)
    return f


def _quote_env(assignment: str) -> str:
    from .nspawnfile import quote_words

    return quote_words([assignment])


def file_to_spec(name: str, f: NspawnFile, where: Path | None = None) -> ContainerSpec:
    """Read a container's spec back; raises InvalidArgument when it is not an nspawnctl file."""
    own = OWN_SECTION
    cid = f.get(own, "Id")
    if not cid:
        raise InvalidArgument(f"{where or name}: not an nspawnctl container (no [{own}] Id=)")
    volumes = []
    for key, ro in (("Bind", False), ("BindReadOnly", True)):
        for value in f.get_all("Files", key):
            parts = _unescape_colon(value)
            host = parts[0]
            ctr = parts[1] if len(parts) > 1 else host
            volumes.append(Volume(host, ctr, ro))
    mem, cpus, pids = f.get(own, "MemoryMax"), f.get(own, "CPUs"), f.get(own, "TasksMax")
    boot = (f.get("Exec", "Boot") or "no").lower() in ("yes", "true", "1", "on")
    kill = f.get("Exec", "KillSignal")
    return ContainerSpec(
        name=name,
        id=cid,
        image=f.get(own, "Image") or "",
        image_id=f.get(own, "ImageId") or "",
        created=f.get(own, "Created") or "",
        command=f.get_words("Exec", "Parameters"),
        env=f.get_words("Exec", "Environment"),
        volumes=volumes,
        workdir=f.get("Exec", "WorkingDirectory"),
        user=f.get("Exec", "User"),
        hostname=f.get("Exec", "Hostname"),
        boot=boot,
        limits=Limits(
            memory=int(mem) if mem else None,
            cpus=float(cpus) if cpus else None,
            pids=int(pids) if pids else None,
        ),
        auto_remove=(f.get(own, "AutoRemove") or "no") == "yes",
        entrypoint=f.get_words(own, "Entrypoint"),
        stop_signal=None if boot or kill in (None, "SIGTERM") else kill,
    )
