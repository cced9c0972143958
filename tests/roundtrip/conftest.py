"""Round trips of one schema's state through a committed snapshot, for tests/roundtrip/."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from roundtrip_zoo import holder_class, restore_from
from zoo.table import Holder

from statemigrate import Registry, Service

SHM = "/dev/shm"


def holder_registry(schema: object, *, name: str = "thing") -> tuple[Registry, type[Holder]]:
    """A registry holding ``schema`` as version 1 of ``name``, and its component class."""
    registry = Registry()
    registry.add_schema(name, 1, schema)
    return registry, holder_class(registry, name, 1)


RoundTrip = Callable[[object, object], object]


@pytest.fixture
def store_dir() -> Iterator[Path]:
    """A private directory for a TmpfsStore, on tmpfs when there is one."""
    root = tempfile.mkdtemp(dir=SHM if os.path.isdir(SHM) else None, prefix="sm-rt-")
    try:
        yield Path(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["tmpfs", "memfd"])
def round_trip(request: pytest.FixtureRequest, store_dir: Path) -> RoundTrip:
    """Commit a state of a schema to a store, restore it into a fresh service and component.

    Parametrized over a TmpfsStore and a MemfdStore.
    """
    kind: str = request.param
    counter = iter(range(1_000_000))

    def run(schema: object, state: object) -> object:
        registry, holder = holder_registry(schema)
        writer = Service("svc", registry=registry)
        writer.register(holder(state))
        reader = Service("svc", registry=registry)
        restored = reader.register(holder())
        restore_from(kind, writer, reader, store_dir / str(next(counter)))
        assert isinstance(restored, Holder)
        return restored.state

    return run
