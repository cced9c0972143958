"""Child processes for the object store's tests.

Run as ``python object_child.py <command> <store json> ...``, where ``<store json>``
holds ``{"url": ..., "options": {...}}`` for :class:`ObjectStore`:

``commit <store json> <writer> <count> <size> [overwrite]``
    Prints ``ready``, waits for a line on stdin (so that every writer starts at once),
    then makes ``count`` commit attempts of self-checking payloads (tag = ``writer``,
    payload generation = attempt number) and prints one JSON line of outcomes:
    ``[["won", generation, attempt] | ["conflict", generation, winner] | ["error", text]]``.
    With ``overwrite``, the store is broken on purpose: it writes the pointer without
    comparing etags.

``open <store json> <mode>``
    Opens the current snapshot and prints ``<size> <peak RSS growth in bytes>``: how
    much more memory the process needed at its peak than before the read. ``mode``
    ``store`` reads through the store; ``naive`` reads the whole object with one GET
    and copies it into a bytearray (the 2x reader the store must beat).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _store_helpers.payload import check_payload, make_payload
from statemigrate import StoreConflictError, StoreError
from statemigrate.stores import ObjectStore
from statemigrate.stores._base import forget_commits
from statemigrate.stores._object_backend import Backend


def _store(spec: str) -> ObjectStore:
    options: dict[str, Any] = json.loads(spec)
    return ObjectStore(options["url"], **options.get("options", {}))


def _overwrite(self: Backend, name: str, data: bytes, expected: object) -> object:
    return self._put("commit", name, data, mode="overwrite", use_multipart=False)


def commit(spec: str, writer: int, count: int, size: int, broken: bool) -> None:
    if broken:
        Backend.swap = _overwrite  # type: ignore[assignment,method-assign]
    store = _store(spec)
    print("ready", flush=True)
    sys.stdin.readline()
    outcomes: list[list[object]] = []
    for attempt in range(1, count + 1):
        # Each attempt races as a new process's first commit would: what is under test
        # here is the pointer's compare-and-swap, and the refusal of a second writer
        # (test_checkpoint_store_lost) would otherwise stop each writer after its first
        # win.
        forget_commits()
        try:
            ref = store.commit(make_payload(attempt, size, tag=writer))
            outcomes.append(["won", ref.generation, attempt])
        except StoreConflictError as exc:
            outcomes.append(["conflict", exc.generation, exc.winner])
        except StoreError as exc:
            outcomes.append(["error", str(exc)])
    print(json.dumps(outcomes), flush=True)


def _status(field: str) -> int:
    """A memory figure of /proc/self/status (``VmRSS``, ``VmHWM``), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


def _reset_peak() -> None:
    """Make the peak (VmHWM) the current RSS, so that it measures what follows.

    ru_maxrss would not do: it survives exec, and so starts at the forking parent's
    peak.
    """
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def open_current(spec: str, mode: str) -> None:
    store = _store(spec)
    ref = store.ref()
    _reset_peak()
    before = _status("VmRSS")
    if mode == "store":
        data = store.open()
    else:
        import obstore

        backend = store._backend
        assert ref.entry is not None
        whole = obstore.get(backend.store, backend.key(ref.entry.object)).bytes()
        data = memoryview(bytearray(whole))  # the copy a naive reader makes
        del whole
    peak = _status("VmHWM")
    check_payload(data)
    print(data.nbytes, peak - before, flush=True)


def main() -> None:
    command, spec, *rest = sys.argv[1:]
    if command == "commit":
        commit(spec, int(rest[0]), int(rest[1]), int(rest[2]), rest[3:] == ["overwrite"])
    elif command == "open":
        open_current(spec, rest[0])
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
