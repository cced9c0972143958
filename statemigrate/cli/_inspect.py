"""``statemigrate inspect``: show what a snapshot holds, verify it, dump a section."""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from types import TracebackType
from typing import Any, TextIO

from statemigrate._errors import SnapshotError
from statemigrate._runtime._chainread import Chain, composed_sections, link_break
from statemigrate._snapshot._format import Snapshot
from statemigrate._snapshot._header import SectionInfo
from statemigrate.cli._arguments import snapshot_source
from statemigrate.cli._dumpjson import dump_json
from statemigrate.cli._limits import add_limit_argument, limits_from
from statemigrate.cli._objects import add_store_argument, open_source
from statemigrate.cli._registryargs import add_registry_arguments, named_registry
from statemigrate.cli._source import KEY_FILE_VARIABLE, read_key_option
from statemigrate.stores import ObjectRef

__all__ = [
    "Progress",
    "add_inspect_parser",
    "describe_chain",
    "inspect_chain",
    "inspect_command",
    "one_line",
    "printable",
]


def add_inspect_parser(commands: Any) -> None:
    """Add ``inspect`` to the sub-command parsers."""
    parser = commands.add_parser(
        "inspect",
        help="show a snapshot's (or checkpoint chain's) header and sections",
        description="Show a snapshot's header and sections, or each piece of a checkpoint"
        " chain. SNAPSHOT is a file path, fd:N for an inherited descriptor (e.g. a sealed"
        " memfd), or an object-store URL (s3://bucket/prefix, with #previous or #N for"
        " another generation).",
    )
    parser.add_argument(
        "snapshot",
        metavar="SNAPSHOT",
        type=snapshot_source,
        help="a file path, fd:N, or URL[#current|#previous|#N]",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="decompress every section and check every checksum (of every piece of a chain,"
        " and the links between them); exit 1 on the first failure",
    )
    parser.add_argument(
        "--dump",
        type=_section_name,
        metavar="COMPONENT[/INSTANCE]",
        help="print the decoded state of one section as JSON (of a chain: the state it"
        " restores to)",
    )
    add_key_argument(parser)
    add_limit_argument(parser)
    add_store_argument(parser)
    # For --dump of a chain: its record keys are then matched by value, as a restore does.
    add_registry_arguments(parser)
    parser.set_defaults(func=inspect_command)


def _section_name(text: str) -> str:
    """``--dump``'s value: a component's name, with an instance after a slash."""
    if not text.partition("/")[0]:
        raise argparse.ArgumentTypeError(
            f"expected COMPONENT or COMPONENT/INSTANCE, not {text[:80]!r}"
        )
    return text


