"""statemigrate.handoff: __all__ is sorted and complete, names resolve, and importing it
loads no asyncio."""

from __future__ import annotations

import subprocess
import sys
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


def test_the_blocking_handoff_does_not_import_asyncio():
    """The asyncio flavour loads asyncio when it runs: a blocking service never pays for it."""
    code = (
        "import sys, statemigrate.handoff\n"
        "from statemigrate.handoff import _drive, _signals\n"
        "print('asyncio' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
