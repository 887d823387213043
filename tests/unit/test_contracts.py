"""The wire contract: versioned payloads, tolerant of unknown fields, strict on known ones."""

import pytest
from thumbcache.contracts import PayloadError, RenderRequest, ScanRequest, render_message


def test_payload_round_trips_with_a_version():
    request = RenderRequest("job", "col", "img", "book.cbz#p/1.jpg")
    data = request.to_dict()
    assert data["v"] == 1 and data["force"] is False
    assert RenderRequest.from_dict(data) == request


def test_unknown_fields_are_ignored_for_rolling_deploys():
    data = {**ScanRequest("j", "c").to_dict(), "priority": "high", "added_in_v2": [1]}
    assert ScanRequest.from_dict(data) == ScanRequest("j", "c")


@pytest.mark.parametrize(
    "data",
    [
        {"v": 1, "job_id": "j"},
        {"v": 1, "job_id": 5, "collection_id": "c"},
        {"v": 99, "job_id": "j", "collection_id": "c"},
        ["not", "an", "object"],
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(data):
    with pytest.raises(PayloadError):
        ScanRequest.from_dict(data)


def test_messages_carry_ids_and_references_never_bytes():
    message = render_message("cache", RenderRequest("j", "c", "i", "a.jpg"))
    assert message.queue_name == "cache" and message.actor_name == "generate_cache"
    (payload,) = message.args
    assert all(isinstance(v, (str, bool, int)) for v in payload.values())
