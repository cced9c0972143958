"""One generation of a handoff chain; each generation starts the next with ``send_handoff``.

Usage: chain.py GENERATIONS [--leak]

Every generation prints one JSON line: its descriptor table checked three times
against what it should hold, as the list of unexpected descriptors:

* ``at_start``: before any import, the table must be 0, 1, 2 plus the listener and
  the control channel named in ``STATEMIGRATE_FDS`` (nothing else was inherited);
* ``after_takeover``: after ``receive_handoff``, ``hello`` and ``ready``, with the
  snapshot released, it must be 0, 1, 2 plus the listener;
* ``after_handoff``: after handing over to the next generation, the same.

``--leak`` is the negative control: each generation keeps a stray copy of a
received descriptor, as a careless successor would.
"""

from __future__ import annotations

from _fdtable import fd_table  # first: nothing else may open descriptors before this

START_TABLE = fd_table()

import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402


def load_handoff_layer_only() -> None:
    """Make ``import statemigrate.handoff`` skip ``statemigrate/__init__``.

    The top-level package imports pydantic and the whole library (about 250 ms per
    interpreter here); the bytes level of the handoff needs none of it, and loads
    none of it (``tests/handoff/test_init.py`` checks). The generations in CI only
    fit in the time budget without it. The other handoff tests import the package
    normally.
    """
    spec = importlib.util.find_spec("statemigrate")
    assert spec is not None and spec.submodule_search_locations is not None
    package = types.ModuleType("statemigrate")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["statemigrate"] = package


load_handoff_layer_only()

from statemigrate.handoff import Spawn, receive_handoff, send_handoff  # noqa: E402


def unexpected(table: list[int], allowed: set[int]) -> list[int]:
    return [fd for fd in table if fd not in allowed]


def main() -> int:
    generations = int(sys.argv[1])
    leak = "--leak" in sys.argv[2:]
    named = {
        int(entry.split("=")[1])
        for entry in os.environ.get("STATEMIGRATE_FDS", "").split(":")
        if entry
    }
    inheritance = receive_handoff(expect={"tcp"})
    if inheritance is None:
        generation = 0
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        at_start: list[int] = []
    else:
        at_start = unexpected(START_TABLE, {0, 1, 2} | named)
        with inheritance:
            snapshot = inheritance.hello({"chain": [1]})
            generation = json.loads(bytes(snapshot))["generation"] + 1
            snapshot.release()
            inheritance.ready()
            # The old process's HELD, read on a thread that holds a duplicate of the control
            # channel until it came: the table is the one once it did.
            if inheritance.held_watch is not None:
                inheritance.held_watch.join(30)  # only stops a hang
        listener = inheritance.listeners["tcp"]
    if leak:
        os.dup(listener.fileno())  # deliberately never closed
    base = {0, 1, 2, listener.fileno()}
    after_takeover = unexpected(fd_table(), base)

    after_handoff: list[int] = []
    if generation + 1 < generations:
        argv = [sys.executable, os.path.abspath(__file__), *sys.argv[1:]]
        send_handoff(
            Spawn(argv),
            listeners={"tcp": listener},
            export_state=lambda readable: json.dumps({"generation": generation}).encode(),
        )
        after_handoff = unexpected(fd_table(), base)
    line = json.dumps(
        {
            "generation": generation,
            "pid": os.getpid(),
            "at_start": at_start,
            "after_takeover": after_takeover,
            "after_handoff": after_handoff,
        }
    )
    os.write(1, line.encode() + b"\n")  # one write: generations share the pipe
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
