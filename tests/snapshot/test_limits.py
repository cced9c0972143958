"""DecodeLimits: every bound checked where it is given, and limits that are no
DecodeLimits refused where they are passed."""

from __future__ import annotations

from typing import Any

import pytest

import statemigrate as sm

BOUNDS = ["max_snapshot_size", "max_section_size", "max_total_size", "max_sections"]


@pytest.mark.parametrize("bound", BOUNDS)
@pytest.mark.parametrize("value", ["x", -1, 0, True, 1.5, None], ids=repr)
def test_a_bad_bound_is_one_configuration_error_naming_it(bound: str, value: Any) -> None:
    """Before, ``max_section_size='x'`` failed with a bare TypeError at the first
    section read, and ``max_sections=-1`` refused every snapshot as too large."""
    with pytest.raises(sm.ConfigurationError) as caught:
        sm.DecodeLimits(**{bound: value})
    error = caught.value
    assert error.option == bound
    assert str(error).startswith(f"{bound}: must be an int of 1 or more")
    assert str(error).endswith(f"not {value!r}")
    assert "\n" not in str(error)


@pytest.mark.parametrize("bound", BOUNDS)
def test_the_least_bound_of_each_is_accepted(bound: str) -> None:
    assert getattr(sm.DecodeLimits(**{bound: 1}), bound) == 1


@pytest.mark.parametrize("limits", [5, {"max_sections": 1}, "default"], ids=repr)
def test_open_snapshot_refuses_limits_that_are_no_decode_limits(limits: Any) -> None:
    """A dict of bounds failed with an AttributeError deep in the reader."""
    with pytest.raises(sm.ConfigurationError) as caught:
        sm.open_snapshot(b"any bytes", limits=limits)
    assert str(caught.value) == (
        f"limits: must be a DecodeLimits or None, not {type(limits).__qualname__}"
    )
