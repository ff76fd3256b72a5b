"""A container's status (``inspect``, ``ps``, the Docker API's container JSON): a record of its own.

Out of :mod:`nspawnctl.client`, which every command loads, because a foreground ``run`` never
builds one: a frozen dataclass costs ~0.5-1 ms to define (its generated methods are ``exec``'d),
so the records only some commands use live in modules only those commands import.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .run.units import unit_name
from .spec import docker_restart_policy

if TYPE_CHECKING:
    from .healthstate import HealthState
    from .spec import ContainerSpec
    from .store.containers import ExitRecord


@dataclass(frozen=True)
class ContainerStatus:
    """A container and what it is doing now."""

    spec: ContainerSpec
    state: str  # created | running | paused | restarting | exited
    started_us: int | None = None
    exit: ExitRecord | None = None
    unit: str | None = None  # the unit running it (transient or systemd-nspawn@NAME.service)
    enabled: bool | None = None  # started at boot; None: not asked (list/ps)
    health: HealthState | None = None  # issue 14: the check's state while it runs (health.py)

    @property
    def running(self) -> bool:
        return self.state in ("running", "paused")  # docker: a paused container is running

    def to_json(self) -> dict[str, Any]:
        s = self.spec
        return {
            "Name": s.display_name,
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
                "Paused": self.state == "paused",
                "Restarting": self.state == "restarting",
                "StartedAt": _iso_us(self.started_us),
                "ExitCode": self.exit.exit_code if self.exit else None,
                "FinishedAt": self.exit.finished if self.exit else None,
                # issue 14 (health): docker's State.Health, only for a container with a check
                **({"Health": self._health()} if s.health is not None else {}),
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
                "Tty": s.tty,  # create -t / -i (docker's Config.Tty, Config.OpenStdin)
                "OpenStdin": s.open_stdin,
                # issue 14 (health, auto-update)
                **({"Healthcheck": s.health.to_docker()} if s.health is not None else {}),
                "AutoUpdate": s.auto_update,
                "Labels": dict(s.labels),
            },
            "HostConfig": {
                "Memory": s.limits.memory.bytes if s.limits.memory else None,
                "NanoCpus": s.limits.cpus.nano if s.limits.cpus else None,
                "PidsLimit": s.limits.pids.count if s.limits.pids else None,
                "RestartPolicy": docker_restart_policy(s.restart, brief=True),
                "VolumesFrom": s.volumes_from or None,
                "NetworkMode": s.network,
                "PortBindings": _port_bindings(s),
                "UsernsMode": "" if s.private_users else "host",
                **s.settings.to_json(),
            },
            "NetworkSettings": self._network_settings(),
            "Unit": self.unit or unit_name(s.name),
            "Enabled": self.enabled,
        }

    def _health(self) -> dict[str, Any]:
        """issue 14: a stopped container's check is "starting" again at its next start."""
        from .healthstate import HealthState

        running = self.running or self.state == "restarting"
        return (self.health if running and self.health else HealthState()).to_docker()

    def _network_settings(self) -> dict[str, Any]:
        """docker's NetworkSettings, from what the network hook recorded while the container runs."""
        from .net import state as net_state
        from .net.ports import docker_ports

        st = net_state(self.spec.name) if self.running or self.state == "restarting" else None
        out: dict[str, Any] = {
            "IPAddress": st.address if st else None,
            "IPPrefixLen": st.prefixlen if st else None,
            "Gateway": st.gateway if st else None,
            "Ports": docker_ports(self.spec),
            "MacAddress": self.spec.settings.mac_address or "",  # docker's with --mac-address
        }
        if st:
            out["Networks"] = {
                st.zone or st.network: {
                    "IPAddress": st.address,
                    "Gateway": st.gateway,
                    "HostLink": st.host_link,
                    "NetNS": st.netns,
                }
            }
        return out


def _port_bindings(spec: ContainerSpec) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for p in spec.ports:
        out.setdefault(f"{p.container_port}/{p.protocol}", []).append(
            {"HostIp": p.host_ip or "", "HostPort": str(p.host_port)}
        )
    return out


def _iso_us(us: int | None) -> str | None:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="seconds") if us else None
