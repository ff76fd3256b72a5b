"""``events``: container lifecycle events in docker's shapes, from systemd's signals.

start and die come from the container units' PropertiesChanged signals (systemd sends them to a
subscribed client): ActiveState turning ``active`` is a start, the unit going inactive/failed or
waiting to restart is a die, with the exit code nspawnctl recorded (or the unit's
ExecMainStatus, for a ``--rm`` container whose record went with it). create, rename and destroy
come from the container definitions appearing and disappearing (inotify, see store/watch.py).
A ``--since`` in the past first replays from the journal (:func:`replay`): the start and die
events of the containers that exist now from PID 1's records of their units ("Started",
"Deactivated successfully", "Failed with result", with the exit status of "Main process
exited"), and the create, rename, destroy, pause and unpause events nspawnctl recorded there
itself (eventlog.py; systemd logs none of them), also of containers that are gone. A container
made before those records existed gets its create from its definition's Created=.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument, NspawnctlError
from ..systemd.manager import SERVICE_IFACE, SYSTEMD, UNIT_IFACE, UNIT_PATH
from .runtime import AUTO_RESTART, Runtime
from .units import UNIT_PREFIX

if TYPE_CHECKING:
    from ..store.containers import ContainerStore

ACTIONS = ("create", "start", "die", "rename", "destroy", "pause", "unpause")
FILTER_KEYS = ("container", "event", "image", "type")
_PATHS_RULE = (
    f"type='signal',sender='{SYSTEMD}',interface='org.freedesktop.DBus.Properties',"
    f"member='PropertiesChanged',path_namespace='{UNIT_PATH.rstrip('/')}'"
)


@dataclass(frozen=True)
class Event:
    action: str
    id: str
    name: str
    image: str
    time_ns: int
    extra: dict[str, str] = field(default_factory=dict)  # exitCode, oldName
    # the container's labels as the event's maker read them from its definition (None: not
    # known, a replayed event of a container that is gone): a label filter needs them with the
    # event, since a create's container cannot be looked up until its root is in place
    # (store.create writes the definition first) and a destroy's is gone
    labels: dict[str, str] | None = field(default=None, compare=False)

    def attributes(self) -> dict[str, str]:
        return {**self.extra, "image": self.image, "name": self.name}

    def to_json(self) -> dict[str, Any]:
        """docker's events message (the API's and ``--format '{{json .}}'``)."""
        return {
            "status": self.action,
            "id": self.id,
            "from": self.image,
            "Type": "container",
            "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": self.attributes()},
            "scope": "local",
            "time": self.time_ns // 1_000_000_000,
            "timeNano": self.time_ns,
        }

    def line(self) -> str:
        """docker's text line: TIME container ACTION ID (key=value, ...), keys sorted."""
        stamp = datetime.fromtimestamp(self.time_ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(self.attributes().items()))
        return f"{stamp}.{self.time_ns % 1_000_000_000:09d}Z container {self.action} {self.id} ({attrs})"


def parse_filters(texts: list[str]) -> dict[str, set[str]]:
    """``--filter key=value`` (repeatable; values of one key OR, keys AND)."""
    out: dict[str, set[str]] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or key not in FILTER_KEYS or not value:
            raise InvalidArgument(
                f"invalid --filter {text!r}", hint=f"use KEY=VALUE with KEY one of {', '.join(FILTER_KEYS)}"
            )
        out.setdefault(key, set()).add(value)
    return out


def matches(event: Event, filters: dict[str, set[str]]) -> bool:
    for key, values in filters.items():
        if key == "type" and "container" not in values:
            return False
        if key == "event" and event.action not in values:
            return False
        if key == "image" and event.image not in values:
            return False
        if key == "container" and not any(
            v == event.name or (len(v) >= 1 and event.id.startswith(v)) for v in values
        ):
            return False
    return True


