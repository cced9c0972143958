"""Every public namespace lists exactly its public names in a sorted ``__all__``."""

from __future__ import annotations

import importlib
import inspect

import pytest

NAMESPACES = [
    "statemigrate",
    "statemigrate.evolution",
    "statemigrate.handoff",
    "statemigrate.metrics",
    "statemigrate.tracing",
    "statemigrate.stores",
    "statemigrate.testing",
]


@pytest.mark.parametrize("name", NAMESPACES)
def test_all_is_sorted_and_every_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    assert len(exported) == len(set(exported)), f"{name}.__all__ has duplicates"
    missing = [item for item in exported if not hasattr(module, item)]
    assert missing == []


@pytest.mark.parametrize("name", NAMESPACES)
def test_every_public_class_and_function_is_exported(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        item
        for item, value in vars(module).items()
        if not item.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "").startswith("statemigrate")
    }
    assert public - set(module.__all__) == set()


def test_the_checker_notices_an_unexported_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: a public function missing from __all__ fails the check."""
    module = importlib.import_module("statemigrate")

    def stray() -> None: ...

    stray.__module__ = "statemigrate._stray"
    monkeypatch.setattr(module, "stray", stray, raising=False)
    with pytest.raises(AssertionError):
        test_every_public_class_and_function_is_exported("statemigrate")
