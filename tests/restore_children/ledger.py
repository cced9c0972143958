"""The ledger: a component whose every state is known from one number, for the checkpoint
tests.

Write ``n`` (``n`` = 1, 2, ...) sets ``items["k<n % keys>"] = n``, then ``count = n``: two
steps, so a snapshot taken between them (or between reading ``count`` and packing
``items``) is torn, and :func:`state_after` tells: the state after write ``n`` is
exactly ``{"count": n, "items": {...}}`` with each key holding the last write that hit it.

``export_state`` reads ``count``, then gives the other threads time (``slow``, as a large
export would) before it hands over the live ``items``, which the encoder packs later:
without writers held, a write lands in between and the snapshot tears.
"""

from __future__ import annotations

import time
from typing import Any

from typing_extensions import TypedDict

from statemigrate import Registry, Service, TrackedDict

COMPONENT = "ledger"
SERVICE = "ledger-service"
KEYS = 5_000


class LedgerV1(TypedDict):
    count: int
    items: dict[str, int]


REGISTRY = Registry()
REGISTRY.add_schema(COMPONENT, 1, LedgerV1)


@REGISTRY.migratable(COMPONENT, version=1)
class Ledger:
    """The live component; :meth:`write` is one change, to be made under the writers' lock."""

    def __init__(self, *, keys: int = KEYS, slow: float = 0.0) -> None:
        self.keys = keys
        self.slow = slow
        self.count = 0
        self.items: dict[str, int] = {}

    def write(self) -> int:
        n = self.count + 1
        self.items[f"k{n % self.keys}"] = n
        self.count = n
        return n

    def export_state(self) -> dict[str, Any]:
        count = self.count
        if self.slow:
            time.sleep(self.slow)
        return {"count": count, "items": self.items}

    def import_state(self, state: LedgerV1) -> None:
        self.count = state["count"]
        self.items = dict(state["items"])


TRACKED_REGISTRY = Registry()
TRACKED_REGISTRY.add_schema(COMPONENT, 1, LedgerV1)


@TRACKED_REGISTRY.migratable(COMPONENT, version=1)
class TrackedLedger:
    """The ledger with its items in a :class:`TrackedDict`, for incremental checkpoints:
    exported and imported field by field, so a delta carries the items written since
    the last piece and the count."""

    def __init__(self, *, keys: int = KEYS) -> None:
        self.keys = keys
        self.count = 0
        self.items: TrackedDict[str, int] = TrackedDict()

    def write(self) -> int:
        n = self.count + 1
        self.items[f"k{n % self.keys}"] = n
        self.count = n
        return n

    def state(self) -> dict[str, Any]:
        return {"count": self.count, "items": dict(self.items)}


def tracked_ledger_service(*, started: bool = True) -> tuple[Service, TrackedLedger]:
    """A service with a new tracked ledger; ``started``: declared a cold start, as a
    service must be before its checkpoints commit."""
    service = Service(SERVICE, registry=TRACKED_REGISTRY)
    ledger = service.register(TrackedLedger())
    if started:
        service.start_cold("a new ledger")
    return service, ledger


def state_after(n: int, *, keys: int = KEYS) -> dict[str, Any]:
    """The one state the ledger has after write ``n``."""
    items = {f"k{w % keys}": w for w in range(max(1, n - keys + 1), n + 1)}
    return {"count": n, "items": items}


def ledger_service(*, slow: float = 0.0, started: bool = True) -> tuple[Service, Ledger]:
    """A service with a new ledger; ``started``: declared a cold start, as a service
    must be before its checkpoints commit (a restore into it goes on as usual)."""
    service = Service(SERVICE, registry=REGISTRY)
    ledger = service.register(Ledger(slow=slow))
    if started:
        service.start_cold("a new ledger")
    return service, ledger
