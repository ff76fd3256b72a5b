"""--volumes-from: parsing and docker's precedence of mounts by destination (volumesfrom.py)."""

from __future__ import annotations

import pytest

from nspawnctl.errors import InvalidArgument
from nspawnctl.spec import Volume
from nspawnctl.volumesfrom import VolumesFrom, inherit


def test_parse_modes() -> None:
    assert VolumesFrom.parse("data") == VolumesFrom("data", False, "")
    assert VolumesFrom.parse("data:ro") == VolumesFrom("data", True, "ro")
    assert VolumesFrom.parse("data:rw") == VolumesFrom("data", False, "rw")
    assert str(VolumesFrom.parse("data:ro")) == "data:ro" and str(VolumesFrom.parse("data")) == "data"


@pytest.mark.parametrize("text", ["", ":ro", "data:z", "data:ro,z", "data:rshared", "data:nocopy"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        VolumesFrom.parse(text)
    assert e.value.hint and "ro" in e.value.hint


def test_inherit_keeps_read_only_and_drops_idmap() -> None:
    src = [Volume("/store/volumes/a", "/data", False, ("idmap",)), Volume("/srv", "/srv", True, ("norbind",))]
    got = inherit([(VolumesFrom("s"), src)], [])
    assert got == [Volume("/store/volumes/a", "/data", False, ()), Volume("/srv", "/srv", True, ("norbind",))]
    got = inherit([(VolumesFrom("s", True, "ro"), src)], [])
    assert [v.read_only for v in got] == [True, True]
    # :rw does not make a read-only source mount writable (moby: m.RW && mode's rw)
    assert inherit([(VolumesFrom("s", False, "rw"), src)], [])[1].read_only


def test_inherit_precedence() -> None:
    a = [Volume("/va", "/data"), Volume("/vx", "/x")]
    b = [Volume("/vb", "/data")]
    # a later source wins at the same destination; an explicit mount wins over all
    both = [(VolumesFrom("a"), a), (VolumesFrom("b"), b)]
    assert inherit(both, []) == [Volume("/vx", "/x"), Volume("/vb", "/data")]
    assert inherit(both, ["/data"]) == [Volume("/vx", "/x")]
