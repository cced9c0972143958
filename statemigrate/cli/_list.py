"""``statemigrate list STORE``: the generations an object store holds under a prefix,
or the snapshots a TmpfsStore's directory holds."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import Any, TextIO

from statemigrate._errors import StoreError
from statemigrate.cli._arguments import UsageError, store_location
from statemigrate.cli._inspect import human_size, one_line, printable
from statemigrate.cli._kinds import kind_of_file, kind_of_generation
from statemigrate.cli._objects import add_store_argument, is_object_url, open_store
from statemigrate.stores import ObjectRef
from statemigrate.stores._object import list_generations
from statemigrate.stores._tmpfs_listing import TmpfsFile, list_tmpfs

__all__ = [
    "add_list_parser",
    "describe_files",
    "describe_generations",
    "list_command",
]


def add_list_parser(commands: Any) -> None:
    """Add ``list`` to the sub-command parsers."""
    parser = commands.add_parser(
        "list",
        help="list the generations under an object-store prefix, or a TmpfsStore's snapshots",
        description="List the snapshot generations under an object-store prefix, newest"
        " first, with their sizes and ages, and which is current and previous; or, given"
        " a TmpfsStore's directory, its current, previous and unrestored snapshots. With"
        " --kinds, also which are snapshots, which checkpoint chains, and which damaged.",
    )
    parser.add_argument(
        "url",
        metavar="STORE",
        type=store_location,
        help="s3://bucket/prefix, gs://..., az://..., file:///path, or a TmpfsStore's"
        " directory (/dev/shm/gateway)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument(
        "--kinds",
        action="store_true",
        help="say whether each generation is a snapshot, a checkpoint chain (of how many"
        " pieces) or damaged (cut short, grown, a broken header or frame), from a few KiB"
        " at its ends; a damaged chunk inside needs `inspect --verify`",
    )
    add_store_argument(parser)
    parser.set_defaults(func=list_command)


def list_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``list``; returns the exit status."""
    if not is_object_url(args.url):
        return _list_directory(args, out)
    store = open_store(args.url, args.store_options)
    refs, damaged = list_generations(store)
    if damaged is not None:
        if not refs:
            raise damaged  # nothing to list: the pointer's line says what to do
        # Listed all the same: the listing is how an operator finds the generation to
        # restore before deleting the pointer, which the warning says to do.
        _warn(f"{damaged}; roles unknown until it is deleted")
    if not refs:
        raise StoreError("list", store.location, "no snapshot has been committed")
    now = datetime.datetime.now(tz=datetime.UTC)
    rows = describe_generations(refs, now=now, pointer_damaged=damaged is not None)
    if args.kinds:
        for ref, row in zip(reversed(refs), rows, strict=True):
            row.update(
                kind_of_generation(ref) if not row["missing"] else {"kind": None, "pieces": None}
            )
    firsts = [str(row["generation"]) for row in rows]
    _write(
        out,
        store.location,
        ("GENERATION", firsts),
        rows,
        json_out=args.json,
        kinds=args.kinds,
        pointer_damaged=None if damaged is None else str(damaged),
        unrestored=[ref.generation for ref in refs if "unrestored" in ref.roles],
    )
    return 0


def _warn(message: str) -> None:
    """One line on stderr, beside a listing that goes on (nothing when stderr is
    closed: print() would write to stdout instead)."""
    if sys.stderr is not None:
        print(f"statemigrate: warning: {printable(one_line(message))}", file=sys.stderr)


def _list_directory(args: argparse.Namespace, out: TextIO) -> int:
    """``list`` of a TmpfsStore's directory: its files, as rows of the same shape as an
    object store's generations."""
    if args.store_options:
        raise UsageError("--store-option applies to object-store URLs, not to a directory")
    files = list_tmpfs(args.url)
    rows = describe_files(files, now=datetime.datetime.now(tz=datetime.UTC))
    if args.kinds:
        for entry, row in zip(files, rows, strict=True):
            row.update(kind_of_file(entry))
    location = os.path.abspath(args.url)
    names = [entry.name for entry in files]
    _write(out, location, ("FILE", names), rows, json_out=args.json, kinds=args.kinds)
    return 0


