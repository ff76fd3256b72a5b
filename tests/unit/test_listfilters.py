"""Filters of ``ps`` (filters.py: label values ANDed, as docker's) and of the other lists and
prunes (listfilters.py: volume ls, network ls, container/system prune), with their refusals."""

from __future__ import annotations

import pytest

from nspawnctl.errors import InvalidArgument
from nspawnctl.filters import Candidate, parse_filters


def _ctr(**labels: str) -> Candidate:
    return Candidate("web", "1" * 64, labels, "running", "img", "sha256:" + "a" * 64)


def test_ps_label_filters_are_anded_as_dockers() -> None:
    """docker: ``--filter label=a --filter label=b`` lists what has both (MatchKVList)."""
    both = parse_filters(["label=a", "label=b"])
    assert both.matches(_ctr(a="1", b="2"))
    assert not both.matches(_ctr(a="1"))
    assert not both.matches(_ctr(b="2"))
    assert not parse_filters(["label=a=1", "label=a=2"]).matches(_ctr(a="1"))
    # other keys stay ORed within the key
    assert parse_filters(["status=exited", "status=running"]).matches(_ctr())
