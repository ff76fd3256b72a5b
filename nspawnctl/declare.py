"""Declared containers: .nspawn files that say what should exist (``apply``, ``diff``, ``down``),
and the file that says what does (``generate``).

A definition is a systemd.nspawn(5) file named ``NAME.nspawn`` with ``[X-Nspawnctl] Image=REF``:
nspawn's own keys say how the container runs, nspawnctl's keys (``Network=``, ``Publish=``,
``Restart=``, ``Enable=``) the rest. ``Parameters=`` is the whole command line, as nspawn reads it;
without it the image's entrypoint and command run (or its init, for an image that boots).

Everything is checked, and every image found or pulled, before the first container is touched:
a mistake in any file changes nothing. The installed .nspawn file of each container is the user's
file as nspawnctl completes it (:func:`nspawnctl.spec.spec_to_file` onto it, so comments and keys
nspawnctl does not know survive); comparing that with the installed one says what would change.
"""

from __future__ import annotations

import signal as signals
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ContainerNotFound, DefinitionError, InvalidArgument, NspawnctlError
from .health import KEYS as HEALTH_KEYS
from .names import ContainerName, check_zone_name
from .nspawnfile import OWN_SECTION, NspawnFile, parse_boolean, split_words
from .runopts import OWN_KEYS as RUNOPTS_KEYS
from .spec import (
    NSPAWN_NETWORK_KEYS,
    SUBPATH_STAGES,
    ContainerSpec,
    PortMapping,
    Volume,
    check_bind_options,
    check_interface_name,
    check_port_mappings,
    file_to_spec,
    image_exposed,
    network_bridge,
    network_from_file,
    nspawn_network,
    owns_netns,
    parse_network,
    parse_nspawn_port,
    parse_publish,
    parse_restart,
    spec_to_file,
    unescape_colon,
)
from .values import Cpus, MemoryBytes, PidsLimit, check_env, check_exec, merge_env

if TYPE_CHECKING:
    from .client import Client
    from .store.images import Image

SUFFIX = ".nspawn"
TTY_KEYS = ("Tty", "OpenStdin", "StdinOnce")  # docker's, for a start with a client attached
# nspawnctl's keys a definition may set; the generated ones are replaced on every apply.
USER_KEYS = (
    "Image",
    "Network",
    "Publish",
    "Restart",
    "Enable",
    "Entrypoint",
    "MemoryMax",
    "CPUs",
    "TasksMax",
    *RUNOPTS_KEYS,  # docker's further run options
    *HEALTH_KEYS,  # health checks
    "AutoUpdate",
    "VolumeSubpath",  # --mount ...,volume-subpath= (spec.subpath_stages)
    "Label",
    *TTY_KEYS,  # issue 15: Tty, OpenStdin, StdinOnce
    "UnsetEnvironment",  # the Docker API's bare Env entries (dockerd: the variable is unset)
)
# Expose=: the image's ports; Name=: the file's name (my_app.nspawn: container my_app, machine my-app)
GENERATED_KEYS = ("Id", "ImageId", "Created", "AutoRemove", "Expose", "Name")
# What differs between two equal containers (ImageId does count: a tag pulled again may be new).
IGNORED = {(OWN_SECTION, "Id"), (OWN_SECTION, "Created")}
# Keys a change of which needs no restart of the running container.
NO_RESTART = {(OWN_SECTION, "Enable")}
SYS_NET = Path("/sys/class/net")  # a bridge has SYS_NET/NAME/bridge/


@dataclass(frozen=True)
class Definition:
    """One NAME.nspawn file, parsed and checked."""

    name: str  # the machine name (names.py)
    path: Path
    file: NspawnFile  # the user's file, without the keys nspawnctl generates
    image: str
    enable: bool = True
    given: str | None = None  # the file's name when it is not the machine name (my_app.nspawn)

    @property
    def shown(self) -> str:
        return self.given or self.name

    def where(self, section: str, key: str) -> str:
        return self.file.where(section, key)


@dataclass(frozen=True)
class Change:
    section: str
    key: str
    old: list[str]
    new: list[str]

    def __str__(self) -> str:
        return f"[{self.section}] {self.key}: {_show(self.old)} -> {_show(self.new)}"


