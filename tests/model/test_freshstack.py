"""Walks moved to a fresh stack (_model/_freshstack.py): the call runs on another
thread with the caller's context variables, and its result or its very exception comes
back to the caller."""

from __future__ import annotations

import contextvars
import inspect
import sys
import threading

import pytest

from statemigrate._model._freshstack import EVERY, on_fresh_stack

WHERE: contextvars.ContextVar[str] = contextvars.ContextVar("WHERE", default="unset")


class Refused(Exception):
    def __init__(self, path: list[object]) -> None:
        super().__init__("refused")
        self.path = path


def test_the_call_runs_on_another_thread_and_its_result_comes_back() -> None:
    caller = threading.get_ident()
    ident, answer = on_fresh_stack(lambda a, b: (threading.get_ident(), a + b), 2, b=3)
    assert ident != caller and answer == 5


def test_the_call_sees_the_caller_context_variables() -> None:
    token = WHERE.set("caller")
    try:
        assert on_fresh_stack(WHERE.get) == "caller"
    finally:
        WHERE.reset(token)


def test_its_exception_is_raised_in_the_caller_as_it_is() -> None:
    """The walks' errors carry their path; the caller goes on adding to the same one."""

    def refuse(path: list[object]) -> None:
        raise Refused(path)

    with pytest.raises(Refused) as caught:
        on_fresh_stack(refuse, ["a", 0])
    assert caught.value.path == ["a", 0]


def test_a_fresh_stack_holds_what_the_caller_stack_no_longer_does() -> None:
    """From a stack nearly at the recursion limit, a call that needs more levels than
    remain (but fewer than the limit) runs on a fresh one."""

    def down(levels: int) -> int:
        return 0 if levels == 0 else 1 + down(levels - 1)

    def near_the_limit(spare: int) -> int:
        if spare <= 0:
            with pytest.raises(RecursionError):
                down(EVERY * 10)
            return on_fresh_stack(down, EVERY * 10)
        return near_the_limit(spare - 1)

    spare = 60  # frames left to the limit: fewer than the call needs
    assert spare < EVERY * 10 < sys.getrecursionlimit() - spare
    assert near_the_limit(sys.getrecursionlimit() - _stack_depth() - spare) == EVERY * 10


def _stack_depth() -> int:
    frame, depth = inspect.currentframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth
