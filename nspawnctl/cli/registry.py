"""Registry credentials: login and logout, stored in auth.json as podman and skopeo read it."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .app import state_of

DEFAULT_REGISTRY = "docker.io"


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("logout")(logout)


def tls_verify_option() -> str:
    """``--tls-verify=true|false`` as podman spells it (typer has no optional option values)."""
    return typer.Option(
        "true",
        "--tls-verify",
        metavar="true|false",
        help="false permits plain HTTP and TLS without certificate checks for the registry "
        "(blob and manifest digests are still checked).",
    )


def authfile_option() -> str:
    """``--authfile FILE``, shared by pull, login and logout."""
    return typer.Option(
        None,
        "--authfile",
        metavar="FILE",
        help="Registry credentials file (default /etc/nspawnctl/auth.json, or $REGISTRY_AUTH_FILE).",
    )


def parse_bool(option: str, value: str) -> bool:
    from ..errors import InvalidArgument

    v = value.strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off"):
        return False
    raise InvalidArgument(f"invalid {option}={value!r}", hint=f"use {option}=true or {option}=false")


def _auth_path(authfile: str | None, ctx: typer.Context) -> Path:
    return Path(authfile) if authfile else state_of(ctx).paths().auth


def registry_host(text: str) -> str:
    """What login and logout key credentials by: host[:port], Docker Hub's aliases as docker.io."""
    from ..errors import InvalidArgument
    from ..fetch.auth import registry_key

    host = registry_key(text)
    if host is None:
        raise InvalidArgument(f"invalid registry {text!r}", hint="give a host[:port], e.g. reg.example.com")
    return host


def login(
    ctx: typer.Context,
    registry: str = typer.Argument(
        DEFAULT_REGISTRY, metavar="REGISTRY", help="Registry host[:port] (default docker.io)."
    ),
    username: str = typer.Option(None, "-u", "--username", help="User name (asked for on a terminal)."),
    password: str = typer.Option(
        None, "-p", "--password", help="Password (visible to other users in ps; prefer --password-stdin)."
    ),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
    tls_verify: str = tls_verify_option(),
    ca_cert: str = typer.Option(
        None, "--ca-cert", metavar="FILE", envvar="REQUESTS_CA_BUNDLE", help="PEM file of CAs for HTTPS."
    ),
    authfile: str = authfile_option(),
) -> None:
    """Log in to a registry: check the credentials with it, then store them (file mode 0600).

    The file has the auth.json format that podman, skopeo and buildah read. Pulls from the registry
    send these credentials (Basic auth, or to the registry's token server).
    """
    from ..errors import InvalidArgument
    from ..fetch.auth import AuthFile
    from ..fetch.registry import RegistryClient, RegistryOptions

    host = registry_host(registry)
    interactive = sys.stdin.isatty()
    if password_stdin:
        if password is not None:
            raise InvalidArgument("--password and --password-stdin cannot be used together")
        password = sys.stdin.readline().rstrip("\r\n")
    if not username:
        if not interactive:
            raise InvalidArgument("no user name given", hint="use -u USER")
        username = typer.prompt("Username", err=True)
    if password is None:
        if not interactive:
            raise InvalidArgument("no password given", hint="use --password-stdin (or -p PASSWORD)")
        password = typer.prompt("Password", hide_input=True, err=True)
    if not password:
        raise InvalidArgument("the password is empty")
    options = RegistryOptions(
        tls_verify=parse_bool("--tls-verify", tls_verify), ca_cert=ca_cert, credentials=(username, password)
    )
    with RegistryClient(host, options) as client:
        client.check_login()
    AuthFile(_auth_path(authfile, ctx)).set(host, username, password)
    typer.echo("Login Succeeded!")


def logout(
    ctx: typer.Context,
    registry: str = typer.Argument(
        DEFAULT_REGISTRY, metavar="REGISTRY", help="Registry host[:port] (default docker.io)."
    ),
    all_: bool = typer.Option(False, "-a", "--all", help="Remove the credentials of every registry."),
    authfile: str = authfile_option(),
) -> None:
    """Remove stored registry credentials."""
    from ..errors import NotFound
    from ..fetch.auth import AuthFile

    store = AuthFile(_auth_path(authfile, ctx))
    if all_:
        removed = store.remove_all()
        typer.echo("Removed login credentials for all registries" if removed else "No credentials stored")
        return
    host = registry_host(registry)
    if not store.remove(host):
        raise NotFound(f"not logged in to {host}", hint="'nspawnctl logout --all' removes every login")
    typer.echo(f"Removed login credentials for {host}")
