"""SHA256SUMS lookup by systemd-importd's rules: digest at the start of a line, exact file name."""

from __future__ import annotations

import hashlib

import pytest

from nspawnctl.errors import InvalidArgument
from nspawnctl.verify.checksums import find_checksum

A = hashlib.sha256(b"a").hexdigest()
B = hashlib.sha256(b"b").hexdigest()


@pytest.mark.parametrize("sep", [" *", "  ", " "], ids=["binary", "text", "single-space"])
def test_the_three_line_styles(sep: str) -> None:
    sums = f"{B}{sep}other.tar.xz\n{A}{sep}app.tar.xz\n".encode()
    assert find_checksum(sums, "app.tar.xz") == A
    assert find_checksum(sums, "other.tar.xz") == B


def test_result_is_lowercase() -> None:
    assert find_checksum(f"{A.upper()}  app.tar.xz\n".encode(), "app.tar.xz") == A


def test_file_name_must_match_exactly() -> None:
    names = ["app.tar.xz.sig", "xapp.tar.xz", "app.tar", "dir/app.tar.xz", "app.tar.xz ", "APP.tar.xz"]
    sums = "".join(f"{A}  {n}\n" for n in names).encode()
    assert find_checksum(sums, "app.tar.xz") is None
    assert find_checksum(sums, "app.tar") == A


def test_digest_must_start_the_line() -> None:
    sums = f"x{A}  app.tar.xz\n {A}  app.tar.xz\n# {A}  app.tar.xz\nfoo {A}  app.tar.xz\n".encode()
    assert find_checksum(sums, "app.tar.xz") is None


def test_only_sha256_digests() -> None:
    sha512 = hashlib.sha512(b"a").hexdigest()
    sums = f"{A[:-1]}  app.tar.xz\n{A}0  app.tar.xz\n{sha512}  app.tar.xz\n".encode()
    assert find_checksum(sums, "app.tar.xz") is None
    assert find_checksum(f"{'g' * 64}  app.tar.xz\n".encode(), "app.tar.xz") is None


def test_first_match_wins_and_line_ends() -> None:
    assert find_checksum(f"{A}  f\n{B}  f\n".encode(), "f") == A
    assert find_checksum(f"{B} *f\r\n{A}  g\r\n".encode(), "f") == B
    assert find_checksum(f"{B}  other\n{A}  f".encode(), "f") == A  # no newline at the end
    assert find_checksum(b"", "f") is None


def test_gnu_escaped_lines_do_not_match() -> None:
    assert find_checksum(f"\\{A}  f\n".encode(), "f") is None


def test_non_ascii_file_names() -> None:
    assert find_checksum(f"{A}  café.tar\n".encode(), "café.tar") == A


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/abs", "a\nb"])
def test_only_bare_file_names(name: str) -> None:
    with pytest.raises(InvalidArgument, match="not a file name"):
        find_checksum(f"{A}  {name}\n".encode(), name)
