"""open_snapshot's data: what is no bytes, or bytes no reader can index, is a
SourceTypeError naming the argument, as a restore's source is."""

from __future__ import annotations

from typing import Any

import pytest

import statemigrate as sm
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._header import Producer

ACCEPTED = "bytes-like (bytes, bytearray, memoryview)"


def snapshot_bytes() -> bytes:
    encoded = encode_snapshot(
        [SectionInput("c", "default", 1, "0" * 32, {"n": 1})], producer=Producer.current("s")
    )
    return encoded.to_bytes()


@pytest.mark.parametrize("data", [None, "snapshots/latest.smsnap", 42], ids=repr)
def test_data_that_is_no_bytes_is_a_source_type_error(data: Any) -> None:
    """Before, a raw ``TypeError: memoryview: a bytes-like object is required``."""
    with pytest.raises(sm.SourceTypeError) as caught:
        sm.open_snapshot(data)
    error = caught.value
    assert isinstance(error, TypeError) and isinstance(error, sm.ConfigurationError)
    assert error.option == "data" and error.value is data
    assert str(error) == f"data: a snapshot source is {ACCEPTED}, not {type(data).__qualname__}"


def test_bytes_that_are_not_contiguous_are_a_source_type_error() -> None:
    """Before, a raw ``TypeError: memoryview: casts are restricted to C-contiguous
    views``."""
    strided = memoryview(snapshot_bytes() * 2)[::2]
    with pytest.raises(sm.SourceTypeError) as caught:
        sm.open_snapshot(strided)
    assert str(caught.value) == (
        f"data: a snapshot source is {ACCEPTED}, not a memoryview that is not contiguous"
        " (bytes() copies it)"
    )


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_every_bytes_like_kind_opens(kind: Any) -> None:
    assert sm.open_snapshot(kind(snapshot_bytes())).read_section(0) == {"n": 1}
