"""The Python API: ``Client().images`` and ``Client().containers``; the CLI is a thin layer over it.

It is the one place that knows every step (store, run, observe) and strings them together.
The core is async: the container methods named ``a...`` (``astart``, ``astop``, ``arun_attached``)
take the caller's bus and run inside its event loop (the Docker-API server's). The plain methods are
the sync facade over them: each runs on :meth:`Client.run`, which shares one bus among all calls
made inside ``with client.session():`` (a CLI command), else opens one per call.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import functools
import os
import signal as signals
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from .config import Paths
from .errors import (
    ContainerNotRunning,
    ContainerRunning,
    ImageNotFound,
    InvalidArgument,
    InvalidReference,
    NameInUse,
    NspawnctlError,
)
from .health import HealthFlags  # issue 14; spec.py loads it anyway
from .names import ContainerName, generate_name
from .ref import ImageRef
from .run.units import LOG_FIELD, unit_name
from .runopts import RunSettings, VolumeOptions
from .spec import (
    ContainerSpec,
    Limits,
    PortMapping,
    RunDefaults,
    Volume,
    image_exposed,
    publish_all,
    spec_to_file,
)
from .store.containers import ContainerStore, ExitRecord, new_container_id
from .store.images import Image, ImageStore
from .store.pool import Pool
from .systemd.bus import Bus, Session, run_sync
from .values import check_env, check_exec, merge_env

if TYPE_CHECKING:
    from .diskusage import Usage
    from .execcommand import ExecCommand
    from .healthstate import HealthState
    from .imagefilters import ImageFilters
    from .listfilters import ListFilters
    from .prunes import PruneResult, SystemPruneResult
    from .pull import PullOptions, PullResult
    from .run.events import Event
    from .run.runtime import Outcome, Runtime
    from .run.stats import Sample
    from .run.top import Top
    from .run.units import Launch
    from .run.update import Update
    from .status import ContainerStatus
    from .store.locks import Held
    from .store.volumes import VolumeInfo, VolumeStore
    from .sysinfo import HostInfo
    from .systemd.journal import Entry
    from .verify.trust import TrustStore
    from .volumesfrom import VolumesFrom

T = TypeVar("T")


@dataclass(frozen=True)
class RunResult:
    """How a foreground run ended: the payload's exit code, and systemd-nspawn's own error messages
    when the container could not run as asked (nobody's terminal shows those otherwise)."""

    exit_code: int
    errors: builtins.list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _AttachIO:
    """How a foreground run (:meth:`Containers.arun_attached`, ``astart_attached``) is wired to
    its caller: where the output goes, its ``-i``/``-t``, the caller's ``stdio`` for the unit
    (else the output is followed in the journal), and who is told once the unit runs."""

    write: Callable[[bytes], None]
    write_err: Callable[[bytes], None]
    interactive: bool
    tty: bool
    stdio: tuple[int, int, int] | None
    started: Callable[[ContainerSpec], None] | None


def _no_notice(text: str) -> None:
    pass


USERNS_MODES = ("auto", "host")

_NAME_ATTEMPTS = 5
"""Generated names tried before a create gives up (each draw collides rarely)."""
_REMOVE_ATTEMPTS = 3
"""Kills ``rm -f`` tries before giving up on a container started again after each."""

STOPPING_WAIT = 120.0
"""Seconds ``start`` waits for a stop job under way (systemd's own stop timeout is 90 s at most)."""
UNDO_STOP_WAIT = 3.0
"""Seconds a cancelled foreground ``run --rm`` gives its payload to end on SIGTERM before nspawn
kills it (:meth:`Runtime.stop`); the container is removed once the unit is inactive, else the
``.attached`` repair removes it once the unit is gone."""


@dataclass(frozen=True)
class RunOptions:
    """Everything ``create``/``run`` accept besides the image and the command."""

    name: str | None = None
    env: builtins.list[str] = field(default_factory=list)
    volumes: builtins.list[Volume] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    boot: bool = False
    limits: Limits = field(default_factory=Limits)
    auto_remove: bool = False
    # docker's --entrypoint: replaces the image's Entrypoint and drops its Cmd; "" clears it.
    entrypoint: str | None = None
    # host | none | private | veth | zone:NAME; None: veth when systemd-networkd runs (or when
    # ports are published), else host (see net.default_network).
    network: str | None = None
    ports: builtins.list[PortMapping] = field(default_factory=list)
    restart: str = "no"  # no | on-failure | always | unless-stopped
    userns: str = "auto"  # auto: a user namespace of its own (PrivateUsers=pick); host: none
    # -- docker's further run options (runopts.py) --
    settings: RunSettings = field(default_factory=RunSettings)
    stop_signal: str | None = None  # --stop-signal, as KillSignal= takes it; None: the image's
    # --mount type=volume: (volume name or None for an anonymous one, target, read-only)
    named_volumes: builtins.list[tuple[str | None, str, bool]] = field(default_factory=list)
    # their volume-nocopy, volume-label, volume-subpath (runopts.VolumeOptions), by target
    volume_options: dict[str, VolumeOptions] = field(default_factory=dict)
    # --volumes-from: the mounts of these containers (volumesfrom.py), resolved at create
    volumes_from: builtins.list[VolumesFrom] = field(default_factory=list)
    # -- ports, pulls (PORTS) --
    publish_all: bool = False  # -P: every port the image exposes, on free host ports
    pull: str = "missing"  # missing | always | never (docker's --pull)
    # How a pull by create/run verifies and reports; called only when it pulls (keeps run light).
    pull_options: Callable[[], PullOptions] | None = None
    # -- issue 14 (health, auto-update): the --health-* flags, AutoUpdate= registry|local
    health: HealthFlags = field(default_factory=HealthFlags)
    auto_update: str | None = None
    # -- issue 14, labels: -l/--label and --label-file (over the image's own labels)
    labels: dict[str, str] = field(default_factory=dict)
    # -- issue 15, TTY: docker's Tty, OpenStdin, StdinOnce (for a start with a client attached)
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    # Receives notices worth a line on stderr (the library never prints).
    notify: Callable[[str], None] = field(default=_no_notice, compare=False, repr=False)


class Images:
    def __init__(self, client: Client) -> None:
        self._client = client
        self.store = ImageStore(client.pool)

    def import_file(
        self,
        source: str | Path,
        ref: str | None,
        max_ratio: float | None = None,
        defaults: RunDefaults | None = None,
    ) -> Image:
        """Import a rootfs tarball or a btrfs send stream (``-`` is stdin), or a directory, as an image.

        ``max_ratio``: refuse an archive that unpacks to more than this many times its compressed
        size (0: no ratio limit; None: the default). ``defaults``: the image's run defaults
        (docker import's ``--change``; an App Container Image brings its own)."""
        from .files import import_stream
        from .store.unpack import Limits

        limits = Limits() if max_ratio is None else Limits(max_ratio=max_ratio)

        parsed = tag_ref(ref) if ref else None
        if str(source) == "-":
            self._client.pool.check()
            return import_stream(self.store, sys.stdin.buffer, parsed, "-", limits, defaults)
        path = Path(source)
        if path.is_dir():
            return self.store.import_directory(path, parsed, defaults)
        try:
            f: IO[bytes] = open(path, "rb")
        except OSError as e:
            raise InvalidArgument(f"cannot read {path}: {e.strerror}") from e
        with f:
            if path.name.endswith(".aci"):
                from .pull.aci import import_aci

                if defaults is not None:
                    raise InvalidArgument(
                        "--change does not apply to an App Container Image",
                        hint="its manifest says how it runs",
                    )
                self._client.pool.check()
                return import_aci(self.store, f, ref, source=str(path.resolve()), limits=limits)
            return import_stream(self.store, f, parsed, str(path.resolve()), limits, defaults)

    def pull(self, source: str, name: str | None = None, options: PullOptions | None = None) -> PullResult:
        """Download, verify and store an image (see :mod:`nspawnctl.pull` for what is accepted)."""
        from .pull import PullOptions, pull

        if name:
            tag_ref(name)  # NAME@sha256:... would claim a digest nobody checked
        self._client.pool.check()
        options = options or PullOptions()
        paths = self._client.paths
        options = dataclasses.replace(
            options,
            auth_file=options.auth_file or paths.auth,
            policy_file=options.policy_file or paths.policy,
        )
        return pull(self.store, self._client.trust, source, name, options)

    def ensure(
        self, ref: str, policy: str = "missing", options: Callable[[], PullOptions] | None = None
    ) -> Image:
        """The image ``ref`` names, pulled first as docker's ``--pull`` policy says (see
        :mod:`nspawnctl.pull.policy`: only references that name where they come from are pulled);
        ``options`` makes the PullOptions when a pull happens."""
        if policy == "missing":  # the common case, without loading the pull machinery
            try:
                return self.get(ref)
            except (ImageNotFound, InvalidReference):
                pass
        from .pull.policy import check_pull_policy, ensure_image

        check_pull_policy(policy)

        def pull(r: str) -> PullResult:
            from .pull import PullOptions
            from .store.images import UNVERIFIED

            opts = options() if options else PullOptions()
            opts.notify(f"Pulling {r} (--pull {policy})")
            result = self.pull(r, None, opts)
            opts.notify(f"Verified: {result.verified}" if result.verified != UNVERIFIED else "Not verified")
            opts.notify(
                f"Pulled {result.ref}" if result.downloaded else f"Image is up to date for {result.ref}"
            )
            return result

        return ensure_image(ref, policy, self.get, pull)

    def import_stream(self, stream: IO[bytes], ref: str | None, source: str = "stream") -> Image:
        return self.store.import_archive(stream, ImageRef.parse(ref) if ref else None, source=source)

    def list(self) -> builtins.list[Image]:
        self._client.pool.check()
        return self.store.list()

    def get(self, text: str) -> Image:
        self._client.pool.check()
        return self.store.get(text)

    def tag(self, source: str, target: str) -> Image:
        self._client.pool.check()
        return self.store.tag(source, tag_ref(target))

    def remove(self, text: str, force: bool = False) -> tuple[builtins.list[str], bool]:
        self._client.pool.check()
        return self.store.remove(text, force, self._client.containers.store.users_of)

    def shared_size(self, image: Image) -> int:
        """Bytes of the image's layers that other images use too (stored once, counted in each)."""
        return self.store.shared_size(image)

    def shared_sizes(self, images: builtins.list[Image]) -> dict[str, int]:
        """:meth:`shared_size` of each image (by ID), the records read once for all of them."""
        return self.store.shared_sizes(images)

    def prune(
        self, all_images: bool = False, repair: bool = True, filters: ImageFilters | None = None
    ) -> PruneResult:
        """Delete the dangling images (without a name) no container was made from, as docker's
        ``image prune``; with ``all_images`` every image no container was made from; of those,
        only the ones that pass ``filters`` (its until, label and label!: PRUNE_KEYS). Then the
        layers no image uses (left by those, by rmi or by failed pulls). First (unless the caller
        just did: ``repair``) what killed container commands left, so that the definition of a
        dead create keeps no image."""
        from .store.layers import LayerStore

        self._client.pool.check()
        if repair:
            self._client.containers.store.prune_locked_leftovers()
        layer_store = LayerStore(self._client.pool)
        before = {la.chain_id: la.size for la in layer_store.list()}
        only = None
        if filters:
            from .imagefilters import matches

            only = functools.partial(matches, filters=filters)
        removed = self.store.prune(self._client.containers.store.users_of, all_images=all_images, only=only)
        layer_store.prune(self.store.used_layers)
        left = {la.chain_id for la in layer_store.list()}
        gone = [c for c in before if c not in left]
        own = sum(img.size for img in removed if not img.layers)  # an OCI image's are its layers
        from .prunes import PruneResult

        return PruneResult(
            [img.id for img in removed],
            [r for img in removed for r in img.refs],
            gone,
            own + sum(before[c] for c in gone),
        )


class Volumes:
    """Named volumes (see :mod:`nspawnctl.store.volumes`); in use while a container binds one."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @functools.cached_property
    def store(self) -> VolumeStore:
        """Made on first use: a run without named volumes loads nothing of them."""
        from .store.volumes import VolumeStore

        return VolumeStore(self._client.paths, self._users)

    def _users(self) -> dict[str, builtins.list[str]]:
        return self.store.users_by_path(self._client.containers.store.list())

    def create(self, name: str | None = None, labels: dict[str, str] | None = None) -> VolumeInfo:
        self._client.pool.check()
        with self._client.pool.lock():
            return self.store.create(name, labels)

    def list(self) -> builtins.list[VolumeInfo]:
        return self.store.list()

    def get(self, name: str) -> VolumeInfo:
        return self.store.get(name)

    def remove(self, name: str, force: bool = False) -> bool:
        with self._client.pool.lock():
            return self.store.remove(name, force)

    def prune(
        self, anonymous_only: bool = False, filters: ListFilters | None = None
    ) -> tuple[builtins.list[str], int]:
        """docker's ``volume prune`` (see VolumeStore.prune): the CLI's and the API's."""
        with self._client.pool.lock():
            return self.store.prune(anonymous_only, filters)

    def sizes(self) -> builtins.list[tuple[int, bool]]:
        """(bytes of its files, bound by a container) per volume, for ``system df``."""
        from .store.files import tree_size

        return [(tree_size(v.mountpoint), bool(v.users)) for v in self.list()]

    def resolve(self, volumes: builtins.list[Volume]) -> builtins.list[Volume]:
        """``-v NAME:/path`` as the bind of volume NAME's path; :meth:`make` makes it."""
        return [dataclasses.replace(v, host=str(self.store.path(v.host))) if v.named else v for v in volumes]

    def subpaths(
        self, volumes: builtins.list[Volume], options: dict[str, VolumeOptions]
    ) -> builtins.list[Volume]:
        """The resolved binds with a ``volume-subpath`` (by target) bound to that path of their
        volume, which must be there (VolumeStore.subpath)."""
        out = []
        for v in volumes:
            sub = options[v.container].subpath if v.container in options else None
            name = self.store.name_of(v.host) if sub else None
            out.append(
                v
                if name is None or sub is None
                else dataclasses.replace(v, host=str(self.store.subpath(name, sub)), subpath=sub)
            )
        return out

    def make(
        self,
        volumes: builtins.list[Volume],
        made: builtins.list[str],
        anonymous: set[str],
        labels: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """Make the missing volumes these binds name, adding each name made to ``made`` (for
        :meth:`discard`); those in ``anonymous`` get docker's anonymous label, and ``labels`` by
        name (a mount's volume-label: for a volume this makes, as docker's). The caller holds
        the pool lock (ContainerStore.create's ``prepare``)."""
        if not volumes:  # the volume store's module loads only for a container with volumes
            return
        from .store.volumes import ANONYMOUS_LABEL

        for name in dict.fromkeys(n for v in volumes if (n := self.store.name_of(v.host)) is not None):
            if not self.store.exists(name):
                own = {ANONYMOUS_LABEL: ""} if name in anonymous else {}
                self.store.create(name, {**(labels or {}).get(name, {}), **own} or None)
                made.append(name)

    def discard(self, names: builtins.list[str]) -> None:
        """Undo :meth:`make` after a failed create; a volume someone bound meanwhile stays."""
        for name in names:
            with contextlib.suppress(NspawnctlError):
                self.remove(name, force=True)

    def copy_up(self, volumes: builtins.list[Volume], image_root: Path) -> None:
        if not any(v.host.startswith(f"{self._client.paths.store}/volumes/") for v in volumes):
            return
        for v in volumes:
            name = self.store.name_of(v.host)
            if name is not None:
                self.store.copy_up(name, image_root, v.container)


class Containers:
    def __init__(self, client: Client) -> None:
        self._client = client
        self.paths = client.paths
        self.store = ContainerStore(client.pool, client.notify)

    def resolve(self, text: str) -> str:
        """The container's name for a name, full ID or unique ID prefix (docker's order)."""
        return self.store.resolve(text)

    # -- creation --------------------------------------------------------------------------
    def create(self, image: str, command: builtins.list[str], options: RunOptions) -> ContainerSpec:
        self._client.pool.check()
        img = self._client.images.ensure(image, options.pull, options.pull_options)
        cname = ContainerName.parse(options.name) if options.name else None
        name = cname.machine if cname else generate_name(self.store.names_in_use())
        defaults = img.defaults
        # a bare KEY (the API's Env: ["KEY"]) unsets KEY, as dockerd: the image's KEY=... is dropped
        own_env = check_env(options.env, "-e", bare=True)
        env = merge_env(check_env(defaults.env, f"Env of image {image}"), own_env)
        # a booted image runs its init unless told what to run: a command, or --entrypoint
        boot = options.boot or (defaults.boot and not command and options.entrypoint is None)
        entrypoint, argv = _argv(image, command, options.entrypoint, defaults, boot)
        network, private_users, notice = _network_and_userns(options, self.paths if options.network else None)
        from .labels import merge_labels

        labels = merge_labels(defaults.labels, options.labels)
        # --mount type=volume: a named volume like -v NAME:/path; without a source an anonymous
        # one (a random name, as docker's), kept until 'volume rm'/'volume prune', or its
        # container's removal when that is a --rm one; -v /path likewise
        mounts = [Volume(n or "", t, ro) for n, t, ro in options.named_volumes]
        given: builtins.list[Volume] = []
        anonymous: set[str] = set()
        for v in [*options.volumes, *mounts]:
            if not v.host:
                v = dataclasses.replace(v, host=os.urandom(32).hex())
                anonymous.add(v.host)
            given.append(v)
        if options.volumes_from:
            given += self._volumes_from(options.volumes_from, [v.container for v in given])
        for v in given:
            if not v.named and not os.path.exists(v.host):
                raise InvalidArgument(f"volume source {v.host} does not exist", hint="create it first")
        if options.settings.volume_driver is not None:
            from .runopts import check_volume_driver

            check_volume_driver(options.settings, any(v.named for v in given))
        volumes = self._client.volumes.resolve(given)  # made last, see below
        if any(o.subpath for o in options.volume_options.values()):
            volumes = self._client.volumes.subpaths(volumes, options.volume_options)
        by_target = {v.container: v.host for v in given}
        volume_labels = {
            by_target[t]: dict(o.labels)
            for t, o in options.volume_options.items()
            if o.labels and t in by_target
        }
        nocopy = {t for t, o in options.volume_options.items() if o.nocopy}
        nocopy |= {v.container for v in given[len(options.volumes) + len(mounts) :]}  # shared: as they are
        notices = [notice] if notice else []
        if options.settings.memory_swap is not None:
            from .cpumem import check_swap

            memory = options.limits.memory
            check_swap(options.settings.memory_swap, None if memory is None else memory.bytes)
        if options.settings.mac_address is not None:
            from .runopts import check_mac_network

            check_mac_network(options.settings, network)
        if options.settings.sysctls:
            from .runopts import check_sysctls

            check_sysctls(options.settings, network)
        exposed = image_exposed(defaults.ports, image)
        ports = publish_all(options.ports, exposed) if options.publish_all else list(options.ports)
        if private_users:
            from .idmap import idmap_volumes

            volumes = idmap_volumes(volumes, notices.append)
        spec = ContainerSpec(
            name=name,
            id=new_container_id(),
            image=image,
            image_id=img.id,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            command=argv,
            env=env,
            volumes=volumes,
            workdir=options.workdir or defaults.workdir,
            user=options.user or defaults.user,
            hostname=options.hostname,
            boot=boot,
            limits=options.limits,
            auto_remove=options.auto_remove,
            entrypoint=entrypoint,
            stop_signal=None if boot else options.stop_signal or defaults.stop_signal,
            network=network,
            ports=ports,
            restart=options.restart,
            private_users=private_users,
            settings=options.settings,
            exposed=exposed,
            # -- issue 14 (health, auto-update)
            health=_resolve_health(defaults.healthcheck, options.health),
            auto_update=options.auto_update or _auto_update_label(labels),
            labels=labels,
            tty=options.tty,
            open_stdin=options.open_stdin,
            stdin_once=options.stdin_once,
            given_name=cname.kept if cname else None,
            volumes_from=[str(vf) for vf in options.volumes_from],
        )
        if spec.user and spec.user.partition(":")[0] not in ("root", "0") and not _has_getent(img.path):
            raise InvalidArgument(
                f"image {image} has no getent, which systemd-nspawn runs inside to switch "
                f"to user {spec.user!r}",
                hint="add getent to the image (Debian: libc-bin) or run as root",
            )
        if spec.user:  # nspawn resolves it in the container at start: say now what it would fail on
            from .imageuser import nspawn_user

            spec = dataclasses.replace(spec, user=nspawn_user(img.path, spec.user, given=bool(options.user)))
        if not spec.command and not spec.boot and options.entrypoint is not None:
            raise InvalidArgument(
                "an empty --entrypoint drops the image's command too, and no command was given",
                hint=f"say what to run: nspawnctl run --entrypoint '' {image} /bin/sh",
            )
        if not spec.command and not spec.boot:
            raise InvalidArgument(
                f"no command given and image {image} has no default command",
                hint=f"say what to run: nspawnctl run {image} /bin/sh",
            )
        check_exec(spec.command, spec.env)
        spec_to_file(spec)  # every value a .nspawn file can hold, before anything is made
        made: builtins.list[str] = []  # the volumes this create made: undone if it fails
        try:
            with self._picking_ports(spec) as spec:
                # the volumes are made once everything is checked, under the lock the definition
                # is written under (volume prune cannot take one in between)
                for attempt in range(_NAME_ATTEMPTS):
                    try:
                        make = functools.partial(
                            self._client.volumes.make, spec.volumes, made, anonymous, volume_labels
                        )
                        created = self.store.create(spec, img, prepare=make)
                        break
                    except NameInUse:
                        # a generated name is picked outside the pool lock: a create running
                        # alongside (parallel 'run --rm') may have drawn the same one first
                        if options.name or attempt == _NAME_ATTEMPTS - 1:
                            raise
                        spec = dataclasses.replace(spec, name=generate_name(self.store.names_in_use()))
            try:
                # volume-nocopy: the new volume stays empty (docker's NoCopy)
                copied = [v for v in created.volumes if v.container not in nocopy]
                self._client.volumes.copy_up(copied, img.path)
            except BaseException:
                self.store.remove(created.name)
                raise
        except BaseException:
            self._client.volumes.discard(made)
            raise
        for text in notices:  # only once the container exists: an error must be the first thing said
            options.notify(text)
        return created

    def _volumes_from(
        self, sources: builtins.list[VolumesFrom], explicit: builtins.list[str]
    ) -> builtins.list[Volume]:
        """docker's --volumes-from: the sources' mounts (volumesfrom.inherit), read now."""
        from .errors import ContainerNotFound
        from .volumesfrom import inherit

        resolved = []
        for vf in sources:
            try:
                name = self.store.resolve(vf.container)
            except ContainerNotFound:
                raise ContainerNotFound(
                    f"--volumes-from: no such container: {vf.container[:80]}",
                    hint="see 'nspawnctl ps -a' for the containers there are",
                ) from None
            resolved.append((vf, self.store.get(name).volumes))
        return inherit(resolved, explicit)

    @contextmanager
    def _picking_ports(self, spec: ContainerSpec) -> Iterator[ContainerSpec]:
        """``spec`` with free host ports for ``-p CTRPORT``/``-P``, under a lock held until its
        definition is written (see net.ports.picking)."""
        if not any(pm.picked for pm in spec.ports):
            yield spec
            return
        from .net.ports import pick_ports, picking

        with picking(self.paths):
            taken = [str(pm) for other in self.store.list() for pm in other.ports]
            yield dataclasses.replace(spec, ports=pick_ports(spec.ports, taken))

    def port(self, name: str) -> builtins.list[PortMapping]:
        """The container's published ports, as recorded (with the host ports create picked)."""
        return list(self.store.get(self.store.resolve(name)).ports)

    def prune(self, filters: ListFilters | None = None) -> builtins.list[str]:
        """Remove every stopped container (created or exited; not one that is running or waiting
        to be restarted), as docker's ``container prune``, after finishing what killed commands
        left half done; with ``filters`` (listfilters.CONTAINER_PRUNE_KEYS: until, label,
        label!) only those that pass them. Returns the names removed."""
        return [spec.name for spec, _ in self._prune(False, filters)]

    def prune_measured(self, filters: ListFilters | None = None) -> builtins.list[tuple[ContainerSpec, int]]:
        """:meth:`prune`, each container removed with its own bytes (store/ownbytes.py), which
        its removal freed: the Docker API's ``SpaceReclaimed``. Walks each root once."""
        return self._prune(True, filters)

    def _prune(
        self, measure: bool, filters: ListFilters | None = None
    ) -> builtins.list[tuple[ContainerSpec, int]]:
        from .errors import ContainerNotFound, NspawnctlError
        from .listfilters import container_subject

        self._client.pool.check()
        self.store.prune_locked_leftovers()
        gone = []
        with self._client.session():  # one bus for the listing and every removal
            statuses = self.list(all=True)
            for status in statuses:
                if status.state not in ("created", "exited"):
                    continue
                if filters and not filters.matches(container_subject(status.spec)):
                    continue
                spec, size = status.spec, 0
                if measure:
                    from .store.ownbytes import own_bytes

                    try:
                        base: Path | None = self._client.images.store.get(spec.image_id).path
                    except NspawnctlError:  # its image is gone: every file is its own
                        base = None
                    size = own_bytes(self.store.root(spec.name), base)
                try:
                    self.remove(spec.name)
                except (ContainerRunning, ContainerNotFound):  # started or removed meanwhile
                    continue
                gone.append((spec, size))
        from .run.subpaths import sweep

        # volume-subpath stages a killed start left (of a container removed now, or gone)
        sweep([st.spec.name for st in statuses], [spec.name for spec, _ in gone])
        return gone

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, name: str) -> None:
        """Start a stopped container: under systemd-nspawn@NAME.service once it is enabled or
        declared (nspawnctl's drop-in exists), else under its transient unit."""
        self._client.run(lambda bus: self.astart(bus, name))

    async def astart(self, bus: Bus, name: str) -> None:
        """:meth:`start` on the caller's bus. The definition is read under the container's lock,
        held until the unit's start job is queued (see ContainerStore.locked), so a ``network
        connect`` or ``update`` cannot rewrite it between the read and the start."""
        name = self.store.resolve(name)
        self.store.get(name)
        rt = self._runtime(bus)
        if await self._still_running(rt, name):  # may wait for a stop: before the lock
            return
        async with self.store.alocked(name) as held:
            if await rt.busy(name):  # another start came first
                return
            spec = self.store.get(name)
            self._check_command(spec)
            _check_ports(self.paths, spec)
            self.store.clear_exit(name)
            # -t: its stdin is nspawn's terminal (run/hook.py default_launch), no FIFO's
            if not spec.open_stdin or spec.tty:
                await _start(rt, spec, self._launch(spec), held.release)
                return
            from .run import stdinpipe  # run -d -i: a stdin that attach can write to

            fd = await asyncio.to_thread(stdinpipe.open_for_unit, self.paths, name)
            try:
                await _start(rt, spec, dataclasses.replace(self._launch(spec), stdin_fd=fd), held.release)
            finally:
                os.close(fd)

    async def _still_running(self, rt: Runtime, name: str) -> bool:
        """Whether the container runs, once a stop under way has ended: ``nspawnctl stop`` (which
        holds the container's stop lock) or a stop job (``machinectl stop``, ``systemctl stop``:
        the unit is deactivating). Starting then would return at once and the container would
        end moments later, killed by that stop."""
        state = (await rt.states([name])).get(name)
        if state is None or not state.running:
            return False
        if await asyncio.to_thread(self.store.wait_stop, name):
            state = (await rt.states([name])).get(name)
        if (
            state is not None
            and state.active_state == "deactivating"
            and not await rt.wait(name, timeout=STOPPING_WAIT, unit=state.name)
        ):
            raise ContainerRunning(
                f"container {name} is still stopping after {STOPPING_WAIT:.0f} s; not starting it",
                hint=f"see: systemctl status {state.name}",
            )
        return bool(await rt.is_running(name))

    # -- lifecycle verbs: wait, rename, pause, update, top, stats, events, attach -------------
    # (the logic is in run/wait.py, store/rename.py, run/freeze.py, run/update.py, run/top.py,
    # run/stats.py, run/events.py, run/attach.py; each has an async form for the API server)
    def wait(self, name: str, condition: str = "not-running") -> int:
        """docker's ``wait``: the exit code once the container stops (see run/wait.py)."""
        return self._client.run(lambda bus: self.await_exit(bus, name, condition))

    async def await_exit(self, bus: Bus, name: str, condition: str = "not-running") -> int:
        from .run.wait import wait_exit

        name = self.store.resolve(name)
        return await wait_exit(self._runtime(bus), self.store, name, condition)

    def rename(self, name: str, new: str) -> ContainerSpec:
        return self._client.run(lambda bus: self.arename(bus, name, new))

    async def arename(self, bus: Bus, name: str, new: str) -> ContainerSpec:
        """Rename a stopped container; a running one is refused (machined and its unit know it
        by its name until it stops)."""
        from .eventlog import record
        from .run import persist
        from .store.rename import rename, same_machine

        name = self.store.resolve(name)
        was = self.store.get(name).display_name  # events name containers as given (names.py)
        if same_machine(name, new):  # only the name as given changes: nothing outside knows it
            async with self.store.alocked(name):  # a read-modify-write of the definition, as connect's
                spec = await asyncio.to_thread(rename, self.store, name, new)
            if spec.display_name != was:  # for 'events --since', as docker's rename event
                record("rename", spec.id, spec.display_name, spec.image, old_name=was)
            return spec
        rt = self._runtime(bus)
        async with self.store.alocked(name) as held:  # no start between the check and the move
            state = await rt.busy(name)
            if state is not None:
                raise ContainerRunning(
                    f"cannot rename container {name} while it runs: machined and its unit "
                    f"{state.name} are named after it",
                    hint=f"stop it first: nspawnctl stop {name} && nspawnctl rename {name} {new} "
                    f"&& nspawnctl start {new}",
                )
            had_dropin = persist.has_dropin(name)
            enabled = await persist.is_enabled(rt.manager, name)
            keep = persist.is_kept(persist.read_dropin(name))
            spec = await asyncio.to_thread(rename, self.store, name, new)
            if spec.name != name:
                held.path.unlink(missing_ok=True)  # the old name's lock (a waiter locks the path anew)
        if spec.name == name:
            return spec
        record("rename", spec.id, spec.display_name, spec.image, old_name=was)  # for 'events --since'
        await rt.reset(name)
        if had_dropin:
            await persist.forget(rt.manager, name)
            await persist.sync(rt.manager, spec, self.paths, enabled=enabled, keep=keep)
            if enabled:
                await persist.enable(rt.manager, spec, self.paths)
        return spec

    def pause(self, name: str) -> None:
        self._client.run(lambda bus: self.apause(bus, name))

    async def apause(self, bus: Bus, name: str) -> None:
        """Freeze the container's cgroup (FreezeUnit; needs cgroup v2, see run/freeze.py)."""
        from .run.freeze import pause

        name = self.store.resolve(name)
        await pause(self._runtime(bus), name)
        self._record("pause", name)

    def unpause(self, name: str) -> None:
        self._client.run(lambda bus: self.aunpause(bus, name))

    async def aunpause(self, bus: Bus, name: str) -> None:
        from .run.freeze import unpause

        name = self.store.resolve(name)
        await unpause(self._runtime(bus), name)
        self._record("unpause", name)

    def _record(self, action: str, name: str) -> None:
        """The journal record a later ``events --since`` replays (systemd logs no freeze)."""
        from .eventlog import record

        try:
            spec = self.store.get(name)
        except NspawnctlError:
            return
        record(action, spec.id, name, spec.image)

    def update(self, name: str, change: Update) -> ContainerSpec:
        return self._client.run(lambda bus: self.aupdate(bus, name, change))

    async def aupdate(
        self, bus: Bus, name: str, change: Update, notify: Callable[[str], None] | None = None
    ) -> ContainerSpec:
        """New limits on the running unit and in the definition (see run/update.py); ``notify``
        gets the notices (the client's own by default)."""
        from .run.update import update

        name = self.store.resolve(name)
        async with self.store.alocked(name):  # no start between reading the unit's state and the rewrite
            return await update(self._runtime(bus), self.store, name, change, notify or self._client.notify)

    def top(self, name: str, ps_args: builtins.list[str] | None = None) -> Top:
        return self._client.run(lambda bus: self.atop(bus, name, ps_args))

    async def atop(self, bus: Bus, name: str, ps_args: builtins.list[str] | None = None) -> Top:
        from .run.top import top

        name = self.store.resolve(name)
        return await top(self._runtime(bus), name, ps_args)

    async def astats(self, bus: Bus, specs: builtins.list[ContainerSpec]) -> builtins.list[Sample]:
        """One reading of each container's counters (see run/stats.py); two readings make a CPU %."""
        from .run.stats import sample

        rt = self._runtime(bus)
        return builtins.list(await asyncio.gather(*(sample(rt, s) for s in specs)))

    async def aevents(
        self,
        bus: Bus,
        emit: Callable[[Event], None],
        filters: dict[str, set[str]] | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> None:
        """Emit container events until ``until`` (see run/events.py)."""
        from .run.events import follow

        await follow(self._runtime(bus), self.store, emit, filters, since, until)

    def events(
        self,
        emit: Callable[[Event], None],
        filters: dict[str, set[str]] | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> None:
        self._client.run(lambda bus: self.aevents(bus, emit, filters, since, until))

    async def aattach(
        self,
        bus: Bus,
        name: str,
        write: Callable[[bytes], None],
        write_err: Callable[[bytes], None],
        read: Callable[[], Awaitable[bytes]] | None = None,
        detach_keys: bytes = b"\x10\x11",
        begun: Callable[[ContainerSpec, bool], None] | None = None,
    ) -> int:
        """Follow a running container's output until it exits; its exit code. ``read``: input for
        a container started with ``-i``, up to ``detach_keys``; ``begun`` told once it is
        found running, with whether ``read`` is read (run/attach.py)."""
        from .run.attach import attach

        name = self.store.resolve(name)
        rt = self._runtime(bus)
        return await attach(rt, self.store, name, write, write_err, read, detach_keys, begun)

    # -- persistence -----------------------------------------------------------------------
    def enable(self, name: str, now: bool = False) -> None:
        """Start the container at boot (systemd-nspawn@NAME.service, wanted by machines.target) and
        restart it on failure at least; with ``now`` also start it (under that unit)."""
        name = self.store.resolve(name)
        from .run import persist

        spec = self.store.get(name)
        if spec.auto_remove:
            raise InvalidArgument(
                f"container {name} removes itself when it stops (--rm); it cannot be enabled",
                hint="create it without --rm",
            )
        self._client.run(lambda bus: persist.enable(self._runtime(bus).manager, spec, self.paths))
        if now:
            self.start(name)

    def disable(self, name: str, now: bool = False) -> None:
        """Do not start the container at boot any more; with ``now`` also stop it."""
        name = self.store.resolve(name)
        from .run import persist

        spec = self.store.get(name)
        self._client.run(lambda bus: persist.disable(self._runtime(bus).manager, spec, self.paths))
        if now:
            self.stop(name)

    @contextlib.contextmanager
    def rewriting(self, name: str) -> Iterator[Held]:
        """The container's lock, with neither of its units running or starting: for a synchronous
        rewrite of its definition (apply, auto-update) that must not land under a start that has
        read the old one (the unit would run what the file no longer says). A busy container is
        refused (:class:`ContainerRunning`). Not to be held across a start or a stop (both wait
        for the unit, and a start takes this lock itself)."""
        with self.store.locked(name) as held:
            state = self._client.run(lambda bus: self._runtime(bus).busy(name))
            if state is not None:
                raise ContainerRunning(
                    f"container {name} was started meanwhile ({state.name}); its definition is left as is",
                    hint=f"stop it and try again: nspawnctl stop {name}",
                )
            yield held

    def is_enabled(self, name: str) -> bool:
        name = self.store.resolve(name)
        from .run import persist

        self.store.get(name)
        return self._client.run(lambda bus: persist.is_enabled(self._runtime(bus).manager, name))

    def persist(self, name: str) -> None:
        """Write the drop-in that makes ``systemd-nspawn@NAME.service`` (``machinectl start NAME``)
        run this container as nspawnctl does, without enabling it at boot; it stays when the
        container is disabled, until :meth:`unpersist` or removal."""
        name = self.store.resolve(name)
        from .run import persist

        spec = self.store.get(name)

        async def go(bus: Bus) -> None:
            manager = self._runtime(bus).manager
            enabled = await persist.is_enabled(manager, name)
            await persist.sync(manager, spec, self.paths, enabled=enabled, keep=True)

        self._client.run(go)

    def unpersist(self, name: str) -> None:
        """Disable the container and remove its drop-in: it runs under its transient unit again."""
        from .errors import ContainerNotFound
        from .run import persist

        with contextlib.suppress(ContainerNotFound):  # the drop-in of a container gone goes too
            name = self.store.resolve(name)

        self._client.run(lambda bus: persist.forget(self._runtime(bus).manager, name))

    def run_detached(self, image: str, command: builtins.list[str], options: RunOptions) -> ContainerSpec:
        return self._client.run(lambda bus: self.arun_detached(bus, image, command, options))

    async def arun_detached(
        self, bus: Bus, image: str, command: builtins.list[str], options: RunOptions
    ) -> ContainerSpec:
        spec = await self._acreate(image, command, options)
        try:
            await self.astart(bus, spec.name)
        except NspawnctlError:
            await asyncio.to_thread(self._cleanup_failed, spec)
            raise
        return spec

    def run_attached(
        self,
        image: str,
        command: builtins.list[str],
        options: RunOptions,
        write: Callable[[bytes], None],
        interactive: bool = False,
        tty: bool = False,
        write_err: Callable[[bytes], None] | None = None,
        stdio: tuple[int, int, int] | None = None,
    ) -> RunResult:
        """:meth:`arun_attached` on a bus of its own (signals are not forwarded: the caller's).
        With ``interactive`` or ``tty`` and no ``stdio``, the caller's own (0, 1, 2) go to the unit."""
        if stdio is None and (interactive or tty):
            stdio = (0, 1, 2)
        return self._client.run(
            lambda bus: self.arun_attached(
                bus, image, command, options, write, interactive, tty, write_err, stdio
            )
        )

    async def arun_attached(
        self,
        bus: Bus,
        image: str,
        command: builtins.list[str],
        options: RunOptions,
        write: Callable[[bytes], None],
        interactive: bool = False,
        tty: bool = False,
        write_err: Callable[[bytes], None] | None = None,
        stdio: tuple[int, int, int] | None = None,
        started: Callable[[ContainerSpec], None] | None = None,
    ) -> RunResult:
        """Run in the foreground and return the payload's exit code (docker's ``run`` without ``-d``).

        Without ``stdio`` the output goes to the journal like any container's and is followed
        from there (so ``logs`` has it too): the payload's stdout lines to ``write``, its stderr
        lines to ``write_err`` (to ``write`` too when not given); ``stdio`` (stdin, stdout,
        stderr: the caller's, for ``-i``/``-t``) is handed to the unit and nspawn forwards the
        terminal itself. ``started`` is told once the unit runs: the caller may then pass on its
        signals (:meth:`ainterrupt`); the library installs no signal handler and reads no stdin.
        A command the container does not have raises CommandNotFound (127) or
        CommandNotExecutable (126) before anything runs; the container stays, as docker's
        does, unless it is ``--rm``.

        An ``--rm`` container that needs no network teardown is removed here once its payload
        ended, not by the unit's ExecStopPost hook: its unit runs no Python when it stops. A kill
        of this process meanwhile leaves an exited ``--rm`` container that the next command's
        repair removes (see ContainerStore.repair_locked).
        """
        io = _AttachIO(write, write_err or write, interactive, tty, stdio, started)
        spec = await self._acreate(image, command, options)
        try:
            return await self._attached(bus, spec, io)
        except BaseException:
            await _uncancelled(self._undo_attached(bus, spec))
            raise

    async def _acreate(self, image: str, command: builtins.list[str], options: RunOptions) -> ContainerSpec:
        """:meth:`create` in a thread. Cancelled meanwhile (Ctrl-C), the thread still finishes
        creating: wait for it and remove what it made if it is ``--rm``, then go on cancelling."""
        task = asyncio.ensure_future(asyncio.to_thread(self.create, image, command, options))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            try:
                spec = await _uncancelled(task)
            except Exception:  # nothing made
                raise asyncio.CancelledError() from None
            await _uncancelled(asyncio.to_thread(self._cleanup_failed, spec))
            raise

    async def _undo_attached(self, bus: Bus, spec: ContainerSpec) -> None:
        """Remove an ``--rm`` container whose foreground run failed or was cancelled. Its unit may
        run (Ctrl-C after or during its start): it is stopped first, as removing the root under a
        running nspawn would break it. One that does not stop in time (or cannot be asked) is left
        to the repair of ``state/NAME.attached``, or to its unit's ExecStopPost hook."""
        if not spec.auto_remove:
            return
        rt = self._runtime(bus)
        unit = unit_name(spec.name)  # a foreground run always runs under the transient unit
        try:
            if not await rt.manager.idle(unit):
                # as `stop -t`: nspawn cleans up after itself, which a stop job's SIGKILL prevents
                await rt.stop(spec.name, UNDO_STOP_WAIT)
                if not await rt.manager.idle(unit):
                    return
        except NspawnctlError:
            return
        await asyncio.to_thread(self._cleanup_failed, spec)

    async def ainterrupt(self, bus: Bus, name: str, signal: int) -> None:
        """Pass a signal the caller got on to the payload (Ctrl-C of a foreground ``run``); an
        error (the container ended meanwhile) is not the caller's concern."""
        await _quietly(self._runtime(bus).kill(name, signal))

    async def _attached(
        self, bus: Bus, spec: ContainerSpec, io: _AttachIO, queued: Callable[[], None] | None = None
    ) -> RunResult:
        from .run.units import needs_pre

        self._check_command(spec)
        rt = self._runtime(bus)
        # for the caller's stdio (run/stdio.py console_mode's rule, not imported: termios on the
        # foreground run's path); without stdio default_launch decides
        console = "interactive" if (io.tty and io.interactive) else ("read-only" if io.tty else "pipe")
        # no network to tear down, or one this command builds and tears down itself: the exit is
        # read and the container removed here; the unit runs no Python hook when it starts or stops
        net_here = spec.auto_remove and _network_here(spec)
        remove_here = spec.auto_remove and (net_here or not needs_pre(spec))
        launch = self._launch(
            spec, add_ref=True, fds=io.stdio, console=console, post=not remove_here, pre=not net_here
        )
        follow = functools.partial(
            self._follow, rt, spec, launch, io.write, io.write_err, io.stdio, io.started
        )
        if not remove_here:
            return await follow(queued=queued)
        async with self.store.aattached(spec.name):  # should we die, repair removes it (see there)
            if net_here:
                # systemd's signals are subscribed to (a round trip) while the network is made
                made = await asyncio.gather(
                    asyncio.to_thread(self._network_up, spec),
                    rt.manager.subscribe_jobs(),
                    return_exceptions=True,
                )
                for step in made:  # both have ended: a failure leaves no half-made network behind
                    if isinstance(step, BaseException):
                        raise step
            # once the unit is inactive (nspawn has cleaned up after itself) the network goes and
            # the container is removed while the journal is synced and the exit read
            removal = functools.partial(self._cleanup_failed, spec)
            return await follow(removal, queued)

    def _network_up(self, spec: ContainerSpec) -> None:
        """The network a unit's pre hook would build (_network_here), built by this command;
        what it made is undone on failure, and by :meth:`_cleanup_failed` or the repair after."""
        from .net.setup import up

        up(self.paths, spec, unit_name(spec.name), owner=f"run:{spec.id}")

    async def _follow(
        self,
        rt: Runtime,
        spec: ContainerSpec,
        launch: Launch,
        write: Callable[[bytes], None],
        write_err: Callable[[bytes], None],
        stdio: tuple[int, int, int] | None,
        started: Callable[[ContainerSpec], None] | None,
        after_exit: Callable[[], None] | None = None,
        queued: Callable[[], None] | None = None,
    ) -> RunResult:
        """Start the unit, show its output until the payload's first exit, return how it ended.
        ``after_exit`` (a container without a restart policy) runs in a thread once the unit is
        inactive, alongside the journal's sync and the exit's read, and has ended on return."""
        from .run.lookup import exec_failure
        from .run.runtime import invocation_of
        from .systemd import journal

        name = spec.name
        _check_ports(self.paths, spec)
        unit = await _start(rt, spec, launch, queued)

        first: builtins.list[bytes] = []  # the start of the output: systemd-nspawn's exec error?

        def emit(entry: Entry) -> None:
            if len(first) < 2:
                first.append(entry.message)
            (write_err if entry.stderr else write)(entry.text)

        after: builtins.list[asyncio.Future[None]] = []
        # how the payload ended, read while the journal is synced and its reader closed
        ended: builtins.list[asyncio.Future[Outcome | None]] = []
        # the exit wait's first look at the unit, which has its invocation ID (no call of its own)
        looked: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()

        def seen(props: dict[str, Any] | None) -> None:
            if not looked.done():
                looked.set_result(props)

        async def exit_seen() -> None:
            # the first exit of the payload: with --restart it goes on without us, as docker's
            await rt.wait_exit(unit, seen=seen)
            if after_exit is not None:
                after.append(asyncio.ensure_future(asyncio.to_thread(after_exit)))
            ended.append(asyncio.ensure_future(rt.outcome(name, unit)))

        exited = asyncio.ensure_future(exit_seen())
        try:
            either: set[asyncio.Future[Any]] = {exited, looked}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not looked.done():
                exited.result()  # the wait failed before its first look: its error
            inv = invocation_of(looked.result()) if looked.done() else None
            if started is not None:
                started(spec)
            if stdio is None:
                matches = _output_matches(spec)
                if inv:
                    matches.append(f"_SYSTEMD_INVOCATION_ID={inv}")
                # the journal's close (an fsnotify grace period) goes on while the unit is unref'd
                await journal.follow(matches, emit, exited, closing=after)
            await exited
            outcome = await ended[0] if ended else await rt.outcome(name, unit)
        finally:
            looked.cancel()
            jobs: builtins.list[asyncio.Future[Any]] = [exited, *ended]
            for job in jobs:  # done already unless we are cut short
                if not job.cancel() and not job.cancelled():
                    job.exception()  # retrieved: raised above if it was ours to raise
            try:
                await rt.release(name, unit)
            finally:
                for task in after:  # not cut short by a Ctrl-C: the removal must not run twice
                    await _uncancelled(task)
        if outcome is not None:
            code = outcome.exit_code
        else:
            record = self.store.exit_record(name)
            code = record.exit_code if record else 0
        if code == 1:  # the command went missing after _check_command looked: still 127/126
            code = exec_failure(first) or code
        errors = await asyncio.to_thread(journal.errors_of, unit, inv) if code else []
        return RunResult(code, errors)

    async def astart_attached(
        self,
        bus: Bus,
        name: str,
        write: Callable[[bytes], None],
        write_err: Callable[[bytes], None],
        started: Callable[[ContainerSpec], None] | None = None,
        stdio: tuple[int, int, int] | None = None,
        interactive: bool = False,
        tty: bool = False,
    ) -> RunResult:
        """Start a created container and follow it to its first exit, as :meth:`arun_attached`
        does for one it makes: the Docker API's attach-then-start (``docker run`` creates first).
        ``stdio``: the payload's stdin, stdout, stderr (a terminal or pipes, run/stdio.py) instead
        of the journal; ``tty``/``interactive`` as for :meth:`arun_attached`."""
        async with self.store.alocked(name) as held:  # until the start job is queued (see astart)
            spec = self.store.get(name)
            if await self._runtime(bus).busy(name):  # before anything of its run is touched
                raise ContainerRunning(f"container {name} is already running")
            self.store.clear_exit(name)
            io = _AttachIO(write, write_err, interactive, tty, stdio, started)
            return await self._attached_undone(bus, spec, io, held.release)

    async def _attached_undone(
        self, bus: Bus, spec: ContainerSpec, io: _AttachIO, queued: Callable[[], None]
    ) -> RunResult:
        """:meth:`_attached` of an existing container, whose run is undone if it fails."""
        from .systemd.bus import BusError

        name = spec.name
        try:
            return await self._attached(bus, spec, io, queued)
        except BusError as e:
            queued()  # the undo may wait for the unit: not under the container's lock
            if e.name.endswith("UnitExists"):  # a concurrent start won: its run is not ours to undo
                raise ContainerRunning(f"container {name} is already running") from None
            await _uncancelled(self._undo_attached(bus, spec))
            raise
        except BaseException:
            queued()
            await _uncancelled(self._undo_attached(bus, spec))
            raise

    async def aresize_tty(self, bus: Bus, name: str) -> None:
        """Tell the running container's nspawn that the terminal it was given changed size (after
        run/stdio.py's resize): SIGWINCH, on which nspawn copies the size to the payload's console.
        nspawn does not get it by itself: that terminal is not its controlling one."""
        rt = self._runtime(bus)
        state = (await rt.states([name])).get(name)
        if state is None or not state.running:
            raise ContainerNotRunning(f"container {name} is not running")
        await rt.manager.kill(state.name, "main", signals.SIGWINCH)

    def stop(self, name: str, timeout: float | None = None) -> None:
        self._client.run(lambda bus: self.astop(bus, name, timeout))

    async def astop(self, bus: Bus, name: str, timeout: float | None = None) -> None:
        """``timeout`` None: the container's --stop-timeout, else 10 s (docker's)."""
        name = self.store.resolve(name)
        spec = self.store.get(name)
        if timeout is None:
            timeout = 10 if spec.settings.stop_timeout is None else spec.settings.stop_timeout
        with self.store.stopping(name):
            if await self._runtime(bus).stop(name, timeout):
                self._record_signal_death(name, signals.SIGKILL)

    def kill(self, name: str, signal: int = signals.SIGKILL) -> None:
        self._client.run(lambda bus: self.akill(bus, name, signal))

    async def akill(self, bus: Bus, name: str, signal: int = signals.SIGKILL) -> None:
        name = self.store.resolve(name)
        self.store.get(name)
        rt = self._runtime(bus)
        await rt.kill(name, signal)
        if await rt.wait(name, timeout=2):
            self._record_signal_death(name, signal)

    def _record_signal_death(self, name: str, signal: int) -> None:
        """nspawn reports a payload killed by a signal as a plain failure (1); when we sent the
        signal we know better and keep docker's 128+N."""
        rec = self.store.exit_record(name)
        if rec is not None and rec.exit_code == 1 and self.store.has(name):
            self.store.record_exit(name, ExitRecord(128 + signal, "signal", rec.finished))

    def restart(self, name: str, timeout: float | None = None) -> None:
        """Stop, then start (a ``-t`` container with nspawn's terminal, as :meth:`start`)."""
        name = self.store.resolve(name)
        self.store.get(name)

        async def go(bus: Bus) -> None:
            await self.astop(bus, name, timeout)
            await self.astart(bus, name)

        self._client.run(go)

    def remove(self, name: str, force: bool = False, volumes: bool = False) -> None:
        self._client.run(lambda bus: self.aremove(bus, name, force, volumes))

    async def aremove(self, bus: Bus, name: str, force: bool = False, volumes: bool = False) -> None:
        """Remove the container (``force``: a running one is killed first); ``volumes``: its
        anonymous volumes too (docker's ``rm -v``; named ones stay)."""
        from .errors import ContainerNotFound

        try:
            name = self.store.resolve(name)
            self.store.get(name)
        except ContainerNotFound:
            self.store.prune_locked_leftovers()  # a create or removal of it cut short: finished now
            raise
        except InvalidArgument:
            if not self.store.has(name):
                raise  # a definition with a bad value is still a container, and removable

        from .run import persist

        rt = self._runtime(bus)
        for _ in range(_REMOVE_ATTEMPTS):
            # under the container's lock: no start reads the definition, or queues its unit, while
            # the container goes; the lock is not held across the wait for a killed unit
            async with self.store.alocked(name) as held:
                state = await rt.busy(name)  # running, or a start job queued (not yet activating)
                if state is None:
                    await rt.reset(name)
                    await persist.forget(rt.manager, name)
                    await asyncio.to_thread(self._remove_files, name, volumes, held)
                    return
            if not force:
                raise ContainerRunning(
                    f"container {name} is {'running' if state.running else 'starting'}",
                    hint=f"stop it first, or use: nspawnctl rm -f {name}",
                )
            await self._kill_for_removal(rt, name)
        raise ContainerRunning(
            f"container {name} was started again while being removed; not removing it",
            hint=f"try again: nspawnctl rm -f {name}",
        )

    async def _kill_for_removal(self, rt: Runtime, name: str) -> None:
        await _quietly(rt.kill(name, signals.SIGKILL))
        if not await rt.wait(name, timeout=30):
            # PID 1 is gone but something of the unit lingers: kill all of it
            unit = await rt.unit_for(name)
            from .systemd.bus import BusError

            try:
                await rt.manager.kill(unit, "all", signals.SIGKILL)
            except BusError:  # ended meanwhile
                pass
            if not await rt.wait(name, timeout=30, unit=unit):
                raise ContainerRunning(
                    f"container {name} is still running after SIGKILL; not removing it",
                    hint=f"see: systemctl status {unit}",
                )

    def _remove_files(self, name: str, volumes: bool = False, held: Held | None = None) -> None:
        # what the hook's post step would have removed, had it run (a killed unit, a crash)
        from . import net

        net.down(self.paths, name)
        from .healthstate import forget_state  # issue 14

        forget_state(self.paths, name)
        from .run import stdinpipe  # issue 14: run -d -i

        stdinpipe.remove(self.paths, name)
        from .run import subpaths  # volume-subpath stages a killed start left: not kept past rm

        if os.path.lexists(subpaths.STAGE_ROOT / name):
            subpaths.unstage(name)
        # a --rm container may already have removed itself when it stopped
        if self.store.has(name) or self.store.root(name).exists():
            self.store.remove(name, volumes, held)
        elif held is not None:  # a --rm container that removed itself: its lock file may remain
            held.path.unlink(missing_ok=True)

    # -- observation -----------------------------------------------------------------------
    def get(self, name: str) -> ContainerStatus:
        """One container's status, with whether it is enabled at boot (one more D-Bus call)."""
        from .run import persist

        name = self.store.resolve(name)
        spec = self.store.get(name)

        async def go(bus: Bus) -> ContainerStatus:
            status = (await self.astatuses(bus, [spec]))[0]
            enabled = await persist.is_enabled(self._runtime(bus).manager, name)
            return dataclasses.replace(status, enabled=enabled)

        return self._client.run(go)

    def list(
        self, all: bool = False, errors: builtins.list[InvalidArgument] | None = None
    ) -> builtins.list[ContainerStatus]:
        """The containers (running ones unless ``all``); definitions that cannot be read are left
        out, their errors added to ``errors``."""
        statuses = self.statuses(self.store.list(errors))
        return statuses if all else [s for s in statuses if s.running or s.state == "restarting"]

    def statuses(self, specs: builtins.list[ContainerSpec]) -> builtins.list[ContainerStatus]:
        if not specs:
            return []
        return self._client.run(lambda bus: self.astatuses(bus, specs))

    async def astatuses(
        self, bus: Bus, specs: builtins.list[ContainerSpec]
    ) -> builtins.list[ContainerStatus]:
        from .status import ContainerStatus

        rt = self._runtime(bus)
        states = await rt.states([s.name for s in specs])

        async def status(spec: ContainerSpec) -> ContainerStatus:
            st = states.get(spec.name)
            if st is not None and st.sub_state.startswith("auto-restart"):
                rec = self.store.exit_record(spec.name)
                return ContainerStatus(spec, "restarting", exit=rec, unit=st.name)
            if st is not None and st.running:
                from .run.freeze import is_paused

                props = await rt.manager.unit_properties(st.name)
                started = int(props.get("ActiveEnterTimestamp", 0)) or None if props else None
                state = "paused" if is_paused(props) else "running"  # frozen by `pause`
                health = self._health_state(spec)  # issue 14
                return ContainerStatus(spec, state, started, unit=st.name, health=health)
            rec = self.store.exit_record(spec.name)
            return ContainerStatus(spec, "exited" if rec else "created", exit=rec)

        # the running ones' start times: their calls in flight together on the one bus
        return builtins.list(await asyncio.gather(*(status(spec) for spec in specs)))

    def _health_state(self, spec: ContainerSpec) -> HealthState | None:
        """issue 14: what the last health checks said (health.py), for a container with a check."""
        if spec.health is None:
            return None
        from .healthstate import HealthState, read_state

        return read_state(self.paths, spec.name) or HealthState()

    def logs(
        self,
        name: str,
        write: Callable[[Entry], None],
        follow: bool = False,
        since: str | None = None,
        tail: int | None = None,
    ) -> None:
        from .systemd import journal

        name = self.store.resolve(name)
        spec = self.store.get(name)
        matches = _output_matches(spec)
        if not follow:
            for entry in journal.read(matches, since=since, lines=tail):
                write(entry)
            return

        async def go(bus: Bus) -> None:
            rt = self._runtime(bus)
            # also through restarts: the unit is up until it stops (signals, not polling)
            await journal.follow(matches, write, rt.wait(name), since=since, lines=tail)

        self._client.run(go)

    async def alogs(
        self,
        bus: Bus,
        name: str,
        write: Callable[[Entry], None],
        since: str | None = None,
        tail: int | None = None,
    ) -> None:
        """:meth:`logs` with ``follow`` on the caller's bus (the Docker API's ``logs?follow=1``)."""
        from .systemd import journal

        matches = _output_matches(self.store.get(name))
        await journal.follow(matches, write, self._runtime(bus).wait(name), since=since, lines=tail)

    def exec_command(
        self,
        name: str,
        argv: builtins.list[str],
        env: builtins.list[str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
        term: str | None = None,
    ) -> ExecCommand:
        """How to run ``argv`` inside the running container (its PID 1's namespaces and confinement),
        for the caller to run with its own stdin and terminal (``run.runtime.run_exec``).
        ``term``: the caller's $TERM, for a command under a terminal."""
        return self._client.run(lambda bus: self.aexec_command(bus, name, argv, env, workdir, user, term))

    async def aexec_command(
        self,
        bus: Bus,
        name: str,
        argv: builtins.list[str],
        env: builtins.list[str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
        term: str | None = None,
    ) -> ExecCommand:
        from .run.runtime import exec_argv, resolve_user

        name = self.store.resolve(name)
        spec = self.store.get(name)
        if not argv:
            raise InvalidArgument("exec needs a command", hint=f"e.g. nspawnctl exec {name} /bin/sh")
        leader = await self._runtime(bus).leader(name)
        from .run.payloadwait import payload_started

        await payload_started(leader)  # not into nspawn's child before the payload
        root = f"/proc/{leader}/root"  # the running container's own root and mounts
        uid, gid = resolve_user(self.store.root(name), user or spec.user)
        environment = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
        }
        if term:
            environment["TERM"] = term
        for e in [*spec.env, *check_env(env or [], "-e", in_file=False)]:
            k, sep, v = e.partition("=")
            if sep:
                environment[k] = v
            else:  # a bare KEY of the definition: unset (dockerd's create)
                environment.pop(k, None)
        from .run.lookup import check_command

        # nsenter would say 127/126 too, in its own words; as docker does, say which command
        check_command(
            root, argv[0], path=environment["PATH"], workdir=workdir or spec.workdir, container=name
        )
        from .execcommand import ExecCommand
        from .run.execenv import helper_env

        helper = exec_argv(leader, argv, workdir or spec.workdir, uid, gid)
        return ExecCommand(helper, helper_env(environment))

    # -- helpers ---------------------------------------------------------------------------
    def _check_command(self, spec: ContainerSpec) -> None:
        """The payload's command exists in the container and can be executed (a booted init is
        nspawn's to find): docker's 127/126 before any unit starts."""
        if spec.boot or not spec.command:
            return
        from .run.lookup import check_command, env_path

        check_command(
            self.store.root(spec.name),
            spec.command[0],
            path=env_path(spec.env),
            workdir=spec.workdir,
            mounts=[v.container for v in spec.volumes],
            container=spec.name,
        )

    def _runtime(self, bus: Bus) -> Runtime:
        from .run.runtime import Runtime

        return Runtime(bus, self.paths)

    def _launch(
        self,
        spec: ContainerSpec,
        add_ref: bool = False,
        fds: tuple[int, int, int] | None = None,
        console: str = "pipe",
        post: bool = True,
        pre: bool = True,
    ) -> Launch:
        """``console``: nspawn's for the caller's ``fds``; without them nobody is attached and
        default_launch decides (a booted init's or a ``-t`` payload's terminal is nspawn's)."""
        from .run.hook import default_launch, hook_argv, paths_environment, staged_sources
        from .run.units import needs_pre

        unit = unit_name(spec.name)
        wired: dict[str, object] = {} if fds is None else {"console": console}
        return default_launch(
            spec,
            staged=staged_sources(self.paths, spec),  # volume-subpath binds: the pre hook's stages
            attach_fds=fds,
            add_ref=add_ref,
            pre=hook_argv("pre", spec.name, unit) if pre and needs_pre(spec) else (),
            post=hook_argv("post", spec.name, unit, remove=spec.auto_remove) if post else (),
            environment=tuple(paths_environment(self.paths)),
            streams_python=sys.executable,
            **wired,
        )

    def _cleanup_failed(self, spec: ContainerSpec) -> None:
        """A --rm container that could not run leaves nothing behind; others stay, like docker's.
        The network this command built for it (_network_here) goes first."""
        if spec.auto_remove and _network_here(spec):
            from .net.setup import down

            try:
                down(self.paths, spec.name)
            except NspawnctlError:
                pass  # the repair of state/NAME.attached tries again
        if spec.auto_remove and (self.store.root(spec.name).exists() or self.store.has(spec.name)):
            try:
                self.store.remove(spec.name)
            except NspawnctlError:
                pass


def _network_here(spec: ContainerSpec) -> bool:
    """For a foreground ``run --rm``: on a veth of its own and no published ports the CLI builds the
    network namespace in-process before its unit starts and tears it down after the exit, so the
    unit runs no hook (a zone's or published ports' network is built by the pre hook as before).
    Decided from the spec alone, so the repair of a killed run knows there is a network to undo."""
    # a health check's timer, --sysctl and volume-subpath binds are set up by the pre hook: such a
    # run keeps it
    if spec.network != "veth" or spec.ports or spec.health is not None or spec.settings.sysctls:
        return False
    from .store.subpath import may_be_subpath

    return not any(may_be_subpath(v.host) for v in spec.volumes)


def _resolve_health(image: dict[str, Any] | None, flags: HealthFlags) -> Any:
    """issue 14: the container's check from the image's HEALTHCHECK and the --health-* flags."""
    from .health import resolve

    return resolve(image, flags)


def _auto_update_label(labels: dict[str, str]) -> str | None:
    """issue 14: podman's io.containers.autoupdate label of the image (containers inherit their
    image's labels, as docker's); a value that is no policy (podman's "disabled") marks nothing."""
    from .health import AUTO_UPDATE_LABEL, AUTO_UPDATE_POLICIES, parse_auto_update

    value = labels.get(AUTO_UPDATE_LABEL)
    return parse_auto_update(value, AUTO_UPDATE_LABEL) if value in (*AUTO_UPDATE_POLICIES, "image") else None


def _network_and_userns(options: RunOptions, paths: Paths | None = None) -> tuple[str, bool, str | None]:
    """The network mode to record and whether the container gets a user namespace; refuses
    combinations that cannot work before anything is made."""
    from .net import default_network
    from .spec import check_port_mappings, owns_netns, parse_restart

    parse_restart(options.restart)
    if options.restart != "no" and options.auto_remove:
        raise InvalidArgument(
            "--restart cannot be combined with --rm",
            hint="a container that removes itself when it exits cannot be restarted; drop one of them",
        )
    if options.userns not in USERNS_MODES:
        raise InvalidArgument(f"invalid --userns {options.userns!r}", hint="use auto or host")
    explicit = None
    if options.network:
        from .net.networks import parse as parse_network  # a declared network's name is one too

        explicit = parse_network(paths or Paths.from_env(), options.network)
    publishing: builtins.list[object] = [*options.ports, *(["-P"] if options.publish_all else [])]
    network, notice = default_network(explicit, publishing)
    if publishing and not owns_netns(network):
        flag = "-p" if options.ports else "-P"
        raise InvalidArgument(
            f"{flag} needs a network of the container's own: --network veth or zone:NAME",
            hint=f"this container's network would be {network}; drop {flag} or choose veth or zone:NAME",
        )
    check_port_mappings(options.ports)  # what no host could publish: refused now, not at start
    if options.settings.network_aliases and not network.startswith("zone:"):
        raise InvalidArgument(  # docker's rule: aliases are names on a user-defined network
            "--network-alias needs a user-defined network (a zone)",
            hint="add --network NAME (nspawnctl network create NAME) or --network zone:NAME",
        )
    return network, options.userns == "auto", notice


def _argv(
    image: str,
    command: builtins.list[str],
    entrypoint: str | None,
    defaults: RunDefaults,
    boot: bool,
) -> tuple[builtins.list[str], builtins.list[str]]:
    """(entrypoint, whole argv) with docker's rules: ARGS replace the image's Cmd and keep its
    Entrypoint; ``--entrypoint`` replaces the Entrypoint and drops the image's Cmd. An image
    without an Entrypoint (ACI, .nspawn, an OCI image with Cmd only) runs ``command`` as before.
    A booted init gets ARGS (or the image's command) as its arguments and no entrypoint."""
    if boot:
        if entrypoint is not None:
            raise InvalidArgument(
                "--entrypoint cannot be combined with booting the image's init",
                hint="drop --entrypoint, or --boot if you meant to run a command",
            )
        return [], command or defaults.command
    if entrypoint is not None:
        chosen = [entrypoint] if entrypoint else []
        cmd = command
    else:
        chosen = defaults.entrypoint
        cmd = command or defaults.command
    argv = [*chosen, *cmd]
    if argv and not argv[0]:
        raise InvalidArgument(
            f"the command to run in {image} is an empty string",
            hint=f"say what to run: nspawnctl run --entrypoint /bin/sh {image}",
        )
    return list(chosen), argv


def _output_matches(spec: ContainerSpec) -> builtins.list[str]:
    """journalctl matches for a container's own output: its records, stdout/stderr only (no
    systemd or nspawn status lines)."""
    return [f"{LOG_FIELD}={spec.id}", "_TRANSPORT=stdout"]


def _has_getent(root: Path) -> bool:
    return any(os.path.lexists(root / d / "getent") for d in ("usr/bin", "bin", "usr/sbin", "sbin"))


async def _start(
    rt: Runtime, spec: ContainerSpec, launch: Launch, queued: Callable[[], None] | None = None
) -> str:
    """Start the unit; when it fails, say why in systemd-nspawn's own words. Returns the unit.
    ``queued``: called once the start job is queued (the container's lock goes there)."""
    from .errors import SystemdError
    from .systemd import journal

    started = int(datetime.now(UTC).timestamp() * 1e6)
    unit: str = rt.unit_to_start(spec.name, launch)
    try:
        return str(await rt.start(spec, launch, queued))
    except SystemdError as e:
        msgs = await asyncio.to_thread(journal.errors_of, unit, None, started)
        if not msgs:  # the hook's own errors, on its stderr (see run.hook.log_error)
            msgs = await asyncio.to_thread(_hook_errors, unit, started)
        if msgs:
            raise SystemdError(f"container {spec.name} failed to start: {msgs[-1]}", hint=e.hint) from e
        raise


def _hook_errors(unit: str, since_us: int) -> builtins.list[str]:
    """Error lines the unit's hook wrote to its stderr (``<3>``: priority err) since ``since_us``."""
    from .errors import CommandFailed
    from .systemd import journal

    try:
        entries = journal.read(
            [f"_SYSTEMD_UNIT={unit}", "_TRANSPORT=stdout"], priority="err", since=f"@{since_us / 1e6:.6f}"
        )
    except CommandFailed:
        return []
    return [e.message.decode(errors="replace") for e in entries]


def _check_ports(paths: Paths, spec: ContainerSpec) -> None:
    """Published ports that are taken: a clear error before any unit exists (the hook checks again,
    for starts by machinectl and at boot)."""
    if spec.ports:
        from . import net

        net.check_ports(paths, spec)


async def _uncancelled(aw: Awaitable[T]) -> T:
    """Await ``aw`` to its end through cancellations of the caller (Ctrl-C): clean-up that must not
    be cut short; it is bounded by the work awaited. A cancellation of ``aw`` itself is raised."""
    task = asyncio.ensure_future(aw)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise


async def _quietly(coro: Any) -> None:
    try:
        await coro
    except NspawnctlError:
        pass


def tag_ref(text: str) -> ImageRef:
    """A name to give an image: NAME[:TAG]; a digest names content, so it cannot be given."""
    ref = ImageRef.parse(text)
    if ref.digest is not None:
        raise InvalidReference(
            f"refusing to name an image {text!r}: a digest reference names content, it is not a tag",
            hint="use NAME[:TAG]",
        )
    return ref


class Client:
    """Entry point of the API.

    ``Client().containers.run_detached("debian", ["sleep", "60"], RunOptions())``
    """

    def __init__(self, paths: Paths | None = None, notify: Callable[[str], None] = _no_notice) -> None:
        self.paths = paths or Paths.from_env()
        self.pool = Pool(self.paths)
        self.notify = notify  # warnings worth a line on stderr (leftovers repair could not remove)
        self.images = Images(self)
        self.containers = Containers(self)
        self.volumes = Volumes(self)
        self._session: Session | None = None

    @contextmanager
    def session(self) -> Iterator[Client]:
        """Every sync call made inside shares one event loop and one bus (connected on first
        use): one connection per command. Not for use inside a running event loop (await the
        ``a...`` methods there)."""
        if self._session is not None:  # nested: the outer one goes on
            yield self
            return
        with Session() as session:
            self._session = session
            try:
                yield self
            finally:
                self._session = None

    def run(self, fn: Callable[[Bus], Awaitable[T]]) -> T:
        """The sync facade's one way in: ``fn(bus)`` on the session's bus, else on a fresh one."""
        if self._session is not None:
            return self._session.run(fn)
        return run_sync(fn)

    def prune(
        self, all_images: bool = False, volumes: bool = False, filters: ListFilters | None = None
    ) -> SystemPruneResult:
        """docker's ``system prune``: stopped containers, then dangling images (with
        ``all_images`` every image no container was made from) and the layers no image uses, and
        whatever killed commands left half done (staging, temporary records, orphan roots); with
        ``volumes``, the volumes no container binds any more. ``filters``
        (listfilters.SYSTEM_PRUNE_KEYS) narrow each kind; ``until`` with ``volumes`` is refused
        (volumes have no such filter), as docker's CLI does, before anything is removed."""
        from .imagefilters import ImageFilters
        from .listfilters import ListFilters, refuse_until_with_volumes

        if filters is None:
            filters = ListFilters()
        refuse_until_with_volumes(filters, volumes)
        containers = self.containers.prune(filters)
        only = ImageFilters(labels=filters.labels, until=filters.until)
        images = self.images.prune(all_images=all_images, repair=False, filters=only)
        gone, size = self.volumes.prune(filters=filters) if volumes else ([], 0)
        from .prunes import SystemPruneResult

        return SystemPruneResult(containers, images, gone, size)

    def disk_usage(self) -> builtins.list[Usage]:
        """docker's ``system df``: images (stored bytes, and what ``image prune -a`` would free),
        containers (how many, how many running) and volumes (bytes, what ``volume prune`` frees)."""
        from .diskusage import container_usage, image_usage, volume_usage
        from .store.layers import LayerStore

        self.pool.check()
        specs = self.containers.store.list()
        layers = {la.chain_id: la.size for la in LayerStore(self.pool).list()}
        usage = [image_usage(self.images.list(), layers, specs)]
        usage.append(container_usage(s.state for s in self.containers.statuses(specs)))
        usage.append(volume_usage(self.volumes.sizes()))
        return usage

    def info(self) -> HostInfo:
        """docker's ``info``: systemd (the daemon), the kernel, the pool and the counts, on one bus."""
        from . import sysinfo
        from .net.detect import networkd_running

        specs = self.containers.store.list()

        async def go(bus: Bus) -> tuple[sysinfo.SystemdVersion, builtins.list[ContainerStatus]]:
            return await sysinfo.systemd_version(bus), await self.containers.astatuses(bus, specs)

        systemd, statuses = self.run(go)
        counts = sysinfo.container_counts(s.state for s in statuses)
        return sysinfo.HostInfo(
            systemd=systemd,
            os_name=sysinfo.os_name(),
            cgroup_version=sysinfo.cgroup_version(),
            cpus=os.cpu_count() or 0,
            memory=sysinfo.memory_bytes(),
            pool=sysinfo.filesystem(self.paths.pool),
            store=sysinfo.filesystem(self.paths.store),
            networkd=networkd_running(),
            containers=counts,
            images=len(self.images.list()),
        )

    @property
    def trust(self) -> TrustStore:
        """The keys trusted to sign images, per name prefix."""
        from .verify.trust import TrustStore

        return TrustStore(self.paths.trust)