def add_key_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--key-file`` option shared by commands that read snapshots."""
    parser.add_argument(
        "--key-file",
        metavar="PATH",
        help="file holding the HMAC key of authenticated snapshots"
        f" (default: ${KEY_FILE_VARIABLE})",
    )


def inspect_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``inspect``; returns the exit status."""
    key = read_key_option(args.key_file)
    snapshot, origin = open_source(
        args.snapshot, key=key, options=args.store_options, limits=limits_from(args)
    )
    if isinstance(snapshot, Chain):
        return inspect_chain(snapshot, origin, args, out)
    sections = snapshot.header.sections
    statuses = ["digest ok"] * len(sections)
    if args.verify:
        with Progress(len(sections), verb="verifying") as progress:
            for index, section in enumerate(sections):
                snapshot.read_raw(index)  # raises on the first bad chunk or section
                statuses[index] = "verified"
                progress.step(section.key)
    if args.dump is not None:
        # A plain snapshot's section needs no registry to decode, but one named must
        # load, as for a chain's: a broken --registry is not passed over in silence.
        named_registry(args)
        index = find_section(snapshot, args.dump)
        value = snapshot.read_section(index)
        out.write(dump_json(value, section=sections[index].key))
        return 0
    if args.json:
        info = describe(snapshot, statuses)
        if origin is not None:
            info["object"] = describe_origin(origin)
        json.dump(info, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        if origin is not None:
            out.write(render_origin(origin))
        out.write(render(snapshot, statuses))
    return 0


def describe_origin(origin: ObjectRef) -> dict[str, Any]:
    """Where in an object store a snapshot was read from, as JSON-ready data, and
    whether the store checked it against the digest its commit recorded (why not, in
    ``store_digest_skipped``)."""
    return {
        "location": origin.describe(),
        "generation": origin.generation,
        "role": origin.role,
        "store_digest_checked": origin.unchecked is None,
        "store_digest_skipped": origin.unchecked,
    }


def render_origin(origin: ObjectRef) -> str:
    """The ``object`` line that ``inspect`` prints first for a snapshot from a URL,
    and a ``checked`` line when the store's digest check was skipped: the log's
    warning is not all an operator reading the output sees."""
    role = f", {origin.role}" if origin.role else ""
    text = f"object     {printable(origin.describe())}  (generation {origin.generation}{role})\n"
    if origin.unchecked is not None:
        text += (
            "checked    not against the store's digest (the snapshot's own checks still"
            f" apply): {printable(one_line(origin.unchecked))}\n"
        )
    return text


class Progress:
    """A one-line counter on stderr, shown only when stderr is a terminal.

    Used as a context manager, it ends its line however the work ends, so an error
    message that follows starts on a line of its own.
    """

    def __init__(self, total: int, *, verb: str) -> None:
        self.total = total
        self.verb = verb
        self.done = 0
        self.enabled = total > 0 and sys.stderr is not None and sys.stderr.isatty()
        self._line_open = False

    def step(self, name: str) -> None:
        """Count one item done and redraw the line."""
        self.done += 1
        if self.enabled:
            sys.stderr.write(f"\r  {self.verb} [{self.done}/{self.total}] {printable(name):<40}")
            sys.stderr.flush()
            self._line_open = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._line_open:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._line_open = False


def find_section(snapshot: Snapshot, name: str) -> int:
    """Index of the section ``component`` or ``component/instance``.

    Raises:
        SnapshotError: no such section, or a bare component name matches several.
    """
    component, _, instance = name.partition("/")
    matches = [
        i
        for i, s in enumerate(snapshot.header.sections)
        if s.component == component and (not instance or s.instance == instance)
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        names = ", ".join(s.key for s in snapshot.header.sections) or "none"
        raise SnapshotError("invalid_data", f"no section {name!r}; sections: {names}")
    names = ", ".join(snapshot.header.sections[i].key for i in matches)
    raise SnapshotError(
        "invalid_data", f"{name!r} matches several sections ({names}); add /INSTANCE"
    )


def describe(snapshot: Snapshot, statuses: list[str]) -> dict[str, Any]:
    """The snapshot's header and per-section facts as JSON-ready data."""
    header = snapshot.header
    return {
        "snapshot_id": header.snapshot_id,
        "format_version": snapshot.format_version,
        "authenticated": snapshot.authenticated,
        "size": snapshot.size,
        "created": _iso(header.created_ns),
        "generation": header.generation,
        "kind": "delta" if header.base is not None else "full",
        "base": None
        if header.base is None
        else {"snapshot_id": header.base.snapshot_id, "generation": header.base.generation},
        "producer": {
            "service": header.producer.service,
            "code_version": header.producer.code_version,
            "python": header.producer.python,
            "host": header.producer.host,
            "pid": header.producer.pid,
            "library": header.producer.library,
        },
        "meta": header.meta,
        "sections": [
            {
                "component": s.component,
                "instance": s.instance,
                "version": s.version,
                "fingerprint": s.fingerprint,
                "raw_size": s.raw_size,
                "stored_size": s.stored_size,
                "ratio": _ratio(s),
                "chunks": len(s.chunks),
                "status": status,
            }
            for s, status in zip(header.sections, statuses, strict=True)
        ],
    }


def _iso(created_ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(created_ns / 1e9, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ratio(section: SectionInfo) -> float:
    return round(section.raw_size / section.stored_size, 2) if section.stored_size else 1.0


def human_size(size: int) -> str:
    """``1.5 MiB``-style size."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def printable(text: str) -> str:
    """``text`` with each character a terminal would act on or hide escaped.

    Control characters (escape sequences, carriage returns, newlines), format
    characters (such as right-to-left overrides) and other non-printables become
    Python-style escapes (``\\x1b``, ``\\n``, ``\\u202e``). The strings a snapshot
    holds are whatever its writer chose; shown as they are they could rewrite what the
    operator sees.
    """
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def one_line(text: str) -> str:
    """``text`` on one line: messages may quote multi-line causes (pydantic, user code).

    Only real line breaks join lines, with ``" | "``; any other separator is left for
    :func:`printable` to escape, so that nothing a message quotes is lost.
    """
    lines = (line.strip() for line in re.split(r"\r\n|\r|\n", text))
    return " | ".join(line for line in lines if line)


def render(snapshot: Snapshot, statuses: list[str]) -> str:
    """The human-readable ``inspect`` output; every string from the snapshot is escaped
    with :func:`printable`."""
    info = describe(snapshot, statuses)
    producer = {key: printable(str(value)) for key, value in info["producer"].items()}
    integrity = "HMAC-SHA256" if info["authenticated"] else "xxh3-128"
    lines = [
        f"snapshot   {printable(info['snapshot_id'])}",
        f"format     v{info['format_version']}, {human_size(info['size'])}, {integrity}",
        f"created    {info['created']}  generation {info['generation']}",
    ]
    if info["base"] is not None:
        lines.append(
            f"delta of   {printable(info['base']['snapshot_id'])}"
            f"  generation {info['base']['generation']} (applies on top of that snapshot)"
        )
    lines += [
        f"producer   {producer['service']} {producer['code_version'] or '-'}"
        f" (pid {producer['pid']} on {producer['host']}, Python {producer['python']},"
        f" {producer['library']})",
    ]
    for key, value in sorted(info["meta"].items()):
        lines.append(f"meta       {printable(key)}={printable(value)}")
    rows = [("COMPONENT", "INSTANCE", "VERSION", "RAW", "STORED", "RATIO", "CHUNKS", "STATUS")]
    for s in info["sections"]:
        rows.append(
            (
                printable(s["component"]),
                printable(s["instance"]),
                str(s["version"]),
                human_size(s["raw_size"]),
                human_size(s["stored_size"]),
                f"{s['ratio']:.2f}x",
                str(s["chunks"]),
                s["status"],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines.append("")
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if len(rows) == 1:
        lines.append("(no sections)")
    return "\n".join(line.rstrip() for line in lines) + "\n"


# --- checkpoint chains ------------------------------------------------------------------



def inspect_chain(
    chain: Chain, origin: ObjectRef | None, args: argparse.Namespace, out: TextIO
) -> int:
    """``inspect`` of a checkpoint chain: its pieces, base first, and the links between
    them; ``--verify`` refuses a broken link and checks every section of every piece,
    ``--dump`` prints a section of the state the chain restores to."""
    statuses = [["digest ok"] * len(piece.header.sections) for piece in chain.pieces]
    if args.verify:
        chain.check_links()
        total = sum(len(piece.header.sections) for piece in chain.pieces)
        with Progress(total, verb="verifying") as progress:
            for number, piece in enumerate(chain.pieces):
                for index, section in enumerate(piece.header.sections):
                    try:
                        piece.read_raw(index)
                    except SnapshotError as exc:
                        raise chain.located(number, exc) from exc
                    statuses[number][index] = "verified"
                    progress.step(f"piece {number} {section.key}")
    if args.dump is not None:
        index = find_section(chain.pieces[0], args.dump)
        state = composed_sections(chain, registry=named_registry(args))[index].data
        out.write(dump_json(state, section=chain.pieces[0].header.sections[index].key))
        return 0
    info = describe_chain(chain, statuses)
    if args.json:
        if origin is not None:
            info["object"] = describe_origin(origin)
        json.dump(info, out, indent=2, sort_keys=True)
        out.write("\n")
        return 0
    if origin is not None:
        out.write(render_origin(origin))
    out.write(render_chain(chain, info, statuses))
    return 0


def describe_chain(chain: Chain, statuses: list[list[str]]) -> dict[str, Any]:
    """A chain and each of its pieces as JSON-ready data; ``link`` is ``"ok"`` or why
    the piece does not follow the one before it."""
    headers = [piece.header for piece in chain.pieces]
    pieces = []
    for number, piece in enumerate(chain.pieces):
        info = describe(piece, statuses[number])
        info["piece"] = number
        info["offset"] = chain.starts[number]
        info["link"] = link_break(headers, number) or "ok"
        pieces.append(info)
    broken = [info["link"] for info in pieces if info["link"] != "ok"]
    return {
        "kind": "chain",
        "size": chain.size,
        "snapshot_id": headers[-1].snapshot_id,
        "generation": headers[-1].generation,
        "links": broken[0] if broken else "ok",
        "pieces": pieces,
    }


def render_chain(chain: Chain, info: dict[str, Any], statuses: list[list[str]]) -> str:
    """The human-readable ``inspect`` of a chain: a summary, one row per piece, then
    each piece as ``inspect`` shows a snapshot."""
    pieces = info["pieces"]
    deltas = len(pieces) - 1
    lines = [
        f"chain      {len(pieces)} piece{'s' if len(pieces) > 1 else ''}"
        f" (a base and {deltas} delta{'' if deltas == 1 else 's'}), {human_size(info['size'])},"
        f" {'restores to snapshot' if info['links'] == 'ok' else 'newest piece'}"
        f" {printable(info['snapshot_id'])}"
        f" generation {info['generation']}",
        "links      "
        + (
            "ok: each delta names the piece before it as its base"
            if info["links"] == "ok"
            else f"BROKEN: {info['links']}; a service refuses this chain"
        ),
        "",
    ]
    rows = [("PIECE", "KIND", "SNAPSHOT", "GENERATION", "BASE", "SIZE", "SECTIONS", "LINK")]
    for piece in pieces:
        base = piece["base"]
        rows.append(
            (
                str(piece["piece"]),
                "base" if piece["piece"] == 0 and base is None else piece["kind"],
                printable(piece["snapshot_id"]),
                str(piece["generation"]),
                "-" if base is None else f"{printable(base['snapshot_id'])} ({base['generation']})",
                human_size(piece["size"]),
                str(len(piece["sections"])),
                piece["link"],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    text = "\n".join(line.rstrip() for line in lines) + "\n"
    for number, piece in enumerate(chain.pieces):
        role = "base" if number == 0 and piece.header.base is None else pieces[number]["kind"]
        text += f"\n--- piece {number} ({role}, at byte {chain.starts[number]})\n"
        text += render(piece, statuses[number])
    return text
