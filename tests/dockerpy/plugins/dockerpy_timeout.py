"""A pytest plugin for tests/dockerpy/run.py: a test that gets no answer within LIMIT seconds fails
instead of holding the whole run (docker-py's suite has no timeouts of its own here)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

LIMIT = 60


class NoAnswer(Exception):
    pass


def _raise(signum: int, frame: Any) -> None:
    raise NoAnswer(f"no answer within {LIMIT} s")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(LIMIT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
