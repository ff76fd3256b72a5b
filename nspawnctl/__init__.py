"""nspawnctl: docker-like containers on systemd-nspawn; systemd is the daemon.

``from nspawnctl import Client``. Attributes are loaded lazily so ``import nspawnctl`` stays cheap:
the command's entry point imports this package first, and ``nspawnctl --version`` imports nothing
else (not even ``typing``, which Python 3.13 no longer loads at start-up).
"""

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; type checkers read it as True
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"
__all__ = ["Client", "RunOptions", "__version__", "errors"]


def __getattr__(name: str) -> "Any":  # quoted: no `from __future__` import either
    if name in ("Client", "RunOptions"):
        from . import client

        return getattr(client, name)
    if name == "errors":
        from . import errors

        return errors
    raise AttributeError(name)
