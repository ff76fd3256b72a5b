"""Read and write systemd.nspawn(5) files without losing what we do not understand.

A file is kept as its lines; sections and keys are edited in place, so comments, blank lines,
unknown keys and unknown sections survive a rewrite. nspawnctl's own keys live in the
``[X-Nspawnctl]`` section, which systemd ignores (sections starting with ``X-`` are reserved
for extensions).

List values (``Parameters=``, ``Environment=``) are split by systemd with
``extract_first_word(EXTRACT_UNQUOTE|EXTRACT_RETAIN_ESCAPE)``: quotes group words and are
removed, a backslash protects the next character and is itself kept. :func:`quote_words` and
:func:`split_words` implement exactly that, so any argv survives the trip through the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import InvalidArgument

OWN_SECTION = "X-Nspawnctl"
_WHITESPACE = " \t\n\r"
MAX_LINE = (1 << 20) - 1  # systemd's LONG_LINE_MAX: a longer line fails the whole file


def _lines(text: str, filename: str) -> list[str]:
    """The lines as systemd's read_line() sees them: ended by LF (CRLF too). A lone CR or a NUL
    would end a line for systemd but not for a reader of the file, so neither is accepted (and
    Python's other line separators, \\v, \\f, U+2028, ..., are no line ends for systemd)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out = []
    for lineno, line in enumerate(lines, 1):
        line = line.removesuffix("\r")
        for c, what in (("\r", "a carriage return (CR)"), ("\0", "a NUL character")):
            if c in line:
                raise InvalidArgument(
                    f"{filename}:{lineno}: the line contains {what}, which systemd reads as the "
                    "end of a line",
                    hint="remove it; a value cannot hold line breaks",
                )
        if len(line.encode(errors="surrogateescape")) > MAX_LINE:
            raise InvalidArgument(
                f"{filename}:{lineno}: the line is longer than systemd's limit of {MAX_LINE} bytes"
            )
        out.append(line)
    return out


@dataclass
class _Line:
    """One physical line of a .nspawn file, kept as written so an edit changes only its own lines."""

    text: str
    section: str | None = None
    key: str | None = None
    value: str | None = None
    lineno: int | None = None  # where it was read (first line of a continued one); None: added by us
    header: bool = False  # a "[Section]" line


@dataclass(frozen=True)
class Assignment:
    """One ``KEY=VALUE`` line and where it stands, for messages like ``FILE:LINE: ...``."""

    section: str
    key: str
    value: str
    lineno: int | None


@dataclass
class NspawnFile:
    """An editable .nspawn file."""

    lines: list[_Line] = field(default_factory=list)
    filename: str | None = None  # what messages call it

    # -- parsing ---------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, filename: str = "<string>") -> NspawnFile:
        out = cls(filename=filename)
        section: str | None = None
        pending = ""
        start = 0

        def add(raw: str) -> None:
            nonlocal section
            stripped = raw.strip()
            if not stripped or stripped.startswith(("#", ";")):
                out.lines.append(_Line(raw, section, lineno=start))
            elif stripped.startswith("["):
                if not stripped.endswith("]") or len(stripped) < 3:
                    raise InvalidArgument(f"{filename}:{start}: invalid section header {stripped!r}")
                section = stripped[1:-1]
                out.lines.append(_Line(raw, section, lineno=start, header=True))
            elif "=" in stripped:
                if section is None:
                    raise InvalidArgument(f"{filename}:{start}: assignment outside of a section")
                key, _, value = stripped.partition("=")
                if not key.strip():
                    raise InvalidArgument(f"{filename}:{start}: assignment without a key: {stripped!r}")
                out.lines.append(_Line(raw, section, key.strip(), value.strip(), lineno=start))
            else:
                raise InvalidArgument(f"{filename}:{start}: expected KEY=VALUE, got {stripped!r}")

        for lineno, raw in enumerate(_lines(text, filename), 1):
            if pending:
                raw = pending + raw
                pending = ""
            else:
                start = lineno
            stripped = raw.strip()
            if _continues(stripped) and not stripped.startswith(("#", ";")):
                pending = raw[: raw.rstrip().rfind("\\")] + " "
                continue
            add(raw)
        if pending:  # systemd takes a continuation at the end of the file as it is
            if _continues(pending.rstrip()):
                # what is left ends in a backslash: written back, it would continue the next line
                raise InvalidArgument(f"{filename}:{start}: the last line ends in a backslash")
            add(pending.rstrip())
        return out

    @classmethod
    def load(cls, path: Path) -> NspawnFile:
        # bytes, not read_text(): its universal newlines would make a CR a line break unseen
        try:
            text = path.read_bytes().decode()
        except UnicodeDecodeError as e:
            raise InvalidArgument(f"{path}: not UTF-8 text (byte {e.start})") from None
        return cls.parse(text, str(path))

    def copy(self) -> NspawnFile:
        return NspawnFile([replace(ln) for ln in self.lines], self.filename)

    # -- queries ---------------------------------------------------------------------------
    def sections(self) -> list[str]:
        seen: list[str] = []
        for line in self.lines:
            if line.section is not None and line.section not in seen:
                seen.append(line.section)
        return seen

    def get_all(self, section: str, key: str) -> list[str]:
        """Every value of ``key``, honouring systemd's rule that an empty assignment resets a list."""
        values: list[str] = []
        for line in self._assignments(section, key):
            assert line.value is not None
            if line.value == "":
                values.clear()
            else:
                values.append(line.value)
        return values

    def get(self, section: str, key: str, default: str | None = None) -> str | None:
        values = [ln.value for ln in self._assignments(section, key)]
        return values[-1] if values else default

    def assignments(self, section: str | None = None, key: str | None = None) -> list[Assignment]:
        """Every assignment (of ``section``, of ``key``) in file order, with its line number."""
        return [
            Assignment(ln.section, ln.key, ln.value, ln.lineno)
            for ln in self.lines
            if ln.section is not None
            and ln.key is not None
            and ln.value is not None
            and section in (None, ln.section)
            and key in (None, ln.key)
        ]

    def where(self, section: str, key: str) -> str:
        """``FILE:LINE`` of the assignment of ``key`` that counts (the last), or ``FILE``."""
        lines = [ln.lineno for ln in self._assignments(section, key) if ln.lineno is not None]
        name = self.filename or "<string>"
        return f"{name}:{lines[-1]}" if lines else name

    def get_words(self, section: str, key: str) -> list[str]:
        words: list[str] = []
        for value in self.get_all(section, key):
            words.extend(split_words(value))
        return words

    # -- edits -----------------------------------------------------------------------------
    def set(self, section: str, key: str, value: str | None) -> None:
        """Set a single-valued key (None removes it), keeping its place in the file."""
        self.set_all(section, key, [] if value is None else [value])

    def set_all(self, section: str, key: str, values: Iterable[str]) -> None:
        """Replace every assignment of ``key`` by one line per value, at the first one's place."""
        values = list(values)
        for v in values:
            if any(c in v for c in "\n\r\0"):  # systemd ends a line at each of them
                raise InvalidArgument(f"{key}= value {v[:60]!r} contains a line break or NUL")
            try:
                size = len(f"{key}={v}".encode())
            except UnicodeEncodeError:  # bytes of a command line that are not UTF-8
                raise InvalidArgument(
                    f"{key}= value {v[:60]!r} is not valid UTF-8, which a .nspawn file must be"
                ) from None
            if size > MAX_LINE:
                raise InvalidArgument(
                    f"{key}= would be a line of {size} bytes; systemd reads at most {MAX_LINE}",
                    hint="pass big data in a file (-v) instead",
                )
            if _continues(v):  # systemd would join the next line to it
                raise InvalidArgument(
                    f"{key}= value {v[:60]!r} ends in a backslash, which a .nspawn file cannot hold",
                    hint="add a character after the backslash or drop it",
                )
        existing = list(self._assignments(section, key))
        new = [_Line(f"{key}={v}", section, key, v) for v in values]
        if existing:
            at = self._index(existing[0])
            # keep the line number when the value is unchanged, so later messages still point at it
            if len(existing) == len(new) == 1 and existing[0].value == new[0].value:
                return
            headers = frozenset(id(self._header_of(ln)) for ln in existing)
            gone = {id(ln) for ln in existing}
            self.lines = [ln for ln in self.lines if id(ln) not in gone]
            self.lines[at:at] = new
            if not new:
                self._drop_emptied(headers)
            return
        if not new:
            return
        end = self._section_end(section)
        if end is None:
            if self.lines and self.lines[-1].text.strip():
                self.lines.append(_Line(""))
            self.lines.append(_Line(f"[{section}]", section, header=True))
            end = len(self.lines)
        self.lines[end:end] = new

    def set_words(self, section: str, key: str, words: list[str] | None) -> None:
        self.set(section, key, None if words is None else quote_words(words))

    def render(self) -> str:
        return "".join(line.text + "\n" for line in self.lines)

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename), so a crash never leaves half a definition."""
        path.parent.mkdir(parents=True, exist_ok=True)
        from .tempfiles import write_atomic  # not tempfile: it loads random too, on every create's path

        # 0600: its Environment= may hold secrets; only root (nspawn) reads it
        write_atomic(path, self.render(), 0o600, sync=False)

    # -- helpers ---------------------------------------------------------------------------
    def _assignments(self, section: str, key: str) -> Iterator[_Line]:
        return (ln for ln in self.lines if ln.section == section and ln.key == key)

    def _index(self, line: _Line) -> int:
        return next(i for i, ln in enumerate(self.lines) if ln is line)

    def _header_of(self, line: _Line) -> _Line | None:
        header = None
        for ln in self.lines:
            if ln.header:
                header = ln
            if ln is line:
                return header
        return None

    def _drop_emptied(self, header_ids: frozenset[int]) -> None:
        """Remove the headers of sections whose last key we just removed, with the blank lines
        left in them: a bare ``[Network]`` would read as if it meant something. A section with
        a comment or any other line left stays."""
        for i, ln in enumerate(self.lines):
            if not (ln.header and id(ln) in header_ids):
                continue
            j = i + 1
            while j < len(self.lines) and not self.lines[j].header:
                if self.lines[j].text.strip():
                    break
                j += 1
            else:
                del self.lines[i:j]
                while self.lines and not self.lines[-1].text.strip():
                    self.lines.pop()  # no blank lines left dangling at the end
                self._drop_emptied(header_ids - {id(ln)})
                return

    def _section_end(self, section: str) -> int | None:
        """Index after the last non-blank line of the (last) section ``section``."""
        end: int | None = None
        for i, line in enumerate(self.lines):
            if line.section == section and (line.key is not None or line.text.strip()):
                end = i + 1
        return end


def _continues(line: str) -> bool:
    """Whether ``line`` goes on on the next one: systemd's parser continues a line that ends in
    an unescaped backslash, so ``\\\\`` (an escaped backslash) at the end does not continue."""
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


_TRUE = ("1", "yes", "y", "true", "t", "on")
_FALSE = ("0", "no", "n", "false", "f", "off")


def parse_boolean(value: str) -> bool:
    """A boolean as systemd reads one (``parse_boolean()``: yes/no, true/false, on/off, 1/0, y/n,
    t/f, any case); anything else raises InvalidArgument."""
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise InvalidArgument(f"{value!r} is not a boolean (yes or no)")


def quote_words(words: Iterable[str]) -> str:
    """Quote ``words`` so systemd's list parser gives them back exactly."""
    return " ".join(_quote_word(w) for w in words)


