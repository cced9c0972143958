"""``statemigrate list URL``: the generations an object store holds under a prefix."""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any, TextIO

from statemigrate._errors import StoreError
from statemigrate.cli._inspect import human_size, printable
from statemigrate.cli._objects import add_store_argument, open_store
from statemigrate.stores import ObjectRef

__all__ = ["add_list_parser", "describe_generations", "list_command"]


def add_list_parser(commands: Any) -> None:
    """Add ``list`` to the sub-command parsers."""
    parser = commands.add_parser(
        "list",
        help="list the generations under an object-store prefix",
        description="List the snapshot generations under an object-store prefix, newest"
        " first, with their sizes and ages, and which is current and previous.",
    )
    parser.add_argument(
        "url", metavar="URL", help="s3://bucket/prefix, gs://..., az://... or file:///path"
    )
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    add_store_argument(parser)
    parser.set_defaults(func=list_command)


def list_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``list``; returns the exit status."""
    if "#" in args.url:
        raise StoreError("list", args.url, "list takes a prefix: give the URL without #...")
    store = open_store(args.url, args.store_options)
    refs = store.generations()
    if not refs:
        raise StoreError("list", store.location, "no snapshot has been committed")
    now = datetime.datetime.now(tz=datetime.UTC)
    rows = describe_generations(refs, now=now)
    if args.json:
        json.dump({"location": store.location, "generations": rows}, out, indent=2)
        out.write("\n")
        return 0
    out.write(f"{printable(store.location)}\n\n")
    table = [("GENERATION", "SIZE", "WRITTEN", "AGE", "ROLE")]
    for row in rows:
        table.append(
            (
                str(row["generation"]),
                human_size(row["size"]),
                row["modified"] or "-",
                _age(row["age_seconds"]),
                row["role"] + (" (object missing)" if row["missing"] else ""),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
            .rstrip() + "\n"
        )
    return 0


def describe_generations(
    refs: list[ObjectRef], *, now: datetime.datetime
) -> list[dict[str, Any]]:
    """The generations as JSON-ready rows, newest first.

    ``role`` is ``current`` or ``previous`` for the two the pointer records,
    ``older`` for a generation below those that a larger ``keep`` still holds, and
    ``not committed`` for an object no commit won (a generation the pointer records
    with another object, or one above the current generation): a writer died or lost
    its connection before its commit decided.
    """
    recorded = {ref.generation for ref in refs if ref.role is not None}
    newest = max(recorded, default=0)
    rows = []
    for ref in reversed(refs):
        role: str
        if ref.role is not None:
            role = ref.role
        elif ref.generation in recorded or ref.generation > newest:
            role = "not committed"
        else:
            role = "older"
        modified = ref.modified
        rows.append(
            {
                "generation": ref.generation,
                "object": ref.describe(),
                "size": ref.size,
                "modified": None if modified is None else _iso(modified),
                "age_seconds": None
                if modified is None
                else round(max(0.0, (now - modified).total_seconds()), 3),
                "role": role,
                "missing": modified is None,
            }
        )
    return rows


def _iso(moment: datetime.datetime) -> str:
    utc = moment.astimezone(datetime.UTC)
    return utc.isoformat(timespec="seconds").replace("+00:00", "Z")


def _age(seconds: float | None) -> str:
    """``45s``, ``3m 12s``, ``5h 04m``, ``2d 03h``."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, second = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {second:02d}s"
    hours, minute = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minute:02d}m"
    days, hour = divmod(hours, 24)
    return f"{days}d {hour:02d}h"
