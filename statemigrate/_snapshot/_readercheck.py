"""Holding a snapshot being written to the limits of the reader that will restore it.

A :class:`~statemigrate.Service` restores what it commits with its own
:class:`~statemigrate._snapshot._limits.DecodeLimits`; :class:`ReaderCheck` applies
those limits to every section as the writer (``_encode``) packs it, so a snapshot the
reader would refuse is never committed.
"""

from __future__ import annotations

from statemigrate._snapshot._limits import DecodeLimits, count_containers, section_budget

__all__ = ["BeyondReader", "ReaderCheck"]


class BeyondReader(Exception):
    """A section a reader with the writer's limits would refuse: the ``index``-th."""

    def __init__(self, index: int, detail: str) -> None:
        super().__init__(detail)
        self.index = index
        self.detail = detail


class ReaderCheck:
    """The limits of a reader (:class:`DecodeLimits`) that every section written must
    stay within, checked as the sections are packed: a snapshot the reader would
    refuse is never committed."""

    def __init__(self, limits: DecodeLimits) -> None:
        self._limits = limits
        self._total = 0
        self.section = 0
        """The section being packed, which a snapshot grown too large is blamed on."""

    def add(self, index: int, piece: int, section: int) -> None:
        """Count a ``piece`` more raw bytes of section ``index`` (``section`` so far)."""
        self.section = index
        self._total += piece
        if self._total > self._limits.max_total_size:
            raise BeyondReader(
                index,
                f"the snapshot's sections come to more than {self._limits.max_total_size}"
                " bytes of msgpack, the most a restore here reads"
                " (DecodeLimits.max_total_size of the service's limits)",
            )
        if section > self._limits.max_section_size:
            raise BeyondReader(
                index,
                f"its section comes to more than {self._limits.max_section_size} bytes"
                " of msgpack, the most a restore here reads"
                " (DecodeLimits.max_section_size of the service's limits)",
            )

    def written(self, size: int) -> None:
        """Check the ``size`` bytes of the snapshot written so far."""
        if size > self._limits.max_snapshot_size:
            raise BeyondReader(
                self.section,
                f"the snapshot comes to more than {self._limits.max_snapshot_size} bytes,"
                " the most a restore here reads (DecodeLimits.max_snapshot_size of the"
                " service's limits)",
            )

    def section_done(self, index: int, raw_size: int, data: object) -> None:
        """Check how many maps and lists a whole section holds, when it is so large
        that its shape matters."""
        largest = self._limits.max_section_size
        # Up to half the largest size every shape fits (see section_budget); beyond
        # it, the containers are counted in the data, which costs a walk of it.
        if raw_size <= largest // 2:
            return
        containers = count_containers(data)
        budget = section_budget(raw_size, largest)
        if containers > budget:
            raise BeyondReader(
                index,
                f"its section holds {containers} maps and lists in {raw_size} bytes of"
                f" msgpack, more than the {budget} a restore here accepts (mostly empty"
                " ones); raise DecodeLimits.max_section_size of the service's limits",
            )
