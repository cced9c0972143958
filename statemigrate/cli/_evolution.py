"""Sub-commands for evolving schemas safely: ``schemas freeze|check``, ``makemigration``
and ``check``.

Locations come from ``[tool.statemigrate]`` in pyproject.toml (``schemas``,
``migrations``, ``registry``, ``imports``) and can be overridden by flags. The reports of
``schemas check`` and ``check`` are markdown, so CI can post them on a pull request as
they are; both exit with status 1 when they find a problem.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import Any, TextIO

from statemigrate._errors import RegistrationError, StoreError
from statemigrate._model._registry import Registry
from statemigrate.cli._arguments import Renames, module_attribute, positive_integer
from statemigrate.cli._registryargs import add_registry_arguments, current_folder_first
from statemigrate.evolution._config import ProjectConfig, find_config, load_registry

__all__ = [
    "add_evolution_parsers",
    "check_command",
    "freeze_command",
    "makemigration_command",
    "schemas_check_command",
]

EXIT_OK = 0
EXIT_PROBLEMS = 1


def add_evolution_parsers(commands: Any) -> None:
    """Add ``schemas``, ``makemigration`` and ``check`` to the sub-command parsers."""
    schemas = commands.add_parser(
        "schemas", help="freeze the JSON Schema of every version, or check the frozen ones"
    )
    actions = schemas.add_subparsers(dest="schemas_command", metavar="ACTION")
    actions.required = True
    freeze = actions.add_parser(
        "freeze", help="write schemas/<component>/v<N>.json for every registered version"
    )
    freeze.add_argument(
        "--force", action="store_true", help="overwrite frozen files whose schema changed"
    )
    _add_common(freeze)
    freeze.set_defaults(func=freeze_command)
    check = actions.add_parser(
        "check",
        help="fail on schemas changed without a version bump, missing frozen files,"
        " unreachable versions, dead ends and duplicate steps",
    )
    _add_common(check)
    check.set_defaults(func=schemas_check_command)

    make = commands.add_parser(
        "makemigration",
        help="write upgrade and downgrade steps from the newest frozen schema to the live one",
    )
    make.add_argument("component")
    make.add_argument(
        "--schema",
        metavar="MODULE:TYPE",
        type=module_attribute,
        help="the new schema type (default: the newest registered version's type)",
    )
    make.add_argument(
        "--version", type=int, metavar="N", help="the new version (only with --schema)"
    )
    make.add_argument("--name", metavar="SLUG", help="suffix of the module's file name")
    make.add_argument(
        "--rename",
        action=Renames,
        default={},
        metavar="OLD.PATH=NEW",
        help="declare a renamed field, e.g. entries.*.value=data (repeatable)",
    )
    make.add_argument(
        "--records",
        metavar="FIELD",
        help="write record steps of this top-level dict field, which pre-copy hand-overs"
        " can apply to deltas",
    )
    make.add_argument(
        "--dry-run", action="store_true", help="print the module instead of writing it"
    )
    _add_common(make, components=False)
    make.set_defaults(func=makemigration_command)

    run = commands.add_parser(
        "check", help="run the property checks of every migration step on generated states"
    )
    run.add_argument(
        "--max-examples",
        type=positive_integer,
        metavar="N",
        help="examples per check (default: hypothesis' default profile)",
    )
    run.add_argument(
        "--max-size",
        type=positive_integer,
        metavar="N",
        help="largest generated collection (default: 16, most hold 4 or fewer); long"
        " strings get up to 16 * N characters",
    )
    _add_common(run, schemas=False)
    run.set_defaults(func=check_command)


def _add_common(
    parser: argparse.ArgumentParser, *, components: bool = True, schemas: bool = True
) -> None:
    if components:
        parser.add_argument(
            "--component",
            dest="components",
            action="append",
            metavar="NAME",
            help="only this component (repeatable)",
        )
    if schemas:
        parser.add_argument(
            "--schemas",
            type=Path,
            metavar="PATH",
            help="directory of frozen schemas (default: [tool.statemigrate] schemas, else"
            " ./schemas)",
        )
    add_registry_arguments(parser)


def _registry(args: argparse.Namespace, config: ProjectConfig) -> Registry:
    current_folder_first()
    return load_registry(
        config, registry=args.registry, migrations=args.migrations, imports=tuple(args.imports)
    )


def _schemas_dir(args: argparse.Namespace, config: ProjectConfig) -> Path:
    """The folder of frozen schemas; a missing one is reported by each command.

    Raises:
        StoreError: the path exists and is not a directory.
    """
    if args.schemas is not None:
        folder, given = Path(args.schemas), "--schemas"
    elif config.schemas is not None:
        folder, given = config.schemas, "[tool.statemigrate] schemas"
    else:
        folder, given = Path("schemas"), "the default schemas folder"
    if folder.exists() and not folder.is_dir():
        raise StoreError(
            "open", str(folder), f"is not a directory; {given} names the folder of frozen schemas"
        )
    return folder


def _migrations_dir(args: argparse.Namespace, config: ProjectConfig) -> Path | None:
    if args.migrations is not None:
        return Path(args.migrations)
    return config.migrations


def freeze_command(args: argparse.Namespace, out: TextIO) -> int:
    """Freeze every registered schema version that has no frozen file yet."""
    from statemigrate.evolution._schemalock import LOCK_FORMAT, freeze_schemas, shown

    config = find_config()
    folder = _schemas_dir(args, config)
    registry = _registry(args, config)
    try:
        results = freeze_schemas(registry, folder, components=args.components, force=args.force)
    except OSError as exc:
        raise _write_failed(exc, folder) from exc
    if not results:
        raise _nothing_found(args, config, "to freeze")
    for result in results:
        out.write(
            f"{result.action:<11} {result.component} v{result.version}  {shown(result.path)}\n"
        )
        if result.recorded:
            out.write(
                "            frozen by an earlier release, which did not record the Python"
                f" types pydantic's JSON Schema leaves out ({'; '.join(result.recorded)});"
                " the schema itself is unchanged, only its record\n"
            )
        elif result.action == "recorded":
            out.write(
                "            frozen by an earlier release, with nothing to record; the"
                f" schema is unchanged, and the file now names its lock format ({LOCK_FORMAT})\n"
            )
    changed = sum(result.action != "unchanged" for result in results)
    out.write(f"{changed} file(s) written, {len(results) - changed} unchanged\n")
    return EXIT_OK


def schemas_check_command(args: argparse.Namespace, out: TextIO) -> int:
    """Check the registry against the frozen schemas; print a markdown report."""
    from statemigrate.evolution._schemalock import check_schemas, load_failure_report

    config = find_config()
    folder = _schemas_dir(args, config)
    migrations = _migrations_dir(args, config)
    try:
        registry = _registry(args, config)
    except RegistrationError as exc:
        # A registry that cannot be built is the worst finding of all; still say where
        # (two modules declaring the same step is the usual cause after a merge), in
        # the report for a pull request, and on stderr as every command's failure.
        out.write(load_failure_report(folder, exc, migrations=migrations).to_markdown())
        raise
    else:
        report = check_schemas(registry, folder, components=args.components, migrations=migrations)
        if not report.components:
            raise _nothing_found(args, config, "to check", schemas=folder)
    out.write(report.to_markdown())
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def makemigration_command(args: argparse.Namespace, out: TextIO) -> int:
    """Write (or print) the migrations module for the component's schema change."""
    from statemigrate.evolution._makemigration import make_migration

    config = find_config()
    registry = _registry(args, config)
    migrations = _migrations_dir(args, config) or Path("migrations")
    schema = _resolve_type(args.schema, config) if args.schema else None
    try:
        stub = make_migration(
            registry,
            args.component,
            schemas_dir=_schemas_dir(args, config),
            migrations_dir=migrations,
            schema=schema,
            version=args.version,
            name=args.name,
            renames=args.rename,
            records=args.records,
            write=not args.dry_run,
        )
    except OSError as exc:
        raise _write_failed(exc, migrations) from exc
    if args.dry_run:
        out.write(stub.code)
        # The module alone on stdout, to be redirected; what to know about it aside.
        for note in stub.notes if sys.stderr is not None else ():
            print(f"note: {note}", file=sys.stderr)
        return EXIT_OK
    out.write(stub.summary())
    out.write(
        f"next: register version {stub.target} of {stub.component!r} in the service's code"
        " if it is not yet, finish any TODO, run `statemigrate check`, then"
        " `statemigrate schemas freeze`\n"
    )
    return EXIT_OK


