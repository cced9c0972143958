"""A pre-copy handoff of a service that caught a component changing values in place:
the full snapshot goes in the pause, whichever of the service's checks caught it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest
from inprocess_handoff import hand_over_in_process as _in_process
from typing_extensions import TypedDict

from statemigrate import (
    ChangeTrackingError,
    Checkpointer,
    MemoryStore,
    Registry,
    Service,
    TrackedDict,
)
from statemigrate._model._inplacewatch import InPlaceWatch
from statemigrate._runtime._precopy import PreCopySource
from statemigrate._snapshot._encode import EncodedSnapshot
from statemigrate.handoff import (
    ControlCallbacks,
    HandoffReport,
)


class Cart(TypedDict):
    note: str


class Carts(TypedDict):
    carts: dict[str, Cart]


REGISTRY = Registry()
REGISTRY.add_schema("carts", 1, Carts)


@REGISTRY.migratable("carts", version=1)
class CartStore:
    def __init__(self) -> None:
        self.carts: TrackedDict[str, Cart] = TrackedDict()


def cart_service(carts: int = 10) -> tuple[Service, CartStore]:
    service = Service("shop", registry=REGISTRY)
    store = service.register(CartStore())
    service.start_cold("new")
    for i in range(carts):
        store.carts[f"c{i}"] = {"note": ""}
    return service, store


def note_in_place(store: CartStore, cid: str, note: str) -> None:
    store.carts[cid]["note"] = note  # `cart.note = x`: no write of the key


def blind_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on the in-place sample watches no record: what it does at 300,000
    carts for most of those changed in place."""
    monkeypatch.setattr(InPlaceWatch, "watch", lambda self, field, records: None)
    monkeypatch.setattr(InPlaceWatch, "seed", lambda self, field, records, *, held: None)


def hand_over_in_process(
    service: Service, successor: Service, *, pause: Callable[[], object]
) -> HandoffReport:
    control = ControlCallbacks(pause=pause)
    return _in_process(service, successor, control=control, precopy="inline")


def test_a_catch_by_a_checkpoint_sends_the_full_snapshot_in_a_later_handoffs_pause(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The report's case: the checkpointer caught a note changed in place, yet the
    handoff trusted its own sample, sent deltas, and lost the notes no sample saw.
    Now the catch is the service's: the handoff sends the full snapshot in the pause,
    says why, and the successor holds a note changed after round 0 that no sample
    watched."""
    service, carts = cart_service()
    checkpointer = Checkpointer(
        service,
        MemoryStore(),
        every=3600.0,
        incremental=True,
        quiesce=threading.Lock(),
        export="inline",
    )
    checkpointer.checkpoint_now()
    note_in_place(carts, "c3", "gift wrap")
    with pytest.raises(ChangeTrackingError):
        checkpointer.checkpoint_now()
    blind_sample(monkeypatch)
    successor = Service("shop", registry=REGISTRY)
    copy = successor.register(CartStore())

    def last_write_then_pause() -> None:
        # The last request before the writers stop, after round 0 was taken (with
        # pre-copy) and seen by no sample: only a full snapshot in the pause holds it.
        note_in_place(carts, "c7", "leave at door")

    with caplog.at_level(logging.INFO, logger="statemigrate"):
        report = hand_over_in_process(service, successor, pause=last_write_then_pause)
    assert copy.carts["c7"] == {"note": "leave at door"}
    assert dict(copy.carts) == dict(carts.carts)
    assert report.ok and report.final == "full" and report.rounds == ()
    assert report.fallback is not None
    assert report.fallback.startswith(
        "carts/default was caught changing a value in place at ['carts']['c3']"
    )
    assert "by a checkpoint" in report.fallback
    lines = [r.getMessage() for r in caplog.records]
    said = "handoff: full snapshot in the pause: carts/default was caught"
    assert any(line.startswith(said) for line in lines)
    assert sum("its deltas are no longer trusted" in line for line in lines) == 1


def test_a_catch_during_the_rounds_ends_them_with_the_full_snapshot_in_the_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The checkpointer catches a note changed in place while the handoff's rounds run,
    their own sample blind to it: the pieces sent may lack such changes, so the pause
    carries the full snapshot instead of the last delta."""
    service, carts = cart_service()
    checkpointer = Checkpointer(
        service,
        MemoryStore(),
        every=3600.0,
        incremental=True,
        quiesce=threading.Lock(),
        export="inline",
    )
    checkpointer.checkpoint_now()  # its chain watches every cart from here
    blind_sample(monkeypatch)  # the handoff's watches none
    full = PreCopySource.full
    caught: list[ChangeTrackingError] = []

    def full_then_a_checkpoint(self: PreCopySource) -> EncodedSnapshot:
        encoded = full(self)
        note_in_place(carts, "c3", "gift wrap")
        with pytest.raises(ChangeTrackingError) as exc_info:
            checkpointer.checkpoint_now()  # a scheduled checkpoint, between the rounds
        caught.append(exc_info.value)
        return encoded

    monkeypatch.setattr(PreCopySource, "full", full_then_a_checkpoint)
    successor = Service("shop", registry=REGISTRY)
    copy = successor.register(CartStore())
    report = hand_over_in_process(
        service, successor, pause=lambda: note_in_place(carts, "c7", "leave at door")
    )
    assert len(caught) == 1
    assert dict(copy.carts) == dict(carts.carts)
    assert report.ok and report.final == "full"
    assert [r.kind for r in report.rounds] == ["full"]
    assert report.fallback is not None and report.fallback.startswith(
        "carts/default was caught changing a value in place at ['carts']['c3']"
    )
