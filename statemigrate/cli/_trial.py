"""``statemigrate trial``: see, promote and revert a generation on trial; start the right one.

``status`` prints the record, ``promote`` makes the generation on trial permanent,
``revert`` asks it to hand back to the permanent generation and waits for the
outcome, and ``exec`` is a service's launcher: it replaces itself with the command
given, or with the permanent generation's after a crash during a trial.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, TextIO

from statemigrate._errors import TrialError
from statemigrate.cli._arguments import UsageError
from statemigrate.handoff._trial import promote_trial, revert_trial
from statemigrate.handoff._trialrecord import read_trial, trial_process_alive
from statemigrate.handoff._trialstart import generation_to_run

__all__ = ["add_trial_parser"]


def add_trial_parser(commands: Any) -> None:
    """Add ``trial`` and its actions to the sub-command parsers."""
    trial = commands.add_parser(
        "trial",
        help="see, promote or revert the generation on trial after a hot restart",
        description="A generation a handoff started is on trial until promoted; until"
        " then one command brings the permanent generation back.",
    )
    actions = trial.add_subparsers(dest="trial_command", metavar="ACTION")
    actions.required = True

    status = actions.add_parser("status", help="show the trial record")
    status.add_argument("--json", action="store_true", help="print the record as JSON")
    status.set_defaults(func=status_command)

    make = actions.add_parser(
        "promote", help="make the generation on trial permanent (a revert is refused after)"
    )
    make.set_defaults(func=promote_command)

    back = actions.add_parser(
        "revert",
        help="hand the generation on trial back to the permanent generation",
        description="Ask the generation on trial to hand over to the permanent"
        " generation's program (a hot handoff, exporting at the versions it reads), and"
        " wait for the outcome.",
    )
    back.add_argument(
        "--wait",
        type=_seconds,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for the revert (default 120)",
    )
    back.set_defaults(func=revert_command)

    launch = actions.add_parser(
        "exec",
        help="run COMMAND, or the permanent generation after a crash during a trial",
        description="The service manager's start command: replaces itself with COMMAND,"
        " unless the generation on trial died without handing back, in which case it"
        " runs the permanent generation's recorded command line.",
    )
    launch.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    # A launcher runs with whatever stdout its service manager gave it, even none.
    launch.set_defaults(func=exec_command, stdout_optional=True)

    for parser in (status, make, back, launch):
        parser.add_argument(
            "--dir", required=True, metavar="DIR", help="the trial directory the service was given"
        )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text[:40]!r}") from None
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text[:40]!r}")
    return value


def status_command(args: argparse.Namespace, out: TextIO) -> int:
    record = read_trial(args.dir)
    if record is None:
        raise TrialError(args.dir, "no trial.json: no handoff began a trial here")
    alive = trial_process_alive(record)
    if args.json:
        plain = {**record.to_plain(), "trial_alive": alive}
        print(json.dumps(plain, indent=2), file=out)
        return 0
    print(record.summary(), file=out)
    if record.on_trial and not alive:
        print("the trial process is gone: a restart runs the permanent generation", file=out)
    return 0


def promote_command(args: argparse.Namespace, out: TextIO) -> int:
    record = promote_trial(args.dir)
    print(record.summary(), file=out)
    return 0


def revert_command(args: argparse.Namespace, out: TextIO) -> int:
    started = time.monotonic()
    record = revert_trial(args.dir, timeout=args.wait)
    print(f"{record.summary()} [{time.monotonic() - started:.2f} s]", file=out)
    if record.mismatch:
        # The state moved, but not to the release a rollback asked for: a script must
        # not take this for success.
        raise TrialError(args.dir, record.mismatch)
    return 0


def exec_command(args: argparse.Namespace, out: TextIO) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv.pop(0)
    if not argv:
        raise UsageError("trial exec: no command given after --")
    if not argv[0]:
        raise UsageError("trial exec: the command given after -- is an empty string")
    chosen, why = generation_to_run(args.dir, argv)
    if not chosen or not chosen[0]:
        # A record written by hand, or by a service given an empty command line.
        raise TrialError(args.dir, f"the command to run is empty: {list(chosen)!r}")
    if tuple(chosen) != tuple(argv):
        print(f"statemigrate trial exec: {why}", file=out, flush=True)
    out.flush()
    try:
        os.execvp(chosen[0], list(chosen))
    except OSError as exc:
        raise TrialError(args.dir, f"cannot run {chosen[0]!r}: {exc.strerror}") from exc
    return 1  # pragma: no cover  # execvp returns only by raising
