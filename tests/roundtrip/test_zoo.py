"""Property: a state of any zoo schema (tests/roundtrip_zoo.py) drawn by the testing
kit that commits to a TmpfsStore or a MemfdStore restores, in a fresh service, exactly
equal to the state and to what pydantic validates from its plain form: same values,
same types, same key order. A state that cannot come back is refused at commit with one
line naming the component and the version; nothing commits and then restores changed."""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter
from roundtrip_zoo import ZOO, build_registry, holder_class, restore_from
from zoo.table import Holder

from statemigrate import ExportError, Service
from statemigrate.testing import from_schema
from statemigrate.testing._exact import exact_differences

SOAK = os.environ.get("STATEMIGRATE_HYPOTHESIS_PROFILE") == "soak"
EXAMPLES = 400 if SOAK else 15  # per schema and store: the default run stays within seconds
ZOO_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

REGISTRY = build_registry()


def key_orders(value: Any, path: str = "") -> Iterator[tuple[str, list[Any]]]:
    """The order of the keys of every dict in ``value`` (extra fields included)."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from key_orders(getattr(value, name), f"{path}.{name}")
        if value.__pydantic_extra__:
            yield path, list(value.__pydantic_extra__)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from key_orders(getattr(value, item.name), f"{path}.{item.name}")
    elif isinstance(value, dict):
        yield path, list(value)
        for key, item in value.items():
            yield from key_orders(item, f"{path}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from key_orders(item, f"{path}[{index}]")


def assert_exact(expected: Any, actual: Any, what: str) -> None:
    differences = exact_differences(expected, actual)
    assert not differences, f"{what}: {differences}"
    assert list(key_orders(expected)) == list(key_orders(actual)), f"{what}: key order"


@pytest.fixture(scope="module")
def store_root() -> Iterator[Path]:
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    root = tempfile.mkdtemp(dir=base, prefix="sm-zoo-")
    try:
        yield Path(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def clear_refusal(error: ExportError, name: str) -> None:
    message = str(error)
    assert "\n" not in message and f"{name} version 1" in message, message


@pytest.mark.parametrize("kind", ["tmpfs", "memfd"])
@pytest.mark.parametrize("name", ZOO)
def test_every_committed_state_restores_exactly(name: str, kind: str, store_root: Path) -> None:
    schema = REGISTRY.schema_for(name, 1)
    holder = holder_class(REGISTRY, name, 1)
    outcomes: Counter[str] = Counter()
    directory = store_root / f"{name}-{kind}"

    @ZOO_SETTINGS
    @given(from_schema(schema, form="state"))
    def round_trip(state: Any) -> None:
        writer = Service("zoo", registry=REGISTRY)
        writer.register(holder(state))
        reader = Service("zoo", registry=REGISTRY)
        restored = reader.register(holder())
        try:
            restore_from(kind, writer, reader, directory)
        except ExportError as error:  # refused before anything was written
            clear_refusal(error, name)
            outcomes["refused"] += 1
            return
        assert isinstance(restored, Holder)
        assert_exact(state, restored.state, "restored against the state")
        plain = schema.export(state)
        validated = TypeAdapter(ZOO[name]).validate_python(copy.deepcopy(plain), by_name=True)
        assert_exact(validated, restored.state, "restored against pydantic")
        outcomes["exact"] += 1

    round_trip()
    assert outcomes["exact"] > 0, outcomes


@pytest.mark.parametrize("name", ZOO)
@given(data=st.data())
@ZOO_SETTINGS
def test_one_step_up_and_back_down_gives_the_state_back(name: str, data: st.DataObject) -> None:
    """Upgraded at restore into the envelope of version 2, committed back to version 1
    (the lossy downgrade drops only the revision), restored: the state as it was."""
    state = data.draw(from_schema(REGISTRY.schema_for(name, 1), form="state"))
    writer = Service("zoo", registry=REGISTRY)
    writer.register(holder_class(REGISTRY, name, 1)(state))
    try:
        encoded, _ = writer.snapshot()
    except ExportError as error:
        clear_refusal(error, name)
        return
    upgraded = Service("zoo", registry=REGISTRY)
    middle = upgraded.register(holder_class(REGISTRY, name, 2)())
    upgraded.restore(encoded.to_bytes())
    assert isinstance(middle, Holder) and isinstance(middle.state, BaseModel)
    assert_exact(state, middle.state.value, "upgraded")  # type: ignore[attr-defined]
    assert middle.state.revision == 1  # type: ignore[attr-defined]
    down, _ = upgraded.snapshot(targets={name: 1}, allow_lossy=True)
    back = Service("zoo", registry=REGISTRY)
    restored = back.register(holder_class(REGISTRY, name, 1)())
    back.restore(down.to_bytes())
    assert isinstance(restored, Holder)
    assert_exact(state, restored.state, "down again")
