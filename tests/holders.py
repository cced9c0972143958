"""A component that holds whatever state it is given, for tests of the round trip."""

from __future__ import annotations

from typing import Any


class Holder:
    """Exports its ``state`` as it is and takes a restored one whole. Register a
    subclass per component (``registry.migratable(name, version=...)``)."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def export_state(self) -> Any:
        return self.state

    def import_state(self, state: Any) -> None:
        self.state = state
