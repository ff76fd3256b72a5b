"""store/locks.py and the container locks built on it: exclusive, dead with their holder,
unlink-safe, and waited for off the event loop (cancel-safe)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from nspawnctl.config import Paths
from nspawnctl.store import locks
from nspawnctl.store.containers import ContainerStore
from nspawnctl.store.pool import Pool


def _free(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_hold_excludes_and_releases(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with locks.hold(path) as held:
        assert held.held and not _free(path)
        held.release()  # a start lets it go early; the with's end does nothing more
        assert _free(path) and not held.held
    assert _free(path)


def test_a_killed_holder_leaves_no_lock(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    code = (
        "from nspawnctl.store import locks; import pathlib, time; "
        f"locks.acquire(pathlib.Path({str(path)!r})); print('held', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    assert child.stdout is not None and child.stdout.readline() == b"held\n"
    assert not _free(path)
    child.kill()
    child.wait()
    with locks.hold(path) as held:  # does not block
        assert held.held


def test_a_waiter_on_an_unlinked_lock_file_locks_the_path_anew(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    first = locks.acquire(path)
    got: list[locks.Held] = []
    waiter = threading.Thread(target=lambda: got.append(locks.acquire(path)))
    waiter.start()
    time.sleep(0.1)  # the waiter blocks on the first file
    path.unlink()  # its holder removes it (the container is removed), then lets go
    first.release()
    waiter.join(5)
    assert got and os.fstat(got[0].fd).st_ino == os.stat(path).st_ino
    got[0].release()


def test_the_async_wait_keeps_the_loop_free_and_a_cancelled_wait_leaks_no_lock(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    holder = locks.acquire(path)

    async def main() -> None:
        waiter = asyncio.ensure_future(locks.aacquire(path))
        ticks = 0
        for _ in range(10):  # the loop runs on while the lock is held elsewhere
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 10 and not waiter.done()
        waiter.cancel()
        try:
            await waiter
        except asyncio.CancelledError:
            pass
        holder.release()  # the cancelled waiter's thread gets it now, and must give it back
        for _ in range(200):
            await asyncio.sleep(0.01)
            if _free(path):
                return
        raise AssertionError("a cancelled wait kept the lock")

    asyncio.run(main())


def test_attached_waits_for_the_pool_lock_off_the_loop(tmp_path: Path) -> None:
    """review #11: a long pool-lock holder (import, prune) must not freeze the API's loop."""
    paths = Paths(pool=tmp_path / "pool", store=tmp_path / "store")
    store = ContainerStore(Pool(paths))
    paths.store.mkdir(parents=True)
    pool_lock = locks.acquire(paths.lock)

    async def main() -> None:
        entered = asyncio.Event()

        async def run() -> None:
            async with store.aattached("web"):
                entered.set()

        task = asyncio.ensure_future(run())
        for _ in range(10):
            await asyncio.sleep(0.01)  # the loop is not blocked by the flock
        assert not entered.is_set()
        pool_lock.release()
        await asyncio.wait_for(task, 10)
        assert entered.is_set() and (paths.state / "web.attached").exists()
        # released: a repair could now take the container for a dead run's
        assert _free(paths.state / "web.attached")

    asyncio.run(main())


def test_the_container_lock_is_per_container(tmp_path: Path) -> None:
    paths = Paths(pool=tmp_path / "pool", store=tmp_path / "store")
    store = ContainerStore(Pool(paths))
    with store.locked("web"):
        assert not _free(paths.state / "locks" / "web")
        with store.locked("db"):  # another container's does not wait
            pass

    async def main() -> None:
        async with store.alocked("web") as held:
            assert not _free(paths.state / "locks" / "web")
            held.release()
            assert _free(paths.state / "locks" / "web")

    asyncio.run(main())