def _write(
    out: TextIO,
    location: str,
    first: tuple[str, list[str]],
    rows: list[dict[str, Any]],
    *,
    json_out: bool,
    kinds: bool,
    pointer_damaged: str | None = None,
    unrestored: list[int] | None = None,
) -> None:
    """The listing: JSON, or the location and a table whose first column is ``first``
    (its heading and cells). ``pointer_damaged``: the damaged pointer's error, which
    JSON carries as ``pointer`` and ``pointer_error``. ``unrestored``: an object
    store's generations kept as unrestored, which JSON carries as ``unrestored`` and
    the table follows with a line naming them and the command that lets them go."""
    if json_out:
        document: dict[str, Any] = {"location": location, "generations": rows}
        if pointer_damaged is not None:
            document.update(pointer="damaged", pointer_error=pointer_damaged)
        if unrestored is not None:
            document["unrestored"] = unrestored
        json.dump(document, out, indent=2, sort_keys=True)
        out.write("\n")
        return
    out.write(f"{printable(location)}\n\n")
    heading, cells = first
    table = [(heading, "SIZE", "WRITTEN", "AGE", "ROLE", *(("KIND",) if kinds else ()))]
    for cell, row in zip(cells, rows, strict=True):
        table.append(
            (
                printable(cell),
                human_size(row["size"]),
                row["modified"] or "-",
                _age(row["age_seconds"]),
                _role(row),
                *((_kind(row),) if kinds else ()),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            + "\n"
        )
    if unrestored:
        numbers = ", ".join(str(number) for number in unrestored)
        which = f"generation {numbers}" if len(unrestored) == 1 else f"generations {numbers}"
        it = "it" if len(unrestored) == 1 else "them"
        out.write(
            f"\nkept as unrestored: {which}, which a start could not restore (or a"
            " pointer made anew found, its record lost); retention"
            f" keeps {it} until `statemigrate forget-unrestored` lets {it} go\n"
        )


def _role(row: dict[str, Any]) -> str:
    """The ROLE cell: every role, then what is wrong with the object, if anything."""
    roles = ", ".join(row["roles"])
    if row["missing"]:
        return f"{roles} (object missing)"
    if row.get("not_regular"):
        return f"{roles} ({row['not_regular']}, refused)"
    return roles


def describe_generations(
    refs: list[ObjectRef], *, now: datetime.datetime, pointer_damaged: bool = False
) -> list[dict[str, Any]]:
    """The generations as JSON-ready rows, newest first.

    ``role`` is ``current`` or ``previous`` for the two the pointer records,
    ``unrestored`` for the one it keeps after a start could not restore it, ``no
    pointer`` for every object when the pointer is missing (deleted by hand?),
    ``older`` for a generation below those that a larger ``keep`` still holds, and
    ``not committed`` for an object no commit won (a generation the pointer records
    with another object, or one above the current generation): a writer died or lost
    its connection before its commit decided; ``unknown`` for every object when the
    pointer is damaged (``pointer_damaged``). ``roles`` lists every role: a
    generation the pointer records as both ``previous`` and ``unrestored`` has both
    (``role`` is the first of them).
    """
    recorded = {ref.generation for ref in refs if ref.role is not None}
    newest = max(recorded, default=0)
    rows = []
    for ref in reversed(refs):
        roles: list[str]
        if ref.roles:
            roles = list(ref.roles)
        elif pointer_damaged:
            roles = ["unknown"]
        elif not recorded:
            roles = ["no pointer"]
        elif ref.generation in recorded or ref.generation > newest:
            roles = ["not committed"]
        else:
            roles = ["older"]
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
                "role": roles[0],
                "roles": roles,
                "missing": modified is None,
            }
        )
    return rows


def describe_files(files: list[TmpfsFile], *, now: datetime.datetime) -> list[dict[str, Any]]:
    """A TmpfsStore's files as rows of the shape :func:`describe_generations` gives,
    newest first: ``generation`` is ``None`` (the store numbers no generations; each
    snapshot's header holds its own), ``object`` the file's path, ``role``
    ``current``, ``previous``, ``unrestored`` or ``not committed`` (a commit's
    temporary file: a writer killed inside its commit, or one committing now), and
    ``roles`` the same alone (each file is one role: ``unrestored`` is a copy), and
    ``not_regular`` what a file that is not a regular one is (the store refuses it),
    else ``None``."""
    return [
        {
            "generation": None,
            "object": entry.path,
            "size": entry.size,
            "modified": _iso(entry.modified),
            "age_seconds": round(max(0.0, (now - entry.modified).total_seconds()), 3),
            "role": entry.role,
            "roles": [entry.role],
            "missing": False,
            "not_regular": entry.not_regular,
        }
        for entry in files
    ]


def _kind(row: dict[str, Any]) -> str:
    if row["kind"] is None:
        return "-"
    if row["kind"] == "chain":
        return f"chain of {row['pieces']} piece{'s' if row['pieces'] > 1 else ''}"
    if row["kind"] == "damaged":
        return f"damaged ({row['damage']})"
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
