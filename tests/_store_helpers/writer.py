"""Writer processes for the crash and concurrency tests of the stores.

Run as ``python writer.py <command> ...``:

``zygote``
    Imports the library once, then reads commands on stdin and forks a writer per
    ``run`` command, so that hundreds of writers can be killed without paying for an
    interpreter start each time. Commands and replies, one per line::

        run <dir> <kind> <seed> [<commit>:<op>:<n>]  ->  pid <pid>
        reap <pid>                                   ->  reaped <pid> <wait status>
        quit

    ``kind`` is ``auto``, ``anonymous`` or ``named`` (a TmpfsStore) or ``inplace``
    (the broken in-place writer). The writer continues from the generation it finds,
    commits payloads of 1 KiB to 1 MiB forever and prints ``ack <generation>`` after
    each commit returns. With ``<commit>:<op>:<n>`` it prints ``paused`` and stops
    inside its commit number ``<commit>``, just before the ``n``-th ``<op>`` operation
    of that commit, waiting to be killed.

``loop <dir> <count> <min size> <max size> <seed>``
    Commits ``count`` generations, printing ``ready`` after the first and ``done`` at
    the end.

``counter <dir> <counter file> <writer id> <count> <seed>``
    Commits ``count`` snapshots whose generation is taken from a counter file that is
    read, incremented and rewritten *inside* the commit (the data is a generator), so
    that only the store's lock keeps two writers from drawing the same number. Prints
    ``values <v1> <v2> ...`` at the end.
"""

from __future__ import annotations

import os
import random
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _store_helpers.broken import InPlaceStore
from _store_helpers.payload import check_payload, make_payload
from statemigrate._errors import StoreError
from statemigrate.stores import TmpfsStore, _syscalls
from statemigrate.stores._base import forget_commits


def emit(line: str) -> None:
    os.write(1, (line + "\n").encode())


def latest_generation(directory: str) -> int:
    try:
        with TmpfsStore(directory) as store:
            return check_payload(store.open())[0]
    except StoreError:
        return 0


def run_writer(directory: str, kind: str, seed: int, pause: str | None) -> None:
    rng = random.Random(seed)
    generation = latest_generation(directory) if kind != "inplace" else 0
    store: TmpfsStore | InPlaceStore
    store = InPlaceStore(directory) if kind == "inplace" else TmpfsStore(directory, temp_files=kind)  # type: ignore[arg-type]
    commit_no = 0
    seen: dict[str, int] = {}
    pause_commit, pause_op, pause_n = 0, "", 0
    if pause:
        commit_text, pause_op, n_text = pause.split(":")
        pause_commit, pause_n = int(commit_text), int(n_text)

    def hook(op: str) -> None:
        if commit_no != pause_commit:
            return
        seen[op] = seen.get(op, 0) + 1
        if op == pause_op and seen[op] == pause_n:
            emit("paused")
            time.sleep(600)  # killed long before this ends

    with _syscalls.failpoint(1, persistent=True, action=hook) if pause else _nothing():
        while True:
            generation += 1
            commit_no += 1
            seen.clear()
            store.commit(make_payload(generation, rng.randint(1024, 1 << 20)))
            emit(f"ack {generation}")


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def zygote() -> None:
    emit("ready")
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        cmd, *args = line.split()
        if cmd == "run":
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    run_writer(args[0], args[1], int(args[2]), args[3] if len(args) > 3 else None)
                except BaseException:
                    traceback.print_exc()
                finally:
                    os._exit(code)
            emit(f"pid {pid}")
        elif cmd == "reap":
            pid = int(args[0])
            _, status = os.waitpid(pid, 0)
            emit(f"reaped {pid} {status}")
        elif cmd == "quit":
            return


def loop(directory: str, count: int, min_size: int, max_size: int, seed: int) -> None:
    rng = random.Random(seed)
    with TmpfsStore(directory) as store:
        for generation in range(1, count + 1):
            store.commit(make_payload(generation, rng.randint(min_size, max_size)))
            if generation == 1:
                emit("ready")
    emit("done")


def counter(directory: str, counter_file: str, writer_id: int, count: int, seed: int) -> None:
    rng = random.Random(seed)
    values: list[int] = []

    def draw() -> Iterator[bytes]:
        # Runs inside commit(), under the store's lock: an unprotected read-modify-write.
        with open(counter_file, "r+b") as f:
            value = int(f.read() or b"0") + 1
            f.seek(0)
            f.write(str(value).encode())
            f.truncate()
        values.append(value)
        yield make_payload(value, rng.randint(256, 4096), tag=writer_id)

    with TmpfsStore(directory) as store:
        for _ in range(count):
            # Each commit as a new process's first one: what is under test is the
            # store's lock; two writers taking turns are otherwise refused as a second
            # writer (test_checkpoint_store_lost).
            forget_commits()
            store.commit(draw())
    emit("values " + " ".join(map(str, values)))


def main() -> None:
    cmd, *args = sys.argv[1:]
    if cmd == "zygote":
        zygote()
    elif cmd == "loop":
        loop(args[0], *map(int, args[1:5]))
    elif cmd == "counter":
        counter(args[0], args[1], *map(int, args[2:5]))
    else:
        raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main()
