"""A snapshot, commit or restore called from a stack near the recursion limit
(_runtime/_callerstack.py):
it works, or raises one CallerStackError naming the caller's depth, never a bare
RecursionError nor an ExportError blaming the state's depth; a caller with room to
spare whose own code recurses keeps its RecursionError."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any

import pytest
from pydantic import BaseModel

from statemigrate import (
    CallerStackError,
    CommitReport,
    ExportError,
    MemoryStore,
    Registry,
    Service,
)
from statemigrate._runtime._callerstack import HEADROOM


class Linked(BaseModel):
    value: int = 0
    next: Linked | None = None


class Item(BaseModel):
    name: str
    tags: list[str]


class State(BaseModel):
    """Records and a recursive type: the exporter's walks, validation and the
    encoder all run in a commit of it."""

    items: dict[str, Item] = {}
    head: Linked | None = None


REGISTRY = Registry()
REGISTRY.add_schema("deep", 1, State)


@REGISTRY.migratable("deep", version=1)
class Holder:
    def __init__(self) -> None:
        chain = Linked()
        for value in range(40):  # deeper than a walk's checkpoints, EVERY levels apart
            chain = Linked(value=value, next=chain)
        self.state = State(items={f"k{i}": Item(name=f"n{i}", tags=["t"]) for i in range(20)},
                           head=chain)

    def export_state(self) -> State:
        return self.state

    def import_state(self, state: State) -> None:
        self.state = state


def _depth() -> int:
    """Frames on this thread's stack, this function's caller included."""
    frame: FrameType | None = sys._getframe(1)
    depth = 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def _down(levels: int, call: Callable[[], Any]) -> tuple[int, Any]:
    """``call()`` from ``levels`` frames below: the depth of the frame that called it,
    and what it returned or raised."""
    if levels > 0:
        return _down(levels - 1, call)
    depth = _depth()
    try:
        return depth, call()
    except BaseException as exc:  # the outcome under test, looked at by the caller
        return depth, exc


def _room() -> int:
    """How many frames below this one a call can still go. Python's recursion count
    includes calls through C that no frame shows (pytest's among them), so it is
    found by going down until the stack runs out."""

    def probe(levels: int) -> int:
        try:
            return probe(levels + 1)
        except RecursionError:
            return levels

    return probe(0)


SPARES = range(4, 64)
"""Frames left below the one that calls: down to where Python itself can barely make
the call and build the error."""


@pytest.mark.parametrize("act", ["commit", "snapshot"])
def test_a_deep_caller_gets_its_result_or_one_clear_error(act: str) -> None:
    limit = sys.getrecursionlimit()
    room = _room()
    outcomes: dict[int, str] = {}
    for spare in SPARES:
        service = Service("deep", registry=REGISTRY)
        service.register(Holder())
        store = MemoryStore()
        # partial makes no frame of its own: the caller is _down's
        act_now = partial(service.commit, store) if act == "commit" else service.snapshot
        depth, outcome = _down(room - spare, act_now)
        if isinstance(outcome, CallerStackError):
            assert (outcome.act, outcome.depth, outcome.limit) == (act, depth, limit)
            assert str(outcome).startswith("the caller's stack is near Python's recursion")
            assert str(outcome).endswith(f"{act} at {depth} of {limit} frames")
            assert isinstance(outcome, RecursionError)  # caught where one was
            outcomes[spare] = "refused"
            assert store.commits == 0  # nothing was committed
        else:
            assert not isinstance(outcome, BaseException), (spare, repr(outcome))
            if act == "commit":
                assert isinstance(outcome, CommitReport)
            outcomes[spare] = "done"
    # Both happen: the deepest callers are refused, those with a few dozen frames left
    # are served; and a caller that was served has every shallower one served too.
    assert outcomes[min(SPARES)] == "refused" and outcomes[max(SPARES)] == "done"
    first_done = min(spare for spare, what in outcomes.items() if what == "done")
    assert all(outcomes[spare] == "done" for spare in SPARES if spare >= first_done)


@pytest.mark.parametrize("act", ["restore", "start_from"])
def test_a_deep_restore_gets_its_result_or_one_clear_error(act: str) -> None:
    """As for a snapshot; a refused restore leaves the component's state as it was
    and the status where a failed restore leaves it, never ``restoring``."""
    limit = sys.getrecursionlimit()
    room = _room()
    writer = Service("deep", registry=REGISTRY)
    written = Holder()
    written.state.items["new"] = Item(name="new", tags=[])
    writer.register(written)
    store = MemoryStore()
    writer.commit(store)
    outcomes: dict[int, str] = {}
    for spare in SPARES:
        service = Service("deep", registry=REGISTRY)
        holder = service.register(Holder())
        before = holder.state
        act_now = (
            partial(service.restore, store.open())
            if act == "restore"
            else partial(service.start_from, store)
        )
        depth, outcome = _down(room - spare, act_now)
        if isinstance(outcome, CallerStackError):
            assert (outcome.act, outcome.depth, outcome.limit) == (act, depth, limit)
            assert str(outcome).endswith(f"{act} at {depth} of {limit} frames")
            assert holder.state is before  # every component as it was
            assert service.status.state in ("starting", "failed"), service.status
            outcomes[spare] = "refused"
        else:
            assert not isinstance(outcome, BaseException), (spare, repr(outcome))
            assert "new" in holder.state.items
            outcomes[spare] = "done"
    assert outcomes[min(SPARES)] == "refused" and outcomes[max(SPARES)] == "done"
    first_done = min(spare for spare, what in outcomes.items() if what == "done")
    assert all(outcomes[spare] == "done" for spare in SPARES if spare >= first_done)


def test_a_caller_with_room_to_spare_keeps_its_own_recursion_error() -> None:
    """The negative control: an export_state that recurses without end, called from a
    shallow stack, is the component's doing, not the caller's stack's: an ExportError
    like any exception of export_state, the RecursionError chained."""
    registry = Registry()
    registry.add_schema("loops", 1, State)

    @registry.migratable("loops", version=1)
    class Loops:
        def export_state(self) -> State:
            return self.export_state()

        def import_state(self, state: State) -> None:
            pass

    service = Service("loops", registry=registry)
    service.register(Loops())
    assert sys.getrecursionlimit() - _depth() > HEADROOM
    with pytest.raises(ExportError) as caught:
        service.commit(MemoryStore())
    assert not isinstance(caught.value, CallerStackError)
    assert isinstance(caught.value.__cause__, RecursionError)
