"""Strings with whitespace at an end, or of whitespace only, drawn more often than
hypothesis would draw them.

A step that splits or joins text (``brand, _, model = name.partition(" ")``, ``" ".join``,
``.split()``, ``.strip()``) loses a space at an end of a string, or a string of spaces:
``" X"`` comes back ``"X"``. Hypothesis draws such strings seldom, so at a hundred
examples a check of such a step caught its bug in 14 of 40 seeded runs. About one string in
:data:`~statemigrate.testing._emphasis.SPECIAL` is one of them now: whitespace before
the text, after it, around it, or alone, a space the likeliest. They shrink to
hypothesis' own draw. Keys of ``str``-keyed dicts are left out: steps seldom split
them, and a roll more per key made a failing dict shrink to one entry less often.
"""

from __future__ import annotations

from hypothesis import strategies as st

from statemigrate.testing._emphasis import SPECIAL
from statemigrate.testing._odds import rarely

__all__ = ["with_spaced"]

# A space first, so that it is what a spaced string shrinks to, and the likeliest.
_WHITESPACE = st.sampled_from([" ", " ", " ", "\t", "\n", "\u00a0", "\u3000"])
_PAD = 3  # at most this many whitespace characters at an end
_CORE = 8  # at most this many characters of text between them (or min_length's)


def with_spaced(
    text: st.SearchStrategy[str], low: int, high: int | None
) -> st.SearchStrategy[str]:
    """``text``, and about once in ``SPECIAL`` draws a string with whitespace at an end
    or of whitespace only, of a length from ``low`` to ``high``; shrinks to ``text``."""
    if high is not None and high < 1:
        return text
    pad = st.text(_WHITESPACE, min_size=1, max_size=_PAD)
    core = st.text(min_size=max(low - 1, 0), max_size=max(low, _CORE))
    blank = st.text(_WHITESPACE, min_size=max(low, 1), max_size=max(low, 1) + _PAD)
    spaced = st.one_of(
        st.tuples(pad, core).map("".join),  # " X": a leading space
        st.tuples(core, pad).map("".join),  # "X ": a trailing one
        blank,  # "  ": whitespace only
        st.tuples(pad, core, pad).map("".join),  # " X ": both
    )
    if high is not None:
        spaced = spaced.filter(lambda value: len(value) <= high)
    return rarely(text, spaced, every=SPECIAL)
