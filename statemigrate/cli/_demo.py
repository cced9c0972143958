"""The ``demo`` sub-command: run the demo service through upgrades and a rollback."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from statemigrate.cli._arguments import check_output_file, positive_integer

__all__ = ["add_demo_parser", "demo_command"]


def add_demo_parser(commands: Any) -> None:
    """Add ``demo`` to the sub-command parsers."""
    demo = commands.add_parser(
        "demo",
        help="run the demo cache service: upgrade v1 -> v3 twice under load, roll back once",
        description=(
            "Start an HTTP key-value cache on 127.0.0.1, fill it, put it under load from"
            " another process, hand it over v1 -> v3, back to v1, and to v3 again, then"
            " check that no acknowledged write was lost. Exits 1 if any was, or if any"
            " request was refused, reset or answered wrongly."
        ),
    )
    demo.add_argument(
        "--entries",
        type=positive_integer,
        default=200_000,
        metavar="N",
        help="entries filled before the load starts (default 200000)",
    )
    demo.add_argument(
        "--clients",
        type=positive_integer,
        default=8,
        metavar="N",
        help="load generator threads (default 8)",
    )
    demo.add_argument(
        "--fresh-connections",
        action="store_true",
        help="one request per connection instead of keep-alive",
    )
    demo.add_argument("--json", action="store_true", help="print the report as JSON")
    demo.add_argument(
        "--plot",
        metavar="FILE",
        help="draw throughput and latency over time, handoffs marked:"
        " an HTML page for FILE.html, else an SVG picture",
    )
    demo.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run the demo; progress goes to stderr, the report to ``out``; 0 when it passed.

    When the run stops early (a child process died, a request failed), the reason is
    the last line, on stderr, as for any failed command.
    """
    from statemigrate.demo._run import run_demo  # imported late: only this command needs it

    # Before the run, not after it: the picture is drawn last.
    plot = None if args.plot is None else check_output_file(args.plot, option="--plot")

    def progress(line: str) -> None:
        if sys.stderr is not None:  # print() would write to stdout without one
            print(line, file=sys.stderr, flush=True)

    report = run_demo(
        entries=args.entries,
        clients=args.clients,
        fresh_connections=args.fresh_connections,
        progress=progress,
        plot=plot,
    )
    if args.json:
        print(json.dumps(report.to_plain(), indent=2), file=out, flush=True)
    else:
        print(report.render(), file=out, flush=True)
    if report.error is not None and sys.stderr is not None:
        # Last, after the report: why the run stopped, a dead child's own error as a rule.
        print(f"statemigrate: error: {report.error}", file=sys.stderr, flush=True)
    return 0 if report.passed else 1
