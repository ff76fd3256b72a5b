"""``.dockerignore``: which context paths COPY and ADD do not see (docker's rules: one pattern a
line, ``#`` comments, ``*``/``?``/``[...]`` within a path part, ``**`` across parts, a leading
``!`` takes a path back; the last matching line wins; a directory that matches hides what is
below it). Pure: the build asks :meth:`Ignore.excluded` for each context-relative path."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

MAX_IGNORE = 1 << 20  # bytes of .dockerignore read


@dataclass(frozen=True)
class Ignore:
    rules: tuple[tuple[re.Pattern[str], bool], ...] = field(default_factory=tuple)  # (pattern, excludes)

    @classmethod
    def parse(cls, text: str) -> Ignore:
        rules = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            keep = line.startswith("!")
            if keep:
                line = line[1:].strip()
            line = posixpath.normpath(line).lstrip("/")
            if line in ("", "."):
                continue
            rules.append((_regex(line), not keep))
        return cls(tuple(rules))

    def excluded(self, path: str) -> bool:
        """Whether context-relative ``path`` (``a/b/c``) is left out: by the last rule matching
        it or one of its parent directories."""
        if not self.rules:
            return False
        parts = path.strip("/").split("/")
        candidates = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
        out = False
        for pattern, excludes in self.rules:
            if any(pattern.fullmatch(c) for c in candidates):
                out = excludes
        return out


def _regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!") or body.startswith("^"):
                    body = "^" + body[1:]
                out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
                i = end + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    try:
        return re.compile("".join(out), re.S)
    except re.error:
        return re.compile(re.escape(pattern))