def check_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run the property checks of the registry's migrations; print a markdown report."""
    try:
        from statemigrate.testing import DEFAULT_MAX_SIZE, check_migrations
    except ImportError as exc:
        # statemigrate.testing's error already names the extra that brings hypothesis.
        raise RegistrationError(f"statemigrate check cannot run: {exc}") from exc
    config = find_config()
    registry = _registry(args, config)
    if not args.components and not any(registry.versions(c) for c in registry.components()):
        raise _nothing_found(args, config, "to check")
    report = check_migrations(
        registry,
        components=args.components,
        max_examples=args.max_examples,
        max_size=args.max_size or DEFAULT_MAX_SIZE,
        raise_on_failure=False,
    )
    if not report.results:
        raise _nothing_found(args, config, "to check")
    text = report.to_markdown()
    incomplete = _graph_problems(registry, args.components or registry.components())
    if incomplete:
        if report.ok:  # the heading would say "passed" over a failing command
            heading = ": the checks passed, the migrations are incomplete\n"
            text = text.replace(": passed\n", heading, 1)
        text += "\n**incomplete migrations** (`Registry.check()`)\n\n"
        text += "".join(f"- {problem}\n" for problem in incomplete)
    out.write(text)
    return EXIT_OK if report.ok and not incomplete else EXIT_PROBLEMS


