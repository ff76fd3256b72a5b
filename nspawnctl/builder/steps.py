"""``docker build`` on nspawnctl's own parts: every step that changes files makes a read-only
image (a btrfs snapshot of the step before, changed in a staging subvolume, or a RUN's container
committed), metadata steps change the run defaults in memory, and the last step's snapshot with
those defaults becomes the built image. Intermediate images (origin ``build_step``) and
RUN containers (named in the build's record under ``state/builds/``, which only the builder
writes: never a label, which an image or a user can set) carry the building process's PID and
start time: they are removed at the end, on failure and on cancellation, and a build that was
killed leaves them to the next build's :func:`repair` (that process is gone). No layer cache:
every build runs every step."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import hashlib
import os
import secrets
import shlex
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ArchiveError, InvalidArgument, NotFound, NspawnctlError
from ..spec import RunDefaults
from ..store import rootpath
from ..store.copy import TreeWriter
from ..store.images import BUILD_RECORDS
from .ignore import MAX_IGNORE, Ignore
from .parser import EXPANDED, Dockerfile, Instruction, expand, parse

if TYPE_CHECKING:
    from ..client import Client
    from ..pull import PullOptions
    from ..store.images import Image
    from ..systemd.bus import Bus

ORIGIN_KEY = "build_step"
"""Origin key of an intermediate image: ``PID:START:BUILD`` (see store.files.owner)."""
RECORDS = BUILD_RECORDS
"""Under the state directory: ``BUILD.json`` per running build, its owner, RUN containers and the
images it pins (see store.images.build_pins)."""


class BuildFailed(NspawnctlError):
    """A step failed (docker's message, e.g. "The command '...' returned a non-zero code: 1")."""

    code = "build-failed"
    exit_code = 1


@dataclass(frozen=True)
class BuildOptions:
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    pull: str = "missing"  # missing | always (docker's --pull for FROM)
    pull_options: Callable[[], PullOptions] | None = None
    target: str | None = None  # docker's --target: the stage (by name) to end with


@dataclass
class _State:
    image: Image | None = None  # what the next step starts from; None: scratch, nothing yet
    defaults: RunDefaults = field(default_factory=RunDefaults)
    args: dict[str, str] = field(default_factory=dict)  # ARGs in scope and their values
    made: list[str] = field(default_factory=list)  # intermediate image IDs
    stage: bool = False  # a FROM was seen
    base: str | None = None  # the FROM image's ID
    name: str = ""  # the stage's name (FROM ... AS NAME), lower case
    stages: dict[str, Image | None] = field(default_factory=dict)  # earlier stages by name and index


Emit = Callable[[str], None]


def _new_id() -> str:
    return "sha256:" + hashlib.sha256(secrets.token_bytes(32)).hexdigest()


@dataclass
class _Record:
    """A running build's record (``state/builds/BUILD.json``): its owner and the RUN containers
    it makes, each named before it is created, so a killed build's are found by name."""

    path: Path
    owner: str
    containers: list[str] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)  # image IDs rmi and prune leave while it runs

    def add(self, name: str) -> None:
        self.containers.append(name)
        self._save()

    def pin(self, image_id: str) -> None:
        if image_id not in self.pins:
            self.pins.append(image_id)
            self._save()

    def _save(self) -> None:
        from ..store.files import write_json

        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json(self.path, {"owner": self.owner, "containers": self.containers, "pins": self.pins})

    def drop(self) -> None:
        self.path.unlink(missing_ok=True)


def _dead_records(directory: Path) -> list[tuple[Path, list[str]]]:
    """The records of builds whose process is gone, with their containers. A record that cannot
    be read or whose owner does not parse is not taken for dead (left alone)."""
    import json

    from ..store.files import owner_alive

    out = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            owner, names = data["owner"], data["containers"]
        except (OSError, ValueError, TypeError, KeyError):
            continue
        if not isinstance(owner, str) or not isinstance(names, list):
            continue
        if owner_alive(owner) is False:
            out.append((path, [n for n in names if isinstance(n, str) and n.startswith("build-")]))
    return out


