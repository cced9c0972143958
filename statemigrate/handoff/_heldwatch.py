"""After SERVING, the successor's last word from the old process: HELD, its own figure
of the pause, read on a thread of its own since the successor serves meanwhile.

The successor's own measure of the pause (``paused`` in SNAPSHOT plus its time until
SERVING) leaves out the deliveries of SNAPSHOT and SERVING and the old process's
``stop_accepting()``. A successor busy when SNAPSHOT arrives (a full collection after
its last pre-copy round, at 1,000,000 entries) wakes up to it tens of milliseconds
late: one trial measured 16.8 ms where the old process held its writers 75.4 ms. The
old process knows the whole figure only once it let its writers go, after SERVING, so
it sends it then, and the gauge the pause alert reads takes it.
"""

from __future__ import annotations

import logging
import select
import threading

from statemigrate.handoff._channel import Channel, Received
from statemigrate.handoff._messages import Held
from statemigrate.handoff._report import record_told_pause

__all__ = ["HELD_WAIT", "watch_held"]

logger = logging.getLogger("statemigrate.handoff")

#: Seconds the successor waits for HELD after SERVING. The old process sends it as soon
#: as its ``stop_accepting()`` returned; one of an earlier release never does, and
#: closes the channel as its handoff ends.
HELD_WAIT = 10.0


def watch_held(
    channel: Channel,
    *,
    service: str,
    parent_pid: int,
    measured: float,
    outcome: str,
    wait: float = HELD_WAIT,
) -> threading.Thread:
    """Read HELD on ``channel`` (which the thread closes) for up to ``wait`` seconds;
    when it comes, its figure replaces ``measured`` in the gauge of the last take-over's
    pause, and the log says both."""
    thread = threading.Thread(
        target=_read_held,
        args=(channel, service, parent_pid, measured, outcome, wait),
        name="statemigrate-handoff-held",
        daemon=True,
    )
    thread.start()
    return thread


def _read_held(
    channel: Channel, service: str, parent_pid: int, measured: float, outcome: str, wait: float
) -> None:
    try:
        poller = select.poll()
        poller.register(channel.sock.fileno(), select.POLLIN)
        if not poller.poll(wait * 1000):
            return  # an old process of an earlier release that keeps the channel open
        got = channel.read(stage="serving")
        if isinstance(got, Received) and isinstance(got.message, Held):
            told = got.message.paused
            record_told_pause(service=service, outcome=outcome, pause_seconds=told)
            logger.info(
                "handoff: pid %d held its writers %.1f ms (this process counted %.1f ms"
                " of it)",
                parent_pid,
                told * 1000,
                measured * 1000,
            )
    except Exception as exc:  # only the figure is lost; the take-over is done
        logger.info("handoff: the old process's figure of the pause could not be read: %s", exc)
    finally:
        channel.sock.close()
