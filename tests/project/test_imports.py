"""Start-up cost: what ``import statemigrate`` loads, and that nothing loads inside a pause."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import statemigrate

# Never needed by a service that snapshots, restores and hands over: loaded on first use.
NOT_AT_START_UP = (
    "hypothesis",
    "obstore",
    "pytest",
    "statemigrate.cli",
    "statemigrate.demo",
    "statemigrate.evolution",
    "statemigrate.reference",
    "statemigrate.testing",
)


def _fresh(code: str) -> list[str]:
    """Run ``code`` in a new interpreter; it prints a JSON list of module names."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    names: list[str] = json.loads(done.stdout.splitlines()[-1])
    return names


def test_importing_the_library_and_the_handoff_loads_no_tooling() -> None:
    loaded = _fresh(
        """
        import json, sys
        import statemigrate, statemigrate.handoff, statemigrate.stores
        print(json.dumps(sorted(sys.modules)))
        """
    )
    unwanted = [
        name
        for name in loaded
        if any(name == prefix or name.startswith(prefix + ".") for prefix in NOT_AT_START_UP)
    ]
    assert unwanted == []


def test_the_lazy_names_are_the_modules_own() -> None:
    from statemigrate.evolution import _makemigration, _schemalock

    assert statemigrate.make_migration is _makemigration.make_migration
    assert statemigrate.MigrationStub is _makemigration.MigrationStub
    assert statemigrate.check_schemas is _schemalock.check_schemas
    assert statemigrate.freeze_schemas is _schemalock.freeze_schemas
    assert statemigrate.LockReport is _schemalock.LockReport
    assert {"make_migration", "check_schemas"} <= set(dir(statemigrate))


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    name = "no_such_name"
    with pytest.raises(AttributeError, match=f"has no attribute '{name}'"):
        getattr(statemigrate, name)


def test_snapshot_commit_and_restore_import_nothing_once_started() -> None:
    """What a handoff runs while writers wait (export, commit, restore) loads no module:
    everything it needs came with ``import statemigrate`` and the registered schemas."""
    new = _fresh(
        """
        import json, sys
        import statemigrate as sm
        from statemigrate.reference import KVCacheV1, KVCacheV3, build_registry

        registry = build_registry()
        old = KVCacheV1()
        for index in range(2000):
            old.set(f"key:{index}", f"value {index}")
        source = sm.Service("gateway", registry=registry)
        source.register(old)
        target = sm.Service("gateway", registry=registry)
        target.register(KVCacheV3())
        started = set(sys.modules)
        for store in (sm.MemfdStore(), sm.MemoryStore()):
            target.restore(source.commit(store))
        encoded, _ = target.snapshot(targets={"kvcache": 1}, allow_lossy=True)
        source.restore(encoded.to_bytes())
        print(json.dumps(sorted(set(sys.modules) - started)))
        """
    )
    assert new == []