async def repair(client: Client, bus: Bus) -> None:
    """Remove what killed builds left: intermediate images (origin ``build_step``) and RUN
    containers (the build's record) whose building process is gone; a mark that does not parse
    is not ours."""
    from ..store.files import owner_alive

    store = client.images.store
    for img in await asyncio.to_thread(store.list):
        mark = img.origin.get(ORIGIN_KEY)
        if isinstance(mark, str) and owner_alive(mark) is False:
            with contextlib.suppress(NotFound):
                await asyncio.to_thread(store.remove, img.id, True, lambda _id: [])
    for path, names in await asyncio.to_thread(_dead_records, client.paths.state / RECORDS):
        for name in names:
            with contextlib.suppress(NotFound):
                await client.containers.aremove(bus, name, force=True)
        path.unlink(missing_ok=True)


async def build(
    client: Client,
    bus: Bus,
    context: Path,
    dockerfile: str,
    options: BuildOptions,
    emit: Emit,
    built: Callable[[Image], None] | None = None,
) -> Image:
    """Build ``dockerfile`` (its text) with the files of directory ``context``; ``emit`` gets
    docker's progress text, ``built`` the image before the closing "Successfully built" (the
    API's ``aux`` line). Returns the image, tagged as ``options.tags`` say; on failure nothing
    of the build is left."""
    from ..client import tag_ref

    df = parse(dockerfile)
    refs = [tag_ref(t) for t in options.tags]
    ignore = await asyncio.to_thread(_read_ignore, context)
    if options.target and not any(
        i.keyword == "FROM" and i.args.lower().split()[-2:] == ["as", options.target.lower()]
        for i in df.instructions
    ):
        raise InvalidArgument(f"failed to reach build target {options.target} in Dockerfile")
    from ..store.files import owner

    await repair(client, bus)
    build_id = secrets.token_hex(6)
    me = owner()
    record = _Record(client.paths.state / RECORDS / f"{build_id}.json", me)
    state = _State()
    global_args: dict[str, str] = {}
    used_args: set[str] = set()
    total = len(df.instructions)
    try:
        target = options.target.lower() if options.target else None
        for n, ins in enumerate(df.instructions, 1):
            if target is not None and ins.keyword == "FROM" and state.stage and state.name == target:
                break  # the target stage is complete
            emit(f"Step {n}/{total} : {ins}\n")
            before = state.image
            await _step(
                client,
                bus,
                (context, ignore),
                df,
                ins,
                state,
                global_args,
                used_args,
                options,
                (f"{me}:{build_id}", record),
                emit,
            )
            if state.image is not None and state.image is not before:
                emit(f" ---> {state.image.short_id}\n")
        unused = sorted(set(options.build_args) - used_args)
        if unused:
            emit(f"[Warning] One or more build-args {unused} were not consumed\n")
        defaults = dataclasses.replace(state.defaults, labels={**state.defaults.labels, **options.labels})
        image = await asyncio.to_thread(_finish, client, state, defaults, refs, build_id)
    finally:
        await asyncio.shield(asyncio.to_thread(_drop, client, state.made, record))
    if built is not None:
        built(image)
    emit(f"Successfully built {image.short_id}\n")
    for ref in refs:
        emit(f"Successfully tagged {ref}\n")
    return image


