"""A snapshot written at another version (``targets``) gives its steps plain data, as a
restore does: an int past 64 bits reaches them as its decimal text, and comes back an
int at the version it was written for."""

from __future__ import annotations

from typing import Any

from typing_extensions import TypedDict

import statemigrate as sm


class CounterV1(TypedDict):
    n: int


class CounterV2(TypedDict):
    n: int
    extra: int


SEEN: list[Any] = []


def drop_extra(data: dict[str, Any]) -> dict[str, Any]:
    SEEN.append(data["n"])
    del data["extra"]
    return data


REGISTRY = sm.Registry()
REGISTRY.add_schema("counter", 1, CounterV1)
REGISTRY.add_schema("counter", 2, CounterV2)
REGISTRY.add_migration("counter", 1, 2, lambda data: {**data, "extra": 0}, name="add_extra")
REGISTRY.add_migration("counter", 2, 1, drop_extra, lossy=("extra",))


@REGISTRY.migratable("counter", version=1)
class CounterOne:
    def __init__(self) -> None:
        self.n = 0


@REGISTRY.migratable("counter", version=2)
class CounterTwo:
    def __init__(self, n: int) -> None:
        self.n = n
        self.extra = 7


def test_a_downgrade_step_gets_an_int_past_64_bits_as_its_text() -> None:
    writer = sm.Service("targets-plain", registry=REGISTRY)
    writer.register(CounterTwo(2**64 + 5))
    SEEN.clear()
    encoded, report = writer.snapshot(targets={"counter": 1}, allow_lossy=True)
    assert SEEN == [str(2**64 + 5)]
    assert report.sections[0].version == 1
    reader = sm.Service("targets-plain", registry=REGISTRY)
    restored = CounterOne()
    reader.register(restored)
    reader.restore(encoded)
    assert restored.n == 2**64 + 5 and type(restored.n) is int


def test_a_plain_state_reaches_the_step_as_it_is() -> None:
    """The walk that converts is only for a state that is not plain already; the live
    state is left as it was either way."""
    writer = sm.Service("targets-plain", registry=REGISTRY)
    counter = CounterTwo(5)
    writer.register(counter)
    SEEN.clear()
    writer.snapshot(targets={"counter": 1}, allow_lossy=True)
    assert SEEN == [5]
    assert counter.n == 5 and counter.extra == 7  # the live state is left as it was
