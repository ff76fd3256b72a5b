"""``trust``: the keys allowed to sign images (add, list, rm)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import typer

from .app import for_each, state_of
from .output import confirm_or_refuse, err, print_json, table
from .usage import NspawnctlGroup

if TYPE_CHECKING:
    from ..verify.trust import TrustStore

trust_app = typer.Typer(
    help="Manage the keys trusted to sign images, per name prefix.",
    no_args_is_help=True,
    rich_markup_mode=None,
    cls=NspawnctlGroup,
)

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GROUP = re.compile(r"^[0-9A-Fa-f]{4}$")


def register(app: typer.Typer) -> None:
    app.add_typer(trust_app, name="trust")


def _store(ctx: typer.Context) -> TrustStore:
    from ..verify.trust import TrustStore

    return TrustStore(state_of(ctx).client().paths.trust)


def _read_source(source: str, insecure: bool, ca_cert: str | None) -> bytes:
    from ..errors import NotFound

    if _URL.match(source):
        from ..fetch.http import Fetcher, FetchOptions

        with Fetcher(FetchOptions(insecure=insecure, ca_cert=ca_cert)) as fetcher:
            data = fetcher.get_small(source)
        assert data is not None  # missing_ok is off: a 404 raises
        return data
    try:
        with open(source, "rb") as f:
            return f.read(1 << 20)
    except FileNotFoundError:
        raise NotFound(
            f"key file not found: {source}", hint="give a public key file or an https:// URL"
        ) from None


@trust_app.command("add")
def add(
    ctx: typer.Context,
    source: str = typer.Argument(
        ...,
        metavar="KEYFILE|URL",
        help="OpenPGP public key(s), armored or binary: a file, or an https:// URL.",
    ),
    prefix: str = typer.Option(
        None,
        "--prefix",
        metavar="PREFIX",
        help="Trust the key for images named PREFIX or PREFIX/... (e.g. example.com/app), "
        "matched per path component.",
    ),
    root: bool = typer.Option(False, "--root", help="Trust the key for every image name."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask; trust the key(s) shown."),
    insecure: bool = typer.Option(
        False, "--insecure", help="Permit fetching the key over plain http:// (then check its fingerprint!)."
    ),
    ca_cert: str = typer.Option(
        None, "--ca-cert", metavar="FILE", help="PEM file of CAs to trust for HTTPS (default: the system's)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the trusted keys as JSON."),
) -> None:
    """Trust the key(s) in KEYFILE or at URL to sign images.

    The fingerprint and user IDs are shown and confirmation is asked for (compare the fingerprint
    with one the publisher gave you another way). Adding a key already trusted for that scope
    changes nothing.
    """
    from ..errors import InvalidArgument
    from ..verify.trust import validate_prefix

    state = state_of(ctx)
    state.json = json_out
    if (prefix is None) == (not root):
        raise InvalidArgument(
            "give exactly one of --prefix PREFIX or --root",
            hint="--prefix example.com/app trusts the key for names under that prefix; "
            "--root trusts it for every name",
        )
    if prefix is not None:
        validate_prefix(prefix)
    store = _store(ctx)
    data = _read_source(source, insecure, ca_cert)
    keys = store.inspect(data)
    scope = "every image (--root)" if prefix is None else f"images under {prefix}"
    trusted = {(k.fingerprint, k.prefix) for k in store.list()}
    if not all((k.fingerprint, prefix) in trusted for k in keys):
        for k in keys:
            err(f"key {k.fingerprint}")
            for uid in k.uids:
                err(f"    uid      {uid}")
            for label, when in (("created", k.created), ("expires", k.expires)):
                if when:
                    err(f"    {label}  {when[:10]}")
        question = f"Trust {'this key' if len(keys) == 1 else f'these {len(keys)} keys'} for {scope}?"
        if not yes:
            confirm_or_refuse(
                question,
                "refusing to trust a key without confirmation",
                hint="check the fingerprint, then rerun with --yes",
            )
    result = store.add(data, prefix)
    if json_out:
        print_json([{**t.to_json(), "added": added} for t, added in result])
        return
    for t, added in result:
        typer.echo(f"{'trusted' if added else 'already trusted'}: {t.fingerprint} for {t.scope}")


@trust_app.command("list")
def list_(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """List trusted keys: fingerprint, the prefix they may sign for ('(root)': every name), user ID."""
    state = state_of(ctx)
    state.json = json_out
    keys = _store(ctx).list()
    if json_out:
        print_json([k.to_json() for k in keys])
        return
    table(
        ["FINGERPRINT", "PREFIX", "UID"],
        [[k.fingerprint, k.prefix or "(root)", ", ".join(k.uids)] for k in keys],
    )


@trust_app.command("rm")
def rm(
    ctx: typer.Context,
    fingerprints: list[str] = typer.Argument(
        ...,
        metavar="FINGERPRINT",
        help="Full fingerprints (40 hex digits, spaces allowed) of keys to stop trusting, for every prefix.",
    ),
) -> None:
    """Stop trusting keys."""
    store = _store(ctx)
    # gpg shows fingerprints in groups of four: accept them pasted without quotes.
    if len(fingerprints) > 1 and all(_GROUP.match(f) for f in fingerprints):
        fingerprints = ["".join(fingerprints)]

    def remove(fpr: str) -> None:
        for k in store.remove(fpr):
            typer.echo(f"removed: {k.fingerprint} for {k.scope}")

    for_each(fingerprints, remove, echo=False)
