"""The Python API: ``Client().images`` and ``Client().containers``; the CLI is a thin layer over it.

It is the one place that knows every step (store, run, observe) and strings them together.
Calls are synchronous; each one that needs systemd opens the bus inside its own event loop.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import os
import secrets
import signal as signals
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .config import Paths
from .errors import (
    ContainerRunning,
    ImageInUse,
    ImageNotFound,
    InvalidArgument,
    InvalidReference,
    NspawnctlError,
)
from .names import check_machine_name, generate_name
from .ref import ImageRef
from .run.units import LOG_FIELD, unit_name
from .spec import ContainerSpec, Limits, RunDefaults, Volume
from .store.containers import ContainerStore, ExitRecord
from .store.images import Image, ImageStore
from .store.pool import Pool
from .systemd.bus import Bus, run_sync
from .systemd.journal import Entry

if TYPE_CHECKING:
    from .pull import PullOptions, PullResult
    from .verify.trust import TrustStore


@dataclass(frozen=True)
class ContainerStatus:
    """A container and what it is doing now."""

    spec: ContainerSpec
    state: str  # created | running | exited
    started_us: int | None = None
    exit: ExitRecord | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def to_json(self) -> dict[str, Any]:
        s = self.spec
        return {
            "Name": s.name,
            "Id": s.id,
            "Image": s.image,
            "ImageId": s.image_id,
            "Created": s.created,
            "Path": s.command[0] if s.command else None,
            "Args": s.command[1:],
            "Command": s.command,
            "State": {
                "Status": self.state,
                "Running": self.running,
                "StartedAt": _iso_us(self.started_us),
                "ExitCode": self.exit.exit_code if self.exit else None,
                "FinishedAt": self.exit.finished if self.exit else None,
            },
            "Config": {
                "Entrypoint": s.entrypoint or None,
                "Cmd": s.cmd or None,
                "Env": s.env,
                "WorkingDir": s.workdir,
                "User": s.user,
                "Hostname": s.hostname,
                "Boot": s.boot,
                "Volumes": [str(v) for v in s.volumes],
                "AutoRemove": s.auto_remove,
                "StopSignal": s.stop_signal or (None if s.boot else "SIGTERM"),
            },
            "HostConfig": {
                "Memory": s.limits.memory,
                "NanoCpus": _nano(s.limits.cpus),
                "PidsLimit": s.limits.pids,
            },
            "Unit": unit_name(s.name),
        }


def _iso_us(us: int | None) -> str | None:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="seconds") if us else None


def _nano(cpus: float | None) -> int | None:
    return None if cpus is None else int(cpus * 1e9)


@dataclass(frozen=True)
class RunResult:
    """How a foreground run ended: the payload's exit code, and systemd-nspawn's own error messages
    when the container could not run as asked (nobody's terminal shows those otherwise)."""

    exit_code: int
    errors: builtins.list[str] = field(default_factory=list)


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


@dataclass(frozen=True)
class PruneResult:
    images: builtins.list[str]  # image IDs removed
    layers: builtins.list[str]  # chain IDs of the layers removed
    reclaimed: int  # bytes of layer content removed (uncompressed)


class Images:
    def __init__(self, client: Client) -> None:
        self._client = client
        self.store = ImageStore(client.pool)

    def import_file(self, source: str | Path, ref: str | None) -> Image:
        """Import a rootfs tarball (``-`` is stdin) or a directory as an image."""
        parsed = _tag_ref(ref) if ref else None
        if str(source) == "-":
            return self.store.import_archive(sys.stdin.buffer, parsed, source="-")
        path = Path(source)
        if path.is_dir():
            return self.store.import_directory(path, parsed)
        try:
            f: IO[bytes] = open(path, "rb")
        except OSError as e:
            raise InvalidArgument(f"cannot read {path}: {e.strerror}") from e
        with f:
            if path.name.endswith(".aci"):
                from .pull.aci import import_aci

                self._client.pool.check()
                return import_aci(self.store, f, ref, source=str(path.resolve()))
            return self.store.import_archive(f, parsed, source=str(path.resolve()))

    def pull(self, source: str, name: str | None = None, options: PullOptions | None = None) -> PullResult:
        """Download, verify and store an image (see :mod:`nspawnctl.pull` for what is accepted)."""
        from .pull import PullOptions, pull

        if name:
            _tag_ref(name)  # NAME@sha256:... would claim a digest nobody checked
        self._client.pool.check()
        options = options or PullOptions()
        paths = self._client.paths
        options = dataclasses.replace(
            options,
            auth_file=options.auth_file or paths.auth,
            policy_file=options.policy_file or paths.policy,
        )
        return pull(self.store, self._client.trust, source, name, options)

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
        return self.store.tag(source, _tag_ref(target))

    def remove(self, text: str, force: bool = False) -> tuple[builtins.list[str], bool]:
        self._client.pool.check()
        return self.store.remove(text, force, self._client.containers.store.users_of)

    def shared_size(self, image: Image) -> int:
        """Bytes of the image's layers that other images use too (stored once, counted in each)."""
        return self.store.shared_size(image)

    def prune(self, all_images: bool = False) -> PruneResult:
        """Delete layers no image uses (left by rmi or by failed pulls); with ``all_images`` first
        the images no container was made from."""
        from .store.layers import LayerStore

        self._client.pool.check()
        layer_store = LayerStore(self._client.pool)
        before = {la.chain_id: la.size for la in layer_store.list()}
        removed: builtins.list[str] = []
        if all_images:
            users = self._client.containers.store.users_of
            for img in self.store.list():
                if users(img.id):
                    continue
                try:
                    self.store.remove(img.id, False, users)
                except (ImageInUse, ImageNotFound):
                    continue  # a container was made from it meanwhile, or someone else removed it
                removed.append(img.id)
        layer_store.prune(self.store.used_layers)
        left = {la.chain_id for la in layer_store.list()}
        gone = [c for c in before if c not in left]
        return PruneResult(removed, gone, sum(before[c] for c in gone))


class Containers:
    def __init__(self, client: Client) -> None:
        self._client = client
        self.paths = client.paths
        self.store = ContainerStore(client.pool)

    # -- creation --------------------------------------------------------------------------
    def create(self, image: str, command: builtins.list[str], options: RunOptions) -> ContainerSpec:
        self._client.pool.check()
        img = self._client.images.get(image)
        name = check_machine_name(options.name) if options.name else generate_name(self.store.names())
        defaults = img.defaults
        env = [*defaults.env, *options.env]
        for e in env:
            if "=" not in e or e.startswith("="):
                raise InvalidArgument(f"invalid environment variable {e!r}", hint="use -e KEY=VALUE")
        # a booted image runs its init unless told what to run: a command, or --entrypoint
        boot = options.boot or (defaults.boot and not command and options.entrypoint is None)
        entrypoint, argv = _argv(image, command, options.entrypoint, defaults, boot)
        spec = ContainerSpec(
            name=name,
            id=secrets.token_hex(16),
            image=image,
            image_id=img.id,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            command=argv,
            env=env,
            volumes=options.volumes,
            workdir=options.workdir or defaults.workdir,
            user=options.user or defaults.user,
            hostname=options.hostname,
            boot=boot,
            limits=options.limits,
            auto_remove=options.auto_remove,
            entrypoint=entrypoint,
            stop_signal=None if boot else defaults.stop_signal,
        )
        if spec.user and spec.user.partition(":")[0] not in ("root", "0") and not _has_getent(img.path):
            raise InvalidArgument(
                f"image {image} has no getent, which systemd-nspawn runs inside to switch "
                f"to user {spec.user!r}",
                hint="add getent to the image (Debian: libc-bin) or run as root",
            )
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
        for v in spec.volumes:
            if not os.path.exists(v.host):
                raise InvalidArgument(f"volume source {v.host} does not exist", hint="create it first")
        return self.store.create(spec, img)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, name: str) -> None:
        spec = self.store.get(name)

        async def go(bus: Bus) -> None:
            rt = self._runtime(bus)
            if await rt.is_running(name):
                return
            self.store.clear_exit(name)
            await _start(rt, spec, self._launch(spec))

        run_sync(go)

    def run_detached(self, image: str, command: builtins.list[str], options: RunOptions) -> ContainerSpec:
        spec = self.create(image, command, options)
        try:
            self.start(spec.name)
        except NspawnctlError:
            self._cleanup_failed(spec)
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
    ) -> RunResult:
        """Run in the foreground and return the payload's exit code (docker's ``run`` without ``-d``).

        Without ``interactive``/``tty`` the output goes to the journal like any container's and is
        followed from there (so ``logs`` has it too); with them our own stdin/stdout/stderr are
        handed to the unit and nspawn forwards the terminal itself.
        """
        spec = self.create(image, command, options)
        try:
            return run_sync(lambda bus: self._attached(bus, spec, write, interactive, tty))
        except BaseException:
            self._cleanup_failed(spec)
            raise

    async def _attached(
        self, bus: Bus, spec: ContainerSpec, write: Callable[[bytes], None], interactive: bool, tty: bool
    ) -> RunResult:
        from .systemd import journal

        rt = self._runtime(bus)
        fds = (0, 1, 2) if (interactive or tty) else None
        console = "interactive" if (tty and interactive) else ("read-only" if tty else "pipe")
        launch = self._launch(spec, add_ref=True, fds=fds, console=console)
        name = spec.name
        await _start(rt, spec, launch)
        inv = await rt.invocation_id(name)
        interrupts = 0
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task[None]] = set()

        def forward(sig: int) -> None:
            nonlocal interrupts
            interrupts += 1
            target = signals.SIGKILL if interrupts >= 3 else sig
            task = loop.create_task(_quietly(rt.kill(name, target)))
            pending.add(task)
            task.add_done_callback(pending.discard)

        if fds is None:
            for sig in (signals.SIGINT, signals.SIGTERM):
                loop.add_signal_handler(sig, forward, sig)
        try:
            if fds is None:
                matches = _output_matches(spec)
                if inv:
                    matches.append(f"_SYSTEMD_INVOCATION_ID={inv}")

                async def ended() -> bool:
                    return await rt.wait(name, timeout=0)

                await journal.follow(matches, lambda e: write(e.message + b"\n"), ended, poll=0.05)
            await rt.wait(name)
            outcome = await rt.outcome(name)
        finally:
            if fds is None:
                for sig in (signals.SIGINT, signals.SIGTERM):
                    loop.remove_signal_handler(sig)
            await rt.release(name)
        if outcome is not None:
            code = outcome.exit_code
        else:
            record = self.store.exit_record(name)
            code = record.exit_code if record else 0
        errors = await asyncio.to_thread(journal.errors_of, unit_name(name), inv) if code else []
        return RunResult(code, errors)

    def stop(self, name: str, timeout: float = 10) -> None:
        self.store.get(name)
        if run_sync(lambda bus: self._runtime(bus).stop(name, timeout)):
            self._record_signal_death(name, signals.SIGKILL)

    def kill(self, name: str, signal: int = signals.SIGKILL) -> None:
        self.store.get(name)

        async def go(bus: Bus) -> bool:
            rt = self._runtime(bus)
            await rt.kill(name, signal)
            return bool(await rt.wait(name, timeout=2))

        if run_sync(go):
            self._record_signal_death(name, signal)

    def _record_signal_death(self, name: str, signal: int) -> None:
        """nspawn reports a payload killed by a signal as a plain failure (1); when we sent the
        signal we know better and keep docker's 128+N."""
        rec = self.store.exit_record(name)
        if rec is not None and rec.exit_code == 1 and name in self.store.names():
            self.store.record_exit(name, ExitRecord(128 + signal, "signal", rec.finished))

    def restart(self, name: str, timeout: float = 10) -> None:
        self.stop(name, timeout)
        self.start(name)

    def remove(self, name: str, force: bool = False) -> None:
        spec = self.store.get(name)

        async def go(bus: Bus) -> None:
            rt = self._runtime(bus)
            if await rt.is_running(name):
                if not force:
                    raise ContainerRunning(
                        f"container {name} is running", hint=f"stop it first, or use: nspawnctl rm -f {name}"
                    )
                await rt.kill(name, signals.SIGKILL)
                await rt.wait(name, timeout=30)
            await rt.reset(name)

        run_sync(go)
        # a --rm container may already have removed itself when it stopped
        if spec.name in self.store.names() or self.store.root(name).exists():
            self.store.remove(name)

    # -- observation -----------------------------------------------------------------------
    def get(self, name: str) -> ContainerStatus:
        return self.statuses([self.store.get(name)])[0]

    def list(self, all: bool = False) -> builtins.list[ContainerStatus]:
        statuses = self.statuses(self.store.list())
        return statuses if all else [s for s in statuses if s.running]

    def statuses(self, specs: builtins.list[ContainerSpec]) -> builtins.list[ContainerStatus]:
        if not specs:
            return []

        async def go(bus: Bus) -> builtins.list[ContainerStatus]:
            rt = self._runtime(bus)
            states = await rt.states([s.name for s in specs])
            out = []
            for spec in specs:
                st = states.get(spec.name)
                if st is not None and st.running:
                    out.append(ContainerStatus(spec, "running", await rt.started_at(spec.name)))
                else:
                    rec = self.store.exit_record(spec.name)
                    out.append(ContainerStatus(spec, "exited" if rec else "created", exit=rec))
            return out

        result: builtins.list[ContainerStatus] = run_sync(go)
        return result

    def logs(
        self,
        name: str,
        write: Callable[[Entry], None],
        follow: bool = False,
        since: str | None = None,
        tail: int | None = None,
    ) -> None:
        from .systemd import journal

        spec = self.store.get(name)
        matches = _output_matches(spec)
        if not follow:
            for entry in journal.read(matches, since=since, lines=tail):
                write(entry)
            return

        async def go(bus: Bus) -> None:
            rt = self._runtime(bus)

            async def stopped() -> bool:
                return not await rt.is_running(name)

            await journal.follow(matches, write, stopped, since=since, lines=tail)

        run_sync(go)

    def exec(
        self,
        name: str,
        argv: builtins.list[str],
        env: builtins.list[str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
        tty: bool = False,
        interactive: bool = False,
    ) -> int:
        """Run ``argv`` inside the running container; returns its exit code."""
        from .run.runtime import exec_argv, resolve_user, run_exec

        spec = self.store.get(name)
        if not argv:
            raise InvalidArgument("exec needs a command", hint=f"e.g. nspawnctl exec {name} /bin/sh")
        leader: int = run_sync(lambda bus: self._runtime(bus).leader(name))
        uid, gid = resolve_user(self.store.root(name), user or spec.user)
        environment = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
        }
        if tty and os.environ.get("TERM"):
            environment["TERM"] = os.environ["TERM"]
        for e in [*spec.env, *(env or [])]:
            k, sep, v = e.partition("=")
            if not sep:
                raise InvalidArgument(f"invalid environment variable {e!r}", hint="use -e KEY=VALUE")
            environment[k] = v
        return run_exec(
            exec_argv(leader, argv, workdir or spec.workdir, uid, gid), environment, tty, interactive
        )

    # -- helpers ---------------------------------------------------------------------------
    def _runtime(self, bus: Bus) -> Any:
        from .run.runtime import Runtime

        return Runtime(bus, self.paths)

    def _launch(
        self,
        spec: ContainerSpec,
        add_ref: bool = False,
        fds: tuple[int, int, int] | None = None,
        console: str = "pipe",
    ) -> Any:
        from .run.runtime import host_is_unified, nspawn_binary, poststop_argv
        from .run.units import Launch

        return Launch(
            nspawn=nspawn_binary(),
            console="read-only" if spec.boot and fds is None else console,
            attach_fds=fds,
            add_ref=add_ref,
            unified_cgroup=host_is_unified(),
            poststop=poststop_argv(self.paths, spec.name, remove=spec.auto_remove),
        )

    def _cleanup_failed(self, spec: ContainerSpec) -> None:
        """A --rm container that could not run leaves nothing behind; others stay, like docker's."""
        if spec.auto_remove and (self.store.root(spec.name).exists() or spec.name in self.store.names()):
            try:
                self.store.remove(spec.name)
            except NspawnctlError:
                pass


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


async def _start(rt: Any, spec: ContainerSpec, launch: Any) -> None:
    """Start the unit; when it fails, say why in systemd-nspawn's own words."""
    from .errors import SystemdError
    from .systemd import journal

    started = int(datetime.now(UTC).timestamp() * 1e6)
    try:
        await rt.start(spec, launch)
    except SystemdError as e:
        msgs = await asyncio.to_thread(journal.errors_of, unit_name(spec.name), None, started)
        if msgs:
            raise SystemdError(f"container {spec.name} failed to start: {msgs[-1]}", hint=e.hint) from e
        raise


async def _quietly(coro: Any) -> None:
    try:
        await coro
    except NspawnctlError:
        pass


def _tag_ref(text: str) -> ImageRef:
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

    def __init__(self, paths: Paths | None = None) -> None:
        self.paths = paths or Paths.from_env()
        self.pool = Pool(self.paths)
        self.images = Images(self)
        self.containers = Containers(self)

    @property
    def trust(self) -> TrustStore:
        """The keys trusted to sign images, per name prefix."""
        from .verify.trust import TrustStore

        return TrustStore(self.paths.trust)