def _quote_word(word: str) -> str:
    if "\n" in word or "\r" in word or "\0" in word:
        raise InvalidArgument(
            f"argument {word!r} contains a line break or NUL, which a .nspawn file cannot hold"
        )
    if word.endswith("\\"):
        raise InvalidArgument(
            f"argument {word!r} ends in a backslash, which a .nspawn file cannot hold",
            hint="add a character after the backslash or drop it",
        )
    if word and not any(c in word for c in _WHITESPACE + "'\"\\"):
        return word
    # Segments: a quote character goes inside the other kind of quotes; a backslash must share a
    # segment with the character after it (systemd keeps "\x" as is but a backslash would
    # otherwise escape the closing quote).
    out: list[str] = []
    i = 0
    while i < len(word):
        c = word[i]
        chunk = word[i : i + 2] if c == "\\" else c
        i += len(chunk)
        quote = '"' if "'" in chunk else "'"
        if out and out[-1][0] == quote:
            out[-1] = out[-1][:-1] + chunk + quote
        else:
            out.append(quote + chunk + quote)
    return "".join(out) or "''"


def split_words(value: str) -> list[str]:
    """Split like systemd's ``extract_first_word(EXTRACT_UNQUOTE|EXTRACT_RETAIN_ESCAPE)``."""
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    quote: str | None = None
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            if i + 1 >= len(value):
                raise InvalidArgument(f"value {value!r} ends in a lone backslash")
            cur.append(value[i : i + 2])
            in_word = True
            i += 2
            continue
        if quote:
            if c == quote:
                quote = None
            else:
                cur.append(c)
        elif c in "'\"":
            quote = c
            in_word = True
        elif c in _WHITESPACE:
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
        else:
            cur.append(c)
            in_word = True
        i += 1
    if quote:
        raise InvalidArgument(f"value {value!r} has an unterminated quote")
    if in_word:
        words.append("".join(cur))
    return words
