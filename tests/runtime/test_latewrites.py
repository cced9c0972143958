"""LateWrites: the records written since it was made, per component whose changes are
tracked, and nothing recorded once closed."""

from __future__ import annotations

from typing_extensions import TypedDict

import statemigrate as sm
from statemigrate._runtime._latewrites import LateWrites


class _ItemsV1(TypedDict):
    items: dict[str, int]


def _service() -> tuple[sm.Service, sm.TrackedDict[str, int], dict[str, int]]:
    registry = sm.Registry()
    registry.add_schema("tracked", 1, _ItemsV1)
    registry.add_schema("plain", 1, _ItemsV1)

    @registry.migratable("tracked", version=1)
    class Tracked:
        def __init__(self) -> None:
            self.items: sm.TrackedDict[str, int] = sm.TrackedDict(a=1)

    @registry.migratable("plain", version=1)
    class Plain:
        def __init__(self) -> None:
            self.items: dict[str, int] = {"a": 1}

    service = sm.Service("late", registry=registry)
    tracked, plain = Tracked(), Plain()
    service.register(tracked)
    service.register(plain)
    return service, tracked.items, plain.items


def test_counts_the_records_written_since_per_tracked_component() -> None:
    service, tracked, plain = _service()
    tracked["before"] = 0  # before the marks: not counted
    late = LateWrites(service.components)
    assert late.written() == {}
    _ = tracked["a"], tracked.get("b"), list(tracked)  # reads are no writes
    tracked["a"] = 2
    tracked["a"] = 3  # the same record again
    del tracked["before"]
    plain["b"] = 2  # not tracked: not watched
    # Two records; three writes, the same record's second too.
    assert late.written() == {"tracked/default": (2, 3)}
    late.close()
    assert late.written() == {} and not tracked.tracking
    late.close()  # idempotent
