"""Values as messages quote them: their ``repr``, shortened when long.

A refusal quotes the value it refuses (``the integer 18446744073709551616 does not fit
in 64 bits``), and a path quotes the keys on the way to it (``by_name['k']``). Either
may be a string of 100,000 characters or an int of thousands of digits: a message
quotes the first 40 characters and says how long the value is, so that it stays one
short line. Past Python's limit on writing an int as text (4,300 digits unless
``sys.set_int_max_str_digits()`` says otherwise) ``repr`` itself raises; the message
then says what kind of value it is, and does not fail in its turn.
"""

from __future__ import annotations

__all__ = ["shortened", "shown"]


def shown(value: object) -> str:
    """``repr(value)`` for a message, or what kind of value it is when Python refuses
    to write it: an int of more digits than ``sys.get_int_max_str_digits()`` (4,300 by
    default), or a container holding one. A message about such a value, or whose path
    has one for a key, must not fail in its turn."""
    try:
        return repr(value)
    except ValueError:
        if isinstance(value, int):
            return f"<an int of {value.bit_length()} bits>"
        return f"<a {type(value).__qualname__} too large to show>"


def shortened(value: object) -> str:
    """A value as a message quotes it, a dict key or an index as a path shows it: its
    ``repr``, or, when that is long, its start and its length, ``'xxxxxxxxxx'...(100000
    chars)``, ``1234567890...(5000 digits)`` (of any other value, its start and ``...``),
    as a path of many steps shows only its first and last."""
    kind = type(value)
    if kind is str or kind is bytes:
        assert isinstance(value, str | bytes)
        if len(value) <= _SHOWN_CHARS:
            return repr(value)
        unit = "chars" if kind is str else "bytes"
        return f"{value[:_SHOWN_CHARS]!r}...({len(value)} {unit})"
    text = shown(value)
    if len(text) <= _SHOWN_CHARS:
        return text
    if kind is int:
        digits = len(text) - text.startswith("-")
        return f"{text[:_SHOWN_CHARS]}...({digits} digits)"
    return f"{text[:_SHOWN_CHARS]}..."


_SHOWN_CHARS = 40
"""The characters of a value shown: of a ``str`` or ``bytes``, of its text (its ``repr``
shows them), of any other, of its ``repr``."""
