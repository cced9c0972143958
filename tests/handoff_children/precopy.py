"""A tracked component for pre-copy handoffs, and a successor that takes it over.

The component (``Counters``) keeps its records in a ``TrackedDict``, so a service
holding it can send deltas. Release 1 reads and writes version 1; release 2 runs
version 2, reached from 1 by a record step (``record``) or by a whole-data step, which
rules deltas out: a Python step (``whole``), or ``FieldChanges`` without ``records=``
adding a ``note`` (``fields``), as ``statemigrate makemigration`` writes it.

Usage: precopy.py MODE RELEASE OUTPUT

Modes:
    ok             take over (pre-copy announced), write the state and the report
    no-precopy     take over as a release without pre-copy (no ``precopy`` in HELLO)
    fail-N         restoring the N-th piece (0: round 0) raises: FAILED is sent
    die-N          exit (status 3) while restoring the N-th piece, saying nothing
    slow-N         take a second longer to restore the N-th piece
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from typing_extensions import TypedDict

import statemigrate as sm
from statemigrate.handoff import HandoffTimeouts, receive_handoff, take_over


class CountersV1(TypedDict):
    entries: dict[str, int]


class CountersV2(TypedDict):
    entries: dict[str, int]


class CountersNoted(TypedDict):
    entries: dict[str, int]
    note: str


def build_registry(step: str) -> sm.Registry:
    registry = sm.Registry()
    registry.add_schema("counters", 1, CountersV1)
    registry.add_schema("counters", 2, CountersNoted if step == "fields" else CountersV2)
    if step == "fields":
        registry.add_migration("counters", 1, 2, sm.FieldChanges(add={"note": ""}))
        registry.add_migration(
            "counters", 2, 1, sm.FieldChanges(drop=["note"]), lossy=("note",)
        )
    elif step == "record":
        registry.add_migration("counters", 1, 2, lambda key, value: value, records="entries")
        registry.add_migration("counters", 2, 1, lambda key, value: value, records="entries")
    else:
        registry.add_migration("counters", 1, 2, lambda state: state)
        registry.add_migration("counters", 2, 1, lambda state: state)
    return registry


class Counters:
    """Counters by name, in a ``TrackedDict``: what changed is known."""

    def __init__(self) -> None:
        self.entries: sm.TrackedDict[str, int] = sm.TrackedDict()


class Untracked:
    """The same state in a plain ``dict``: what changed is unknown."""

    def __init__(self) -> None:
        self.entries: dict[str, int] = {}


def build_service(
    release: int, *, step: str = "record", tracked: bool = True
) -> tuple[sm.Service, Any]:
    """A service holding counters at ``release``, with ``step`` between 1 and 2."""
    registry = build_registry(step)
    cls = type(f"CountersV{release}", (Counters if tracked else Untracked,), {})
    registry.migratable("counters", version=release)(cls)
    service = sm.Service("precopy-test", registry=registry)
    obj = cls()
    if step == "fields" and release == 2:
        obj.note = ""  # the field version 2 adds
    service.register(obj)
    return service, obj


def main() -> int:
    mode, release, output = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    step = os.environ.get("PRECOPY_STEP", "record")
    inheritance = receive_handoff(timeouts=HandoffTimeouts(snapshot=120.0))
    assert inheritance is not None, "not started by a handoff"
    service, obj = build_service(release, step=step)
    if mode.startswith(("fail-", "die-", "slow-")):
        failing, number = mode.split("-")
        restore = service.restore
        calls = [0]

        def broken(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == int(number) + 1:
                if failing == "slow":
                    time.sleep(1.0)
                    return restore(*args, **kwargs)
                if failing == "die":
                    os._exit(3)
                raise RuntimeError(f"restore of piece {number} broke")
            return restore(*args, **kwargs)

        service.restore = broken  # type: ignore[method-assign]
    with inheritance:
        report = take_over(service, inheritance, precopy=mode != "no-precopy")
    result = {"entries": dict(obj.entries), "report": report.to_plain()}
    with open(output, "w", encoding="utf-8") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