def parse_time(text: str, now: float | None = None) -> float:
    """docker's --since/--until: a Unix timestamp (with fraction), RFC 3339, or a duration back
    from now (10m, 1h30m, 45s)."""
    now = time.time() if now is None else now
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", text)
    if m and any(m.groups()):
        h, mi, s = m.groups()
        return now - (int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0))
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(
            f"invalid time {text!r}",
            hint="a Unix timestamp, RFC 3339 (2026-12-07T05:00:00Z) or a duration (10m)",
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


# systemd's catalog IDs (sd-messages.h) of what PID 1 logs about a unit
MSG_STARTED = "39f53479d3a045ac8e11786248231fbf"
MSG_SUCCESS = "7ad2d189f7e94e70a38c781354912448"  # "Deactivated successfully"
MSG_FAILURE = "d9b373ed55a64feb8242e02dbe79a49c"  # "Failed with result ..."
MSG_PROCESS_EXIT = "98e322203f7a4ed290d09fe03c09fe15"  # "Main process exited, code=..., status=..."


def replay_records(records: list[dict[str, Any]], known: dict[str, tuple[str, str]]) -> list[Event]:
    """Events from PID 1's journal records (``journalctl -o json`` objects, oldest first) about
    the units of ``known`` containers (name -> (id, image)): a start per "Started", a die per
    "Deactivated successfully" (exit code 0) or "Failed with result" (the status its "Main
    process exited" record gave, 128+N for signal N; else 1); and nspawnctl's own records
    (eventlog.py) of any container, which name it themselves."""
    import signal

    from ..eventlog import ACTIONS as LOGGED
    from ..eventlog import MESSAGE_ID as MSG_NSPAWNCTL

    exits: dict[str, int] = {}  # per invocation: the payload's exit code
    out: list[Event] = []
    for r in records:
        unit, mid = str(r.get("UNIT", "")), r.get("MESSAGE_ID")
        if mid == MSG_NSPAWNCTL:
            event = _logged(r, LOGGED)
            if event is not None:
                out.append(event)
            continue
        name = container_of_unit(unit)
        if name is None or name not in known:
            continue
        try:
            when = int(r["__REALTIME_TIMESTAMP"]) * 1000
        except (KeyError, ValueError):
            continue
        invocation = str(r.get("INVOCATION_ID", ""))
        cid, image = known[name]
        if mid == MSG_PROCESS_EXIT:
            how, status = r.get("EXIT_CODE"), str(r.get("EXIT_STATUS", ""))
            if how == "exited" and status.isdigit():
                exits[invocation] = int(status)
            elif how in ("killed", "dumped"):
                sig = getattr(signal, f"SIG{status}", None) if not status.isdigit() else int(status)
                exits[invocation] = 128 + int(sig) if sig is not None else 137
        elif mid == MSG_STARTED:
            out.append(Event("start", cid, name, image, when))
        elif mid in (MSG_SUCCESS, MSG_FAILURE):
            code = 0 if mid == MSG_SUCCESS else exits.get(invocation, 1)
            out.append(Event("die", cid, name, image, when, {"exitCode": str(code)}))
    return out


def _logged(r: dict[str, Any], actions: tuple[str, ...]) -> Event | None:
    """The event of one of nspawnctl's own records; None if it is not whole or not root's (any
    host user can send a journal entry with our MESSAGE_ID; _UID is journald's, not the sender's)."""
    if r.get("_UID") != "0":
        return None
    fields = ("NSPAWNCTL_EVENT", "NSPAWNCTL_CONTAINER_ID", "NSPAWNCTL_CONTAINER_NAME", "__REALTIME_TIMESTAMP")
    values = [r.get(f) for f in fields]
    if not all(isinstance(v, str) and v for v in values):
        return None
    action, cid, name, when = (str(v) for v in values)
    if action not in actions or not when.isdigit():
        return None
    old = r.get("NSPAWNCTL_OLD_NAME")
    extra = {"oldName": old} if action == "rename" and isinstance(old, str) else {}
    return Event(action, cid, name, str(r.get("NSPAWNCTL_IMAGE") or ""), int(when) * 1000, extra)


REPLAY_CAP = 100_000  # journal records read per replay at most (each container start is 3-4)


def replay_argv(since: float, until: float, names: list[str]) -> list[str]:
    """journalctl for PID 1's start/stop records of the units of ``names`` only, or (``+``)
    nspawnctl's own event records, root's only: journalctl ORs matches of one field, ANDs the fields and ORs
    the groups ``+`` divides, so the journal's index does the filtering (every unit's records of
    a long-lived host would be millions)."""
    import shutil

    from ..eventlog import MESSAGE_ID as MSG_NSPAWNCTL
    from .units import persistent_unit_name, unit_name

    units = [u for name in names for u in (unit_name(name), persistent_unit_name(name))]
    pid1 = [
        *(f"MESSAGE_ID={m}" for m in (MSG_STARTED, MSG_SUCCESS, MSG_FAILURE, MSG_PROCESS_EXIT)), "_PID=1",
        *(f"UNIT={u}" for u in units), "+",
    ] if units else []  # fmt: skip
    return [
        shutil.which("journalctl") or "journalctl", "-o", "json", "--no-pager", "-q",
        f"--since=@{since:.6f}", f"--until=@{until:.6f}", *pid1, f"MESSAGE_ID={MSG_NSPAWNCTL}", "_UID=0",
    ]  # fmt: skip


def read_records(lines: Iterable[bytes], cap: int = REPLAY_CAP) -> list[dict[str, Any]]:
    """``journalctl -o json`` lines into records, at most ``cap`` of them (the oldest)."""
    import json

    records: list[dict[str, Any]] = []
    for line in lines:
        if len(records) >= cap:
            break
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def replay(store: ContainerStore, since: float, until: float) -> list[Event]:
    """The events between ``since`` and ``until`` (Unix times) from the journal (journalctl: a
    past query, not on any hot path): the start and die events of today's containers and what
    nspawnctl recorded itself, oldest first. Read line by line and capped; a container's start
    and die events start at its creation (an earlier one of the same name is another
    container). A container of today without a create record in the window (made before
    nspawnctl wrote them) gets one at its Created= time."""
    import subprocess

    specs = store.list()
    known = {spec.name: (spec.id, spec.image) for spec in specs}
    if until <= since:
        return []
    born = {spec.name: _created(spec.created) for spec in specs}
    try:
        with subprocess.Popen(
            replay_argv(since, until, sorted(known)), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        ) as proc:
            assert proc.stdout is not None
            try:
                records = read_records(proc.stdout)
            finally:
                proc.kill()  # done, or the cap reached: the rest is not wanted
    except OSError as e:
        raise NspawnctlError(f"cannot read past events from the journal: {e}") from None
    # PID 1's records name a unit, so a start or die before the container's creation was a
    # namesake's; nspawnctl's own records carry the container's ID
    events = [
        e
        for e in replay_records(records, known)
        if e.action not in ("start", "die") or e.time_ns >= born[e.name]
    ]
    created = {e.id for e in events if e.action == "create"}
    for spec in specs:
        t = born[spec.name]
        if spec.id not in created and since * 1e9 <= t < until * 1e9 and t:
            events.append(Event("create", spec.id, spec.name, spec.image, t))
    shown = {spec.name: spec.display_name for spec in specs}  # the name as given (names.py)
    labels = {spec.id: dict(spec.labels) for spec in specs}  # a gone container's: not known
    return sorted(
        (replace(e, name=shown.get(e.name, e.name), labels=labels.get(e.id)) for e in events),
        key=lambda e: e.time_ns,
    )


def _created(text: str) -> int:
    """A definition's Created= (RFC 3339) in ns; 0 when absent or unreadable (no lower bound)."""
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        return 0


def container_of_unit(unit: str) -> str | None:
    """The container a unit runs (nspawnctl-NAME.service, systemd-nspawn@NAME.service)."""
    for prefix in (UNIT_PREFIX, "systemd-nspawn@"):
        if unit.startswith(prefix) and unit.endswith(".service"):
            return unit[len(prefix) : -len(".service")]
    return None


def unit_of_path(path: str) -> str:
    """Undo systemd's object path escaping (_xx per byte)."""
    raw = path[len(UNIT_PATH) :]
    return re.sub(r"_([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), raw)


@dataclass
class _Known:
    id: str
    image: str
    shown: str  # the name events carry: as given (``my_app`` of machine ``my-app``, names.py)
    labels: dict[str, str] = field(default_factory=dict)

    def event(self, action: str, when: int, extra: dict[str, str] | None = None) -> Event:
        return Event(action, self.id, self.shown, self.image, when, extra or {}, dict(self.labels))


class Tracker:
    """Turns raw signals and definition changes into events (no I/O but the store's reads)."""

    def __init__(self, store: ContainerStore) -> None:
        self.store = store
        self.known: dict[str, _Known] = {}
        self.up: dict[str, bool] = {}  # per unit: known to run
        self.frozen: dict[str, bool] = {}
        self.main: dict[str, tuple[int, int]] = {}  # per unit: ExecMainCode, ExecMainStatus
        for spec in store.list():
            self.known[spec.name] = _Known(spec.id, spec.image, spec.display_name, dict(spec.labels))

    def _who(self, name: str) -> _Known | None:
        if name not in self.known:
            try:
                spec = self.store.get(name)
            except NspawnctlError:  # not one of ours (a machinectl image), or unreadable
                return None
            self.known[name] = _Known(spec.id, spec.image, spec.display_name, dict(spec.labels))
        return self.known[name]

    def unit_changed(self, unit: str, iface: str, changed: dict[str, Any]) -> list[Event]:
        name = container_of_unit(unit)
        if name is None:
            return []
        now = time.time_ns()
        if iface == SERVICE_IFACE:
            if "ExecMainCode" in changed or "ExecMainStatus" in changed:
                old = self.main.get(unit, (0, 0))
                self.main[unit] = (
                    int(changed.get("ExecMainCode", old[0])),
                    int(changed.get("ExecMainStatus", old[1])),
                )
            return []
        if iface != UNIT_IFACE:
            return []
        fresh = name not in self.known
        who = self._who(name)
        if who is None:
            return []
        out: list[Event] = []
        if fresh:  # its definition's inotify event has not come yet: its create (or rename) first
            was = next((n for n, k in self.known.items() if k.id == who.id and n != name), None)
            if was is not None:
                out.append(who.event("rename", now, {"oldName": self.known[was].shown}))
                del self.known[was]
            else:
                out.append(who.event("create", now))
        active, sub = changed.get("ActiveState"), str(changed.get("SubState", ""))
        freezer = changed.get("FreezerState")
        if freezer in ("frozen", "running") and self.frozen.get(unit, False) != (freezer == "frozen"):
            self.frozen[unit] = freezer == "frozen"
            out.append(who.event("pause" if freezer == "frozen" else "unpause", now))
        if active == "active" and not self.up.get(unit, False):
            self.up[unit] = True
            self.main.pop(unit, None)
            out.append(who.event("start", now))
        elif (active in ("inactive", "failed") or sub.startswith(AUTO_RESTART)) and self.up.get(unit, False):
            self.up[unit] = False
            out.append(who.event("die", now, {"exitCode": str(self._exit_code(name, unit))}))
        return out

    def _exit_code(self, name: str, unit: str) -> int:
        record = self.store.exit_record(name)
        if record is not None:
            return record.exit_code
        code, status = self.main.get(unit, (0, 0))
        return status if code == 1 else 128 + status if code in (2, 3) else 0

    def definition_changed(self, name: str, added: bool) -> list[Event]:
        now = time.time_ns()
        if not added:
            who = self.known.get(name)
            if who is None or self.store.has(name):
                return []
            del self.known[name]
            if any(k.id == who.id for k in self.known.values()):
                return []  # renamed: said already
            return [who.event("destroy", now)]
        known = self.known.get(name)
        if known is not None:  # rewritten: renamed with the same machine name (my-app -> my_app)?
            shown = self._shown_in(name)
            if shown is None or shown == known.shown:
                return []
            was, known.shown = known.shown, shown
            return [known.event("rename", now, {"oldName": was})]
        from ..labels import labels_from_words
        from ..nspawnfile import NspawnFile
        from ..spec import OWN_SECTION

        path = self.store.settings_file(name)
        if not path.is_file():
            path = self.store.settings_file(name, auto_remove=True)
        try:
            f = NspawnFile.load(path)
        except (OSError, NspawnctlError):  # gone again, or not a definition that reads
            return []
        cid, image = f.get(OWN_SECTION, "Id"), f.get(OWN_SECTION, "Image") or ""
        if not cid:
            return []
        shown = f.get(OWN_SECTION, "Name") or name
        old = next((n for n, k in self.known.items() if k.id == cid), None)
        labels = labels_from_words(f.get_words(OWN_SECTION, "Label"))
        who = self.known[name] = _Known(cid, image, shown, labels)
        if old is not None:
            was = self.known.pop(old).shown
            return [who.event("rename", now, {"oldName": was})]
        return [who.event("create", now)]

    def _shown_in(self, name: str) -> str | None:
        """The name as given in ``name``'s definition (its ``Name=``), None if it does not read."""
        try:
            return self.store.get(name).display_name
        except NspawnctlError:
            return None


async def follow(
    rt: Runtime,
    store: ContainerStore,
    emit: Callable[[Event], None],
    filters: dict[str, set[str]] | None = None,
    since: float | None = None,
    until: float | None = None,
) -> None:
    """Emit events as they happen until ``until`` (Unix time; None: until cancelled); a past
    ``since`` first replays what the journal kept since then (see :func:`replay`)."""
    from ..store.watch import DefinitionWatch

    filters = filters or {}
    tracker = Tracker(store)
    queue: asyncio.Queue[list[Event]] = asyncio.Queue()

    def on_signal(msg: Any) -> None:
        if msg.member != "PropertiesChanged" or not str(msg.path).startswith(UNIT_PATH) or len(msg.body) < 2:
            return
        changed = {k: getattr(v, "value", v) for k, v in msg.body[1].items()}
        events = tracker.unit_changed(unit_of_path(msg.path), msg.body[0], changed)
        if events:
            queue.put_nowait(events)

    watch = DefinitionWatch([store.paths.settings, store.paths.runtime_settings])
    rt.bus.on_signal(on_signal)
    try:
        await rt.bus.add_match(_PATHS_RULE)
        await rt.manager.subscribe_jobs()  # Subscribe: systemd then sends units' changes
        # what runs now is up (a die of it is news), what does not is down
        states = await rt.states(list(tracker.known))
        for _name, st in states.items():
            tracker.up[st.name] = st.running

        async def definitions() -> None:
            while True:
                changes = await watch.next()
                events = [e for c in changes for e in tracker.definition_changed(c.name, c.added)]
                if events:
                    queue.put_nowait(events)

        pump = asyncio.ensure_future(definitions())
        try:
            now = time.time()
            if since is not None and since < now:  # subscribed first: nothing falls in between
                end = now if until is None else min(until, now)
                for event in await asyncio.to_thread(replay, store, since, end):
                    if matches(event, filters):
                        emit(event)
                since = now  # what came live before the replay's end was replayed
            while True:
                timeout = None if until is None else until - time.time()
                if timeout is not None and timeout <= 0:
                    return
                try:
                    events = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    return
                for event in events:
                    if since is not None and event.time_ns < since * 1e9:
                        continue
                    if matches(event, filters):
                        emit(event)
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
    finally:
        rt.bus.remove_signal_handler(on_signal)
        watch.close()
