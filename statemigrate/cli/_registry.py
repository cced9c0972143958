"""Sub-commands that need the user's registry: ``plan``, ``graph``, ``migrate`` and
``verify``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from statemigrate._errors import (
    LossyMigrationError,
    SnapshotError,
    StateMigrateError,
    StoreError,
    UnknownComponentError,
)
from statemigrate._model._allowlossy import AllowLossy, names_shown
from statemigrate._model._registry import Registry
from statemigrate._runtime._chainread import Chain, compose_chain
from statemigrate._runtime._newerrelease import Fold, fold_command, newer_version
from statemigrate._runtime._rewrite import SectionVerdict, migrate_snapshot, verify_snapshot
from statemigrate._snapshot._format import Snapshot, open_snapshot
from statemigrate.cli._arguments import (
    ComponentVersions,
    check_output_file,
    snapshot_source,
)
from statemigrate.cli._inspect import Progress, add_key_argument, one_line, printable
from statemigrate.cli._limits import add_limit_argument, limits_from
from statemigrate.cli._objects import add_store_argument, commit_to_url, is_object_url, open_source
from statemigrate.cli._registryargs import add_registry_arguments, registry_from
from statemigrate.cli._source import read_key_option

__all__ = [
    "add_registry_parsers",
    "graph_command",
    "migrate_command",
    "plan_command",
    "verify_command",
]

EXIT_OK = 0
EXIT_WOULD_NOT_RESTORE = 1
EXIT_CANNOT_VERIFY = 2


def add_registry_parsers(commands: Any) -> None:
    """Add ``plan``, ``graph``, ``migrate`` and ``verify`` to the sub-command parsers."""
    plan = commands.add_parser("plan", help="show the steps between two versions of a component")
    plan.add_argument("component", help="the component's name")
    plan.add_argument(
        "--from",
        dest="source",
        type=int,
        required=True,
        metavar="VERSION",
        help="the version the data is in",
    )
    plan.add_argument(
        "--to",
        dest="target",
        type=int,
        required=True,
        metavar="VERSION",
        help="the version it should reach",
    )
    add_registry_arguments(plan)
    plan.set_defaults(func=plan_command)

    graph = commands.add_parser("graph", help="list a component's versions and steps")
    graph.add_argument("component", help="the component's name")
    add_registry_arguments(graph)
    graph.set_defaults(func=graph_command)

    migrate = commands.add_parser(
        "migrate",
        help="rewrite a snapshot with components at other versions (up or down);"
        " a checkpoint chain is rewritten as one full snapshot",
    )
    _add_snapshot_argument(migrate)
    migrate.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="where to write the new snapshot: a file (through a temporary file and a"
        " rename; an existing OUT must be a regular file, not a link, FIFO or device),"
        " or an object-store URL (committed as its next generation)",
    )
    _add_migration_arguments(
        migrate, required=True, targets_help="target version of a component (repeatable)"
    )
    migrate.set_defaults(func=migrate_command)

    verify = commands.add_parser(
        "verify",
        help="check, writing nothing, that every section of a snapshot would restore into"
        " the registry's release; exit 1 if one would not",
        description="Decode every section, plan a path from its version to the target"
        " (--to, else the newest registered version of its component), run the steps and"
        " validate the result, as a restore would, and print one line per section. A"
        " checkpoint chain is first composed into the full snapshot it restores to. Exits"
        " 0 when every section would restore, 1 when one would not, 2 when the check"
        " cannot be made (an unreadable snapshot, a delta, a bad --to, no registry).",
    )
    _add_snapshot_argument(verify)
    _add_migration_arguments(
        verify,
        required=False,
        targets_help="the version a component's sections should reach (default: the newest"
        " registered; repeatable)",
    )
    verify.add_argument("--json", action="store_true", help="print JSON for machines")
    # Status 1 is the answer "would not restore"; a failure to answer is 2.
    verify.set_defaults(func=verify_command, failure_status=EXIT_CANNOT_VERIFY)


def _add_snapshot_argument(parser: argparse.ArgumentParser) -> None:
    """``SNAPSHOT``, as the commands that read one take it."""
    parser.add_argument(
        "snapshot",
        metavar="SNAPSHOT",
        type=snapshot_source,
        help="a file path, fd:N, or URL[#current|#previous|#N]",
    )


def _add_migration_arguments(
    parser: argparse.ArgumentParser, *, required: bool, targets_help: str
) -> None:
    """``--to``, ``--allow-lossy`` or ``--allow-lossy-for``, ``--key-file``,
    ``--store-option`` and the registry's options: what ``migrate`` and ``verify`` take
    besides ``SNAPSHOT``."""
    parser.add_argument(
        "--to",
        dest="targets",
        action=ComponentVersions,
        required=required,
        default={},
        metavar="COMPONENT=VERSION",
        help=targets_help,
    )
    lossy = parser.add_mutually_exclusive_group()
    lossy.add_argument(
        "--allow-lossy", action="store_true", help="allow steps declared lossy, of every component"
    )
    lossy.add_argument(
        "--allow-lossy-for",
        action="append",
        type=_component_name,
        default=[],
        metavar="COMPONENT",
        help="allow the steps declared lossy of COMPONENT only (repeatable)",
    )
    add_key_argument(parser)
    add_limit_argument(parser)
    add_store_argument(parser)
    add_registry_arguments(parser)


def _component_name(text: str) -> str:
    """``--allow-lossy-for``'s value: a component's name, which is never empty."""
    if not text:
        raise argparse.ArgumentTypeError("a component name, not an empty string")
    return text


def _allow_lossy(args: argparse.Namespace, registry: Registry) -> AllowLossy:
    """``--allow-lossy`` as True, or the components ``--allow-lossy-for`` names. A name
    the registry does not hold is a warning, as in a service: it allows nothing, and
    is left out (the functions would warn of it again)."""
    if args.allow_lossy:
        return True
    names = frozenset(args.allow_lossy_for)
    unknown = sorted(names.difference(registry.components()))
    if unknown:
        print(
            f"statemigrate: warning: --allow-lossy-for {printable(', '.join(unknown))}: no"
            " such component in the registry, ignored",
            file=sys.stderr,
        )
    return names.difference(unknown)


def plan_command(args: argparse.Namespace, out: TextIO) -> int:
    """Print the steps from ``--from`` to ``--to``, marking the lossy ones."""
    registry = registry_from(args)
    plan = registry.plan(args.component, args.source, args.target, allow_lossy=True)
    if not plan.steps:
        out.write(f"{args.component} is already at version {args.target}: nothing to do\n")
        return 0
    out.write(f"{args.component}: {' -> '.join(str(v) for v in plan.versions)}\n")
    for step in plan.steps:
        note = ""
        if step.lossy:
            lost = f" drops {', '.join(step.lost_fields)}" if step.lost_fields else ""
            note = f"  [lossy{':' if lost else ''}{lost}]"
        out.write(f"  {step}{note}\n")
    if plan.lossy_steps:
        out.write(
            f"{len(plan.lossy_steps)} lossy step(s): restoring along this path needs"
            f" allow_lossy={names_shown([args.component])} or True\n"
        )
    return 0


def graph_command(args: argparse.Namespace, out: TextIO) -> int:
    """List the versions (with fingerprints) and steps of a component."""
    registry = registry_from(args)
    steps = registry.steps(args.component)
    # Versions that only steps mention are listed too: a migrations directory loaded
    # without the schemas still shows its whole graph.
    versions = sorted(
        {*registry.versions(args.component), *(v for s in steps for v in (s.source, s.target))}
    )
    out.write(f"{args.component}: {len(versions)} version(s)\n")
    for version in versions:
        try:
            fingerprint = registry.schema_for(args.component, version).fingerprint
        except UnknownComponentError:
            fingerprint = "(no schema registered)"
        out.write(f"  v{version}  {fingerprint}\n")
    out.write(f"steps: {len(steps)}\n")
    for step in sorted(steps, key=lambda s: (s.source, s.target)):
        out.write(f"  {step}{'  [lossy]' if step.lossy else ''}\n")
    return 0


def migrate_command(args: argparse.Namespace, out: TextIO) -> int:
    """Rewrite a snapshot with the named components migrated to other versions; a
    checkpoint chain is first composed into the full snapshot it restores to."""
    targets: dict[str, int] = args.targets
    output = None if is_object_url(args.output) else check_output_file(args.output, option="-o")
    registry = registry_from(args)
    allow_lossy = _allow_lossy(args, registry)  # its warning before the progress line
    key = read_key_option(args.key_file)
    snapshot, notes = _full_snapshot(args, key, registry)
    with Progress(len(snapshot.header.sections), verb="migrating") as progress:
        migrated = migrate_snapshot(
            snapshot,
            targets,
            registry=registry,
            allow_lossy=allow_lossy,
            key=key,
            on_section=progress.step,
        )
    encoded = migrated.encoded
    where = args.output
    if output is None:
        ref = commit_to_url(args.output, encoded.parts, args.store_options)
        where = f"{ref.store.location} generation {ref.generation}"
    else:
        write_file_atomically(output, encoded.parts)
    # Printed once the progress line is gone, so stdout never cuts it.
    out.writelines(notes)
    for section, plan in migrated.plans.items():
        out.write(f"{printable(section)}: {plan}\n")
    count = len(encoded.header.sections)
    sections = f"{count} section{'' if count == 1 else 's'}"
    out.write(f"wrote {printable(where)} ({encoded.size} bytes, {sections})\n")
    return 0


def _full_snapshot(
    args: argparse.Namespace, key: bytes | None, registry: Registry
) -> tuple[Snapshot, list[str]]:
    """The snapshot ``SNAPSHOT`` names, a checkpoint chain composed into the full
    snapshot it restores to, and the note saying so (none for a snapshot).

    Raises:
        StoreError, SnapshotError: the source cannot be read, is not sound, or is a
            chain that cannot be composed.
    """
    limits = limits_from(args)
    source, _ = open_source(args.snapshot, key=key, options=args.store_options, limits=limits)
    if not isinstance(source, Chain):
        return source, []
    # The chain becomes the one full snapshot it restores to, which is then handled
    # like any other: the way to hand an older release a chain it cannot restore
    # (deltas at versions it does not know), or to check that a newer one can.
    # Composed with the registry: record keys are matched by value, as a restore does.
    composed = compose_chain(source, key=key, registry=registry)
    snapshot = open_snapshot(composed.to_bytes(), key=key, limits=limits)
    note = (
        f"composed checkpoint chain of {_pieces(len(source.pieces))} into snapshot"
        f" {snapshot.header.snapshot_id} generation {snapshot.header.generation}\n"
    )
    return snapshot, [note]


def verify_command(args: argparse.Namespace, out: TextIO) -> int:
    """Print whether each section of ``SNAPSHOT`` would restore into the registry's
    release: 0 when every one would, 1 when one would not; a section that does not
    decode is a damaged snapshot, raised (status 2)."""
    registry = registry_from(args)
    allow_lossy = _allow_lossy(args, registry)  # its warning before the progress line
    key = read_key_option(args.key_file)
    snapshot, notes = _full_snapshot(args, key, registry)
    with Progress(len(snapshot.header.sections), verb="verifying") as progress:
        verdicts = verify_snapshot(
            snapshot,
            args.targets,
            registry=registry,
            allow_lossy=allow_lossy,
            on_section=progress.step,
        )
    damaged = [v.error for v in verdicts if isinstance(v.error, SnapshotError)]
    if damaged:
        # A section that does not decode is a damaged snapshot (one resealed after the
        # damage passes the digest), not a verdict on the release: no answer, status 2.
        raise damaged[0]
    restores = all(verdict.restores for verdict in verdicts)
    # A component of the release that the snapshot does not hold restores nothing: it
    # keeps what the release starts it with. Not a refusal (a new component starts
    # empty by design), but a component renamed in the new code loses its data this
    # way, so it is named.
    held = {section.component for section in snapshot.header.sections}
    absent = [name for name in registry.components() if name not in held]
    if args.json:
        header = snapshot.header
        info = {
            "snapshot_id": header.snapshot_id,
            "generation": header.generation,
            "composed": bool(notes),
            "restores": restores,
            "sections": [_verdict_json(verdict) for verdict in verdicts],
            "not_in_snapshot": absent,
        }
        out.write(json.dumps(info, indent=2, sort_keys=True) + "\n")
    else:
        out.writelines(notes)
        out.writelines(f"{_verdict_line(verdict)}\n" for verdict in verdicts)
        if not verdicts:
            out.write("(no sections)\n")
        out.write(_absent_lines(absent))
    return EXIT_OK if restores else EXIT_WOULD_NOT_RESTORE


_ABSENT_EACH = 3
"""Up to this many components the snapshot lacks get a line each; more share one (a
snapshot of one section of a release with dozens of components would bury its verdict)."""


def _absent_lines(absent: list[str]) -> str:
    """The lines naming the release's components the snapshot does not hold."""
    if len(absent) <= _ABSENT_EACH:
        return "".join(
            f"{printable(name)}: not in the snapshot; restores nothing, and keeps what the"
            " release starts it with\n"
            for name in absent
        )
    return (
        f"{len(absent)} components are not in the snapshot:"
        f" {', '.join(printable(name) for name in absent)}; they restore nothing, and keep"
        " what the release starts them with\n"
    )


