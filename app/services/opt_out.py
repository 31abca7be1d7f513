"""Opt-out and opt-in keywords, recognised the way carriers do: the whole message is the keyword, in any
case, with or without accents, surrounded by spaces or punctuation ("Stop", " arrêt! ")."""

from __future__ import annotations

import unicodedata
from typing import Literal

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "ARRET"})
OPT_IN = frozenset({"START", "UNSTOP"})
_EDGES = " \t\r\n.!?,;:'\"()[]«»¡¿…-"

Choice = Literal["opt_out", "opt_in"]


def normalise(text: str) -> str:
    """Upper case, accents dropped, spaces and punctuation trimmed from both ends."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return bare.strip(_EDGES).upper()


def keyword_choice(text: str) -> tuple[Choice, str] | None:
    """("opt_out" | "opt_in", the keyword) when the whole message is one of the keywords."""
    if len(text) > 40:  # a sentence that happens to contain "stop" is a message, not a keyword
        return None
    word = normalise(text)
    if word in OPT_OUT:
        return "opt_out", word
    if word in OPT_IN:
        return "opt_in", word
    return None