@dataclass
class PlanItem:
    """What ``apply`` would do to one container, and why."""

    definition: Definition
    action: str  # create | recreate | update | unchanged
    changes: list[Change] = field(default_factory=list)
    spec: ContainerSpec | None = None  # what it would be; None when its image is still to be pulled
    file: NspawnFile | None = None  # its .nspawn file as it would be written
    image: Image | None = None
    installed: ContainerSpec | None = None
    notices: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def needs_restart(self) -> bool:
        return self.action == "recreate" or any((c.section, c.key) not in NO_RESTART for c in self.changes)


@dataclass(frozen=True)
class Outcome:
    name: str
    action: str  # created | recreated | updated | unchanged | removed | missing | failed
    text: str  # "web created", "db updated (restarted)", ...
    error: NspawnctlError | None = None


# -- loading -------------------------------------------------------------------------------------
def definition_files(path: str | Path) -> list[Path]:
    """``FILE.nspawn``, or every ``*.nspawn`` in a directory, sorted."""
    p = Path(path)
    if p.is_dir():
        files = sorted(x for x in p.glob(f"*{SUFFIX}") if x.is_file())
        if not files:
            raise DefinitionError(f"{p}: no *{SUFFIX} files in this directory")
        return files
    if not p.exists():
        raise DefinitionError(f"{p}: no such file or directory")
    if not p.name.endswith(SUFFIX):
        raise DefinitionError(
            f"{p}: a definition is a file named NAME{SUFFIX}",
            hint="the file's name is the container's name: rename it to NAME.nspawn",
        )
    return [p]


def name_of(path: Path) -> ContainerName:
    """The container a file defines: its file name, a docker name (``my_app.nspawn`` is container
    ``my_app``, machine ``my-app``)."""
    name = path.name[: -len(SUFFIX)]
    try:
        return ContainerName.parse(name)
    except InvalidArgument as e:
        raise DefinitionError(
            f"{path}: the file's name is the container's name: {e.message}", e.hint
        ) from None


def load(path: str | Path) -> list[Definition]:
    """Parse and check every definition; all errors of all files at once, each as FILE:LINE."""
    definitions, errors = [], []
    for p in definition_files(path):
        try:
            definitions.append(load_file(p))
        except DefinitionError as e:
            errors.append(e.message)
    if errors:
        raise DefinitionError("\n".join(errors), hint="fix the file(s); nothing was changed")
    return definitions


def load_file(path: Path) -> Definition:
    name = name_of(path)
    try:
        text = path.read_bytes().decode()  # no universal newlines: a CR is refused, not a new line
    except (OSError, UnicodeDecodeError) as e:
        raise DefinitionError(f"{path}: cannot read it: {getattr(e, 'strerror', None) or e}") from None
    try:
        f = NspawnFile.parse(text, str(path))
    except InvalidArgument as e:
        raise DefinitionError(e.message, e.hint) from None
    errors = _check(f)
    image = f.get(OWN_SECTION, "Image")
    if not image:
        errors.insert(0, f"{path}: no Image= in [{OWN_SECTION}]")
    if errors:
        raise DefinitionError("\n".join(errors))
    assert image is not None
    enable = parse_boolean(f.get(OWN_SECTION, "Enable") or "yes")
    f = f.copy()
    for key in GENERATED_KEYS:
        f.set(OWN_SECTION, key, None)
    return Definition(name.machine, path, f, image, enable, name.kept)


def _check(f: NspawnFile) -> list[str]:
    """Every value nspawnctl reads, checked where it stands: ``FILE:LINE: Key=: what is wrong``."""
    errors: list[str] = []
    name = f.filename or "<string>"
    for a in f.assignments():
        at = f"{name}:{a.lineno}" if a.lineno else name
        try:
            if a.section == OWN_SECTION:
                _check_own(a.key, a.value)
            elif a.section == "Exec":
                _check_exec(a.key, a.value)
            elif a.section == "Files" and a.key in ("Bind", "BindReadOnly") and a.value:
                _check_bind(a.value)
            elif a.section == "Network":
                _check_network(a.key, a.value)
        except InvalidArgument as e:
            errors.append(f"{at}: {a.key}={a.value}: {e.message}" + (f" ({e.hint})" if e.hint else ""))
    if errors:
        return errors
    errors += _check_network_choice(f)
    ports = port_lines(f)
    seen: dict[tuple[str, int], str] = {}
    for port, at in ports:
        key = (port.protocol, port.host_port)
        if key in seen:
            errors.append(
                f"{at}: port {port.host_port}/{port.protocol} is published twice (also {seen[key]})"
            )
        seen.setdefault(key, at)
    if not errors and ports:
        network = declared_network(f)
        if network is not None and not owns_netns(network):
            port, at = ports[0]
            errors.append(
                f"{at}: publishing {port} needs a network of the container's own "
                f"(Network=veth or zone:NAME), not {network}"
            )
    return errors


