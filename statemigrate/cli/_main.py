"""The ``statemigrate`` command line: a thin argparse layer over plain functions.

Each sub-command is a function taking parsed arguments and an output stream, so tests
call them directly. Every error the library raises on purpose, every OS error and a
failure to allocate memory becomes one line on stderr and a non-zero exit; a traceback
means a bug.
"""

from __future__ import annotations

import argparse
import errno
import io
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from statemigrate._errors import LossyMigrationError, StateMigrateError
from statemigrate._version import __version__
from statemigrate.cli._arguments import UsageError
from statemigrate.cli._inspect import add_inspect_parser, one_line, printable

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
# 128 + SIGINT, as a shell reports a command Ctrl-C ended: a script tells it from any answer.
EXIT_INTERRUPTED = 130

Command = Callable[[argparse.Namespace, TextIO], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line too."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # The message quotes the arguments given, which may hold any character.
        self.exit(EXIT_USAGE, f"statemigrate: error: {printable(message)}\n")


def _checks_in_use() -> str:
    """Which checks a restore runs: the C ones the wheel was built with, or Python's."""
    from statemigrate._model import _accel

    if _accel.ACCELERATED:
        return "C checks in use"
    if _accel.built():
        return "C checks built, turned off by STATEMIGRATE_PURE_PYTHON"
    return "C checks not built: restores check in Python"


def build_parser() -> argparse.ArgumentParser:
    """The full command-line parser; each sub-parser sets ``func``."""
    parser = _Parser(
        prog="statemigrate",
        description="Inspect, plan and migrate statemigrate snapshots.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"statemigrate {__version__} ({_checks_in_use()})",
        help="print the version of statemigrate, and whether its C checks are in use, and exit",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    add_inspect_parser(commands)
    for extend in _extensions():
        extend(commands)
    return parser


def _extensions() -> list[Callable[[argparse._SubParsersAction[_Parser]], None]]:
    """Sub-commands that live in their own modules (registry-backed ones)."""
    from statemigrate.cli._demo import add_demo_parser
    from statemigrate.cli._evolution import add_evolution_parsers
    from statemigrate.cli._forget import add_forget_parser
    from statemigrate.cli._list import add_list_parser
    from statemigrate.cli._registry import add_registry_parsers
    from statemigrate.cli._trial import add_trial_parser

    return [
        add_list_parser,
        add_forget_parser,
        add_registry_parsers,
        add_demo_parser,
        add_evolution_parsers,
        add_trial_parser,
    ]


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failure, 2 usage; for
    ``verify``, 1 is the answer "would not restore" and a failure is 2)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if any("\0" in argument for argument in arguments):
        # No argv from exec(2) can hold a NUL; a Python caller's can, and every path
        # function would refuse it with a ValueError.
        _error("an argument holds a NUL character")
        return EXIT_USAGE
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # usage error or --help: argparse has already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func: Command = args.func
    # A command whose status 1 is an answer (verify's "would not restore") fails with
    # another status, so that a script can tell the answer from a failure to give one.
    failure: int = getattr(args, "failure_status", EXIT_FAILURE)
    stream = out if out is not None else sys.stdout
    if stream is None:
        # Started with stdout closed (`>&-`): Python then has no sys.stdout at all.
        # Refused before any work, so that nothing is written (by migrate, say) whose
        # report could not be printed; `trial exec` only launches, and may say why
        # on stderr instead.
        if not getattr(args, "stdout_optional", False):
            _error("stdout is closed; give the command an open stdout (>/dev/null to discard it)")
            return failure
        stream = sys.stderr if sys.stderr is not None else io.StringIO()
    try:
        return func(args, stream)
    except UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except StateMigrateError as exc:
        _error(_message(exc))
    except BrokenPipeError:  # output piped into head: not an error worth a line
        return EXIT_OK
    except OSError as exc:
        # The commands translate the OS errors they expect; this names what it can.
        _error(_os_error(exc, args))
    except MemoryError:
        # A buffer too large for the process's limits (ulimit -v, a container's
        # memory): the command could not read or build what it needed. Reading a file
        # says which; this is the rest (a URL's object, a section decoded for --dump).
        _error(f"{_command_name(args)}: out of memory")
    except KeyboardInterrupt:
        if sys.stderr is not None:
            print("statemigrate: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return failure


def _error(message: str) -> None:
    """The one line a failure prints: never several lines, never a control character.

    Nothing when stderr is closed: print() would then write to stdout instead.
    """
    if sys.stderr is not None:
        print(f"statemigrate: error: {printable(one_line(message))}", file=sys.stderr)


def _os_error(exc: OSError, args: argparse.Namespace) -> str:
    """``<command> <file(s)>: <reason> (<ERRNO>)`` for an OS error no command translated."""
    command = _command_name(args)
    files = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    where = f" {' -> '.join(files)}" if files else ""
    code = exc.errno
    name = f" ({errno.errorcode.get(code, code)})" if code is not None else ""
    return f"{command}{where}: {exc.strerror or exc}{name}"


def _command_name(args: argparse.Namespace) -> str:
    """``inspect``, ``schemas check``: the command that failed, for a line naming no file."""
    return " ".join(
        str(part) for part in (args.command, getattr(args, "schemas_command", None)) if part
    )


def _message(exc: StateMigrateError) -> str:
    if isinstance(exc, LossyMigrationError):
        # The library's message names the keyword argument; here the flag is the cure.
        return (
            f"migrating {exc.component!r} from version {exc.source} to {exc.target} loses"
            f" data in {', '.join(exc.steps)}; pass --allow-lossy-for {exc.component} (or"
            " --allow-lossy, for every component) to accept that"
        )
    return str(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
