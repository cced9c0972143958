"""Who committed a store's latest snapshot, and whether that process still runs here.

A process that restored a store's latest snapshot at its start may commit over it
(:func:`~statemigrate.stores._base.check_other_writer`): that is a restart taking over
from a process that crashed or stopped. It is not when the process that committed the
snapshot still runs on this host: then two copies of a service commit to one place
(a second copy started by mistake with the same configuration), and the newcomer's
commit would take the store from the running one. The snapshot's header says who
produced it (host and pid), and ``/proc`` says whether that process still runs.

A pid may be reused: the process found under it is the producer only if it started
before the snapshot was committed. The same pid as this process's is this process
(a restarted container's pid 1, say), not another writer.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from statemigrate._errors import SnapshotError
from statemigrate._proc import start_ticks

Buffer = bytes | bytearray | memoryview

__all__ = ["Writer", "latest_writer", "process_started_ns"]


@dataclass(frozen=True, slots=True)
class Writer:
    """The process that committed a snapshot, as its header names it.

    Attributes:
        host: the host name it ran on.
        pid: its process id there.
        running: whether it still runs; ``None`` when it ran on another host, where
            this one cannot tell.
    """

    host: str
    pid: int
    running: bool | None


def latest_writer(read: Callable[[int, int], Buffer], size: int) -> Writer | None:
    """The process that committed the object of ``size`` bytes that ``read`` reads (a
    snapshot, or a checkpoint chain whose newest piece says who committed it), from
    its header alone; ``None`` when it is this process, or when the object says
    nothing sound of its producer (it is then nobody's to protect).

    Args:
        read: returns the ``length`` bytes at ``offset`` of the object.
        size: the object's length in bytes.

    Raises:
        OSError: a read failed.
    """
    # Imported here: the snapshot layer's header brings pydantic, which a process that
    # only moves bytes (a handoff's bytes level) never loads; a first commit does.
    from statemigrate._snapshot._format import last_header

    try:
        header = last_header(read, size)
    except SnapshotError:
        return None
    if header is None:
        return None
    producer = header.producer
    if producer.pid == os.getpid() or producer.pid <= 0:
        return None
    if producer.host != socket.gethostname():
        return Writer(host=producer.host, pid=producer.pid, running=None)
    started = process_started_ns(producer.pid)
    running = started is not None and started <= header.created_ns
    return Writer(host=producer.host, pid=producer.pid, running=running)


def process_started_ns(pid: int) -> int | None:
    """When process ``pid`` of this host started, in nanoseconds since the epoch (to
    a clock tick, 10 ms); ``None`` once it has exited (a zombie has) or when
    ``/proc`` cannot tell."""
    ticks = start_ticks(pid)
    if ticks is None:
        return None
    # The boot time from the clocks, not /proc/stat's btime: that one is in whole seconds.
    booted_ns = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    return booted_ns + ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
