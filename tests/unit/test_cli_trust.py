"""``nspawnctl trust`` through the real entry point (error handling, exit codes), with real gpg.

The trust commands are registered on a copy of the top-level app for these tests, so they run
whether or not app.py registers them yet.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from test_trust import Keys, close_keys, make_keys

from nspawnctl.cli import app as app_module
from nspawnctl.cli import output
from nspawnctl.cli import trust as trust_cli
from nspawnctl.verify.trust import TrustStore


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    k = make_keys()
    yield k
    close_keys(k)


@pytest.fixture
def trust_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "trust"
    monkeypatch.setenv("NSPAWNCTL_TRUST_DIR", str(d))
    monkeypatch.setattr(output, "interactive", lambda: False)
    return d


Run = Callable[..., Result]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    app = typer.Typer(
        name="nspawnctl",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(app_module.main_options)
    monkeypatch.setattr(app_module, "app", app)
    monkeypatch.setattr(app_module, "_register", lambda *_: trust_cli.register(app))

    def run(*args: str) -> Result:
        with pytest.raises(SystemExit) as e:
            app_module.main(list(args))
        out, err = capsys.readouterr()
        return Result(int(e.value.code or 0), out, err)

    return run


def key_file(tmp_path: Path, data: bytes, name: str = "key.asc") -> str:
    f = tmp_path / name
    f.write_bytes(data)
    return str(f)


@pytest.mark.parametrize("cmd", [["trust"], ["trust", "add"], ["trust", "list"], ["trust", "rm"]])
def test_help(cli: Run, cmd: list[str]) -> None:
    r = cli(*cmd, "--help")
    assert r.code == 0 and "Usage: nspawnctl" in r.out
    if cmd == ["trust", "add"]:
        for opt in [
            "--prefix PREFIX",
            "--root",
            "--yes",
            "--insecure",
            "--ca-cert FILE",
            "--json",
            "KEYFILE|URL",
        ]:
            assert opt in r.out


def test_add_list_rm(cli: Run, keys: Keys, trust_dir: Path, tmp_path: Path) -> None:
    alice = key_file(tmp_path, keys.alice.public)
    r = cli("trust", "add", alice, "--prefix", "example.com/app", "--yes")
    assert r.code == 0, r.err
    assert r.out == f"trusted: {keys.alice.fingerprint} for prefix example.com/app\n"
    assert keys.alice.fingerprint in r.err and keys.alice.uid in r.err  # shown before trusting
    assert (trust_dir / "prefix.d" / "example.com" / "app" / keys.alice.fingerprint).is_file()

    r = cli("trust", "add", key_file(tmp_path, keys.bob.public, "bob.gpg"), "--root", "-y")
    assert r.code == 0 and r.out == f"trusted: {keys.bob.fingerprint} for every name (root)\n"

    r = cli("trust", "list")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].split() == ["FINGERPRINT", "PREFIX", "UID"]
    assert lines[1].split()[:2] == [keys.bob.fingerprint, "(root)"] and lines[1].endswith(keys.bob.uid)
    assert lines[2].split()[:2] == [keys.alice.fingerprint, "example.com/app"]

    r = cli("trust", "list", "--json")
    data = json.loads(r.out)
    assert [(k["fingerprint"], k["prefix"], k["uids"]) for k in data] == [
        (keys.bob.fingerprint, None, [keys.bob.uid]),
        (keys.alice.fingerprint, "example.com/app", [keys.alice.uid]),
    ]

    # pasted as gpg shows it, in groups of four, without quotes
    groups = [keys.alice.fingerprint[i : i + 4] for i in range(0, 40, 4)]
    r = cli("trust", "rm", *groups)
    assert r.code == 0, r.err
    assert r.out == f"removed: {keys.alice.fingerprint} for prefix example.com/app\n"
    assert not (trust_dir / "prefix.d" / "example.com").exists()
    assert [k.fingerprint for k in TrustStore(trust_dir).list()] == [keys.bob.fingerprint]


def test_add_already_trusted_is_a_no_op(cli: Run, keys: Keys, trust_dir: Path, tmp_path: Path) -> None:
    alice = key_file(tmp_path, keys.alice.public)
    assert cli("trust", "add", alice, "--root", "--yes").code == 0
    # no --yes and no tty: nothing to confirm, so no refusal either
    r = cli("trust", "add", alice, "--root")
    assert r.code == 0, r.err
    assert r.out == f"already trusted: {keys.alice.fingerprint} for every name (root)\n"
    r = cli("trust", "add", alice, "--root", "--json")
    assert json.loads(r.out)[0]["added"] is False


def test_add_without_tty_refuses(cli: Run, keys: Keys, trust_dir: Path, tmp_path: Path) -> None:
    r = cli("trust", "add", key_file(tmp_path, keys.alice.public), "--prefix", "example.com")
    assert r.code == 2
    assert "error: refusing to trust a key without confirmation" in r.err
    assert "hint: check the fingerprint, then rerun with --yes" in r.err
    assert keys.alice.fingerprint in r.err  # the fingerprint to check was shown
    assert not trust_dir.exists()


def test_add_asks_on_a_tty(
    cli: Run, keys: Keys, trust_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output, "interactive", lambda: True)
    alice = key_file(tmp_path, keys.alice.public)
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    r = cli("trust", "add", alice, "--prefix", "example.com")
    assert r.code == 1 and "Trust this key for images under example.com? [y/N]" in r.err
    assert not trust_dir.exists()
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    r = cli("trust", "add", alice, "--prefix", "example.com")
    assert r.code == 0 and r.out.startswith("trusted: ")
    assert [k.prefix for k in TrustStore(trust_dir).list()] == ["example.com"]


@pytest.mark.parametrize(
    "args", [[], ["--root", "--prefix", "example.com"], ["--prefix", ""], ["--prefix", "a/../b"]]
)
def test_add_scope_is_required_and_valid(
    cli: Run, keys: Keys, trust_dir: Path, tmp_path: Path, args: list[str]
) -> None:
    r = cli("trust", "add", key_file(tmp_path, keys.alice.public), "--yes", *args)
    assert r.code == 2
    assert ("exactly one of --prefix PREFIX or --root" in r.err) == (len(args) != 2)
    assert "hint:" in r.err
    assert not trust_dir.exists()


def test_add_errors(cli: Run, keys: Keys, trust_dir: Path, tmp_path: Path) -> None:
    r = cli("trust", "add", str(tmp_path / "missing.asc"), "--root", "--yes")
    assert r.code == 125 and "key file not found" in r.err
    r = cli("trust", "add", key_file(tmp_path, b"hello"), "--root", "--yes", "--json")
    assert r.code == 2 and json.loads(r.out)["error"]["code"] == "invalid-argument"
    r = cli("trust", "add", key_file(tmp_path, keys.secret(keys.alice)), "--root", "--yes")
    assert r.code == 2 and "secret key" in r.err
    assert not trust_dir.exists()


def test_rm_errors(cli: Run, keys: Keys, trust_dir: Path, tmp_path: Path) -> None:
    r = cli("trust", "rm", keys.alice.fingerprint)
    assert r.code == 125 and "no trusted key has fingerprint" in r.err and "nspawnctl trust list" in r.err
    r = cli("trust", "rm", "DEADBEEF")
    assert r.code == 2 and "not a full key fingerprint" in r.err
    cli("trust", "add", key_file(tmp_path, keys.alice.public), "--root", "--yes")
    r = cli("trust", "rm", keys.bob.fingerprint, keys.alice.fingerprint.lower())
    assert r.code == 1
    assert f"removed: {keys.alice.fingerprint} for every name (root)" in r.out
    assert keys.bob.fingerprint in r.err
    assert TrustStore(trust_dir).list() == []


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(directory), **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_add_from_url(cli: Run, keys: Keys, trust_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("nspawnctl.fetch.http")
    (tmp_path / "www").mkdir()
    key_file(tmp_path / "www", keys.alice.public, "pubkeys.gpg")
    with serve(tmp_path / "www") as base:
        r = cli("trust", "add", f"{base}/pubkeys.gpg", "--prefix", "example.com", "--yes")
        assert r.code == 2 and "plain HTTP" in r.err
        r = cli("trust", "add", f"{base}/pubkeys.gpg", "--prefix", "example.com", "--yes", "--insecure")
        assert r.code == 0, r.err
        assert r.out == f"trusted: {keys.alice.fingerprint} for prefix example.com\n"
        r = cli("trust", "add", f"{base}/missing.gpg", "--root", "--yes", "--insecure")
        assert r.code != 0 and "404" in r.err
