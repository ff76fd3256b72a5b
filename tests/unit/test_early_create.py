"""A foreground run's container made (and its network built) in a thread while the bus connects:
Containers.create_early, abandon and arun_attached's ``created`` (issue 13)."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from nspawnctl.client import Client
from nspawnctl.config import Paths
from nspawnctl.errors import NetworkError


def _spec(auto_remove: bool = True, network: str = "veth") -> Any:
    return SimpleNamespace(
        name="web", auto_remove=auto_remove, network=network, ports=[], health=None,
        settings=SimpleNamespace(sysctls={}),
    )  # fmt: skip


def _containers(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, spec: Any, log: list[str]) -> Any:
    c = Client(Paths(pool=tmp_path / "pool", store=tmp_path / "store")).containers
    creators: list[str] = []

    def create(*a: Any) -> Any:
        creators.append(threading.current_thread().name)
        log.append("created")
        return spec

    monkeypatch.setattr(c, "create", create)
    monkeypatch.setattr(c, "_network_up", lambda s: log.append("network up"))
    monkeypatch.setattr(c, "_cleanup_failed", lambda s: log.append(f"removed {s.name}"))
    c.creators = creators
    return c


def _lock_held(c: Any) -> bool:
    """Whether state/web.attached is locked by someone (this process's early thread)."""
    import fcntl
    import os

    path = c.store._attached_lock("web")
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_the_early_create_runs_in_its_own_thread_and_builds_the_network_under_the_lock(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []
    c = _containers(tmp_path, monkeypatch, _spec(), log)
    early = c.create_early("img", ["true"], None)
    assert early.future.result(timeout=10).name == "web"
    assert c.creators == ["nspawnctl-create"]
    assert log == ["created", "network up"]
    assert _lock_held(c)  # a repair meanwhile leaves the run alone
    c.abandon(early)  # the bus could not be reached: nothing left behind
    assert log == ["created", "network up", "removed web"]
    assert not _lock_held(c)
    c.abandon(early)  # once only
    assert log.count("removed web") == 1


def test_no_network_is_built_early_for_host_network_or_without_rm(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for spec in (_spec(network="host"), _spec(auto_remove=False)):
        log: list[str] = []
        c = _containers(tmp_path, monkeypatch, spec, log)
        early = c.create_early("img", ["true"], None)
        early.future.result(timeout=10)
        assert log == ["created"]
        assert early.held is None


def test_a_run_takes_the_early_container_over(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """arun_attached neither creates again nor lets abandon remove what it now owns; it hands the
    early network and lock to the foreground run and lets go of the lock when it ends."""
    log: list[str] = []
    c = _containers(tmp_path, monkeypatch, _spec(), log)
    seen: list[Any] = []

    async def attached(bus: Any, spec: Any, *a: Any) -> Any:
        seen.append(a[-1])
        assert _lock_held(c)
        return "ran"

    monkeypatch.setattr(c, "_attached", attached)
    early = c.create_early("img", ["true"], None)
    assert asyncio.run(c.arun_attached(None, "img", ["true"], None, print, created=early)) == "ran"
    c.abandon(early)
    assert seen == [early]
    assert log == ["created", "network up"]
    assert not _lock_held(c)


def test_an_early_network_failure_is_the_runs_error_and_its_undo_removes_the_container(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []
    c = _containers(tmp_path, monkeypatch, _spec(), log)

    def fail(spec: Any) -> None:
        raise NetworkError("no veth today")

    monkeypatch.setattr(c, "_network_up", fail)

    async def undo(bus: Any, spec: Any) -> None:
        log.append("undo")
        c._cleanup_failed(spec)

    monkeypatch.setattr(c, "_undo_attached", undo)
    early = c.create_early("img", ["true"], None)
    with pytest.raises(NetworkError, match="no veth today"):
        asyncio.run(c.arun_attached(None, "img", ["true"], None, print, created=early))
    c.abandon(early)
    assert log == ["created", "undo", "removed web"]
    assert not _lock_held(c)


def test_abandon_of_a_failed_create_does_nothing(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    c = _containers(tmp_path, monkeypatch, _spec(), log)

    def create(*a: Any) -> Any:
        raise NetworkError("no such image")

    monkeypatch.setattr(c, "create", create)
    early = c.create_early("img", ["true"], None)
    c.abandon(early)
    assert log == []
    with pytest.raises(NetworkError):
        asyncio.run(c.arun_attached(None, "img", ["true"], None, print, created=early))
