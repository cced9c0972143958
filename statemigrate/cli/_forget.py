"""``statemigrate forget-unrestored URL``: let retention delete the generations an
object store keeps as ``unrestored``.

A start that could not restore the latest snapshot makes the store keep it, out of
retention's reach, until someone has looked at it. This is the operator's way of
saying "looked at, not needed", without writing Python against the store.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, TextIO

from statemigrate.cli._arguments import UsageError, add_prefix_argument
from statemigrate.cli._inspect import printable
from statemigrate.cli._objects import add_store_argument, is_object_url, open_store

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
    if not is_object_url(args.url):
        raise UsageError(_not_an_object_store(args.url))
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


def _not_an_object_store(path: str) -> str:
    """The refusal of a path: only an object store keeps generations out of retention's
    reach. A ``TmpfsStore`` keeps one copy, its directory's ``unrestored`` file, which
    no commit touches: removing it is what lets it go (docs/stores.md)."""
    where = printable(path)
    kept = os.path.join(path, "unrestored")
    if os.path.isfile(kept):
        cure = (
            f"{where} is a TmpfsStore's directory, which keeps the snapshot a start could"
            f" not restore as the file {printable(kept)}, untouched by commits: once you no"
            f" longer need it (`statemigrate inspect {printable(kept)}` reads it), remove"
            f" it: `rm {printable(kept)}`"
        )
    elif os.path.isdir(path):
        cure = f"{where} is a directory with no unrestored file: nothing is kept there"
    else:
        cure = f"{where} is neither an object store's URL nor a directory"
    return (
        "forget-unrestored is for object stores (s3://, gs://, az://, file://, memory://),"
        f" which keep generations out of retention's reach; {cure}"
    )
