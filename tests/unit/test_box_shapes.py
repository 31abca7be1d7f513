"""The box is liberal in what CXone may send: any extra field, either recipient list, text or fallback."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from app.schemas.box import OutboundRequest, RecipientsValidationRequest

JSON_LEAF = st.none() | st.booleans() | st.integers() | st.text(max_size=10)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)
EXTRA_KEYS = st.text(min_size=1, max_size=12).filter(
    lambda k: (
        k
        not in {
            "messageContent",
            "attachments",
            "endUserRecipients",
            "recipients",
            "thread",
            "brand",
            "replyToMessage",
        }
    )
)


@given(
    text=st.text(max_size=200),
    extras=st.dictionaries(EXTRA_KEYS, JSON_VALUE, max_size=4),
    use_recipients=st.booleans(),
)
def test_unknown_fields_never_stop_a_reply(text: str, extras: dict[str, Any], use_recipients: bool) -> None:
    key = "recipients" if use_recipients else "endUserRecipients"
    body = {
        **extras,
        "messageContent": {"type": "TEXT", "payload": {"text": text}},
        key: [{"idOnExternalPlatform": "u1"}],
    }
    parsed = OutboundRequest.model_validate_json(json.dumps(body))
    assert parsed.text == text
    assert [r.idOnExternalPlatform for r in parsed.all_recipients] == ["u1"]


@given(fallback=st.text(min_size=1, max_size=50))
def test_fallback_text_is_used_when_there_is_no_text_payload(fallback: str) -> None:
    parsed = OutboundRequest.model_validate(
        {"messageContent": {"type": "ADAPTIVE_CARD", "payload": {}, "fallbackText": fallback}}
    )
    assert parsed.text == fallback


def test_no_content_means_no_text() -> None:
    assert OutboundRequest.model_validate({}).text == ""


@given(ids=st.lists(st.text(max_size=30), min_size=1, max_size=5))
def test_recipient_validation_takes_either_list_name(ids: list[str]) -> None:
    recipients = [{"idOnExternalPlatform": i} for i in ids]
    for key in ("endUserRecipients", "recipients"):
        parsed = RecipientsValidationRequest.model_validate({key: recipients})
        assert [r.idOnExternalPlatform for r in parsed.all_recipients] == ids
