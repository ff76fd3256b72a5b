"""A docker ``containers/create`` body becomes the library's own ``RunOptions`` (as podman turns it
into its CLI options): each field goes through the parser of the run flag it stands for (runopts,
health, spec), so the API accepts and refuses exactly what ``nspawnctl run`` does. What the library
cannot honour is a 400 naming the field, never dropped: docker's clients send every field, so an
empty value ("", 0, false, [], {}, null) is no request; but a map whose keys carry the meaning
(``Volumes: {"/vol1": {}}``) asks for something whenever it has a key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument
from ..volumesfrom import VolumesFrom
from . import run_settings
from .http import ApiError

if TYPE_CHECKING:
    from ..client import RunOptions

CONFIG_TAKEN = {
    "Image", "Cmd", "Entrypoint", "Env", "WorkingDir", "User", "Hostname", "HostConfig", "ExposedPorts",
    "NetworkingConfig", "AttachStdout", "AttachStderr", "AttachStdin", "StdinOnce", "Labels",
    "Tty", "OpenStdin", "StopSignal", "StopTimeout", "Healthcheck", "Volumes", "MacAddress",
}  # fmt: skip
HOST_TAKEN = {
    "Binds", "AutoRemove", "RestartPolicy", "Memory", "NanoCpus", "PidsLimit", "NetworkMode",
    "PortBindings", "LogConfig", "ConsoleSize", "PublishAllPorts", "Mounts",
    "VolumesFrom",
} | set(run_settings.FIELDS)  # fmt: skip
# Fields a client may send that nspawnctl cannot honour, and why (the 400 says so)
LATER: dict[str, str] = {}
NETWORK_MODES = {"": None, "default": None, "bridge": None, "host": "host", "none": "none"}
RESTART = {
    "": "no",
    "no": "no",
    "on-failure": "on-failure",
    "always": "always",
    "unless-stopped": "unless-stopped",
}


# moby's map-typed fields (Go maps, not structs): each key is a request even with a zero value
# (Volumes {"/vol1": {}}, ExposedPorts {"80/tcp": {}}, Labels {"a": ""})
MAPS = frozenset({
    "Volumes", "ExposedPorts", "Labels", "PortBindings", "StorageOpt", "Tmpfs", "Sysctls",
    "Annotations", "Config", "EndpointsConfig", "DriverOpts", "Options",
})  # fmt: skip


def empty(value: Any, key: str = "") -> bool:
    """Whether a field (named ``key``) asks for nothing: docker's zero values, nested; a map field
    (:data:`MAPS`) with a key is never empty."""
    if isinstance(value, dict):
        if key in MAPS and value:
            return False
        return all(empty(v, k) for k, v in value.items())
    if isinstance(value, list):
        return all(empty(v) for v in value)
    return value in (None, "", 0, False)


@dataclass(frozen=True)
class CreateRequest:
    """What ``RunOptions`` does not hold: the image and the command."""

    image: str
    command: list[str] = field(default_factory=list)
    warnings: tuple[str, ...] = ()  # the response's Warnings: what was accepted and discarded


def strings(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"{name}: a list of strings is expected")
    return value


def _int(name: str, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"{name}: an integer is expected")
    return value


def _object(name: str, value: Any) -> dict[str, Any]:
    """A JSON object field (null is ``{}``)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, f"{name}: an object is expected")
    return value


def string(name: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(400, f"{name}: a string is expected")
    return value


def console_size(body: Any) -> tuple[int, int] | None:
    """HostConfig.ConsoleSize, [rows, columns]: the terminal's size at the start (docker run -t)."""
    host = body.get("HostConfig") if isinstance(body, dict) else None
    size = host.get("ConsoleSize") if isinstance(host, dict) else None
    if empty(size):
        return None
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 0xFFFF for v in size)
    ):
        raise ApiError(400, "HostConfig.ConsoleSize: [rows, columns], each 1-65535, is expected")
    return size[0], size[1]


def _flag(name: str, value: Any) -> bool:
    if value is not None and not isinstance(value, bool):
        raise ApiError(400, f"{name}: a boolean is expected")
    return bool(value)


# docker's defaults that are not zero values: the CLI sends them with every create
NO_REQUEST = {"MemorySwappiness": -1}


def _refuse_unknown(prefix: str, body: dict[str, Any], taken: set[str]) -> None:
    for key, value in body.items():
        if key in taken or empty(value, key) or (key in NO_REQUEST and value == NO_REQUEST[key]):
            continue
        why = LATER.get(key, "not supported by nspawnctl's Docker API")
        raise ApiError(400, f"{prefix}{key}: {why}")