def _verdict_line(verdict: SectionVerdict) -> str:
    """``kvcache/sessions: 1 -> 3 would restore (upgrade_1_to_3)``, or ``... would NOT
    restore: <reason>``; every string from the snapshot or a message is escaped."""
    versions = (
        f"version {verdict.source}"
        if verdict.target is None
        else f"{verdict.source} -> {verdict.target}"
    )
    where = f"{printable(verdict.key)}: {versions}"
    if verdict.retired:
        return f"{where}: the component is retired by this release; a restore drops it"
    if verdict.error is not None:
        return f"{where} would NOT restore: {printable(one_line(_reason(verdict.error)))}"
    steps = verdict.plan.steps if verdict.plan is not None else ()
    names = ", ".join(f"{s.name} [lossy]" if s.lossy else s.name for s in steps)
    return f"{where} would restore ({printable(names) if names else 'no steps'})"


def _verdict_json(verdict: SectionVerdict) -> dict[str, Any]:
    steps = verdict.plan.steps if verdict.plan is not None else ()
    return {
        "component": verdict.component,
        "instance": verdict.instance,
        "source": verdict.source,
        "target": verdict.target,
        "restores": verdict.restores,
        "retired": verdict.retired,
        "steps": [step.name for step in steps],
        "lossy_steps": [step.name for step in steps if step.lossy],
        "reason": None if verdict.error is None else _reason(verdict.error),
    }