def _graph_problems(registry: Registry, components: list[str]) -> list[str]:
    """What :meth:`Registry.check` finds in the version graph of ``components``: a
    version no step leads back from passes every property check, yet a rollback to an
    older release fails at deploy time."""
    return [problem for name in components for problem in registry.problems(name)]


def _nothing_found(
    args: argparse.Namespace, config: ProjectConfig, purpose: str, *, schemas: Path | None = None
) -> RegistrationError:
    """The error for a command that found no component at all.

    A mistyped path or module name must fail a CI job, not pass it with nothing checked;
    the message says where the command looked.
    """
    spec = args.registry or config.registry
    imports = [*config.imports, *args.imports]
    if spec:
        where = f"registry {spec!r} has no schemas"
    elif imports:
        where = f"the modules imported ({', '.join(imports)}) registered no schemas"
    else:
        where = (
            "no registry is named (--registry, --import, or [tool.statemigrate] in"
            " pyproject.toml), and the default registry holds no schemas"
        )
    if schemas is not None:
        where += f", and {str(schemas)!r} holds no frozen ones"
    return RegistrationError(f"no components {purpose}: {where}")


def _write_failed(exc: OSError, folder: Path) -> StoreError:
    """The file (else the folder) a command could not write, and why."""
    target = exc.filename if exc.filename is not None else folder
    code = exc.errno
    name = f" ({errno.errorcode.get(code, code)})" if code is not None else ""
    return StoreError("write", str(target), f"{exc.strerror or exc}{name}", errno=code)


def _resolve_type(spec: str, config: ProjectConfig) -> object:
    import importlib
    import sys

    module_name, _, attribute = spec.partition(":")  # its form checked by the parser
    current_folder_first()
    if config.root is not None and str(config.root) not in sys.path:
        sys.path.insert(0, str(config.root))  # as the registry and imports are found
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise RegistrationError(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if not hasattr(module, attribute):
        raise RegistrationError(f"{module_name!r} has no attribute {attribute!r}")
    return getattr(module, attribute)