def anonymous_volumes(value: Any, host: dict[str, Any], binds: list[Any]) -> list[Any]:
    """``Config.Volumes`` (``{"/vol1": {}}``: docker-py's ``volumes=``, ``docker create -v /vol1``)
    as anonymous volumes, as ``nspawnctl run -v /vol1``; a path a bind or a mount of the same
    body also covers is theirs (dockerd: the bind wins)."""
    from ..spec import Volume

    paths = _object("Volumes", value)
    if not all(isinstance(v, dict) and not v for v in paths.values()):
        raise ApiError(400, "Volumes: an object of path: {} is expected")
    taken = {b.container for b in binds}
    if isinstance(host.get("Tmpfs"), dict):
        taken.update(host["Tmpfs"])
    for m in host.get("Mounts") or []:
        if isinstance(m, dict) and isinstance(m.get("Target"), str):
            taken.add(m["Target"])
    out = []
    for path in paths:
        if not path.startswith("/") or ":" in path:
            raise ApiError(400, f"Volumes: {path[:80]!r}: an absolute path in the container is expected")
        if path.rstrip("/") not in {t.rstrip("/") for t in taken}:
            out.append(Volume.parse(path))
    return out


def create_options(body: Any, name: str | None) -> tuple[CreateRequest, Any]:
    """``(CreateRequest, RunOptions)`` for a create body; ApiError 400 for a field it cannot honour."""
    from ..client import RunOptions
    from ..spec import Limits, PortMapping, Volume
    from ..values import Cpus, MemoryBytes, PidsLimit

    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    host = _object("HostConfig", body.get("HostConfig"))
    _refuse_unknown("", body, CONFIG_TAKEN)
    _refuse_unknown("HostConfig.", host, HOST_TAKEN)
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ApiError(400, "Labels: an object of strings is expected")
    image = string("Image", body.get("Image"))
    if not image:
        raise ApiError(400, "Image: required")
    cmd = strings("Cmd", body.get("Cmd"))
    ep = body.get("Entrypoint")
    entrypoint: str | None = None
    if ep is not None:
        words = strings("Entrypoint", ep)
        if not words or words == [""]:
            entrypoint = ""
        else:
            entrypoint, cmd = words[0], [*words[1:], *cmd]
    log_type = string(
        "HostConfig.LogConfig.Type", _object("HostConfig.LogConfig", host.get("LogConfig")).get("Type")
    )
    if log_type not in ("", "journald", "json-file"):
        raise ApiError(400, f"HostConfig.LogConfig.Type: {log_type}: containers log to the journal")
    network_mode = string("HostConfig.NetworkMode", host.get("NetworkMode"))
    network, endpoint = networking(body, network_mode)
    policy = _object("HostConfig.RestartPolicy", host.get("RestartPolicy"))
    restart = string("HostConfig.RestartPolicy.Name", policy.get("Name"))
    if restart not in RESTART:
        raise ApiError(
            400, f"HostConfig.RestartPolicy.Name: {restart}: use no, on-failure, always, unless-stopped"
        )
    retries = _int("HostConfig.RestartPolicy.MaximumRetryCount", policy.get("MaximumRetryCount"))
    if retries and (restart != "on-failure" or retries < 0):
        raise ApiError(400, "HostConfig.RestartPolicy.MaximumRetryCount: a number > 0, only with on-failure")
    try:
        volumes = [Volume.parse(b) for b in strings("HostConfig.Binds", host.get("Binds"))]
        ports = []
        for key, bindings in _object("HostConfig.PortBindings", host.get("PortBindings")).items():
            if bindings is not None and not isinstance(bindings, list):
                raise ApiError(400, f"HostConfig.PortBindings: {key}: a list of bindings is expected")
            for item in bindings or [{}]:
                b = _object("HostConfig.PortBindings", item)
                host_port = string("HostConfig.PortBindings.HostPort", b.get("HostPort"))
                # an empty HostPort is a free port, picked at create (as -p CTRPORT)
                host_ip = string("HostConfig.PortBindings.HostIp", b.get("HostIp"))
                port, _, proto = key.partition("/")
                if ":" in host_ip:  # IPv6, as -p [::1]:8080:80
                    host_ip = f"[{host_ip}]"
                text = f"{host_ip}:{host_port}:{port}" if host_ip else f"{host_port}:{port}"
                ports.append(PortMapping.parse(f"{text}/{proto or 'tcp'}"))
        memory = _int("HostConfig.Memory", host.get("Memory"))
        nano = _int("HostConfig.NanoCpus", host.get("NanoCpus"))
        pids = _int("HostConfig.PidsLimit", host.get("PidsLimit"))
        if nano % 1000:
            raise ApiError(400, "HostConfig.NanoCpus: a multiple of 1000 (microseconds of CPU) is expected")
        limits = Limits(
            memory=MemoryBytes(memory) if memory else None,
            cpus=Cpus(nano // 1000) if nano else None,
            pids=PidsLimit(pids) if pids > 0 else None,
        )
        extra = run_settings.translate(body, host)
    except InvalidArgument as e:
        raise ApiError(400, str(e)) from None
    volumes_from = []  # docker's --volumes-from, resolved by the library's create
    for text in strings("HostConfig.VolumesFrom", host.get("VolumesFrom")):
        try:
            volumes_from.append(VolumesFrom.parse(text))
        except InvalidArgument as e:
            raise ApiError(400, f"HostConfig.VolumesFrom: {e.message}") from None
    options = RunOptions(
        name=(name or "").removeprefix("/") or None,  # docker's clients may send "/NAME"
        env=strings("Env", body.get("Env")),
        volumes=[*volumes, *anonymous_volumes(body.get("Volumes"), host, volumes)],
        workdir=string("WorkingDir", body.get("WorkingDir")) or None,
        user=string("User", body.get("User")) or None,
        hostname=string("Hostname", body.get("Hostname")) or None,
        limits=limits,
        auto_remove=bool(host.get("AutoRemove")),
        entrypoint=entrypoint,
        network=network,
        ports=ports,
        restart=f"on-failure:{retries}" if retries else RESTART[restart],
        labels=dict(labels),
        tty=_flag("Tty", body.get("Tty")),
        open_stdin=_flag("OpenStdin", body.get("OpenStdin")),
        stdin_once=_flag("StdinOnce", body.get("StdinOnce")),
        publish_all=_flag("HostConfig.PublishAllPorts", host.get("PublishAllPorts")),
        volumes_from=volumes_from,
    )
    options = extra.apply(options)
    if options.settings.memory_swap is not None:  # dockerd's check, a 400 naming the field
        from ..cpumem import check_swap

        try:
            check_swap(options.settings.memory_swap, memory or None, "HostConfig.MemorySwap")
        except InvalidArgument as e:
            raise ApiError(400, str(e)) from None
    if endpoint is not None:
        options = endpoint.apply(options)
    return CreateRequest(image, cmd, extra.warnings), options


@dataclass(frozen=True)
class Endpoint:
    """An EndpointsConfig entry nspawnctl honours: aliases (NetworkAlias=) and driver options
    (NetworkDriverOpt=, kept for inspect)."""

    aliases: tuple[str, ...] = ()
    driver_opts: tuple[tuple[str, str], ...] = ()

    def apply(self, options: RunOptions) -> RunOptions:
        import dataclasses

        settings = dataclasses.replace(
            options.settings, network_aliases=self.aliases, network_driver_opts=self.driver_opts
        )
        return dataclasses.replace(options, settings=settings)


ENDPOINT_IGNORED = ("NetworkID", "EndpointID")  # the daemon's own answers, echoed back by clients


def networking(body: dict[str, Any], network_mode: str) -> tuple[str | None, Endpoint | None]:
    """The network (HostConfig.NetworkMode: docker's modes or a network's name, which the library
    resolves: an unknown one is a 404) and NetworkingConfig.EndpointsConfig's entry for it. A
    container is on one network here, so a second entry is a 400; so is what a zone cannot do
    (a fixed IPAMConfig address: the zone leases addresses; links). Its MacAddress is read by
    run_settings (the container's host0)."""
    from ..runopts import parse_driver_opt, parse_network_alias

    if network_mode.startswith("container:"):
        raise ApiError(
            400, f"HostConfig.NetworkMode: {network_mode}: nspawnctl cannot share a network namespace"
        )
    named = None if network_mode in NETWORK_MODES else network_mode
    config = _object("NetworkingConfig", body.get("NetworkingConfig"))
    endpoints = {
        k: v
        for k, v in _object("NetworkingConfig.EndpointsConfig", config.get("EndpointsConfig")).items()
        if v is not None
    }
    if len(endpoints) > 1:
        raise ApiError(
            400,
            "NetworkingConfig.EndpointsConfig: a container is on one network in nspawnctl "
            f"(asked for {', '.join(sorted(endpoints))})",
        )
    if not endpoints:
        return (named if named is not None else NETWORK_MODES[network_mode]), None
    ((net, raw),) = endpoints.items()
    where = f"NetworkingConfig.EndpointsConfig.{net}"
    if named is None and network_mode in ("", "default") and net not in NETWORK_MODES:
        named = net  # docker: the endpoint's network when no mode names one
    if net != (named if named is not None else network_mode or "default") and not (
        net == "bridge" and network_mode in ("", "default")
    ):
        raise ApiError(400, f"{where}: not the container's network ({network_mode or 'default'})")
    ep = _object(where, raw)
    for key, value in ep.items():
        if key in ("Aliases", "DriverOpts", "MacAddress", *ENDPOINT_IGNORED):  # MAC: run_settings
            continue
        if key == "IPAMConfig" and not empty(_object(f"{where}.IPAMConfig", value)):
            raise ApiError(400, f"{where}.IPAMConfig: nspawnctl's zones lease addresses themselves")
        if not empty(value, key):
            raise ApiError(400, f"{where}.{key}: not supported by nspawnctl's networks")
    opts = _object(f"{where}.DriverOpts", ep.get("DriverOpts"))
    try:
        endpoint = Endpoint(
            aliases=tuple(
                dict.fromkeys(parse_network_alias(a) for a in strings(f"{where}.Aliases", ep.get("Aliases")))
            ),
            driver_opts=tuple(
                parse_driver_opt(f"{k}={string(f'{where}.DriverOpts', v)}") for k, v in opts.items()
            ),
        )
    except InvalidArgument as e:
        raise ApiError(400, f"{where}: {e}") from None
    return (named if named is not None else NETWORK_MODES.get(network_mode)), endpoint


MAX_AUTH_HEADER = 16 << 10
"""Bytes an X-Registry-Auth header may have (a user, a password, a server address: well below)."""


@dataclass(frozen=True)
class RegistryAuth:
    """docker's X-Registry-Auth: credentials for one pull, and the registry they are for."""

    credentials: tuple[str, str] | None = field(default=None, repr=False)
    server: str = ""  # serveraddress, "" when not given


def registry_auth(header: str | None) -> RegistryAuth:
    """Decode X-Registry-Auth (base64url JSON, padded or not: ``{username, password,
    serveraddress}``; ``{}`` or an empty header is anonymous). An identity token (docker's OAuth2
    refresh token) is refused: the library's registry client speaks Basic and the token spec's
    GET flow only. Malformed values are a 400 that never quotes the header."""
    import base64
    import binascii
    import json

    if header is None or not header.strip():
        return RegistryAuth()
    if len(header) > MAX_AUTH_HEADER:
        raise ApiError(400, "X-Registry-Auth: too large")
    text = header.strip()
    try:
        raw = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise ApiError(400, "X-Registry-Auth: not base64-encoded JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "X-Registry-Auth: a JSON object is expected")
    user = string("X-Registry-Auth username", value.get("username"))
    password = string("X-Registry-Auth password", value.get("password"))
    server = string("X-Registry-Auth serveraddress", value.get("serveraddress"))
    if string("X-Registry-Auth identitytoken", value.get("identitytoken")):
        raise ApiError(
            400, "X-Registry-Auth: identity tokens are not supported; give a username and password"
        )
    if string("X-Registry-Auth auth", value.get("auth")) and not user:
        # docker's config.json form: base64("user:password")
        try:
            user, _, password = base64.b64decode(value["auth"]).decode().partition(":")
        except (binascii.Error, ValueError):
            raise ApiError(400, "X-Registry-Auth: auth is not base64 of user:password") from None
    if not user:
        return RegistryAuth(server=server)
    return RegistryAuth((user, password), server)


def unix_time(field: str, text: str | None, *, zero_is_unset: bool = False) -> float | None:
    """docker's ``since``/``until`` query values: UNIX seconds, maybe with a fraction
    (``1700000000.123456789``), the only form dockerd parses (moby's ``ParseTimestamps``); docker's
    clients turn durations (``10m``) and RFC 3339 into that themselves. Nothing is no limit, and so is
    ``"0"`` where the endpoint means it so (logs); anything else is a 400 naming the field."""
    import math

    if not text or (zero_is_unset and text == "0"):
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ApiError(400, f"{field}: {text!r} is not a UNIX time")
    return seconds