def _check_network_choice(f: NspawnFile) -> list[str]:
    """nspawnctl's Network= and nspawn's own [Network] keys must not say different things: one of
    them would be dropped without a word (and a Bridge= read as the host's network was)."""
    own, theirs = f.get(OWN_SECTION, "Network"), nspawn_network(f)
    keys = [a for a in f.assignments("Network") if a.key in NSPAWN_NETWORK_KEYS and a.value]
    name = f.filename or "<string>"
    at = f"{name}:{keys[0].lineno}" if keys and keys[0].lineno else name
    if f.get("Network", "Zone") and f.get("Network", "Bridge"):
        return [f"{at}: Zone= and Bridge= cannot both be set: a container joins one bridge"]
    if not own or theirs is None or not keys:
        return []
    mine = parse_network(own)
    if mine == theirs or {mine, theirs} <= {"none", "private"}:
        return []
    return [
        f"{at}: [Network] {keys[0].key}={keys[0].value} means network {theirs}, but "
        f"{f.where(OWN_SECTION, 'Network')} says Network={own}: keep one of them"
    ]


def _check_own(key: str, value: str) -> None:
    if key not in USER_KEYS + GENERATED_KEYS:
        raise InvalidArgument(
            f"unknown key in [{OWN_SECTION}]", hint=f"nspawnctl's keys are {', '.join(USER_KEYS)}"
        )
    if key == "Network":
        _check_bridge(parse_network(value))
    elif key == "Publish" and value:
        check_port_mappings([parse_publish(value)])
    elif key == "Restart":
        parse_restart(value)
    elif key == "VolumeSubpath":  # VOLUME_PATH:SUB:DEST, the bind a stage Bind= stands for
        parts = unescape_colon(value)
        if len(parts) != 3 or not (Path(parts[0]) / parts[1]).exists():
            raise InvalidArgument("no such volume subpath", hint="the form is VOLUME_PATH:SUB:DEST")
    elif key == "Enable" or key in TTY_KEYS:
        parse_boolean(value)
    elif key == "Entrypoint":
        split_words(value)
    elif key == "MemoryMax":
        MemoryBytes.parse(value, None)
    elif key == "CPUs":
        Cpus.parse(value, None)
    elif key == "TasksMax":
        PidsLimit.parse(value, None)
    elif key == "Label" and value:
        from .labels import labels_from_words

        labels_from_words(split_words(value))
    elif key == "UnsetEnvironment":
        names = split_words(value)
        check_env(names, f"[{OWN_SECTION}] UnsetEnvironment=", bare=True)
        if any("=" in n for n in names):
            raise InvalidArgument(
                f"[{OWN_SECTION}] UnsetEnvironment= takes variable names",
                hint="e.g. UnsetEnvironment=FOO BAR",
            )
    elif key.startswith("Health") or key == "AutoUpdate":  # issue 14
        from .health import check_key

        check_key(key, value)
    else:
        from .runopts import check_own

        check_own(key, value)


def _check_exec(key: str, value: str) -> None:
    if key in ("Boot", "NotifyReady"):
        parse_boolean(value)
    elif key == "Parameters":
        split_words(value)
    elif key == "Environment":
        for word in split_words(value):
            if "=" not in word or word.startswith("="):
                raise InvalidArgument(f"{word!r} is not KEY=VALUE")
    elif key == "PrivateUsers" and value.lower() != "pick":
        try:
            parse_boolean(value)
        except InvalidArgument:
            raise InvalidArgument(
                "nspawnctl supports PrivateUsers=pick (a user namespace) or no (none)"
            ) from None
    elif key == "KillSignal" and value:
        sig = value.upper()
        try:
            signals.Signals[sig if sig.startswith("SIG") else f"SIG{sig}"]
        except KeyError:
            if not (sig.startswith("SIGRTMIN") or sig.startswith("RTMIN")):
                raise InvalidArgument("not a signal name") from None