async def _step(
    client: Client,
    bus: Bus,
    context: tuple[Path, Ignore],
    df: Dockerfile,
    ins: Instruction,
    state: _State,
    global_args: dict[str, str],
    used_args: set[str],
    options: BuildOptions,
    mark: tuple[str, _Record],
    emit: Emit,
) -> None:
    """One instruction; ``mark``: what this build's leftovers carry (``PID:START:BUILD``) and
    its record."""
    stamp, record = mark
    kw = ins.keyword
    values = {**state.args, **dict(e.partition("=")[::2] for e in state.defaults.env)}
    if not state.stage or kw == "FROM":  # FROM sees the ARGs before the first FROM only
        values = dict(global_args)
    text = expand(ins.args, values, df.escape, ins.line) if kw in EXPANDED else ins.args
    if kw == "ARG":
        name, sep, default = text.partition("=")
        if not name or not all(c.isalnum() or c == "_" for c in name):
            raise InvalidArgument(f"Dockerfile line {ins.line}: ARG {text!r} is not NAME[=DEFAULT]")
        if name in options.build_args:
            used_args.add(name)
            value: str | None = options.build_args[name]
        elif sep:
            value = expand(default, values, df.escape, ins.line)
        else:
            value = global_args.get(name) if state.stage else None
        if not state.stage:
            global_args[name] = value or ""
        elif value is not None:
            state.args[name] = value
        return
    if kw == "FROM":
        await _from(client, ins, text, state, options, record)
        return
    if kw == "RUN":
        await _run(client, bus, ins, state, stamp, record, emit)
        return
    if kw in ("COPY", "ADD"):
        if "from" in ins.flags and kw == "ADD":
            raise InvalidArgument(
                f"Dockerfile line {ins.line}: ADD --from is not supported", hint="use COPY --from"
            )
        where = await _copy_source(client, ins, state, context, options, record)
        words = _words(ins, text)
        if len(words) < 2:
            raise InvalidArgument(f"Dockerfile line {ins.line}: {kw} needs a source and a destination")
        chown = ins.flags.get("chown")
        if chown is not None:
            chown = expand(chown, values, df.escape, ins.line)
        sources, dest = words[:-1], words[-1]
        defaults = state.defaults
        await _changed(
            client,
            state,
            stamp,
            lambda root: _copy(
                root, where[0], where[1], sources, dest, defaults.workdir, chown, kw == "ADD", ins.line
            ),
        )
        return
    if kw == "WORKDIR":
        path = text if text.startswith("/") else os.path.join(state.defaults.workdir or "/", text)
        path = os.path.normpath(path)
        state.defaults = dataclasses.replace(state.defaults, workdir=path)
        if state.image is None or not _exists(state.image.path, path):
            await _changed(client, state, stamp, lambda root: _mkdir(root, path, ins.line))
        return
    if kw == "HEALTHCHECK":
        state.defaults = dataclasses.replace(state.defaults, healthcheck=_healthcheck(ins))
        return
    if kw == "MAINTAINER":
        state.defaults = dataclasses.replace(
            state.defaults, labels={**state.defaults.labels, "maintainer": text}
        )
        return
    from ..imagechanges import parse as parse_changes

    line = f"{kw} {ins.args}" if kw in ("CMD", "ENTRYPOINT") and ins.exec_form is not None else f"{kw} {text}"
    try:
        state.defaults = parse_changes([line]).apply(state.defaults)
    except InvalidArgument as e:
        raise InvalidArgument(f"Dockerfile line {ins.line}: {e.message}", hint=e.hint) from None


def _words(ins: Instruction, text: str) -> list[str]:
    if ins.exec_form is not None:
        return list(ins.exec_form)
    try:
        return shlex.split(text)
    except ValueError as e:
        raise InvalidArgument(f"Dockerfile line {ins.line}: {e}") from None


async def _from(
    client: Client, ins: Instruction, text: str, state: _State, options: BuildOptions, record: _Record
) -> None:
    """A stage starts: from an image, an earlier stage (by name) or scratch. The stage before
    is kept (its last image) for COPY --from and for FROM by name."""
    words = text.split()
    name = ""
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        words = words[:1]
    if len(words) != 1:
        raise InvalidArgument(f"Dockerfile line {ins.line}: FROM {text!r} is not IMAGE [AS NAME]")
    if state.stage:
        state.stages[str(sum(k.isdigit() for k in state.stages))] = state.image
        if state.name:
            state.stages[state.name] = state.image
    state.stage = True
    state.name = name
    state.args = {}
    if words[0].lower() in _named(state):
        state.image = state.stages[words[0].lower()]
        state.defaults = state.image.defaults if state.image is not None else RunDefaults()
        return
    if words[0] == "scratch":
        state.image = None
        state.defaults = RunDefaults()
        return
    image = await _pinned(client, record, words[0], options, ins.line)
    state.image = image
    state.base = image.id
    state.defaults = image.defaults


def _named(state: _State) -> dict[str, Image | None]:
    return {k: v for k, v in state.stages.items() if not k.isdigit()}


async def _copy_source(
    client: Client,
    ins: Instruction,
    state: _State,
    context: tuple[Path, Ignore],
    options: BuildOptions,
    record: _Record,
) -> tuple[Path, Ignore]:
    """Where COPY reads: the context, or with ``--from`` an earlier stage (name or index) or an
    image (pulled when missing), read-only, its paths resolved inside its root."""
    source = ins.flags.get("from")
    if source is None:
        return context
    key = source.lower()
    if key in state.stages:
        image = state.stages[key]
        if image is None:
            raise BuildFailed(f"Dockerfile line {ins.line}: COPY --from={source}: that stage has no files")
        return image.path, Ignore()
    if key.isdigit() or key == state.name:
        raise InvalidArgument(
            f"Dockerfile line {ins.line}: COPY --from={source}: no earlier stage has that index or name"
        )
    image = await _pinned(client, record, source, options, ins.line)
    return image.path, Ignore()


