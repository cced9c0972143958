"""--store-option pairs: the store's timeouts read as seconds or durations, its retries
as a count, everything else left to obstore; bad values refused in one line."""

from __future__ import annotations

import argparse
import re

import pytest

from statemigrate.cli._storeoptions import (
    StoreSettings,
    parse_store_option,
    split_store_options,
)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        ("2.5", 2.5),
        (".5", 0.5),
        (" 3 ", 3.0),
        ("3s", 3.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1m30s", 90.0),
        ("1m 30s", 90.0),
        ("1h", 3600.0),
    ],
)
def test_a_timeout_is_seconds_or_a_duration(value: str, seconds: float) -> None:
    for key in ("timeout", "connect_timeout", "retry_timeout"):
        settings = split_store_options([(key, value)])
        assert getattr(settings, key) == pytest.approx(seconds)
        assert settings.config == {}


def test_the_stores_own_keys_are_taken_out_and_the_rest_left_to_obstore() -> None:
    settings = split_store_options(
        [
            ("endpoint", "http://127.0.0.1:9000"),
            ("timeout", "3"),
            ("retries", "0"),
            ("retry_timeout", "0"),
            ("allow_http", "true"),
            ("timeout", "4"),
        ]
    )
    assert settings == StoreSettings(
        {"endpoint": "http://127.0.0.1:9000", "allow_http": "true"},
        timeout=4.0,
        retry_timeout=0.0,
        retries=0,
    )


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ("timeout=abc", "timeout: must be seconds (3, 2.5) or a duration"),
        ("timeout=0", "more than 0 and at most a day"),
        ("connect_timeout=-1", "connect_timeout: must be seconds"),
        ("timeout=inf", "must be seconds"),
        ("timeout=nan", "must be seconds"),
        ("timeout=1e3", "must be seconds"),
        ("timeout=2d", "must be seconds"),
        ("timeout=", "must be seconds"),
        ("timeout=86401", "at most a day"),
        ("retry_timeout=-1", "0 or more and at most a day"),
        ("retries=x", "retries: must be a whole number from 0 to 100, not 'x'"),
        ("retries=101", "a whole number from 0 to 100, not '101'"),
        ("retries=-1", "must be a whole number"),
        ("retries=" + "9" * 5000, "must be a whole number"),
        ("novalue", "expected KEY=VALUE"),
    ],
)
def test_a_bad_value_is_refused_before_anything_is_opened(pair: str, expected: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(expected)):
        parse_store_option(pair)


def test_a_good_pair_is_returned_as_given() -> None:
    assert parse_store_option(" timeout =3") == ("timeout", "3")
    assert parse_store_option("endpoint=http://h:9000/a=b") == ("endpoint", "http://h:9000/a=b")
    assert split_store_options([("retries", "0")]).retries == 0
    assert split_store_options([("retry_timeout", "0")]).retry_timeout == 0.0
