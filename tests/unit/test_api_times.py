"""The Docker API's since/until values (events, logs): one parser, the forms dockerd takes."""

from __future__ import annotations

import pytest

pytest.importorskip("h11")

from nspawnctl.api.http import ApiError
from nspawnctl.api.translate import unix_time


def test_unix_time_takes_what_docker_clients_send() -> None:
    assert unix_time("since", "1700000000") == 1_700_000_000.0  # docker-py: int seconds
    assert unix_time("since", "1700000000.000000000") == 1_700_000_000.0  # docker CLI
    assert unix_time("until", "1700000000.123456789") == pytest.approx(1_700_000_000.123456789)
    assert unix_time("until", "1.5") == 1.5
    assert unix_time("since", None) is None and unix_time("since", "") is None


def test_unix_time_zero_is_no_limit_only_where_asked() -> None:
    assert unix_time("until", "0", zero_is_unset=True) is None  # logs
    assert unix_time("since", "0") == 0.0  # events: the epoch


@pytest.mark.parametrize(
    "bad",
    # durations and RFC 3339 are the client's to convert (dockerd's ParseTimestamps refuses them)
    ["10m", "2026-12-07T05:00:00Z", "yesterday", "-1", "nan", "inf"],
)
def test_unix_time_refuses_other_forms_with_a_400(bad: str) -> None:
    with pytest.raises(ApiError, match=r"until: .* is not a UNIX time") as caught:
        unix_time("until", bad)
    assert caught.value.status == 400