async def _pinned(client: Client, record: _Record, ref: str, options: BuildOptions, line: int) -> Image:
    """The image ``ref`` names (pulled as ``--pull`` says), pinned for the rest of the build: its
    ID is in the build's record, which ``rmi`` and ``prune`` read under the pool lock. Pinned
    under that lock once it is seen to exist there: an image removed between the look-up and
    the pin is looked up (pulled) again."""
    for _ in range(3):
        image = await asyncio.to_thread(client.images.ensure, ref, options.pull, options.pull_options)
        if await asyncio.to_thread(_pin, client, record, image):
            return image
    raise BuildFailed(f"Dockerfile line {line}: {ref}: the image was removed each time the build took it")


def _pin(client: Client, record: _Record, image: Image) -> bool:
    from ..errors import ImageNotFound

    store = client.images.store
    with store.pool.lock():
        try:
            store.get(image.id)
        except ImageNotFound:
            return False
        record.pin(image.id)
    return True


async def _run(
    client: Client, bus: Bus, ins: Instruction, state: _State, stamp: str, record: _Record, emit: Emit
) -> None:
    from ..client import RunOptions
    from ..files import commit

    if state.image is None:
        raise BuildFailed(
            f"Dockerfile line {ins.line}: RUN needs an image with a shell: FROM scratch has none"
        )
    command = ins.exec_form if ins.exec_form is not None else ["/bin/sh", "-c", ins.args]
    name = f"build-{stamp.rpartition(':')[2]}-{ins.line}"
    env = [*state.defaults.env, *(f"{k}={v}" for k, v in state.args.items())]
    options = RunOptions(
        name=name,
        env=env,
        workdir=state.defaults.workdir,
        user=state.defaults.user,
        entrypoint="",
        pull="never",
    )
    await asyncio.to_thread(record.add, name)
    emit(f" ---> Running in {name}\n")
    pending = bytearray()

    def write(data: bytes) -> None:
        pending.extend(data)
        while (nl := pending.find(b"\n")) >= 0:
            emit(pending[: nl + 1].decode(errors="replace"))
            del pending[: nl + 1]

    try:
        try:
            result = await client.containers.arun_attached(bus, state.image.id, command, options, write)
        finally:
            if pending:
                emit(pending.decode(errors="replace") + "\n")
        if result.exit_code != 0:
            shown = " ".join(command)  # docker's: "/bin/sh -c exit 1"
            detail = f" ({'; '.join(result.errors)})" if result.errors else ""
            raise BuildFailed(
                f"The command '{shown}' returned a non-zero code: {result.exit_code}{detail}",
                hint="the step's output is above; nothing of the build is left",
            )
        defaults = state.defaults
        image = await asyncio.to_thread(
            commit,
            client,
            name,
            None,
            f"RUN {ins.args}",
            configure=lambda _d: defaults,
            origin={ORIGIN_KEY: stamp},
        )
        state.made.append(image.id)
        state.image = image
    finally:
        with contextlib.suppress(NotFound):
            await asyncio.shield(client.containers.aremove(bus, name, force=True))


async def _changed(client: Client, state: _State, stamp: str, work: Callable[[Path], None]) -> None:
    """A new intermediate image: the current one's files changed by ``work`` (given the root)."""
    image = await asyncio.to_thread(_snapshot, client, state.image, state.defaults, stamp, work)
    state.made.append(image.id)
    state.image = image


def _snapshot(
    client: Client,
    base: Image | None,
    defaults: RunDefaults,
    stamp: str,
    work: Callable[[Path], None] | None,
) -> Image:
    from ..store import btrfs
    from ..store.files import tree_size

    store = client.images.store
    client.pool.check()
    staging = store.staging_path()
    with store.pool.lock():
        if base is None:
            btrfs.create_subvolume(staging)
        else:
            btrfs.snapshot(base.path, staging, read_only=work is None)
    try:
        if work is not None:
            work(staging)
            btrfs.set_read_only(staging)
        origin = {ORIGIN_KEY: stamp}
        return store.add_subvolume(
            staging, _new_id(), None, "build step", defaults, origin, tree_size(staging)
        )
    except BaseException:
        if os.path.lexists(staging):
            btrfs.delete(staging)
        raise


