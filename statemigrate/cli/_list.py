"""``statemigrate list URL``: the generations an object store holds under a prefix."""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any, TextIO

from statemigrate._errors import StateMigrateError, StoreError
from statemigrate._runtime._chain import is_chain, split_chain
from statemigrate._snapshot._format import MAGIC
from statemigrate.cli._arguments import add_prefix_argument
from statemigrate.cli._inspect import human_size, printable
from statemigrate.cli._objects import add_store_argument, open_store
from statemigrate.stores import ObjectRef

__all__ = ["add_list_parser", "describe_generations", "kind_of", "list_command"]


def add_list_parser(commands: Any) -> None:
    """Add ``list`` to the sub-command parsers."""
    parser = commands.add_parser(
        "list",
        help="list the generations under an object-store prefix",
        description="List the snapshot generations under an object-store prefix, newest"
        " first, with their sizes and ages, and which is current and previous; with"
        " --kinds, also which are snapshots and which checkpoint chains.",
    )
    add_prefix_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument(
        "--kinds",
        action="store_true",
        help="read every generation to say whether it is a snapshot or a checkpoint chain"
        " (and of how many pieces); this reads each object whole",
    )
    add_store_argument(parser)
    parser.set_defaults(func=list_command)


def list_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``list``; returns the exit status."""
    store = open_store(args.url, args.store_options)
    refs = store.generations()
    if not refs:
        raise StoreError("list", store.location, "no snapshot has been committed")
    now = datetime.datetime.now(tz=datetime.UTC)
    rows = describe_generations(refs, now=now)
    if args.kinds:
        for ref, row in zip(reversed(refs), rows, strict=True):
            row.update(kind_of(ref) if not row["missing"] else {"kind": None, "pieces": None})
    if args.json:
        json.dump({"location": store.location, "generations": rows}, out, indent=2)
        out.write("\n")
        return 0
    out.write(f"{printable(store.location)}\n\n")
    table = [("GENERATION", "SIZE", "WRITTEN", "AGE", "ROLE", *(("KIND",) if args.kinds else ()))]
    for row in rows:
        table.append(
            (
                str(row["generation"]),
                human_size(row["size"]),
                row["modified"] or "-",
                _age(row["age_seconds"]),
                row["role"] + (" (object missing)" if row["missing"] else ""),
                *((_kind(row),) if args.kinds else ()),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            + "\n"
        )
    return 0


def describe_generations(refs: list[ObjectRef], *, now: datetime.datetime) -> list[dict[str, Any]]:
    """The generations as JSON-ready rows, newest first.

    ``role`` is ``current`` or ``previous`` for the two the pointer records,
    ``unrestored`` for the one it keeps after a start could not restore it, ``no
    pointer`` for every object when the pointer is missing (deleted by hand?),
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
        elif not recorded:
            role = "no pointer"
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


def kind_of(ref: ObjectRef) -> dict[str, Any]:
    """What a generation holds, from its first bytes: ``kind`` is ``snapshot``,
    ``chain`` (with its number of ``pieces``, from the chain's frame), ``unknown``
    (neither), or ``unreadable`` (with the ``error``). Nothing more is verified here;
    ``inspect URL#N --verify`` does that."""
    try:
        data = ref.open()
        if is_chain(data):
            return {"kind": "chain", "pieces": len(split_chain(data))}
    except StateMigrateError as exc:
        return {"kind": "unreadable", "pieces": None, "error": str(exc)}
    if bytes(data[: len(MAGIC)]) == MAGIC:
        return {"kind": "snapshot", "pieces": None}
    return {"kind": "unknown", "pieces": None}


def _kind(row: dict[str, Any]) -> str:
    if row["kind"] is None:
        return "-"
    if row["kind"] == "chain":
        return f"chain of {row['pieces']} piece{'s' if row['pieces'] > 1 else ''}"
    return str(row["kind"])


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
