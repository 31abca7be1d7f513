"""SMS parts as Twilio bills them: GSM-7 160 / 153 septets (extension characters count two), UCS-2 70 / 67
UTF-16 units as soon as one character is outside GSM-7."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.adapters.twilio_sms import GSM7_BASIC, GSM7_EXTENDED, sms_segments

GSM_TEXT = st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENDED), max_size=800)


def test_the_boundaries() -> None:
    assert sms_segments("") == ("GSM-7", 0)
    assert sms_segments("a" * 160) == ("GSM-7", 1)
    assert sms_segments("a" * 161) == ("GSM-7", 2)
    assert sms_segments("a" * 306) == ("GSM-7", 2)
    assert sms_segments("a" * 307) == ("GSM-7", 3)
    assert sms_segments("€" * 80) == ("GSM-7", 1)  # 160 septets
    assert sms_segments("€" * 81) == ("GSM-7", 2)
    assert sms_segments("é" * 160) == ("GSM-7", 1)  # é is in the basic set
    assert sms_segments("ê" * 70) == ("UCS-2", 1)  # ê is not
    assert sms_segments("ê" * 71) == ("UCS-2", 2)
    assert sms_segments("😀" * 35) == ("UCS-2", 1)  # two UTF-16 units each
    assert sms_segments("😀" * 36) == ("UCS-2", 2)


@given(GSM_TEXT)
def test_gsm_text_stays_gsm_and_parts_cover_the_septets(text: str) -> None:
    encoding, parts = sms_segments(text)
    septets = sum(2 if c in GSM7_EXTENDED else 1 for c in text)
    assert encoding == "GSM-7"
    assert parts == (0 if not septets else 1 if septets <= 160 else -(-septets // 153))


@given(GSM_TEXT, st.characters(blacklist_characters=sorted(GSM7_BASIC | GSM7_EXTENDED)))
def test_one_foreign_character_switches_to_ucs2(text: str, foreign: str) -> None:
    encoding, parts = sms_segments(text + foreign)
    units = len((text + foreign).encode("utf-16-le", "surrogatepass")) // 2
    assert encoding == "UCS-2"
    assert parts == (1 if units <= 70 else -(-units // 67))


def test_a_lone_surrogate_from_json_is_counted_not_raised() -> None:
    assert sms_segments("\ud800") == ("UCS-2", 1)