def _finish(client: Client, state: _State, defaults: RunDefaults, refs: list[Any], build_id: str) -> Image:
    """The built image: the last step's files with the final defaults, under its names."""
    from ..store import btrfs
    from ..store.files import tree_size

    store = client.images.store
    staging = store.staging_path()
    with store.pool.lock():
        if state.image is None:
            btrfs.create_subvolume(staging)
            btrfs.set_read_only(staging)
        else:
            btrfs.snapshot(state.image.path, staging, read_only=True)
    try:
        origin = {"comment": "nspawnctl build", "build": build_id, "parent": state.base or ""}
        image = store.add_subvolume(
            staging, _new_id(), refs[0] if refs else None, "build", defaults, origin, tree_size(staging)
        )
    except BaseException:
        if os.path.lexists(staging):
            btrfs.delete(staging)
        raise
    for ref in refs[1:]:
        store.tag(image.id, ref)
    return store.get(image.id)


def _drop(client: Client, made: list[str], record: _Record) -> None:
    """The build's intermediate images and its record (its RUN containers are gone by now)."""
    store = client.images.store
    for image_id in reversed(made):
        with contextlib.suppress(NotFound):
            store.remove(image_id, True, lambda _id: [])
    record.drop()


# -- files ---------------------------------------------------------------------------------------


def _exists(root: Path, path: str) -> bool:
    fd = os.open(root, rootpath.DIR_READ)
    try:
        comps = rootpath.resolve(fd, path)
        st = rootpath.lstat(fd, comps)
        return st is not None and stat.S_ISDIR(st.st_mode)
    except OSError:
        return False
    finally:
        os.close(fd)


def _makedirs(root: Path, path: str, line: int) -> rootpath.Comps:
    """``mkdir -p path`` inside ``root``, resolved as a chroot would (symlinks stay inside);
    new directories belong to the root's owner, mode 0755. Returns the resolved components."""
    fd = os.open(root, rootpath.DIR_READ)
    try:
        owner = os.fstat(fd).st_uid
        parts = rootpath.split(path)
        comps: rootpath.Comps = ()
        for k in range(1, len(parts) + 1):
            sub = b"/" + b"/".join(parts[:k])
            try:
                comps = rootpath.resolve(fd, sub)
            except OSError as e:
                raise BuildFailed(f"Dockerfile line {line}: cannot create {path}: {e.strerror}") from None
            st = rootpath.lstat(fd, comps)
            if st is None:
                parent = rootpath.open_dir(fd, comps[:-1], rootpath.DIR_READ)
                try:
                    os.mkdir(comps[-1], 0o755, dir_fd=parent)
                    os.chown(comps[-1], owner, owner, dir_fd=parent, follow_symlinks=False)
                finally:
                    os.close(parent)
            elif not stat.S_ISDIR(st.st_mode):
                raise BuildFailed(
                    f"Dockerfile line {line}: cannot create {path}: {rootpath.show(comps)} is not a directory"
                )
        return comps
    finally:
        os.close(fd)


def _mkdir(root: Path, path: str, line: int) -> None:
    _makedirs(root, path, line)


def _ids(root_fd: int, spec: str, line: int) -> tuple[int, int]:
    """``--chown=USER[:GROUP]``: numbers, or names from the image's /etc/passwd and /etc/group."""
    user, _, group = spec.partition(":")

    def lookup(name: str, table: str, what: str) -> int:
        if name.isdigit():
            return int(name)
        for fields in _table(root_fd, table):
            if fields and fields[0] == name and len(fields) > 2 and fields[2].isdigit():
                return int(fields[2])
        raise BuildFailed(f"Dockerfile line {line}: --chown: no {what} {name!r} in the image's {table}")

    uid = lookup(user, "/etc/passwd", "user")
    if group:
        gid = lookup(group, "/etc/group", "group")
    elif user.isdigit():
        gid = uid
    else:
        gid = next(
            (
                int(f[3])
                for f in _table(root_fd, "/etc/passwd")
                if f[0] == user and len(f) > 3 and f[3].isdigit()
            ),
            uid,
        )
    return uid, gid


def _table(root_fd: int, path: str) -> list[list[str]]:
    try:
        fd = rootpath.open_regular(root_fd, path)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
        text = f.read(1 << 20).decode(errors="replace")
    return [ln.split(":") for ln in text.splitlines()]


_ARCHIVE_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


def _is_archive(parent_fd: int, name: bytes) -> bool:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent_fd)
    with os.fdopen(fd, "rb") as f:
        head = f.read(512)
    return head.startswith(_ARCHIVE_MAGIC) or head[257:262] == b"ustar"