def _reason(error: StateMigrateError) -> str:
    if isinstance(error, LossyMigrationError):
        # The library's message names the keyword argument; here the flag is the cure.
        return (
            f"loses data in {', '.join(error.steps)}; pass --allow-lossy-for {error.component}"
            " (or --allow-lossy, for every component) to accept that"
        )
    if isinstance(error, UnknownComponentError) and error.version is None:
        # Not lost: a restore carries the section into the service's later snapshots.
        return (
            f"{error}; a restore carries it unchanged into later snapshots, for a release"
            " that has the component (Registry.retire drops it on purpose)"
        )
    newer = newer_version(error)
    if newer is not None:
        # The newer release's downgrade steps are out of this registry's sight.
        fold = Fold(newer.component, newer.written, newer.readable, lossy=True)
        return (
            f"{error}; a newer release wrote version {newer.written}: verify with its"
            " registry, or fold it back for this release with that registry:"
            f" `{fold_command([fold])}` (docs/cli.md)"
        )
    return str(error)


def write_file_atomically(path: Path, parts: list[bytes | bytearray | memoryview]) -> None:
    """Write ``parts`` to ``path`` through a temporary file and a rename.

    Raises:
        StoreError: the file could not be written; no partial file is left behind.
    """
    folder = path.parent if str(path.parent) else Path(".")
    temp = folder / f".{path.name}.tmp.{os.getpid()}"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        # Name the file the user asked for; the temporary name means nothing to them.
        raise StoreError("write", str(path), exc.strerror or str(exc), errno=exc.errno) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            for part in parts:
                handle.write(part)
            handle.flush()
            os.fsync(handle.fileno())
        # Checked again just before the rename: what appeared at the path since the
        # command started is not replaced either, if it is not a regular file.
        check_output_file(path, option="-o")
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise StoreError("write", str(path), exc.strerror or str(exc), errno=exc.errno) from exc
    except StoreError:
        temp.unlink(missing_ok=True)
        raise


def _pieces(count: int) -> str:
    return "1 piece" if count == 1 else f"{count} pieces"
