"""Values drawn with no schema to shape them: any plain data, what a field typed ``Any``
holds in a live state, and the values past plain data that the state form draws now and
then (integers beyond 64 bits, strings holding a lone surrogate).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from statemigrate.testing._odds import one_in_two, rarely
from statemigrate.testing._zones import allowed_zones

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "SMALL_SIZE",
    "big_ints",
    "plain_data",
    "rich_values",
    "with_surrogate",
]

SMALL_SIZE = 4
"""Most generated collections hold at most this many items (or ``max_size``, if less):
the long ones come about once in :data:`~statemigrate.testing._odds.LONG` draws."""

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
_UINT_END = 2**64  # the first integer msgpack cannot hold
_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
# Under ``Any``, about one value in this many is of a type a snapshot refuses there
# (a datetime, a tuple, ...): enough to find a refusal, few enough that most states
# of a schema with several ``Any`` fields are still checked whole.
_UNUSUAL_ONE_IN = 16


def _plain_leaves() -> st.SearchStrategy[Any]:
    """The scalars of plain data: ``None``, bools, 64-bit ints, finite floats, str, bytes."""
    return (
        st.none()
        | st.booleans()
        | st.integers(INT_MIN, INT_MAX)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text()
        | st.binary()
    )


def plain_data(*, max_size: int = SMALL_SIZE) -> st.SearchStrategy[Any]:
    """Any plain data: ``None``, bools, 64-bit ints, finite floats, str, bytes, and
    lists and str-keyed dicts of them, with at most ``max_size`` items each."""
    return st.recursive(
        _plain_leaves(),
        lambda inner: (
            st.lists(inner, max_size=max_size)
            | st.dictionaries(st.text(), inner, max_size=max_size)
        ),
        max_leaves=4 * max_size,
    )


def rich_values(
    *, max_size: int = SMALL_SIZE, surrogates: bool = False
) -> st.SearchStrategy[Any]:
    """Values a field typed ``Any`` may hold in a live state: plain data mostly, and
    about one value in :data:`_UNUSUAL_ONE_IN` a datetime, date, time, timedelta,
    decimal, UUID, tuple, set or int-keyed dict, now and then an integer beyond 64
    bits, and with ``surrogates`` a string with a lone surrogate."""
    # The same branches either way, so both kinds of state draw alike otherwise.
    surrogate = one_in_two(st.none(), with_surrogate(0, None)) if surrogates else st.none()
    unusual_leaves = (
        st.datetimes(timezones=allowed_zones(None))
        | st.dates()
        | st.times(timezones=allowed_zones(None))
        | st.timedeltas()
        | st.decimals(allow_nan=False, allow_infinity=False)
        | st.uuids()
        | rarely(st.none(), big_ints(above=True, below=True))
        | surrogate
    )
    leaves = rarely(_plain_leaves(), unusual_leaves, every=_UNUSUAL_ONE_IN)
    hashable = (
        st.integers(INT_MIN, INT_MAX) | st.text() | st.datetimes() | st.decimals(allow_nan=False)
    )

    def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        plain = st.lists(inner, max_size=max_size) | st.dictionaries(
            st.text(), inner, max_size=max_size
        )
        unusual = (
            st.lists(inner, max_size=max_size).map(tuple)
            | st.sets(hashable, max_size=max_size)
            | st.dictionaries(st.integers(INT_MIN, INT_MAX), inner, max_size=max_size)
        )
        return rarely(plain, unusual, every=_UNUSUAL_ONE_IN)

    # A field typed ``Any`` holding one leaf is as common as one holding a container;
    # now and then it holds a tuple of leaves, which a snapshot refuses under ``Any``
    # (it would come back a list).
    common = leaves | st.recursive(leaves, containers, max_leaves=4 * max_size)
    return rarely(
        common,
        st.lists(leaves, min_size=1, max_size=max_size).map(tuple),
        every=_UNUSUAL_ONE_IN,
    )


def big_ints(*, above: bool, below: bool) -> st.SearchStrategy[int]:
    """Integers no 64-bit msgpack integer holds, beyond the unbounded sides."""
    sides = []
    if above:
        sides.append(st.integers(min_value=_UINT_END))
    if below:
        sides.append(st.integers(max_value=INT_MIN - 1))
    return st.one_of(sides)


def with_surrogate(low: int, high: int | None) -> st.SearchStrategy[str]:
    """Strings of ``low`` to ``high`` characters holding at least one lone surrogate."""
    room = None if high is None else max(0, high - 1)
    return st.tuples(st.text(max_size=room), _SURROGATES, st.text(max_size=room)).map(
        lambda parts: parts[0] + parts[1] + parts[2]
    ).filter(lambda text: low <= len(text) and (high is None or len(text) <= high))
