"""store/locks.py and the container locks built on it: exclusive, dead with their holder,
unlink-safe, and waited for off the event loop (cancel-safe)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
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


def test_the_async_wait_keeps_the_loop_free_and_a_cancelled_wait_returns_at_once(tmp_path: Path) -> None:
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
        begun = time.monotonic()
        try:
            await waiter
        except asyncio.CancelledError:
            pass
        assert waiter.cancelled() and time.monotonic() - begun < 1  # no thread to wait for
        assert not _free(path)  # the holder keeps it
        holder.release()
        await asyncio.sleep(0.3)  # a late taker would have it by now
        assert _free(path)

    asyncio.run(main())


def test_pending_async_waits_leave_the_default_executor_usable(tmp_path: Path) -> None:
    """review 18 #2: waits parked in the shared executor starved every ``to_thread`` caller."""
    path = tmp_path / "x.lock"
    holder = locks.acquire(path)

    async def main() -> None:
        waiters = [asyncio.ensure_future(locks.aacquire(path)) for _ in range((os.cpu_count() or 1) + 5)]
        await asyncio.sleep(0.05)
        assert await asyncio.wait_for(asyncio.to_thread(lambda: 1), 30) == 1
        assert not any(w.done() for w in waiters)
        holder.release()
        for waiter in waiters:  # each gets it in turn
            (await asyncio.wait_for(waiter, 30)).release()

    asyncio.run(main())


def test_an_async_waiter_on_an_unlinked_lock_file_locks_the_path_anew(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    first = locks.acquire(path)

    async def main() -> None:
        waiter = asyncio.ensure_future(locks.aacquire(path))
        await asyncio.sleep(0.05)
        path.unlink()
        first.release()
        held = await asyncio.wait_for(waiter, 5)
        assert os.fstat(held.fd).st_ino == os.stat(path).st_ino
        held.release()

    asyncio.run(main())


def test_ctrl_c_ends_an_async_wait_at_once_and_cleanly(tmp_path: Path) -> None:
    """review 18 #2: with the wait in an executor thread, Ctrl-C took three presses and a traceback."""
    path = tmp_path / "x.lock"
    holder = locks.acquire(path)
    code = (
        "import asyncio, pathlib\n"
        "from nspawnctl.store import locks\n"
        "async def main():\n"
        "    print('waiting', flush=True)\n"
        f"    await locks.aacquire(pathlib.Path({str(path)!r}))\n"
        "try:\n"
        "    asyncio.run(main())\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "waiting\n"
        time.sleep(0.1)
        child.send_signal(signal.SIGINT)  # once
        out, err = child.communicate(timeout=10)  # while the holder still holds it
        assert (out, err, child.returncode) == ("interrupted\n", "", 0)
        assert not _free(path)
    finally:
        child.kill()
        holder.release()


def test_the_hook_steps_do_not_load_asyncio() -> None:
    """review 18 #5: ``python -m nspawnctl.run.hook pre|exec|post`` loads the container store (and
    so locks.py) on every start of a drop-in container; asyncio is ~20-60 ms there."""
    code = (
        "import sys\n"
        "from nspawnctl.config import Paths\n"
        "from nspawnctl.run import hook\n"
        "hook._store(Paths())\n"
        "import nspawnctl.run.units, nspawnctl.run.programs, nspawnctl.store.locks\n"
        "print('asyncio' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert (proc.stdout, proc.returncode) == ("False\n", 0), proc.stderr


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


def test_removal_unlinks_the_container_lock_only_while_holding_it(tmp_path: Path) -> None:
    """review 18 #3: a waiter that gets an unlinked lock file locks the path anew, which is sound
    only if the unlinker held the lock (else two processes would each hold "the" lock)."""
    paths = Paths(pool=tmp_path / "pool", store=tmp_path / "store")
    store = ContainerStore(Pool(paths))
    lock = paths.state / "locks" / "web"
    with store.locked("web") as held:
        store.remove("web", held=held)
        assert not lock.exists()
    holder = locks.acquire(lock)
    store.remove("web")  # by one not holding it (a repair): the file someone holds stays
    assert lock.exists() and os.fstat(holder.fd).st_ino == os.stat(lock).st_ino
    holder.release()
    store.remove("web")  # nobody holds it: taken, then unlinked
    assert not lock.exists()
