"""statemigrate.handoff: __all__ is sorted and complete, and names resolve."""

from __future__ import annotations

import types

import statemigrate.handoff as handoff


def test_all_is_sorted_and_unique():
    assert handoff.__all__ == sorted(set(handoff.__all__))


def test_all_is_complete():
    public = {
        name
        for name, value in vars(handoff).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(handoff.__all__)


def test_every_name_resolves():
    for name in handoff.__all__:
        assert getattr(handoff, name) is not None
