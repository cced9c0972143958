"""docs/api.md describes every public name of the documented namespaces."""

from __future__ import annotations

import importlib
import inspect
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


def documented_defaults(text: str, name: str) -> dict[str, str]:
    """The ``option=default`` pairs of the signature api.md gives ``name``."""
    match = re.search(rf"\*\*`{re.escape(name)}\((.*?)\)( -> [^`]*)?`\*\*", text, re.S)
    assert match is not None, name
    return dict(re.findall(r"(\w+)=([^,)]+)", match.group(1)))


def test_check_migrations_is_documented_with_the_code_defaults() -> None:
    """api.md gave ``check_migrations(..., max_size=4)`` where the code (and
    testing.md) say 16."""
    from statemigrate.testing import check_migrations

    parameters = inspect.signature(check_migrations).parameters
    documented = documented_defaults(API.read_text(), "check_migrations")
    assert set(documented) == {name for name, p in parameters.items() if p.default is not p.empty}
    for option, default in documented.items():
        assert default == repr(parameters[option].default), option
