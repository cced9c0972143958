"""``--store-option KEY=VALUE`` pairs: obstore's settings, and the ObjectStore's own
timeouts and retries.

Most keys are obstore's configuration keys and go to it as they are. Four are the
:class:`~statemigrate.stores.ObjectStore`'s keyword arguments instead, as in Python:
``timeout``, ``connect_timeout`` and ``retry_timeout`` in seconds, ``retries`` a count.
obstore would refuse them as configuration keys: it takes the retry settings in no
key (``retry_timeout`` is "not valid for store 'S3'"), and reads a timeout of ``3`` as
no duration at all (it wants ``3s``). Here a duration is a number of seconds (``3``,
``2.5``) or a number with a unit (``500ms``, ``3s``, ``2m``, ``1m30s``).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import NamedTuple

from statemigrate._errors import ConfigurationError
from statemigrate.stores._options import MAX_RETRIES, MAX_SECONDS, refused

__all__ = ["StoreSettings", "parse_store_option", "split_store_options"]

_DURATION_KEYS = {"timeout": 0.0, "connect_timeout": 0.0, "retry_timeout": None}
"""The keys read as durations, each with the value it must exceed (None: may be 0)."""
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_PLAIN = re.compile(_NUMBER)
_WITH_UNITS = re.compile(rf"(?:{_NUMBER}\s*(?:ms|s|m|h)\s*)+")
_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class StoreSettings(NamedTuple):
    """``--store-option`` pairs sorted out: obstore's configuration, and the
    ObjectStore's keyword arguments (None: its default)."""

    config: dict[str, str]
    timeout: float | None = None
    connect_timeout: float | None = None
    retry_timeout: float | None = None
    retries: int | None = None


def parse_store_option(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` as a pair: the ``type`` of ``--store-option``, so that a bad
    duration or count is a usage error before anything is opened."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text[:80]!r}")
    try:
        split_store_options([(key, value)])
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return key, value


def split_store_options(options: Sequence[tuple[str, str]]) -> StoreSettings:
    """The pairs given, the ObjectStore's own keys taken out and read (the last of a
    repeated key wins, as for obstore's).

    Raises:
        ConfigurationError: a duration or a count is not one, or is out of range: one
            line naming the key, what it takes and the value given.
    """
    config: dict[str, str] = {}
    durations: dict[str, float] = {}
    retries: int | None = None
    for key, value in options:
        if key in _DURATION_KEYS:
            durations[key] = _seconds(key, value)
        elif key == "retries":
            retries = _count(key, value)
        else:
            config[key] = value
    return StoreSettings(
        config,
        timeout=durations.get("timeout"),
        connect_timeout=durations.get("connect_timeout"),
        retry_timeout=durations.get("retry_timeout"),
        retries=retries,
    )


def _seconds(key: str, value: str) -> float:
    text = value.strip()
    if _PLAIN.fullmatch(text):
        seconds = float(text)
    elif _WITH_UNITS.fullmatch(text):
        seconds = sum(
            float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text)
        )
    else:
        seconds = -1.0
    floor = _DURATION_KEYS[key]
    low_ok = seconds > floor if floor is not None else seconds >= 0
    if not low_ok or seconds > MAX_SECONDS:
        least = "more than 0" if floor is not None else "0 or more"
        raise refused(
            key,
            f"seconds (3, 2.5) or a duration (500ms, 3s, 2m), {least} and at most a day",
            value,
        )
    return seconds


def _count(key: str, value: str) -> int:
    text = value.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 3) or int(text) > MAX_RETRIES:
        raise refused(key, f"a whole number from 0 to {MAX_RETRIES}", value)
    return int(text)