def _check_bind(value: str) -> None:
    volume = Volume.from_bind(value)
    host = volume.host.lstrip("+-")
    if not host.startswith("/"):
        raise InvalidArgument("the host path must be absolute")
    if SUBPATH_STAGES not in Path(host).parents and not Path(host).exists():  # a stage: VolumeSubpath=
        raise InvalidArgument(f"{host} does not exist", hint="create it first")
    check_bind_options(volume)


def _check_network(key: str, value: str) -> None:
    if key == "Zone" and value:
        check_zone_name(value)
    elif key == "Bridge" and value:
        _check_bridge(f"bridge:{check_interface_name(value)}")
    elif key in ("Private", "VirtualEthernet"):
        parse_boolean(value)
    elif key == "Port" and value:
        check_port_mappings([parse_nspawn_port(value)])


def _check_bridge(network: str) -> None:
    """nspawn puts the container's veth onto an existing bridge; it does not make one."""
    bridge = network_bridge(network)
    if bridge is not None and not (SYS_NET / bridge / "bridge").is_dir():
        raise InvalidArgument(
            f"there is no bridge {bridge} on this host",
            hint=f"create it first (ip link add {bridge} type bridge), or use Network=zone:NAME",
        )


def declared_network(f: NspawnFile) -> str | None:
    """The network the file asks for, or None when it says nothing (then the default applies)."""
    if f.get(OWN_SECTION, "Network") or nspawn_network(f) is not None:
        return network_from_file(f)
    return None


def port_lines(f: NspawnFile) -> list[tuple[PortMapping, str]]:
    """Each published port of a (checked) file with the ``FILE:LINE`` that publishes it, in the
    order of :func:`nspawnctl.spec.ports_from_file`."""
    name = f.filename or "<string>"
    out = []
    for section, key, parse in (
        (OWN_SECTION, "Publish", parse_publish),
        ("Network", "Port", parse_nspawn_port),
    ):
        these: list[tuple[PortMapping, str]] = []
        for a in f.assignments(section, key):
            if a.value:
                these.append((parse(a.value), f"{name}:{a.lineno}" if a.lineno else name))
            else:  # an empty assignment resets the list
                these.clear()
        out += these
    return out


