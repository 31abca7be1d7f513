"""Opt-out keywords: the whole message is the keyword, in any case, with or without accents, padded
with spaces or punctuation; a sentence that merely contains one is an ordinary message."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.services.opt_out import OPT_IN, OPT_OUT, keyword_choice

PADDING = st.text(alphabet=" \t\n.!?,", max_size=4)


def mixed_case(word: str, flips: list[bool]) -> str:
    return "".join(
        c.lower() if flip else c for c, flip in zip(word, flips + [False] * len(word), strict=False)
    )


@given(st.sampled_from(sorted(OPT_OUT)), st.lists(st.booleans(), max_size=12), PADDING, PADDING)
def test_every_opt_out_keyword_is_recognised_however_written(
    word: str, flips: list[bool], before: str, after: str
) -> None:
    assert keyword_choice(before + mixed_case(word, flips) + after) == ("opt_out", word)


@given(st.sampled_from(sorted(OPT_IN)), st.lists(st.booleans(), max_size=12), PADDING)
def test_every_opt_in_keyword_is_recognised(word: str, flips: list[bool], padding: str) -> None:
    assert keyword_choice(mixed_case(word, flips) + padding) == ("opt_in", word)


def test_accents_do_not_matter() -> None:
    assert keyword_choice("Arrêt") == ("opt_out", "ARRET")
    assert keyword_choice("  ARRÊT ! ") == ("opt_out", "ARRET")
    assert keyword_choice("arret") == ("opt_out", "ARRET")


@given(st.text(max_size=60))
def test_only_a_keyword_alone_is_a_keyword(text: str) -> None:
    choice = keyword_choice(text)
    if choice is not None:
        assert choice[1] in OPT_OUT | OPT_IN
        assert len(text) <= 40


def test_sentences_and_near_misses_are_messages() -> None:
    for text in ("please stop calling me", "stop it", "STOPP", "unstoppable", "start over", "", "S T O P"):
        assert keyword_choice(text) is None, text
