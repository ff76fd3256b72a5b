"""App Container Image (appc) manifests: validate what an ACI says about itself.

The appc spec is frozen at 0.8.x; validation follows its schema (``schema/image.go``,
``schema/types/*.go``). The app section becomes the image's run defaults. What would make the
running image differ from the ``rootfs/`` that was verified and unpacked (``dependencies``,
``pathWhitelist``) is refused rather than silently ignored.
"""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ArchiveError, InvalidReference, VerificationFailed
from ..spec import RunDefaults

__all__ = ["AC_IDENTIFIER", "AC_NAME", "AciManifest", "host_os_arch", "split_name_version", "valid_ac_name"]

# Image names and label names (types.ACIdentifier) and port / mount point names (types.ACName).
AC_IDENTIFIER = re.compile(r"[a-z0-9]+(?:[-._~/][a-z0-9]+)*")
AC_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9.-]*")
_PROTOCOL = re.compile(r"[A-Za-z0-9_.-]+")
_SEMVER = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")
_SPEC_MAJOR = 0
_EVENT_HANDLERS = ("pre-start", "post-stop")
_ROOT = ("root", "0")
_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
_HINT = "the image is malformed; ask its publisher to fix the manifest ('actool validate' checks it)"

# platform.machine() -> appc arch label (schema/types/labels.go); appc names are not GOARCH's.
_ARCHES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "i386",
    "i486": "i386",
    "i586": "i386",
    "i686": "i386",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "aarch64_be": "aarch64_be",
    "armv6l": "armv6l",
    "armv7l": "armv7l",
    "armv7b": "armv7b",
    "ppc64": "ppc64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


def valid_ac_name(name: str) -> bool:
    """Whether `name` can name an ACI (an AC identifier such as ``example.com/app``)."""
    return AC_IDENTIFIER.fullmatch(name) is not None


def host_os_arch() -> tuple[str, str]:
    """This machine as appc's ``os`` and ``arch`` labels, e.g. ("linux", "amd64")."""
    machine = platform.machine()
    return platform.system().lower(), _ARCHES.get(machine, machine)


def split_name_version(text: str) -> tuple[str, str | None]:
    """``example.com/app:1.0`` -> ("example.com/app", "1.0"); the version is after the last ':'
    that follows the last '/', so ``example.com:8443/app`` has none."""
    name, sep, version = text.rpartition(":")
    if not sep or "/" in version:
        return text, None
    if not name or not version:
        raise InvalidReference(
            f"invalid image name {text!r}: empty {'name' if not name else 'version'}",
            hint="use NAME or NAME:VERSION, e.g. example.com/app:1.0",
        )
    return name, version


def _bad(detail: str) -> ArchiveError:
    return ArchiveError(f"invalid ACI manifest: {detail}", hint=_HINT)


def _unsupported(what: str, hint: str) -> ArchiveError:
    return ArchiveError(f"{what} not supported by nspawnctl", hint=hint)


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{where} must be an object")
    return value