# -- what the container should be ------------------------------------------------------------
def desired(
    d: Definition, image: Image, installed: ContainerSpec | None = None
) -> tuple[ContainerSpec, NspawnFile, list[str]]:
    """The container ``d`` defines, made from ``image`` (whose defaults fill what the file leaves
    out), and its .nspawn file; the Id and creation time of ``installed`` are kept (logs stay
    together), unless the image changed. A file that names no network keeps the installed
    container's (the default is decided once, when the container is made)."""
    from .idmap import idmap_volumes
    from .net import default_network

    f = d.file.copy()
    mem = f.get(OWN_SECTION, "MemoryMax")
    if mem:
        f.set(OWN_SECTION, "MemoryMax", str(MemoryBytes.parse(mem, None)))
    f.set(OWN_SECTION, "Id", "-")  # file_to_spec wants one; spec_to_file writes the real one
    try:
        spec = file_to_spec(d.name, f, d.path)
    except InvalidArgument as e:  # its message names the file already
        raise DefinitionError(e.message, e.hint) from None
    defaults = image.defaults
    has_params = bool(f.get_all("Exec", "Parameters"))
    boot_value = f.get("Exec", "Boot")
    boot = parse_boolean(boot_value) if boot_value else defaults.boot and not has_params
    if boot:
        entrypoint, command = [], spec.command or defaults.command
    elif has_params:
        entrypoint, command = spec.entrypoint, spec.command
    else:
        entrypoint, command = defaults.entrypoint, [*defaults.entrypoint, *defaults.command]
    if not boot and not command:
        raise DefinitionError(
            f"{d.path}: no Parameters= in [Exec] and image {d.image} has no default command",
            hint="say what to run: Parameters=/bin/sh -c '...'",
        )
    notices: list[str] = []
    network = declared_network(f)
    if network is None and installed is not None and (owns_netns(installed.network) or not spec.ports):
        network = installed.network
    if network is None:
        ports: list[object] = list(spec.ports)
        network, notice = default_network(None, ports)
        if notice:
            notices.append(f"{d.name}: {notice}")
    private_users = spec.private_users if f.get("Exec", "PrivateUsers") else True
    volumes = spec.volumes
    if private_users:
        volumes = idmap_volumes(volumes, lambda text: notices.append(f"{d.name}: {text}"))
    try:
        image_env = check_env(defaults.env, f"Env of image {d.image}")
        check_env(spec.env, str(d.path), bare=True)  # bare: UnsetEnvironment=
    except InvalidArgument as e:
        raise DefinitionError(f"{d.path}: {e.message}", e.hint) from None
    keep = installed is not None and installed.image_id == image.id
    spec = replace(
        spec,
        id=installed.id if keep and installed else _new_id(),
        created=installed.created if keep and installed else datetime.now(UTC).isoformat(timespec="seconds"),
        image=d.image,
        image_id=image.id,
        boot=boot,
        entrypoint=list(entrypoint),
        command=list(command),
        env=merge_env(image_env, spec.env),
        workdir=spec.workdir or defaults.workdir,
        user=spec.user or defaults.user,
        stop_signal=None
        if boot
        else (spec.stop_signal if f.get("Exec", "KillSignal") else defaults.stop_signal),
        network=network,
        volumes=volumes,
        private_users=private_users,
        auto_remove=False,
        exposed=image_exposed(defaults.ports, d.image),
        labels={**defaults.labels, **spec.labels},  # the file's win over the image's
        given_name=d.given,
    )
    try:
        check_exec(spec.command, spec.env, str(d.path))
        return spec, spec_to_file(spec, f), notices
    except InvalidArgument as e:
        raise DefinitionError(f"{d.path}: {e.message}", e.hint) from None


def changes(old: NspawnFile, new: NspawnFile) -> list[Change]:
    """Differences in what the files say (comments and order aside), Id and Created ignored."""
    a, b = _values(old), _values(new)
    out = []
    for key in [*a, *(k for k in b if k not in a)]:
        if key in IGNORED or a.get(key, []) == b.get(key, []):
            continue
        out.append(Change(key[0], key[1], a.get(key, []), b.get(key, [])))
    return out


def _values(f: NspawnFile) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for a in f.assignments():
        if (a.section, a.key) not in out:
            out[(a.section, a.key)] = f.get_all(a.section, a.key)
    return {k: v for k, v in out.items() if v}


def _show(values: list[str]) -> str:
    return ", ".join(values) if values else "(unset)"


