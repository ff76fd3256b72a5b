"""Container labels (docker's ``-l/--label KEY=VALUE`` and ``--label-file``): parsed and checked
here, kept in the .nspawn file as ``[X-Nspawnctl] Label=KEY=VALUE`` lines (quoted as words)."""

from __future__ import annotations

from pathlib import Path

from .errors import InvalidArgument


def parse_labels(items: list[str], option: str = "--label") -> dict[str, str]:
    """``KEY=VALUE`` items into a dict, later ones winning; a bare ``KEY`` is an empty value (as
    docker's). A key may not be empty, and no value may hold a line break (the file cannot)."""
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key.strip():
            raise InvalidArgument(
                f"invalid label {item!r} ({option})", hint="use KEY=VALUE, e.g. -l tier=web"
            )
        if any(c in item for c in "\n\r\0"):
            raise InvalidArgument(
                f"label {key!r} ({option}) contains a line break or NUL, which a .nspawn file cannot hold"
            )
        out[key] = value
    return out


def read_label_file(path: str) -> list[str]:
    """docker's ``--label-file``: one ``KEY=VALUE`` per line; blank lines and ``#`` comments skipped."""
    try:
        text = Path(path).read_bytes().decode()
    except OSError as e:
        raise InvalidArgument(f"cannot read label file {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"label file {path} is not UTF-8 text (byte {e.start})") from None
    out = []
    for line in text.split("\n"):
        line = line.removesuffix("\r").strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def labels_from_words(words: list[str]) -> dict[str, str]:
    """The ``Label=`` words of a .nspawn file back into a dict."""
    return parse_labels(words, "Label=")


def labels_to_words(labels: dict[str, str]) -> list[str]:
    """One ``Label=`` value per label, quoted so that systemd's word splitting gives it back."""
    from .nspawnfile import quote_words

    return [quote_words([f"{k}={v}"]) for k, v in labels.items()]