def _list(value: object, where: str) -> list[Any]:
    """A JSON list; an absent (null) one is empty, as Go's decoder makes it."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"{where} must be a list")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"{where} must be a string")
    if _CONTROL.search(value):
        # these values end up in a .nspawn file, where a line break would start a new, trusted line
        raise _bad(f"{where} contains a control character")
    return value


def _integer(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(f"{where} must be an integer")
    return value


def _boolean(value: object, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(f"{where} must be true or false")
    return value


def _name_values(value: object, where: str, pattern: re.Pattern[str], kind: str) -> dict[str, str]:
    """A list of {"name", "value"} with unique names matching `pattern`, as a dict in file order."""
    out: dict[str, str] = {}
    for i, item in enumerate(_list(value, where)):
        entry = _object(item, f"{where}[{i}]")
        name = _string(entry.get("name"), f"{where}[{i}].name")
        if not pattern.fullmatch(name):
            raise _bad(f"{where}[{i}].name {name!r} is not a valid {kind}")
        if name in out:
            raise _bad(f"{where} has {name!r} twice")
        out[name] = _string(entry.get("value"), f"{where}[{i}].value")
    return out


@dataclass(frozen=True)
class AciManifest:
    """A validated appc ImageManifest. `app` and `raw` are the JSON as published."""

    name: str
    labels: dict[str, str]
    app: dict[str, Any] | None
    annotations: dict[str, str]
    raw: dict[str, Any]

    @property
    def version(self) -> str | None:
        return self.labels.get("version")

    @classmethod
    def parse(cls, data: bytes) -> AciManifest:
        """Parse and validate a manifest; ArchiveError says what is wrong with it."""
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise _bad(f"it is not JSON ({e})") from e
        raw = _object(doc, "the manifest")
        kind = raw.get("acKind")
        if kind != "ImageManifest":
            raise _bad(f"acKind is {kind!r}, not 'ImageManifest'")
        version = _string(raw.get("acVersion"), "acVersion")
        semver = _SEMVER.fullmatch(version)
        if not semver:
            raise _bad(f"acVersion {version!r} is not a semantic version")
        # int() refuses more than 4300 digits: compare a long major as the non-zero it is
        major = semver.group(1)
        if len(major) > 9 or int(major) != _SPEC_MAJOR:
            raise _bad(f"acVersion {version} is not an appc {_SPEC_MAJOR}.x version")
        name = _string(raw.get("name"), "name")
        if not valid_ac_name(name):
            raise _bad(f"name {name!r} is not a valid AC identifier")
        labels = _name_values(raw.get("labels"), "labels", AC_IDENTIFIER, "AC identifier")
        if "name" in labels:
            raise _bad("'name' cannot be a label")
        annotations = _name_values(raw.get("annotations"), "annotations", AC_IDENTIFIER, "AC identifier")
        if _list(raw.get("dependencies"), "dependencies"):
            raise _unsupported(
                "ACI dependencies (images layered under this one) are",
                hint="use a self-contained ACI (one built without dependencies, or flattened)",
            )
        if _list(raw.get("pathWhitelist"), "pathWhitelist"):
            raise _unsupported(
                "ACI pathWhitelist is",
                hint="use an ACI without pathWhitelist (remove unwanted files from rootfs/ instead)",
            )
        app = raw.get("app")
        if app is not None:
            app = _object(app, "app")
            _check_app(app)
        return cls(name, labels, app, annotations, raw)

    def run_defaults(self) -> RunDefaults:
        """The app section as what ``run`` does when the user says nothing."""
        app = self.app
        if app is None:
            return RunDefaults()
        # systemd-nspawn's User= takes a user only, who runs with the groups the image gives it;
        # app.group is reported by ignored_fields() when it asks for something else than root.
        user = app["user"]
        who = None if user in _ROOT else user
        workdir = app.get("workingDirectory") or None
        ports = []
        for p in _list(app.get("ports"), "app.ports"):
            count = p.get("count") or 1
            span = str(p["port"]) if count == 1 else f"{p['port']}-{p['port'] + count - 1}"
            ports.append(f"{p['name']}:{span}/{p['protocol']}")
        return RunDefaults(
            command=list(_list(app.get("exec"), "app.exec")),
            env=[f"{k}={v}" for k, v in _environment(app).items()],
            workdir=None if workdir == "/" else workdir,
            user=who,
            ports=ports,
            volumes=[
                f"{m['name']}:{m['path']}" + (":ro" if m.get("readOnly") else "")
                for m in _list(app.get("mountPoints"), "app.mountPoints")
            ],
        )

    def ignored_fields(self) -> list[str]:
        """App fields present in the manifest that nspawnctl does not apply, for a notice."""
        app = self.app or {}
        ignored = [
            f"app.{key}"
            for key in ("eventHandlers", "isolators", "supplementaryGIDs", "supplementaryGids")
            if app.get(key)
        ]
        if app.get("group") not in (None, *_ROOT):
            ignored.append("app.group")
        if any(p.get("socketActivated") for p in _list(app.get("ports"), "app.ports")):
            ignored.append("app.ports.socketActivated")
        return ignored

    def check_matches(self, name: str, labels: Mapping[str, str]) -> None:
        """Refuse an ACI that is not what was asked for: another name, or a label (version, os,
        arch) that differs or is missing. A signature proves who made the file, not that it is
        the image the name and labels chose."""
        if self.name != name:
            raise VerificationFailed(
                f"the ACI is named {self.name}, not {name}",
                hint=f"the server published another image under the name {name}; tell its owner",
            )
        host_os, host_arch = host_os_arch()
        for key, wanted in labels.items():
            have = self.labels.get(key)
            if have == wanted:
                continue
            if have is None:
                raise VerificationFailed(
                    f"the ACI {self.name} has no {key} label, but {key} {wanted} was asked for",
                    hint=f"the image does not say its {key}; ask its publisher to label it",
                )
            host = {"os": host_os, "arch": host_arch}.get(key)
            if host == wanted:
                raise VerificationFailed(
                    f"the ACI is for {key} {have}, this host is {wanted}",
                    hint=f"the server offers no {name} for {wanted}; ask its publisher for one",
                )
            raise VerificationFailed(
                f"the ACI {self.name} has {key} {have}, not {wanted} as asked",
                hint="the server answered with another image than the one asked for; tell its owner",
            )


def _environment(app: dict[str, Any]) -> dict[str, str]:
    return _name_values(app.get("environment"), "app.environment", _ENV_NAME, "environment variable name")


def _check_app(app: dict[str, Any]) -> None:
    """The checks of appc's types.App, plus what nspawnctl needs to turn it into run defaults."""
    exec_ = [_string(a, f"app.exec[{i}]") for i, a in enumerate(_list(app.get("exec"), "app.exec"))]
    if exec_ and not exec_[0]:
        raise _bad("app.exec[0] is empty")
    for key in ("user", "group"):
        value = app.get(key)
        if value is None or value == "":
            raise _bad(f"app.{key} is required")
        value = _string(value, f"app.{key}")
        if value.startswith("/"):
            raise _unsupported(
                f"ACI app.{key} given as a path ({value}) is",
                hint=f"use a {key} name or number in the manifest",
            )
        if ":" in value or any(c.isspace() for c in value):
            raise _bad(f"app.{key} {value!r} is not a {key} name or number")
    for key in ("supplementaryGIDs", "supplementaryGids"):
        for i, gid in enumerate(_list(app.get(key), f"app.{key}")):
            if _integer(gid, f"app.{key}[{i}]") < 0:
                raise _bad(f"app.{key}[{i}] is negative")
    workdir = app.get("workingDirectory")
    if workdir is not None and _string(workdir, "app.workingDirectory") and not workdir.startswith("/"):
        raise _bad(f"app.workingDirectory {workdir!r} must be an absolute path")
    _environment(app)
    seen: set[str] = set()
    for i, item in enumerate(_list(app.get("eventHandlers"), "app.eventHandlers")):
        where = f"app.eventHandlers[{i}]"
        handler = _object(item, where)
        name = _string(handler.get("name"), f"{where}.name")
        if name not in _EVENT_HANDLERS:
            raise _bad(f"{where}.name {name!r} is not one of {', '.join(_EVENT_HANDLERS)}")
        if name in seen:
            raise _bad(f"app.eventHandlers has {name!r} twice")
        seen.add(name)
    for i, item in enumerate(_list(app.get("isolators"), "app.isolators")):
        _string(_object(item, f"app.isolators[{i}]").get("name"), f"app.isolators[{i}].name")
    for i, item in enumerate(_list(app.get("mountPoints"), "app.mountPoints")):
        where = f"app.mountPoints[{i}]"
        mount = _object(item, where)
        name = _string(mount.get("name"), f"{where}.name")
        if not AC_NAME.fullmatch(name):
            raise _bad(f"{where}.name {name!r} is not a valid AC name")
        path = _string(mount.get("path"), f"{where}.path")
        if not path.startswith("/"):
            raise _bad(f"{where}.path {path!r} must be an absolute path")
        _boolean(mount.get("readOnly"), f"{where}.readOnly")
    for i, item in enumerate(_list(app.get("ports"), "app.ports")):
        where = f"app.ports[{i}]"
        port = _object(item, where)
        name = _string(port.get("name"), f"{where}.name")
        if not AC_NAME.fullmatch(name):
            raise _bad(f"{where}.name {name!r} is not a valid AC name")
        protocol = _string(port.get("protocol"), f"{where}.protocol")
        if not _PROTOCOL.fullmatch(protocol):
            raise _bad(f"{where}.protocol {protocol!r} is not a protocol name such as tcp or udp")
        number = _integer(port.get("port"), f"{where}.port")
        count = 0 if port.get("count") is None else _integer(port["count"], f"{where}.count")
        if not 1 <= number <= 65535:
            raise _bad(f"{where}.port {number} is not in the range 1-65535")
        if count < 0 or number + count > 65536:
            raise _bad(f"{where}.count {count} takes the port range beyond 65535")
        _boolean(port.get("socketActivated"), f"{where}.socketActivated")