# -- plan ------------------------------------------------------------------------------------------
def plan(
    client: Client,
    definitions: list[Definition],
    pull: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[PlanItem]:
    """What applying ``definitions`` would do. With ``pull``, images missing here are pulled now
    (their errors name the file and line of ``Image=``); without, they are reported as to be pulled."""
    from .errors import ImageNotFound, InvalidReference

    store = client.containers.store
    errors: list[str] = []
    mine = store.names()
    found: list[tuple[Definition, ContainerSpec | None, Image | None]] = []
    for d in definitions:  # first what costs nothing: names, installed containers, local images
        installed: ContainerSpec | None = None
        if d.name in mine:
            try:
                installed = store.get(d.name)
            except (ContainerNotFound, InvalidArgument) as e:
                errors.append(f"{d.path}: the installed container {d.name} cannot be read: {e}")
                continue
            if installed.given_name != d.given:
                errors.append(
                    f"{d.path}: {store.taken_message(d.name, d.shown)}",
                )
                continue
            if installed.auto_remove:
                errors.append(
                    f"{d.path}: {d.name} is a --rm container made by 'nspawnctl run'; "
                    f"remove it first (nspawnctl rm -f {d.name})"
                )
                continue
        elif store.in_use(d.name):
            errors.append(
                f"{d.path}: the name {d.name} is taken by a machine nspawnctl did not make "
                f"({store.root(d.name)} or its .nspawn file exists)"
            )
            continue
        try:
            found.append((d, installed, client.images.get(d.image)))
        except InvalidReference as e:
            errors.append(f"{d.where(OWN_SECTION, 'Image')}: Image={d.image}: {e.message}")
        except ImageNotFound:
            found.append((d, installed, None))
    if errors:
        raise DefinitionError("\n".join(errors), hint="nothing was changed")
    items: list[PlanItem] = []
    for d, installed, image in found:
        if image is None and pull:
            if progress:
                progress(f"pulling {d.image} for {d.name}")
            try:
                image = client.images.pull(d.image).image
            except (NspawnctlError, OSError) as e:
                errors.append(
                    f"{d.where(OWN_SECTION, 'Image')}: image {d.image} is not here and cannot be "
                    f"pulled: {getattr(e, 'message', None) or e}"
                )
                continue
        if image is None:  # only without pull: say what would happen
            items.append(PlanItem(d, "recreate" if installed else "create", installed=installed))
            continue
        try:
            spec, f, notices = desired(d, image, installed)
        except DefinitionError as e:
            errors.append(e.message)
            continue
        item = PlanItem(d, "create", spec=spec, file=f, image=image, installed=installed, notices=notices)
        if installed is not None:
            _, current = store.definition(d.name)
            item.changes = changes(current, f)
            if installed.image_id != image.id:
                item.action = "recreate"
            elif item.changes:
                item.action = "update"
            else:
                item.action = "unchanged"
        items.append(item)
    if not errors:
        errors = _check_ports_across(items) or _check_host(client, items)
    if errors:
        raise DefinitionError("\n".join(errors), hint="nothing was changed")
    return items


def _check_ports_across(items: list[PlanItem]) -> list[str]:
    """Two files publishing one host port: the second container could never start."""
    errors: list[str] = []
    owners: dict[tuple[str, int], tuple[str, str]] = {}
    for item in items:
        for pm, at in port_lines(item.definition.file):
            key = (pm.protocol, pm.host_port)
            if key in owners and owners[key][0] != item.name:
                errors.append(
                    f"{at}: port {pm.host_port}/{pm.protocol} is published by {owners[key][0]} "
                    f"too ({owners[key][1]})"
                )
            owners.setdefault(key, (item.name, at))
    return errors


def _check_host(client: Client, items: list[PlanItem]) -> list[str]:
    """What the host must give the containers ``apply`` will start: their published ports free
    (ports the same container holds now aside: it is stopped before it starts again), and
    systemd-networkd running for a veth or zone network (it addresses and masquerades the link)."""
    from .errors import PortInUse
    from .net import check_ports
    from .net import state as net_state
    from .net.detect import networkd_running

    errors: list[str] = []
    networkd: bool | None = None
    for item in items:
        spec = item.spec
        if spec is None or not (spec.ports or owns_netns(spec.network)) or not _will_start(client, item):
            continue
        if owns_netns(spec.network):
            networkd = networkd_running() if networkd is None else networkd
            if not networkd:
                errors.append(
                    f"{_network_where(item.definition)}: network {spec.network} needs systemd-networkd, "
                    "which is not running (systemctl enable --now systemd-networkd), or choose "
                    "Network=host|none|private"
                )
                continue
        st = net_state(item.name)
        held = set(st.ports) if st else set()
        for pm, at in port_lines(item.definition.file):
            if str(pm) in held:
                continue
            try:
                check_ports(client.paths, replace(spec, ports=[pm]))
            except (PortInUse, InvalidArgument) as e:
                errors.append(f"{at}: {e.message}" + (f" ({e.hint})" if e.hint else ""))
    return errors


def _will_start(client: Client, item: PlanItem) -> bool:
    if item.action in ("create", "recreate", "update"):
        return item.action != "update" or item.needs_restart
    return not client.containers.get(item.name).running  # apply starts what is stopped


def _network_where(d: Definition) -> str:
    """FILE:LINE of what chose a network of the container's own: Network=, Zone=, or a port."""
    f = d.file
    if f.get(OWN_SECTION, "Network"):
        return f.where(OWN_SECTION, "Network")
    if f.get("Network", "Zone"):
        return f.where("Network", "Zone")
    ports = port_lines(f)
    return ports[0][1] if ports else str(d.path)


# -- apply -------------------------------------------------------------------------------------
def apply(
    client: Client,
    path: str | Path,
    report: Callable[[Outcome], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> list[Outcome]:
    """Make the containers the files define exist and run: new ones created, changed ones
    rewritten and restarted, the others left alone (started if they were not running). They are
    persistent (``machinectl start NAME`` works) and enabled at boot unless ``Enable=no``."""
    items = plan(client, load(path), pull=True, progress=notify)
    outcomes = []
    for item in items:
        for text in item.notices if item.action != "unchanged" else []:
            if notify:
                notify(text)
        try:
            outcome = _apply_one(client, item)
        except NspawnctlError as e:
            outcome = Outcome(item.name, "failed", f"{item.name} failed: {e.message}", e)
        outcomes.append(outcome)
        if report:
            report(outcome)
    return outcomes


def _apply_one(client: Client, item: PlanItem) -> Outcome:
    c = client.containers
    store = c.store
    name, shown = item.name, item.definition.shown  # the machine name; the name as given (names.py)
    assert item.spec is not None and item.file is not None and item.image is not None
    if item.action == "create":
        store.create(item.spec, item.image, item.file)
        try:
            c.persist(name)
            c.start(name)
        except NspawnctlError as e:  # all or nothing: a container that cannot start is not left
            left = _remove_created(client, name)
            gone = f"; removing it failed too ({'; '.join(left)}): nspawnctl rm -f {name}" if left else ""
            text = f"{shown} failed: {e.message}{gone or '; it was removed again'}"
            return Outcome(shown, "failed", text, e)
        _enablement(client, item)  # only what started is started at boot
        return Outcome(shown, "created", f"{shown} created")
    running = c.get(name).running
    if item.action == "unchanged":
        _, current = store.definition(name)
        if current.render() != item.file.render():  # comments or order: no restart for those
            with store.locked(name):  # a connect's read-modify-write of the file ends first
                store.rewrite(item.spec, item.file)
        if item.definition.enable and not c.is_enabled(name):  # made by run, or disabled by hand
            c.persist(name)
            _enablement(client, item)
        if running:
            return Outcome(shown, "unchanged", f"{shown} unchanged")
        c.start(name)
        return Outcome(shown, "unchanged", f"{shown} unchanged (started)")
    restart = item.needs_restart
    if running and restart:
        c.stop(name)
    previous: tuple[Path, NspawnFile] | None = None  # put back (with the old root) if the new one fails
    staged = False  # the old root kept aside until the new definition has started
    try:
        # under the container's lock (no start reads the definition meanwhile); one that needs a
        # restart is refused if the container was started since the stop. Released for the start,
        # which takes it itself.
        with c.rewriting(name) if restart else store.locked(name):
            previous = store.definition(name)
            if item.action == "recreate":
                store.recreate(item.spec, item.image, item.file, keep_old=restart)
                staged = restart
            else:
                store.rewrite(item.spec, item.file)
            c.persist(name)
        if restart:
            c.start(name)
    except NspawnctlError as e:
        if previous is None:  # nothing was changed (started meanwhile): it is left as it is
            return Outcome(shown, "failed", f"{shown} failed: {e.message}", e)
        return _roll_back(client, item, previous, staged, running, e)
    if staged:
        store.finish_recreate(name)
    _enablement(client, item)
    if not restart:
        return Outcome(shown, "updated", f"{shown} updated")
    how = "restarted" if running else "started"
    if item.action == "recreate":
        return Outcome(shown, "recreated", f"{shown} recreated (new image, {how})")
    return Outcome(shown, "updated", f"{shown} updated ({how})")


def _attempt(left: list[str], what: str, step: Callable[[], object]) -> bool:
    """Run one step of a clean-up that goes on whatever fails; a failure is noted in ``left``."""
    try:
        step()
        return True
    except (NspawnctlError, OSError) as e:
        left.append(f"{what}: {e.message if isinstance(e, NspawnctlError) else e}")
        return False


def _remove_created(client: Client, name: str) -> list[str]:
    """Undo a create whose start failed, each step on its own (a failed one does not keep the
    others from running): drop-in and enablement, unit, network, snapshot and files. What could
    not be undone, as "what: why"."""
    from . import net

    c = client.containers
    left: list[str] = []

    _attempt(left, "unit drop-in", lambda: c.unpersist(name))
    if _attempt(left, "container", lambda: c.remove(name, force=True)):
        return left
    _attempt(left, "network", lambda: net.down(client.paths, name))
    try:
        running = c.get(name).running
    except NspawnctlError:
        running = True  # unknown: its root is not pulled from under it
    if not running:
        _attempt(left, "files", lambda: c.store.remove(name))
    return left


def _roll_back(
    client: Client,
    item: PlanItem,
    previous: tuple[Path, NspawnFile],
    staged: bool,
    was_running: bool,
    error: NspawnctlError,
) -> Outcome:
    """The new definition did not start (or could not be written): the previous one comes back,
    with its root when a recreate kept it aside, and runs again if it ran."""
    c, name = client.containers, item.name
    left: list[str] = []

    _attempt(left, "stop", lambda: c.stop(name))  # whatever of the failed start is still there
    path, file = previous

    def restore() -> None:
        with c.rewriting(name):  # not under a start meanwhile (of the new definition)
            if staged:
                c.store.undo_recreate(name, path, file)
            else:
                c.store.restore_definition(name, path, file)

    restored = _attempt(left, "previous root" if staged else "previous definition", restore)
    if restored:
        _attempt(left, "unit drop-in", lambda: c.persist(name))
    what = "recreate" if item.action == "recreate" else "update"
    text = f"{name}: {what} failed ({error.message})"
    if left:
        text += f"; restoring the previous definition failed too ({'; '.join(left)})"
    elif not was_running:
        text += "; the previous definition is back"
    elif _attempt(left, "start", lambda: c.start(name)):
        text += "; the previous definition is running again"
    else:
        text += f"; the previous definition is back but did not start either ({left[-1]})"
    return Outcome(name, "failed", text, error)


def _enablement(client: Client, item: PlanItem) -> None:
    """Enable=yes (the default): started at boot; Enable=no: not (any more)."""
    c = client.containers
    if item.definition.enable:
        c.enable(item.name)
    elif item.installed is not None:
        c.disable(item.name)


# -- down ----------------------------------------------------------------------------------------
def down(client: Client, path: str | Path, report: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Stop and remove the containers the files name (disabled first, so nothing restarts them).
    Only the names matter: a file that no longer parses still names its container."""
    outcomes = []
    c = client.containers
    names, errors = [], []
    for p in definition_files(path):  # every name checked before the first container goes
        try:
            names.append(name_of(p))
        except DefinitionError as e:
            errors.append(e.message)
    if errors:
        raise DefinitionError("\n".join(errors), hint="nothing was removed")
    for given in names:
        name, machine = given.given, given.machine
        if not c.store.has(machine) or c.store.given_name(machine) != given.kept:  # a_b is not a-b
            outcome = Outcome(name, "missing", f"{name}: no such container (skipped)")
        else:
            try:
                c.disable(machine)
                c.stop(machine)
                c.remove(machine, force=True)
                outcome = Outcome(name, "removed", f"{name} removed")
            except NspawnctlError as e:
                outcome = Outcome(name, "failed", f"{name} failed: {e.message}", e)
        outcomes.append(outcome)
        if report:
            report(outcome)
    return outcomes


# -- generate ------------------------------------------------------------------------------------
def generate(client: Client, name: str) -> str:
    """A self-contained definition of the existing container ``name``: its .nspawn file without
    what is generated (Id, ImageId, Created, AutoRemove), with Image=, the whole command line in
    Parameters= and one Environment= line per variable, and Enable=no unless it is enabled.
    ``apply`` of it (as NAME.nspawn) after the container is gone makes an equal one."""
    store = client.containers.store
    name = store.resolve(name)
    spec = store.get(name)
    _, f = store.definition(name)
    f = spec_to_file(spec, f.copy())  # one Environment= line per variable, Parameters= in full
    for key in GENERATED_KEYS:
        f.set(OWN_SECTION, key, None)
    f.set(OWN_SECTION, "Image", spec.image)
    f.set(OWN_SECTION, "Enable", None if client.containers.is_enabled(name) else "no")
    text = f.render()
    shown = spec.display_name  # the file's name is the container's: Name= is not written
    header = f"# {shown}.nspawn: nspawnctl apply {shown}.nspawn creates this container\n"
    return text if text.startswith("#") else header + text


def _new_id() -> str:
    from .store.containers import new_container_id

    return new_container_id()
