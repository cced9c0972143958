"""The limits readers enforce and writers check against, whatever the bytes claim.

* The one default size limit on a snapshot: readers (:class:`DecodeLimits`), stores
  (``max_size``), the command line and the handoff's memfd receive all default to
  :data:`DEFAULT_MAX_SNAPSHOT_SIZE`, so a snapshot one part of the library commits is
  one every other part accepts.
* :class:`DecodeLimits`, the bounds on sizes and sections a reader enforces, each
  checked when the limits are made (:func:`check_limits` checks what is passed as
  limits), so that a bad bound fails where it is given, not at the next restore.
* The container budget: how many maps and lists a payload may hold, which the msgpack
  reader (``_msgpack``) enforces and the writer (``_encode``) checks every section
  against, so that whatever a writer commits its reader takes back.

This module imports only the standard library and the errors, so the stores can read
the size limit without loading the format.
"""

import os
from dataclasses import dataclass, field, fields

from statemigrate._errors import ConfigurationError

__all__ = [
    "CONTAINER_ALLOWANCE",
    "DEFAULT_MAX_SNAPSHOT_SIZE",
    "DecodeLimits",
    "budget_total",
    "check_limits",
    "count_containers",
    "section_budget",
]

DEFAULT_MAX_SNAPSHOT_SIZE = 4 << 30
"""The largest snapshot, in bytes, accepted or committed by default (4 GiB)."""


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds a reader enforces whatever the snapshot claims.

    Decoded objects can take up to ~42 bytes of memory per raw byte (a flood of small
    integers), ~52 in a section at the largest size that mixes them with empty
    containers (see docs/format.md), so the default raw limit is the machine's memory
    divided by 48: a hostile snapshot can ask for about the machine's memory at most,
    while real state (a million-entry cache is ~60 MiB raw) stays far below it. Raise
    it for larger state. A :class:`~statemigrate.Service` also holds the snapshots it
    writes to its limits, so that it can restore whatever it commits.

    Attributes:
        max_snapshot_size: largest snapshot accepted, in bytes (default
            :data:`DEFAULT_MAX_SNAPSHOT_SIZE`, the limit stores and the handoff share).
        max_section_size: largest raw (decompressed) section accepted, in bytes.
        max_total_size: largest sum of raw section sizes accepted, in bytes.
        max_sections: most sections accepted.

    Raises:
        ConfigurationError: a bound is not an int (a bool is not one) of 1 or more;
            the error names it.
    """

    max_snapshot_size: int = DEFAULT_MAX_SNAPSHOT_SIZE
    max_section_size: int = field(default_factory=lambda: _memory_share())
    max_total_size: int = field(default_factory=lambda: _memory_share())
    max_sections: int = 100_000

    def __post_init__(self) -> None:
        # Checked here, where the bound is given: left to the reader, a str failed
        # with a bare TypeError at the first section read, and -1 refused every
        # snapshot as too large.
        for bound in fields(self):
            value = getattr(self, bound.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                unit = "" if bound.name == "max_sections" else " (bytes)"
                raise ConfigurationError(
                    bound.name, f"must be an int of 1 or more{unit}, not {value!r:.60}"
                )


def check_limits(limits: object, option: str = "limits") -> DecodeLimits:
    """``limits`` when it is a :class:`DecodeLimits`, the defaults when it is ``None``.

    Raises:
        ConfigurationError: it is anything else (a number, a dict of bounds); the
            error names ``option``.
    """
    if limits is None:
        return DecodeLimits()
    if not isinstance(limits, DecodeLimits):
        raise ConfigurationError(
            option, f"must be a DecodeLimits or None, not {type(limits).__qualname__}"
        )
    return limits


def _memory_share() -> int:
    """A 48th of physical memory, at least 64 MiB (1 GiB where memory is unknown)."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 1 << 30
    return max(64 << 20, physical // 48)


# --- containers in a payload ---------------------------------------------------------

CONTAINER_ALLOWANCE = 16_384
"""Containers any payload may hold on top of one per two bytes.

Plain data routinely spends fewer than eight bytes per container (``{"a": {}}`` is four
bytes and two containers; ``[[1, 2], [3, 4]]`` is three bytes per pair), and whatever
the writer packs, the reader must take back. One per two bytes admits every shape but
floods of empty containers, whose memory (about 36x their bytes at the limit) stays
below what plain scalars already cost; the allowance keeps small payloads of any shape
readable."""


def budget_total(size: int, container_budget: int | None) -> int:
    """The container budget :func:`~statemigrate._snapshot._msgpack.unpack_data` applies
    to ``size`` input bytes."""
    return container_budget if container_budget is not None else size // 2 + CONTAINER_ALLOWANCE


def section_budget(size: int, max_section_size: int) -> int:
    """The containers a snapshot section of ``size`` raw bytes may hold, for a reader
    that takes sections of up to ``max_section_size`` bytes.

    One per two bytes, as any payload may; and beyond that, up to one per byte (the
    most bytes can encode) as long as the section holds no more containers than a
    section of the largest size may. Dense data (a list of mostly empty lists) then
    costs no more memory than the reader already accepts from its largest section,
    and a state of any shape restores unless it is both dense and huge.
    """
    return max(size // 2, min(size, max_section_size // 2)) + CONTAINER_ALLOWANCE


def count_containers(data: object) -> int:
    """How many maps and lists the plain data ``data`` holds, itself included, the way
    msgpack writes them (a tuple counts as the list it is written as)."""
    count = 0
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            count += 1
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            count += 1
            stack.extend(value)
    return count
