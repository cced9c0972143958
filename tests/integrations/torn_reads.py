"""A read that changes the state, stopped halfway: the reference cache whose entries
stop a read after it took a key out and before it put it back (an LRU's move to the
end), so that a test exports the state at that very moment."""

from __future__ import annotations

import threading
from typing import Any

import statemigrate as sm
from statemigrate.reference import KVCacheV1, build_registry

DEADLINE = 60.0  # bounds every wait: a hang fails, a slow machine passes


class StoppingEntries(sm.TrackedDict[str, Any]):
    """Tracked entries whose next ``pop`` (once :meth:`stop_next_pop` armed it) stops
    after taking the key out: ``taken`` says it is out, ``go_on`` lets it return."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.taken = threading.Event()
        self.go_on = threading.Event()
        self._armed = False

    def stop_next_pop(self) -> None:
        self._armed = True

    def pop(self, key: Any, *default: Any) -> Any:
        value = super().pop(key, *default)
        if self._armed:
            self._armed = False
            self.taken.set()
            assert self.go_on.wait(DEADLINE), "the stopped read was never let go"
        return value


def service_with(entries: dict[str, str]) -> tuple[sm.Service, KVCacheV1, StoppingEntries]:
    """A service holding the reference cache (release 1) with ``entries``."""
    cache = KVCacheV1()
    stopping = StoppingEntries(entries)
    cache.entries = stopping
    service = sm.Service("torn-reads", registry=build_registry())
    service.register(cache)
    return service, cache, stopping


def restored_keys(snapshot: bytes) -> set[str]:
    """The keys a fresh service gets from ``snapshot``."""
    service, cache, _ = service_with({})
    service.restore(snapshot)
    return set(cache.entries)
