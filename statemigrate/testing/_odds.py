"""The odds the strategies draw with: a rare value about once in so many draws, shrinking
to the common one, and the length of a long collection, the shorter ones likelier.

The strategies draw most values as hypothesis would, and now and then one it would draw
seldom or never (see :mod:`statemigrate.testing._emphasis` and the module documentation
of :mod:`statemigrate.testing._strategies`); these are the rolls that choose.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from statemigrate.testing._emphasis import SPECIAL

__all__ = ["LONG", "of_length", "one_in_two", "rarely", "skewed", "with_specials"]

_RARELY = 16  # a value the state form draws "now and then" comes about once in this many
LONG = 8  # about one collection, string or bytes value in this many is drawn long


@st.composite
def rarely(
    draw: st.DrawFn,
    common: st.SearchStrategy[Any],
    rare: st.SearchStrategy[Any],
    *,
    every: int = _RARELY,
) -> Any:
    """``common``, and about once in ``every`` draws ``rare``; shrinks to ``common``.

    A composite rather than a ``flatmap``, rolling with ``sampled_from`` rather than
    ``integers`` (a lazy strategy, one more level on every draw): this runs for most
    values of every example, so each level it saves is a saving per value."""
    if draw(_roll(every)) == every - 1:
        return draw(rare)
    return draw(common)


@st.composite
def of_length(
    draw: st.DrawFn,
    lengths: st.SearchStrategy[int],
    by_length: Mapping[int, st.SearchStrategy[Any]],
) -> Any:
    """A value of ``by_length[n]``, for ``n`` drawn from ``lengths``."""
    return draw(by_length[draw(lengths)])


def with_specials(common: st.SearchStrategy[Any], specials: list[Any]) -> st.SearchStrategy[Any]:
    """``common``, and about once in :data:`~statemigrate.testing._emphasis.SPECIAL`
    draws one of ``specials``; shrinks to ``common``."""
    return rarely(common, st.sampled_from(specials), every=SPECIAL) if specials else common


def skewed(low: int, high: int) -> st.SearchStrategy[int]:
    """Sizes from ``low`` to ``high``, the smaller ones likelier (the least of two
    uniform draws: a third of the way up on average), as cheap examples are."""
    return st.tuples(st.integers(low, high), st.integers(low, high)).map(min)


@functools.cache
def _roll(every: int) -> st.SearchStrategy[int]:
    """0 to ``every - 1`` at even odds, shrinking to 0; one strategy per count."""
    return st.sampled_from(range(every))


def one_in_two(
    common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """``common`` or ``rare`` at even odds; shrinks to ``common``."""
    return rarely(common, rare, every=2)
