"""nspawnctl: docker-like containers on systemd-nspawn; systemd is the daemon.

``from nspawnctl import Client``. Attributes are loaded lazily so ``import nspawnctl`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Client", "RunOptions", "__version__", "errors"]


def __getattr__(name: str) -> Any:
    if name in ("Client", "RunOptions"):
        from . import client

        return getattr(client, name)
    if name == "errors":
        from . import errors

        return errors
    raise AttributeError(name)
