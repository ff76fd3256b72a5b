"""The command ``exec`` runs in a running container (:meth:`Containers.exec_command`): a record
out of :mod:`nspawnctl.client`, whose ``run`` never builds one (see :mod:`nspawnctl.status`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExecCommand:
    """A command to run in a running container: its host argv (run/execenv.py ...) and the
    helper's environment, which carries the command's (``execenv.helper_env``)."""

    argv: list[str]
    env: dict[str, str]
