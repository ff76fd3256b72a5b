"""Image commands: pull, import, images, tag, rmi, image inspect|ls|rm|prune|save|load."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .app import for_each, state_of
from .output import ago, confirm_or_refuse, human_size, image_view, print_formatted, print_json, table
from .registry import authfile_option, parse_bool, tls_verify_option
from .transfer import change_option, load, save
from .usage import NspawnctlGroup

if TYPE_CHECKING:
    from ..prunes import PruneResult
    from ..store.images import Image

image_app = typer.Typer(
    help="Manage images.", no_args_is_help=True, rich_markup_mode=None, cls=NspawnctlGroup
)


def register(app: typer.Typer) -> None:
    app.command("pull")(pull)
    app.command("import")(import_)
    app.command("images")(images)
    app.command("tag")(tag)
    app.command("rmi")(rmi)
    app.add_typer(image_app, name="image")
    image_app.command("inspect")(image_inspect)
    image_app.command("ls")(images)
    image_app.command("rm")(rmi)
    image_app.command("prune")(image_prune)
    image_app.command("save")(save)
    image_app.command("load")(load)


def parse_ratio(value: str) -> float:
    """A decompression ratio limit: a finite number >= 1, or 0 for none (no nan, inf, negative)."""
    try:
        ratio = float(str(value).strip())
    except ValueError:
        ratio = math.nan
    if not math.isfinite(ratio) or not (ratio == 0 or ratio >= 1):
        raise typer.BadParameter(f"{value!r}: use a number >= 1 (e.g. 1000), or 0 for no ratio limit")
    return ratio


def max_ratio_option() -> Any:
    return typer.Option(
        None,
        "--max-ratio",
        metavar="N",
        parser=parse_ratio,
        help="Refuse an archive or layer that unpacks to more than N times its compressed size "
        "(a decompression bomb; default 100, checked past 64 MiB unpacked); 0: no ratio limit. "
        "Unpacking always stops before the pool is full.",
    )


def import_(
    ctx: typer.Context,
    source: str = typer.Argument(
        ...,
        metavar="FILE|DIR|-",
        help="A rootfs tarball (.tar, .tar.gz, .tar.xz, .tar.zst), a btrfs send stream (from "
        "'nspawnctl export --format btrfs-send'), an App Container Image (.aci), '-' for stdin, "
        "or a directory.",
    ),
    name: str = typer.Argument(
        None, metavar="NAME[:TAG]", help="NAME[:TAG] to give the image (tag defaults to 'latest')."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the new image as JSON."),
    max_ratio: float = max_ratio_option(),
    change: list[str] = change_option(),
) -> None:
    """Import a root filesystem as a read-only image.

    The image ID is the SHA-256 of the uncompressed tar stream (for an ACI, as the appc spec says,
    sha512- and the SHA-512), so importing the same content again creates nothing new (it only adds
    NAME). Members that would land outside the image (.., links pointing out) are refused. An ACI's
    manifest (exec, user, environment, working directory) becomes what 'run' does by default; its
    name and version name the image unless NAME is given. Local files are not signature-checked.

    A btrfs send stream (recognised by its header) is received with 'btrfs receive' as a
    read-only image named by the stream's SHA-256; an incremental stream needs its parent image
    here (imported from that parent's full stream, or the very image it was made against).
    """
    state = state_of(ctx)
    state.json = json_out
    defaults = None
    if change:
        from ..imagechanges import parse
        from ..spec import RunDefaults

        defaults = parse(change).apply(RunDefaults())  # a bad one refuses before anything is read
    image = state.client().images.import_file(source, name, max_ratio=max_ratio, defaults=defaults)
    if json_out:
        print_json(image.to_json())
    else:
        typer.echo(image.id)


def pull(
    ctx: typer.Context,
    source: str = typer.Argument(
        ...,
        metavar="REFERENCE|URL",
        help="A registry image: docker://REGISTRY/NAME:TAG, REGISTRY/NAME@sha256:DIGEST, or a "
        "docker-style short name (alpine = docker.io/library/alpine:latest). Or the https:// URL of "
        "a rootfs tarball (systemd-importd style, with SHA256SUMS and SHA256SUMS.gpg beside it) or "
        "of an .aci; or an App Container Image name such as example.com/app:1.0, found by appc "
        "discovery (a dotted host is asked first whether it is a registry).",
    ),
    name: str = typer.Argument(
        None,
        metavar="NAME[:TAG]",
        help="Local name (default: the registry reference without docker://, the file name, or "
        "the ACI's name and version).",
    ),
    verify: str = typer.Option(
        "signature",
        "--verify",
        metavar="signature|checksum|no",
        help="Tarballs and ACIs: signature (default): a key trusted for the name (see 'nspawnctl "
        "trust') must have signed it; checksum: SHA256SUMS alone; no: take it unverified. Registry "
        "images are always checked against their digests; /etc/nspawnctl/policy.json decides what "
        "else they need.",
    ),
    insecure: bool = typer.Option(
        False,
        "--insecure",
        help="Permit plain http:// (downloads and discovery). Verification still applies: only "
        "--verify changes that.",
    ),
    ca_cert: str = typer.Option(
        None,
        "--ca-cert",
        metavar="FILE",
        envvar="REQUESTS_CA_BUNDLE",
        help="PEM file of CAs to trust for HTTPS (default: the system's).",
    ),
    platform: str = typer.Option(
        None,
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="Registry images: the platform to pick from a multi-platform image (default: the "
        "host's, e.g. linux/amd64).",
    ),
    tls_verify: str = tls_verify_option(),
    authfile: str = authfile_option(),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress or notices, only the image ID."),
    json_out: bool = typer.Option(False, "--json", help="Print the image and how it was verified as JSON."),
    max_ratio: float = max_ratio_option(),
) -> None:
    """Download an image, verify it, and store it read-only.

    The image becomes visible only after verification has passed; a failure or Ctrl-C leaves
    nothing behind. Pulling content that is already here downloads nothing (a new NAME is just
    added). Prints the image ID.

    Registry images (OCI and Docker) are verified by digest: the manifest (by TLS, or by its
    digest when you pull NAME@sha256:...), then the config and every layer against the digests the
    manifest lists, and every unpacked layer against the config's diff IDs. Registry images carry
    no signatures nspawnctl checks: TLS (on unless --tls-verify=false) vouches for the registry,
    and /etc/nspawnctl/policy.json can reject registries or names, require TLS, or require
    references pinned by digest. Layers are stored once, as btrfs snapshots shared between images.
    """
    from ..pull import PullOptions
    from ..store.images import UNVERIFIED
    from .progress import progress_for

    state = state_of(ctx)
    state.json = json_out
    quiet_output = quiet or json_out

    def notify(text: str) -> None:
        if not quiet_output:
            typer.echo(text, err=True)

    paths = state.paths()
    options = PullOptions(
        verify=verify,
        insecure=insecure,
        ca_cert=ca_cert,
        notify=notify,
        platform=platform,
        tls_verify=parse_bool("--tls-verify", tls_verify),
        auth_file=Path(authfile) if authfile else paths.auth,
        policy_file=paths.policy,
        max_ratio=max_ratio,
    )
    if not quiet_output:
        options = dataclasses.replace(options, progress=progress_for)
    result = state.client().images.pull(source, name, options)
    if json_out:
        print_json(
            {
                **result.image.to_json(),
                "ref": result.ref,
                "downloaded": result.downloaded,
                "verified": result.verified,
            }
        )
        return
    notify(f"Verified: {result.verified}" if result.verified != UNVERIFIED else "Not verified (--verify=no)")
    notify(f"Pulled {result.ref}" if result.downloaded else f"Image is up to date for {result.ref}")
    typer.echo(result.image.id)


IMAGE_FILTER_HELP = (
    "Only images that match (repeatable; references ORed, everything else ANDed): "
    "reference=NAME[:TAG] (globs: * ? [..]; only the names that match are listed), "
    "dangling=true|false, label=KEY or label=KEY=VALUE, label!=KEY[=VALUE], "
    "before=IMAGE, since=IMAGE (created before/after it), until=TIME (10m, 2h ago, "
    "2026-01-02T10:00:00Z, a Unix time)."
)


def images(
    ctx: typer.Context,
    repository: str = typer.Argument(
        None,
        metavar="[REPOSITORY[:TAG]]",
        help="Only this repository (all its tags), or this REPOSITORY:TAG; as --filter reference=.",
    ),
    all_: bool = typer.Option(
        False,
        "-a",
        "--all",
        help="Accepted for docker's sake: every image is always listed (nspawnctl keeps no "
        "intermediate images; a running build's step images show as <none> until it ends).",
    ),
    filter_: list[str] = typer.Option([], "-f", "--filter", metavar="KEY=VALUE", help=IMAGE_FILTER_HELP),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only show image IDs."),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Show full image IDs."),
    digests: bool = typer.Option(
        False,
        "--digests",
        help="Show a DIGEST column: the registry's manifest digest of a pulled image (<none> for "
        "names it was not pulled under, and for images imported, loaded or built here).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array."),
    format_: str = typer.Option(
        None,
        "--format",
        metavar="TEMPLATE",
        help="Go template per image (one per name), e.g. '{{.Repository}}:{{.Tag}} {{.ID}}', "
        "'{{json .}}', 'table {{.ID}}\\t{{.Size}}'. Fields: ID, Repository, Tag, Digest, "
        "CreatedSince, CreatedAt, Size, SharedSize.",
    ),
) -> None:
    """List images (an App Container Image's ID is its sha512-, as the appc spec defines it).

    With REPOSITORY[:TAG] or a reference filter, an image is listed under the names that
    matched only (as docker does).
    """
    state = state_of(ctx)
    state.json = json_out
    filters = None
    if filter_ or repository is not None:
        from ..imagefilters import parse_image_filters

        words = [*filter_, f"reference={repository}"] if repository is not None else filter_
        filters = parse_image_filters(words)  # a bad filter fails before anything is read
    fmt = None
    if format_ is not None:
        from ..gotemplate import parse_format

        fmt = parse_format(format_)
    client = state.client()
    imgs = client.images.list()
    if filters:
        from ..imagefilters import select

        imgs = select(imgs, filters, client.images.get)
    if json_out:
        print_json([i.to_json() for i in imgs])
        return
    if fmt is not None:
        _images_format(fmt, imgs, client.images.shared_sizes(imgs), no_trunc)
        return
    if quiet:
        for i in imgs:
            typer.echo(i.id if no_trunc else i.short_id)
        return
    shared_sizes = client.images.shared_sizes(imgs)
    rows = []
    for i in imgs:
        shared = human_size(shared_sizes[i.id])
        for ref in i.refs or ["<none>:<none>"]:
            repo, tag = _split_ref(ref)
            image_id = i.id if no_trunc else i.short_id
            row = [repo, tag, image_id, ago(i.created), human_size(i.size), shared]
            if digests:
                row[1:2] = ["<none>" if "@" in ref else tag, _digest_of(i, ref)]
            rows.append(row)
    headers = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE"]
    if digests:
        headers.insert(2, "DIGEST")
    table(headers, rows)


IMAGES_HEADERS = {
    "ID": "IMAGE ID",
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "Digest": "DIGEST",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Size": "SIZE",
    "SharedSize": "SHARED SIZE",
}
IMAGES_DEFAULT = "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}"


def _images_format(fmt: Any, imgs: list[Any], shared_sizes: dict[str, int], no_trunc: bool) -> None:
    """``images --format``: one row per name (an unnamed image once), fields as docker's."""
    import sys
    from datetime import UTC, datetime

    from ..gotemplate import render

    rows = []
    for i in imgs:
        created = datetime.fromisoformat(i.created).astimezone(UTC) if i.created else None
        for ref in i.refs or ["<none>:<none>"]:
            repo, tag = _split_ref(ref)
            rows.append(
                {
                    "ID": i.id if no_trunc else i.short_id,
                    "Repository": repo,
                    "Tag": tag if not tag.startswith("sha256:") else "<none>",
                    "Digest": _digest_of(i, ref),
                    "CreatedSince": ago(i.created),
                    "CreatedAt": created.strftime("%Y-%m-%d %H:%M:%S +0000 UTC") if created else "",
                    "Size": human_size(i.size),
                    "SharedSize": human_size(shared_sizes[i.id]),
                }
            )
    sys.stdout.write(render(fmt, rows, IMAGES_HEADERS, IMAGES_DEFAULT))


def _digest_of(image: Image, ref: str) -> str:
    """The DIGEST of one name's row: a digest reference's own; else the manifest digest the
    image was pulled by, on the rows of the repository it was pulled from (docker's
    RepoDigests); else <none>."""
    if "@" in ref:
        return ref.partition("@")[2]
    origin = image.origin
    manifest, registry, repository = (origin.get(k) for k in ("manifest", "registry", "repository"))
    if not all(isinstance(v, str) for v in (manifest, registry, repository)):
        return "<none>"
    if _split_ref(ref)[0] != f"{registry}/{repository}":
        return "<none>"
    return str(manifest)


def _split_ref(ref: str) -> tuple[str, str]:
    """REPOSITORY and TAG columns: a digest reference shows its digest as the tag, like podman."""
    if "@" in ref:
        repo, _, digest = ref.partition("@")
        return repo, digest
    repo, _, tag = ref.rpartition(":")
    return repo, tag


def tag(
    ctx: typer.Context,
    source: str = typer.Argument(..., metavar="IMAGE", help="Existing image (NAME[:TAG] or ID)."),
    target: str = typer.Argument(..., metavar="NAME[:TAG]", help="New NAME[:TAG] for it."),
) -> None:
    """Give an image another name."""
    state_of(ctx).client().images.tag(source, target)


def rmi(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(..., metavar="IMAGE", help="Images to remove (NAME[:TAG] or ID)."),
    force: bool = typer.Option(False, "-f", "--force", help="Remove even if containers were made from it."),
) -> None:
    """Remove images (a name removes that tag; the image goes with its last tag)."""
    client = state_of(ctx).client()

    def remove(text: str) -> None:
        untagged, deleted = client.images.remove(text, force=force)
        for r in untagged:
            typer.echo(f"Untagged: {r}")
        if deleted:
            typer.echo(f"Deleted: {text}")

    for_each(refs, remove, echo=False)


def image_inspect(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(
        ..., metavar="IMAGE", help="Images to inspect (NAME[:TAG] or ID prefix)."
    ),
    json_out: bool = typer.Option(True, "--json/--no-json", help="JSON output (the default)."),
    format_: str = typer.Option(
        None,
        "-f",
        "--format",
        metavar="TEMPLATE",
        help="Go template per image, e.g. '{{.Id}}', '{{.Config.Labels}}', '{{index .Config.Labels \"k\"}}', "
        "'{{json .Config}}'.",
    ),
) -> None:
    """Show images' records as JSON (docker's Id, RepoTags, Created, Size and Config too)."""
    state = state_of(ctx)
    state.json = format_ is None
    client = state.client()
    if format_ is not None:
        from ..gotemplate import parse

        parse(format_)  # a bad template fails before anything is looked up
    records = [client.images.get(i).to_json() for i in refs]
    if format_ is not None:
        print_formatted(format_, [image_view(r) for r in records])
        return
    print_json(records)


def image_prune(
    ctx: typer.Context,
    all_: bool = typer.Option(
        False, "-a", "--all", help="Remove every image no container was made from, named or not."
    ),
    force: bool = typer.Option(False, "-f", "--force", help="Do not ask for confirmation."),
    filter_: list[str] = typer.Option(
        [],
        "--filter",
        metavar="KEY=VALUE",
        help="Only images that match (repeatable, ANDed): until=TIME (created before it: 24h "
        "ago, 2026-01-02T10:00:00Z, a Unix time), label=KEY[=VALUE], label!=KEY[=VALUE].",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print what was removed as JSON."),
) -> None:
    """Remove dangling images, and layers no image uses.

    A dangling image has no name: it was imported without one, or its name moved to another
    image (an import, pull or tag under the same name); 'images' shows it as <none>. Images a
    container was made from stay. Layers are shared between images; those no image uses any more
    (left by removed images or failed pulls) go too. Containers are independent snapshots and
    never lose anything.
    """
    state = state_of(ctx)
    state.json = json_out
    filters = None
    if filter_:
        from ..imagefilters import PRUNE_KEYS, parse_image_filters

        filters = parse_image_filters(filter_, PRUNE_KEYS)  # refused before the question
    if not force:
        what = "all images without at least one container" if all_ else "all dangling images"
        confirm_or_refuse(
            f"WARNING! This will remove {what} and all layers no image uses. "
            "Are you sure you want to continue?",
            "refusing to prune without confirmation",
            hint="rerun with --force",
        )
    result = state.client().images.prune(all_images=all_, filters=filters)
    if json_out:
        print_json(dataclasses.asdict(result))
        return
    echo_pruned(result)
    typer.echo(f"Total reclaimed space: {human_size(result.reclaimed)}")


def echo_pruned(result: PruneResult) -> None:
    """docker's "Deleted Images:" list, shared by `image prune` and `system prune`."""
    if result.images or result.layers:
        typer.echo("Deleted Images:")
        for ref in result.untagged:
            typer.echo(f"untagged: {ref}")
        for deleted in (*result.images, *result.layers):
            typer.echo(f"deleted: {deleted}")
        typer.echo("")