def _sources(
    ctx_fd: int, text: str, line: int, ignore: Ignore
) -> list[tuple[rootpath.Comps, os.stat_result]]:
    """What a COPY source names in the context: resolved inside it (no '..' or symlink leads out),
    a wildcard in the last part matched against that directory's entries."""
    if text.startswith(("http://", "https://", "git@")):
        raise InvalidArgument(
            f"Dockerfile line {line}: remote sources ({text}) are not supported",
            hint="download into the context first",
        )
    head, _, last = text.rstrip("/").rpartition("/")
    if any(c in last for c in "*?["):
        comps = rootpath.resolve(ctx_fd, head or ".")
        fd = rootpath.open_dir(ctx_fd, comps, rootpath.DIR_READ)
        try:
            with os.scandir(fd) as it:
                names = sorted(os.fsencode(e.name) for e in it if fnmatch.fnmatchcase(e.name, last))
        finally:
            os.close(fd)
        found = [
            rootpath.resolve(ctx_fd, (b"/".join((*comps, n))).decode(errors="surrogateescape")) for n in names
        ]
    else:
        try:
            found = [rootpath.resolve(ctx_fd, text)]
        except (FileNotFoundError, NotADirectoryError):  # a directory on the way is missing
            raise BuildFailed(
                f"Dockerfile line {line}: COPY failed: file not found in build context: {text}"
            ) from None
    out = []
    for comps in found:
        if comps and ignore.excluded(os.fsdecode(b"/".join(comps))):
            if len(found) > 1:
                continue
            raise BuildFailed(
                f"Dockerfile line {line}: COPY failed: file not found in build context "
                f"or excluded by .dockerignore: {text}"
            )
        st = rootpath.lstat(ctx_fd, comps)
        if st is None:
            raise BuildFailed(
                f"Dockerfile line {line}: COPY failed: file not found in build context: {text}",
                hint="sources are paths inside the context directory; '..' and symlinks stay inside it",
            )
        out.append((comps, st))
    if not out:
        raise BuildFailed(f"Dockerfile line {line}: COPY failed: no source files were specified by {text}")
    return out


def _copy(
    root: Path,
    context: Path,
    ignore: Ignore,
    sources: list[str],
    dest: str,
    workdir: str | None,
    chown: str | None,
    add: bool,
    line: int,
) -> None:
    """COPY/ADD ``sources`` (in the context) to ``dest`` (in ``root``), by docker's rules: a
    directory's contents go into ``dest`` (created); a file goes into ``dest`` when it ends in
    '/' or is a directory, else becomes it. Files belong to root (or ``chown``); ADD unpacks a
    local tar archive (compressed or not) into ``dest`` with the archive's owners."""
    from ..store.copy import extract_into, open_tar_writer

    if not dest.startswith("/"):
        dest = os.path.join(workdir or "/", dest)
    ctx_fd = os.open(context, rootpath.DIR_READ)
    root_fd = os.open(root, rootpath.DIR_READ)
    try:
        shift = os.fstat(root_fd).st_uid
        uid, gid = _ids(root_fd, chown, line) if chown else (0, 0)
        found = [item for s in sources for item in _sources(ctx_fd, s, line, ignore)]
        if len(found) > 1 and not dest.endswith("/"):
            raise BuildFailed(
                f"Dockerfile line {line}: When using COPY with more than one source file, "
                "the destination must be a directory and end with a /"
            )
        into_dir = dest.endswith("/") or _exists(root, dest) or stat.S_ISDIR(found[0][1].st_mode)
        target = dest if into_dir else os.path.dirname(dest.rstrip("/")) or "/"
        comps = _makedirs(root, target, line)

        def owner(_u: int, _g: int) -> tuple[int, int]:
            return uid + shift, gid + shift

        for src_comps, st in found:
            parent = rootpath.open_dir(ctx_fd, src_comps[:-1], rootpath.DIR_READ)
            try:
                name = src_comps[-1] if src_comps else b"."
                if add and stat.S_ISREG(st.st_mode) and _is_archive(parent, name):
                    from ..store.copy import owner_for

                    keep = owner_for(shift, True)
                    dest_fd = rootpath.open_dir(root_fd, comps, rootpath.DIR_READ)
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                    try:
                        with os.fdopen(fd, "rb") as f:
                            extract_into(dest_fd, f, owner if chown else keep)
                    except ArchiveError as e:
                        raise BuildFailed(
                            f"Dockerfile line {line}: ADD cannot unpack {rootpath.show(src_comps)}: {e}"
                        ) from None
                    finally:
                        os.close(dest_fd)
                    continue
                with _spool(root) as spool, open(spool, "w+b") as out:
                    with open_tar_writer(out) as tf:
                        writer = _Filtered(tf, ignore=ignore, base=os.fsdecode(b"/".join(src_comps)))
                        if stat.S_ISDIR(st.st_mode):
                            dfd = os.open(name, rootpath.DIR_READ, dir_fd=parent)
                            try:
                                writer.add_contents(dfd, "")
                            finally:
                                os.close(dfd)
                        else:
                            arc = os.fsdecode(name) if into_dir else os.path.basename(dest.rstrip("/"))
                            writer.add(parent, name, arc)
                    out.seek(0)
                    dest_fd = rootpath.open_dir(root_fd, comps, rootpath.DIR_READ)
                    try:
                        extract_into(dest_fd, out, owner)
                    finally:
                        os.close(dest_fd)
            finally:
                os.close(parent)
    except OSError as e:  # a path on the way missing, a symlink loop, a file replaced meanwhile
        raise BuildFailed(f"Dockerfile line {line}: COPY failed: {e.strerror}: {e.filename}") from None
    finally:
        os.close(ctx_fd)
        os.close(root_fd)


