"""Fixtures shared by the unit tests of the HTTP, discovery and registry clients."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from test_fetch import make_pki

# A suite started from a background job inherits SIGINT ignored: the tests of Ctrl-C (a
# KeyboardInterrupt in the middle of an unpack or a wait) need Python's own handler.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[Path, Path]]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def no_ca_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's CA and proxy settings must not leak into these tests."""
    for var in (
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "https_proxy",
        "http_proxy",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("NETRC", "/nonexistent")  # requests must not add ~/.netrc credentials
