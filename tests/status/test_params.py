"""Query parameters are typed and checked before any query is built."""

from __future__ import annotations

import pytest
from thumbcache_status import params
from thumbcache_status.errors import BadRequestError, NotFoundError


@pytest.mark.parametrize("raw", ["0", "-1", "1001", "99999999999999", "1e3", "abc", "", " 5", "٣"])
def test_bad_limits_are_rejected(raw: str) -> None:
    with pytest.raises(BadRequestError):
        params.parse_limit(raw)


@pytest.mark.parametrize(("raw", "value"), [(None, 100), ("1", 1), ("1000", 1000), ("007", 7)])
def test_good_limits(raw: str | None, value: int) -> None:
    assert params.parse_limit(raw) == value


@pytest.mark.parametrize(
    "raw", ['{"$ne": null}', "running|done", "$where", "RUNNING", "", "running "]
)
def test_choices_accept_only_their_values(raw: str) -> None:
    with pytest.raises(BadRequestError):
        params.parse_choice(raw, "status", ("running", "stalled", "done"))


@pytest.mark.parametrize("raw", ['{"$gt": ""}', "0123456789abcdeF", "0123456789abcde", "x" * 5000])
def test_ids_must_match_their_pattern(raw: str) -> None:
    with pytest.raises(BadRequestError):
        params.parse_match(raw, "collection_id", params.COLLECTION_ID)
    with pytest.raises(NotFoundError):
        params.path_id(raw, params.COLLECTION_ID, "collection")


def test_unknown_and_repeated_parameters_are_rejected() -> None:
    with pytest.raises(BadRequestError, match="unknown"):
        params.check_known({"status[$ne]": "x"}, ("status",))
    with pytest.raises(BadRequestError, match="once"):
        params.single({"status": ["running", "done"]}, "status")


def test_cursors_are_checked_against_the_key_they_stand_for() -> None:
    page = params.parse_page({"limit": "5", "cursor": "20240501T120000-0123abcd"}, params.JOB_ID)
    assert page == params.Page(5, "20240501T120000-0123abcd")
    for bad in ("", "../../etc", '{"$gt":""}', "x" * 3000):
        with pytest.raises(BadRequestError):
            params.parse_page({"cursor": bad}, params.JOB_ID)
    assert params.parse_page({"cursor": "any source.jpg"}, None).after == "any source.jpg"
