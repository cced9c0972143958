"""A hot upgrade through a step declared lossy: refused before any pause with the way to
allow it, and done when the successor allows it."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pydantic
import pytest

import statemigrate as sm
from statemigrate.handoff import HandoffError, hand_over, receive_handoff, take_over
from statemigrate.handoff._protocol import Hello, decode_message, encode_message


class BookV2(pydantic.BaseModel):
    title: str = ""
    notes: str = ""


class BookV3(pydantic.BaseModel):
    title: str = ""


def release(version: int) -> sm.Service:
    """A service of release 2 (which knows v2 only) or 3 (v2, v3 and the lossy step)."""
    registry = sm.Registry()
    registry.add_schema("book", 2, BookV2)
    if version == 3:
        registry.add_schema("book", 3, BookV3)

        @registry.migration("book", 2, 3, lossy=("notes",))
        def upgrade_2_to_3(data: dict[str, Any]) -> dict[str, Any]:
            data.pop("notes", None)
            return data

    model = BookV2 if version == 2 else BookV3

    @registry.migratable("book", version=version)
    class Book:
        def __init__(self) -> None:
            self.state: Any = model(title="dune")

        def export_state(self) -> Any:
            return self.state

        def import_state(self, state: Any) -> None:
            self.state = state

    service = sm.Service("shelf", registry=registry)
    service.register(Book())
    return service


def hand_over_in_process(*, allow_lossy: bool) -> tuple[Any, BaseException | None]:
    """Release 2 hands over to release 3 over a socket pair; returns what the successor
    took over (or the error it got) and the old side's error."""
    old, new = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    outcome: dict[str, BaseException | None] = {"old": None}

    def old_side() -> None:
        with old, socket.create_server(("127.0.0.1", 0)) as listener:
            try:
                hand_over(release(2), old, listeners={"http": listener}, precopy=False)
            except BaseException as exc:  # the test reads it below
                outcome["old"] = exc

    thread = threading.Thread(target=old_side)
    thread.start()
    successor = release(3)
    try:
        with receive_handoff(new, expect={"http"}) as inheritance:
            take_over(successor, inheritance, allow_lossy=allow_lossy, precopy=False)
            inheritance.listeners["http"].close()
        taken: Any = successor.components[0].obj.state  # type: ignore[attr-defined]
    except HandoffError as exc:
        taken = exc
    finally:
        thread.join(timeout=60)
        new.close()
    return taken, outcome["old"]


def test_a_lossy_upgrade_is_refused_with_the_way_to_allow_it() -> None:
    taken, old_error = hand_over_in_process(allow_lossy=False)
    assert isinstance(old_error, HandoffError) and old_error.stage == "export"
    detail = old_error.detail
    assert "book: this process has v2, successor reads [3]" in detail
    assert "the successor would read book v2 through steps declared lossy" in detail
    assert (
        "pass allow_lossy={'book'} (or True, for every component) to the successor's take_over"
        " (or its server adapter's run)"
    ) in detail
    assert isinstance(taken, HandoffError)


def test_the_successor_that_allows_loss_upgrades_through_the_step() -> None:
    taken, old_error = hand_over_in_process(allow_lossy=True)
    assert old_error is None
    assert taken == BookV3(title="dune")


@pytest.mark.parametrize("lossy", [{}, {"book": (2,)}])
def test_hello_carries_the_versions_read_only_through_lossy_steps(
    lossy: dict[str, tuple[int, ...]],
) -> None:
    hello = Hello(pid=42, readable={"book": (3,)}, lossy=lossy)
    packet = encode_message(hello)
    assert (b'"lossy"' in packet) == bool(lossy)  # an older reader sees the same HELLO
    assert decode_message(packet, stage="handshake") == hello
