"""statemigrate.handoff: __all__ is sorted and complete, names resolve, importing it
loads no asyncio, and its bytes level no pydantic."""

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
    assert public - {"TYPE_CHECKING"} <= set(handoff.__all__)


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


def test_the_bytes_level_imports_without_the_model_layer():
    """send_handoff and receive_handoff load no pydantic: the service level and the trials
    load on first use. The descriptor chain (test_chain.py) starts hundreds of processes
    that import only the bytes level, past the top-level package, as this does."""
    code = (
        "import importlib.util, sys, types\n"
        "spec = importlib.util.find_spec('statemigrate')\n"
        "package = types.ModuleType('statemigrate')\n"
        "package.__path__ = list(spec.submodule_search_locations)\n"
        "sys.modules['statemigrate'] = package\n"
        "from statemigrate.handoff import Spawn, receive_handoff, send_handoff\n"
        "print(sorted(name for name in ('pydantic', 'msgspec') if name in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert callable(handoff.hand_over) and callable(handoff.start_generation)
