"""TrackedDict under writer threads: changes taken while others write lose nothing."""

from __future__ import annotations

import os
import select
import signal
import sys
import threading

from statemigrate import TrackedDict


def test_changes_taken_while_threads_write_replay_to_the_same_dict() -> None:
    """Property: replaying every take (sets and deletes) onto a copy of the dict at the
    mark gives the dict itself, however the takes interleave with writer threads (a
    threaded server exporting deltas while it serves)."""
    tracked: TrackedDict[str, int] = TrackedDict({f"k{i}": i for i in range(1000)})
    mark = tracked.mark()
    replica = dict(tracked)
    stop = threading.Event()

    def write(number: int) -> None:
        n = 0
        while not stop.is_set():
            key = f"k{(n * 7 + number) % 3000}"
            if n % 5 == 0:
                tracked.pop(key, None)
            else:
                tracked[key] = n
            n += 1

    writers = [threading.Thread(target=write, args=(i,)) for i in range(3)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: more interleavings
    for thread in writers:
        thread.start()
    errors: list[BaseException] = []
    try:
        for _ in range(2000):
            try:
                changes = tracked.take_changes(mark)
            except RuntimeError as exc:  # "dictionary changed size during iteration"
                errors.append(exc)
                break
            replica.update(changes.set)
            for key in changes.deleted:
                replica.pop(key, None)
    finally:
        stop.set()
        for thread in writers:
            thread.join()
        sys.setswitchinterval(interval)
    assert errors == []
    changes = tracked.take_changes(mark)  # the writers are done: the rest
    replica.update(changes.set)
    for key in changes.deleted:
        replica.pop(key, None)
    assert replica == dict(tracked)


def test_a_fork_while_threads_write_leaves_the_child_able_to_take_changes() -> None:
    """A process forked while another thread records a write (a pre-copy round 0
    exported by a child) must not inherit the dict's lock held: the child takes the
    changes and exits instead of hanging forever."""
    tracked: TrackedDict[str, int] = TrackedDict({f"k{i}": i for i in range(100)})
    mark = tracked.mark()
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            tracked[f"k{n % 500}"] = n
            n += 1

    writer = threading.Thread(target=write)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    writer.start()
    hung = 0
    try:
        for _ in range(10):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                try:
                    tracked.take_changes(mark)
                finally:
                    os._exit(0)
            pidfd = os.pidfd_open(pid)
            try:
                if not select.select([pidfd], [], [], 5.0)[0]:  # a hang guard
                    hung += 1
                    os.kill(pid, signal.SIGKILL)
            finally:
                os.close(pidfd)
            os.waitpid(pid, 0)
    finally:
        stop.set()
        writer.join()
        sys.setswitchinterval(interval)
    assert hung == 0
