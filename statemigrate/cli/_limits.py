"""``--max-section-size SIZE`` (or ``$STATEMIGRATE_MAX_SECTION_SIZE``): the reader's
limit on a section's decoded size, for the commands that decode sections.

The default limits (:class:`~statemigrate.DecodeLimits`) follow the machine's memory
so that any snapshot a service committed restores again; a sealed snapshot that was
not authenticated can still make a reader build about the machine's memory in
objects (docs/format.md, "Memory"). For files of unknown origin, lower the limit
here: a section larger than it is refused from the header, before it is decompressed.
"""

from __future__ import annotations

import argparse
import os
import re

from statemigrate._snapshot._limits import DecodeLimits
from statemigrate.cli._usage import UsageError

__all__ = ["MAX_SECTION_SIZE_VARIABLE", "add_limit_argument", "limits_from", "size_value"]

MAX_SECTION_SIZE_VARIABLE = "STATEMIGRATE_MAX_SECTION_SIZE"
"""The environment variable giving ``--max-section-size`` when the option is not given."""

_SIZE = re.compile(r"([0-9]{1,20})\s*(B|KiB|MiB|GiB|TiB)?", re.ASCII)
_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def size_value(text: str) -> int:
    """An argparse ``type``: a size in bytes, ``65536`` or with a binary unit
    (``64KiB``, ``16MiB``, ``1GiB``), at least 1 byte.

    Raises:
        argparse.ArgumentTypeError: another form, or 0.
    """
    found = _SIZE.fullmatch(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(
            f"expected a size in bytes, such as 16777216 or 16MiB (units B, KiB, MiB, GiB,"
            f" TiB), not {text[:40]!r}"
        )
    size = int(found.group(1)) * _UNITS[found.group(2)]
    if size < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, not {text[:40]!r}")
    return size


def add_limit_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--max-section-size`` option of the commands that decode sections."""
    parser.add_argument(
        "--max-section-size",
        type=size_value,
        metavar="SIZE",
        help="refuse a section whose decoded size is larger (16MiB, 1GiB, ...): for"
        " snapshots from sources not trusted (default: $"
        f"{MAX_SECTION_SIZE_VARIABLE}, else a 48th of the machine's memory)",
    )


def limits_from(args: argparse.Namespace) -> DecodeLimits:
    """The reader's limits: the defaults, with the section size that
    ``--max-section-size`` or :data:`MAX_SECTION_SIZE_VARIABLE` gives.

    A size above the defaults raises the limit on all sections together to it as well,
    so that one section of that size is taken.

    Raises:
        UsageError: the variable holds no size.
    """
    size: int | None = args.max_section_size
    if size is None:
        named = os.environ.get(MAX_SECTION_SIZE_VARIABLE)
        if named is None or not named.strip():
            return DecodeLimits()
        try:
            size = size_value(named)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"${MAX_SECTION_SIZE_VARIABLE}: {exc}") from None
    defaults = DecodeLimits()
    return DecodeLimits(
        max_section_size=size, max_total_size=max(size, defaults.max_total_size)
    )
