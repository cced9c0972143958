"""Plain data for tests: a hypothesis strategy for it, and an exact equality."""

from __future__ import annotations

import struct

from hypothesis import strategies as st

leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()  # nan and infinities included
    | st.text()
    | st.binary()
)
plain = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=6)
    | st.dictionaries(st.text(max_size=12) | st.binary(max_size=6), inner, max_size=6),
    max_leaves=40,
)
"""Nested lists and maps (str or bytes keys) of any leaf, NaN and infinities included."""


def same_plain(a: object, b: object) -> bool:
    """Equal with the same types and key order all the way down, keys included (a str
    subclass key differs from a str one), floats bit for bit: nan equals a nan with the
    same payload, 1 differs from 1.0 and 0.0 from -0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        assert isinstance(b, float)
        return struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same_plain(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return len(a) == len(b) and all(
            same_plain(key_a, key_b) and same_plain(value_a, value_b)
            for (key_a, value_a), (key_b, value_b) in zip(a.items(), b.items(), strict=True)
        )
    return a == b
