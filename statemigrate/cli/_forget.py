"""``statemigrate forget-unrestored URL``: let retention delete the generations an
object store keeps as ``unrestored``.

A start that could not restore the latest snapshot makes the store keep it, out of
retention's reach, until someone has looked at it. This is the operator's way of
saying "looked at, not needed", without writing Python against the store.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from statemigrate.cli._arguments import add_prefix_argument
from statemigrate.cli._inspect import printable
from statemigrate.cli._objects import add_store_argument, open_store

__all__ = ["add_forget_parser", "forget_command"]


def add_forget_parser(commands: Any) -> None:
    """Add ``forget-unrestored`` to the sub-command parsers."""
    parser = commands.add_parser(
        "forget-unrestored",
        help="let retention delete the generations kept as unrestored after a failed start",
        description="Remove the generations kept as unrestored (after a start that could not"
        " restore them) from the store's pointer, so that the next commit's retention"
        " deletes their objects. Nothing is deleted now; `list` shows them until then.",
    )
    add_prefix_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    add_store_argument(parser)
    parser.set_defaults(func=forget_command)


def forget_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``forget-unrestored``; returns the exit status (0 also when none was kept)."""
    store = open_store(args.url, args.store_options)
    # Raises StoreConflictError when another writer commits between the pointer's read
    # and its swap: the command is then simply run again.
    kept = store.forget_unrestored()
    if args.json:
        json.dump({"location": store.location, "forgotten": kept}, out, indent=2, sort_keys=True)
        out.write("\n")
        return 0
    where = printable(store.location)
    if not kept:
        out.write(f"{where}: no generation is kept as unrestored\n")
        return 0
    numbers = ", ".join(str(generation) for generation in kept)
    if len(kept) == 1:
        noun, them, they_are = "generation", "it", "it is"
    else:
        noun, them, they_are = "generations", "them", "they are"
    out.write(
        f"{where}: {noun} {numbers} no longer kept as unrestored;"
        f" the next commit's retention deletes {them}, unless {they_are} among the"
        " generations `keep` holds\n"
    )
    return 0
