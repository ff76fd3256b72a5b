"""The Docker API's terminal and stdin fields (issue 15): create's Tty/OpenStdin/StdinOnce and
ConsoleSize, the resize sizes, and the spec keys they become."""

from __future__ import annotations

from typing import Any

import pytest
from apiserve import serve_one

from nspawnctl.api.http import ApiError
from nspawnctl.api.translate import console_size, create_options
from nspawnctl.spec import ContainerSpec, file_to_spec, spec_to_file


def test_tty_and_stdin_fields_become_run_options() -> None:
    body: dict[str, Any] = {
        "Image": "bb", "Cmd": ["sh"], "Tty": True, "OpenStdin": True, "StdinOnce": True,
        "AttachStdin": True, "AttachStdout": True, "AttachStderr": True,
        "HostConfig": {"ConsoleSize": [33, 111]},
    }  # fmt: skip
    _, opts = create_options(body, None)
    assert (opts.tty, opts.open_stdin, opts.stdin_once) == (True, True, True)
    assert console_size(body) == (33, 111)
    _, opts = create_options({"Image": "bb"}, None)
    assert (opts.tty, opts.open_stdin, opts.stdin_once) == (False, False, False)
    assert console_size({"Image": "bb", "HostConfig": {"ConsoleSize": [0, 0]}}) is None


@pytest.mark.parametrize("size", [[1], [0, 5], [70000, 5], ["1", "2"], [True, 3], "24x80"])
def test_bad_console_sizes_are_refused(size: Any) -> None:
    with pytest.raises(ApiError) as e:
        console_size({"HostConfig": {"ConsoleSize": size}})
    assert e.value.status == 400 and "ConsoleSize" in e.value.message


def test_tty_settings_round_trip_through_the_definition() -> None:
    spec = ContainerSpec(
        name="t", id="ab" * 32, image="bb", image_id="x", created="now", command=["sh"],
        tty=True, open_stdin=True, stdin_once=True,
    )  # fmt: skip
    f = spec_to_file(spec)
    text = f.render()
    assert "Tty=yes" in text and "OpenStdin=yes" in text and "StdinOnce=yes" in text
    back = file_to_spec("t", f)
    assert (back.tty, back.open_stdin, back.stdin_once) == (True, True, True)
    plain = spec_to_file(spec.with_changes(tty=False, open_stdin=False, stdin_once=False))
    assert not file_to_spec("t", plain).tty


def test_definitions_take_the_tty_keys_as_booleans() -> None:
    from nspawnctl.declare import _check_own
    from nspawnctl.errors import InvalidArgument

    for key in ("Tty", "OpenStdin", "StdinOnce"):
        _check_own(key, "yes")
        with pytest.raises(InvalidArgument):
            _check_own(key, "maybe")


def test_a_hijacked_connection_reads_the_clients_bytes_and_its_half_close() -> None:
    """attach's stdin: bytes sent with the request (still in h11's buffer) and after it, then b""
    at the client's half-close, while the reply side stays writable."""
    import asyncio

    from nspawnctl.api.routing import Router

    async def echo(ex: Any, id: str) -> None:
        stream = await ex.conn.hijack("application/vnd.docker.raw-stream")
        got = b""
        while data := await ex.conn.read_raw():
            got += data
        await stream.write(b"echo:" + got)
        await stream.end()

    router = Router()
    router.add("POST", "/containers/{id}/attach", echo)

    async def main() -> bytes:
        task, creader, cwriter = await serve_one(router)
        cwriter.write(
            b"POST /containers/x/attach?stdin=1 HTTP/1.1\r\nHost: d\r\n"
            b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\nearly "
        )
        await cwriter.drain()
        await creader.readuntil(b"\r\n\r\n")
        cwriter.write(b"late")
        await cwriter.drain()
        cwriter.write_eof()  # docker's CloseWrite
        rest = await asyncio.wait_for(creader.read(), 5)
        cwriter.close()
        await asyncio.wait_for(task, 5)
        return rest

    assert asyncio.run(main()) == b"echo:early late"
