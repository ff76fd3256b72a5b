r"""Container labels (docker's ``-l/--label KEY=VALUE`` and ``--label-file``): parsed and checked
here, kept in the .nspawn file as ``[X-Nspawnctl] Label=KEY=VALUE`` lines (quoted as words).

A label may hold any text (an image's multi-line description, say): in the Label= word a backslash,
a control character and a ``=`` in the key are written as ``\xHH`` (``\n``, ``\r`` for line
breaks), which only nspawnctl reads (nspawn ignores X- sections), so ``generate`` gives back the
same labels. Any other backslash sequence is read as it stands (files written before this)."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import InvalidArgument


def parse_labels(items: list[str], option: str = "--label") -> dict[str, str]:
    """``KEY=VALUE`` items into a dict, later ones winning; a bare ``KEY`` is an empty value (as
    docker's). A key may not be empty."""
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key.strip():
            raise InvalidArgument(
                f"invalid label {item!r} ({option})", hint="use KEY=VALUE, e.g. -l tier=web"
            )
        out[key] = value
    return out


def check_labels(labels: dict[str, str], option: str = "--label") -> None:
    """The rules of ``parse_labels`` for labels given as a mapping (the API's ``Labels``, a
    library caller's): a blank key is refused, it could not be written as ``Label=KEY=VALUE``."""
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key.strip():
            raise InvalidArgument(
                f"invalid label {key!r}={value!r} ({option})", hint="a label key may not be blank"
            )


def merge_labels(image: dict[str, str], given: dict[str, str]) -> dict[str, str]:
    """A new container's labels: the image's (blank keys, which a stranger's image may carry,
    are dropped) under the given ones (checked, a blank key is an error)."""
    check_labels(given)
    return {**{k: v for k, v in image.items() if k.strip()}, **given}


def labels_match(wanted: list[str], labels: dict[str, str]) -> bool:
    """docker's ``label`` filter: every value (KEY or KEY=VALUE) must hold."""
    for text in wanted:
        key, eq, value = text.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


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


_SPECIAL = re.compile(r"[\\\x00-\x08\x0a-\x1f\x7f]")
_ESCAPED = re.compile(r"\\(n|r|x[0-9a-f]{2})")


def _escape(text: str, pattern: re.Pattern[str] = _SPECIAL) -> str:
    def one(m: re.Match[str]) -> str:
        c = m.group()
        return {"\n": "\\n", "\r": "\\r"}.get(c, f"\\x{ord(c):02x}")

    return pattern.sub(one, text)


def _unescape(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        e = m.group(1)
        return {"n": "\n", "r": "\r"}.get(e) or chr(int(e[1:], 16))

    return _ESCAPED.sub(one, text)


_SPECIAL_KEY = re.compile(_SPECIAL.pattern[:-1] + "=]")


def labels_from_words(words: list[str]) -> dict[str, str]:
    """The ``Label=`` words of a .nspawn file back into a dict. A word with a blank key (a
    file written before keys were checked, or by hand) is skipped, so that the definition
    still loads: one bad label must not make a container unlistable and unremovable."""
    out: dict[str, str] = {}
    for word in words:
        key, _, value = word.partition("=")
        if key.strip():
            out[_unescape(key)] = _unescape(value)
    return out


def labels_to_words(labels: dict[str, str]) -> list[str]:
    """One ``Label=`` value per label, escaped (see above) and quoted so that systemd's word
    splitting gives it back."""
    from .nspawnfile import quote_words

    return [quote_words([f"{_escape(k, _SPECIAL_KEY)}={_escape(v)}"]) for k, v in labels.items()]
