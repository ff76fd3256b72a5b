"""The test session leaves nothing behind: no test host running, no loop device backed by a file
under .build, no mount under .build (tests/host/conftest.py runs this module last).

Runs on the machine itself, like the other tests in tests/host.
"""

from __future__ import annotations

import testhost


def test_nothing_of_the_harness_is_left() -> None:
    assert testhost.leftovers() == []