@dataclass
class _Filtered(TreeWriter):
    """cp's tree writer, leaving out what .dockerignore excludes (``base``: the copied
    directory's path in the context)."""

    ignore: Ignore = field(default_factory=Ignore)
    base: str = ""

    def add_contents(self, dir_fd: int, arcname: str) -> None:
        with os.scandir(dir_fd) as it:
            names = sorted(os.fsencode(e.name) for e in it)
        prefix = f"{arcname}/" if arcname else ""
        for child in names:
            rel = prefix + os.fsdecode(child)
            if not self.ignore.excluded(f"{self.base}/{rel}" if self.base else rel):
                self.add(dir_fd, child, rel)


def _read_ignore(context: Path) -> Ignore:
    """The context's .dockerignore (none: nothing excluded), read inside the context."""
    fd = os.open(context, rootpath.DIR_READ)
    try:
        try:
            comps = rootpath.resolve(fd, ".dockerignore")
            parent = rootpath.open_dir(fd, comps[:-1])
            try:
                file_fd = os.open(comps[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            finally:
                os.close(parent)
        except OSError:
            return Ignore()
    finally:
        os.close(fd)
    with os.fdopen(file_fd, "rb") as f:
        return Ignore.parse(f.read(MAX_IGNORE).decode(errors="replace"))


@contextlib.contextmanager
def _spool(root: Path) -> Any:
    """A scratch file beside the staging subvolume (the pool's disk; swept if we die)."""
    path = root.parent / f".tmp-{os.getpid()}-{os.urandom(4).hex()}.copy"
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _healthcheck(ins: Instruction) -> dict[str, Any]:
    from ..health import image_healthcheck, parse_duration

    text = ins.args
    if text.upper() == "NONE":
        return {"Test": ["NONE"]}
    kw, _, rest = text.partition(" ")
    if kw.upper() != "CMD" or not rest.strip():
        raise InvalidArgument(f"Dockerfile line {ins.line}: HEALTHCHECK takes [OPTIONS] CMD command, or NONE")
    rest = rest.strip()
    test = None
    if rest.startswith("["):
        import json

        with contextlib.suppress(ValueError):
            value = json.loads(rest)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                test = ["CMD", *value]
    doc: dict[str, Any] = {"Test": test or ["CMD-SHELL", rest]}
    keys = {
        "interval": "Interval",
        "timeout": "Timeout",
        "start-period": "StartPeriod",
        "start-interval": "StartInterval",
    }
    try:
        for flag, value in ins.flags.items():
            if flag == "retries":
                if not value.isdigit():
                    raise InvalidArgument(f"--retries {value!r} is not a number")
                doc["Retries"] = int(value)
            else:
                doc[keys[flag]] = parse_duration(value, f"--{flag}")
        checked = image_healthcheck(doc)
    except InvalidArgument as e:
        raise InvalidArgument(f"Dockerfile line {ins.line}: HEALTHCHECK {e.message}") from None
    assert checked is not None
    return checked
