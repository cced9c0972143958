"""docs/api.md describes every public name of the documented namespaces."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[2] / "docs" / "api.md"
NAMESPACES = [
    "statemigrate",
    "statemigrate.evolution",
    "statemigrate.handoff",
    "statemigrate.metrics",
    "statemigrate.tracing",
    "statemigrate.stores",
    "statemigrate.testing",
]


def undocumented(namespace: str, text: str) -> list[str]:
    module = importlib.import_module(namespace)
    return [
        name
        for name in module.__all__
        if not name.startswith("__") and not re.search(rf"\b{re.escape(name)}\b", text)
    ]


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_every_exported_name_is_documented(namespace: str) -> None:
    assert undocumented(namespace, API.read_text()) == []


def test_the_check_notices_a_missing_name() -> None:
    """Negative control: removing a name from the text makes the check fail."""
    text = API.read_text().replace("TmpfsStore", "")
    assert "TmpfsStore" in undocumented("statemigrate", text)
