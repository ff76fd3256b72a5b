"""Dockerfile instructions of docker commit/import ``--change`` (nspawnctl.imagechanges), the
commit body's merge (api/handlers/imagetransfer.py) and docker-archive member lookup."""

from __future__ import annotations

import pytest

from nspawnctl.api.handlers.imagetransfer import _merge_config
from nspawnctl.api.http import ApiError
from nspawnctl.errors import InvalidArgument
from nspawnctl.imagechanges import parse
from nspawnctl.spec import RunDefaults

BASE = RunDefaults(command=["sh"], env=["A=1", "B=2"], ports=["80/tcp"], labels={"x": "1"})


def test_each_supported_instruction() -> None:
    d = parse(
        [
            'CMD ["bash", "-c", "x"]',
            "entrypoint /init --flag",
            "ENV B=3 C=4",
            "ENV D some words",
            'LABEL y="two words" x=9',
            "WORKDIR /srv",
            "USER app:grp",
            "EXPOSE 8000 53/udp",
            'VOLUME ["/data"]',
            "STOPSIGNAL SIGQUIT",
        ]
    ).apply(BASE)
    assert d.command == ["bash", "-c", "x"]
    assert d.entrypoint == ["/bin/sh", "-c", "/init --flag"]
    assert d.env == ["A=1", "B=3", "C=4", "D=some words"]
    assert d.labels == {"x": "9", "y": "two words"}
    assert (d.workdir, d.user) == ("/srv", "app")
    assert d.ports == ["80/tcp", "8000/tcp", "53/udp"]
    assert d.volumes == ["/data"]
    assert d.stop_signal == "SIGQUIT"


def test_root_user_is_the_default() -> None:
    assert parse(["USER root"]).apply(RunDefaults(user="app")).user is None


@pytest.mark.parametrize(
    "line, named",
    [
        ("RUN rm -rf /", "RUN"),
        ("COPY a b", "COPY"),
        ("WORKDIR relative", "WORKDIR"),
        ("EXPOSE 99999", "EXPOSE"),
        ("EXPOSE 80/xyz", "EXPOSE"),
        ("ENV =x", "ENV"),
        ("USER a b", "USER"),
        ("VOLUME data", "VOLUME"),
        ("LABEL 'unclosed", "LABEL"),
        ("CMD", "CMD"),
    ],
)
def test_refused_lines_name_the_instruction(line: str, named: str) -> None:
    with pytest.raises(InvalidArgument, match=named):
        parse([line])


def test_commit_body_merges_over_the_container() -> None:
    apply = _merge_config({"Env": ["B=9"], "Labels": {"z": "1"}, "ExposedPorts": {"81/tcp": {}}, "Cmd": None})
    d = apply(BASE)
    assert d.command == ["sh"]  # not set: the container's
    assert d.env == ["A=1", "B=9"]
    assert d.labels == {"x": "1", "z": "1"}
    assert d.ports == ["80/tcp", "81/tcp"]
    assert _merge_config(None)(BASE) == BASE


@pytest.mark.parametrize(
    "body, named",
    [
        ({"Hostname": "h"}, "Hostname"),
        ({"Env": "A=1=2", "Cmd": 5}, "Cmd"),
        ({"Labels": {"a": 1}}, "Labels"),
        ({"WorkingDir": "rel"}, "WorkingDir"),
        ([], "body"),
    ],
)
def test_commit_body_refusals_name_the_field(body: object, named: str) -> None:
    with pytest.raises(ApiError, match=named) as e:
        _merge_config(body)
    assert e.value.status == 400
