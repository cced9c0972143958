"""Recursive schemas nested deep: a state restores exactly or is refused at commit;
one nested past what pydantic validates is refused at commit, never committed to fail
every restore with pydantic's recursion error (nor raises Python's RecursionError)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError, field_validator
from roundtrip_zoo import holder_class
from typing_extensions import TypedDict

from statemigrate import ExportError, MemoryStore, Registry, Service
from statemigrate._model import _compare, _export
from statemigrate._model._export import CHECKED_DEPTH, MAX_REFERENCE_DEPTH

T = TypeVar("T")

RoundTrip = Callable[[object, object], object]  # the round_trip fixture


class Linked(BaseModel):
    value: int = 0
    next: Linked | None = None


class Tree(BaseModel):
    kids: list[Tree] = []


class Nest(TypedDict, total=False):
    inner: Nest


class Checked(BaseModel):
    """A validator makes the schema checked by validation at every snapshot anyway."""

    next: Checked | None = None

    @field_validator("next")
    @classmethod
    def _same(cls, value: Checked | None) -> Checked | None:
        return value


class Ping(BaseModel):
    pong: Pong | None = None


class Pong(BaseModel):
    ping: Ping | None = None


# Each schema: how a plain value n levels deep looks, and how to wrap a state in one
# more level without validating it again.
SHAPES: dict[str, tuple[Any, Callable[[Any], Any], Callable[[Any], Any]]] = {
    "model": (Linked, lambda inner: {"next": inner}, lambda state: Linked(next=state)),
    "list-of-models": (Tree, lambda inner: {"kids": [inner]}, lambda state: Tree(kids=[state])),
    "typeddict": (Nest, lambda inner: {"inner": inner}, lambda state: {"inner": state}),
    "validated": (Checked, lambda inner: {"next": inner}, lambda state: Checked(next=state)),
    "two-types": (
        Ping,
        lambda inner: {"pong": {"ping": inner}},
        lambda state: Ping(pong=Pong(ping=state)),
    ),
}


def deepest(schema: Any, wrap: Callable[[Any], Any]) -> Any:
    """The most deeply nested state pydantic validates from plain data (and so restores)."""
    adapter: TypeAdapter[Any] = TypeAdapter(schema)
    plain: Any = {}
    state = adapter.validate_python(plain)
    while True:
        plain = wrap(plain)
        try:
            state_deeper = adapter.validate_python(plain)
        except ValidationError:
            return state
        state = state_deeper


def nested(shape: str, levels: int) -> Any:
    schema, plain_wrap, _ = SHAPES[shape]
    plain: Any = {}
    for _ in range(levels):
        plain = plain_wrap(plain)
    adapter: TypeAdapter[Any] = TypeAdapter(schema)
    return adapter.validate_python(plain)


def refused(round_trip: RoundTrip, schema: object, state: object) -> ExportError:
    with pytest.raises(ExportError) as caught:
        round_trip(schema, state)
    message = str(caught.value)
    assert "thing version 1" in message and "\n" not in message
    assert "recursi" in message.lower()
    return caught.value


@pytest.mark.parametrize("shape", SHAPES)
def test_a_state_nested_past_the_checked_depth_restores(round_trip: RoundTrip, shape: str) -> None:
    """Nested past CHECKED_DEPTH references, the export is validated back, and kept.

    (Two types take two levels per reference: 140 levels stay within Python's stack.)
    """
    schema = SHAPES[shape][0]
    state = nested(shape, 70 if shape == "two-types" else CHECKED_DEPTH + 10)
    assert round_trip(schema, state) == state


@pytest.mark.parametrize("shape", SHAPES)
def test_a_state_nested_past_what_pydantic_validates_is_refused(
    round_trip: RoundTrip, shape: str
) -> None:
    """Before, it committed and every restore failed (or a RecursionError escaped)."""
    schema, plain_wrap, state_wrap = SHAPES[shape]
    refused(round_trip, schema, state_wrap(deepest(schema, plain_wrap)))


def test_a_state_nested_past_the_hard_limit_is_refused_without_a_check(
    round_trip: RoundTrip,
) -> None:
    state = Linked()
    for _ in range(3 * MAX_REFERENCE_DEPTH):
        state = Linked(next=state)
    error = refused(round_trip, Linked, state)
    assert f"more than {MAX_REFERENCE_DEPTH} levels" in str(error) or "recursion limit" in str(
        error
    )


# --- the same limits in every process: a restored state commits again -------------------

DEFAULT_LIMIT = 1000
"""Python's default recursion limit."""


@contextlib.contextmanager
def recursion_limit(limit: int) -> Iterator[None]:
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def on_deep_stack(frames: int, call: Callable[[], T]) -> T:
    """``call()`` from a stack ``frames`` Python calls deeper than the caller's."""
    if frames <= 0:
        return call()
    return on_deep_stack(frames - 1, call)


def hand_on(shape: str) -> tuple[Any, Any]:
    """The deepest state of ``shape`` a restore takes, committed under a raised recursion
    limit and restored under the default one, which then commits it, from a stack
    already 600 calls deep, and restores it once more: that state and the last one."""
    schema, plain_wrap, _ = SHAPES[shape]
    registry = Registry()
    registry.add_schema("thing", 1, schema)
    holder = holder_class(registry, "thing", 1)
    state = deepest(schema, plain_wrap)
    store = MemoryStore()
    with recursion_limit(20_000):
        writer = Service("svc", registry=registry)
        writer.register(holder(state))
        writer.commit(store)
    with recursion_limit(DEFAULT_LIMIT):
        reader = Service("svc", registry=registry)
        reader.register(holder())
        reader.restore(store.open())
        on_deep_stack(600, lambda: reader.commit(store))
        last = Service("svc", registry=registry)
        again = last.register(holder())
        last.restore(store.open())
    return state, again.state


@pytest.mark.parametrize("shape", SHAPES)
def test_a_state_restored_under_the_default_recursion_limit_commits_again(shape: str) -> None:
    """Whatever the recursion limit of the process that committed a state and the depth
    of the stack a commit is called from, a process that restores the state commits it
    again. Before, a state nested more than about 200 levels (what a process with a
    raised limit commits) restored under the default limit and then could not be
    committed: 'nested too deep ... to be exported within Python's recursion limit'."""
    state, again = hand_on(shape)
    with recursion_limit(20_000):  # comparing 255 levels of models recurses as well
        assert again == state


def test_negative_control_walks_kept_on_one_stack_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the walks kept on the stack they started on, the same commit is refused."""

    def same_stack(call: Callable[..., T], /, *args: Any) -> T:
        return call(*args)

    monkeypatch.setattr(_export, "on_fresh_stack", same_stack)
    monkeypatch.setattr(_compare, "on_fresh_stack", same_stack)
    with pytest.raises(ExportError, match="recursion limit"):
        hand_on("model")
