"""What a handoff attempt did, for logs, metrics and error handling."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["HandoffOutcome", "HandoffReport", "Phase", "Transport"]

HandoffOutcome = Literal["ready", "failed"]
Transport = Literal["spawn", "socket"]
#: The phases timed by a handoff, in order.
Phase = Literal["spawn", "handshake", "export", "transfer", "ready", "total"]


@dataclass(frozen=True)
class HandoffReport:
    """The account of one handoff attempt, successful or not.

    Attributes:
        outcome: ``"ready"`` when the successor took over, ``"failed"`` otherwise.
        transport: ``"spawn"`` (:func:`~statemigrate.handoff.upgrade`) or ``"socket"``
            (:func:`~statemigrate.handoff.send_handoff`).
        stage: the stage that failed (``None`` on success): ``spawn``, ``handshake``,
            ``pause``, ``export``, ``transfer``, ``ready`` or ``commit``.
        reason: why it failed (``None`` on success).
        successor_pid: the successor's pid, once known.
        successor_exit: the successor's exit status when it ended during the attempt
            (negative: killed by that signal), else ``None``.
        listeners: the names of the listeners handed over.
        readable: the schema versions the successor said it can read.
        snapshot_size: the number of snapshot bytes sent (0 if none were).
        timings: seconds spent per phase (only phases that started), plus ``total``.
        problems: non-fatal troubles, such as a ``stop_accepting`` callback that raised
            after the successor had taken over.
    """

    outcome: HandoffOutcome
    transport: Transport
    stage: str | None = None
    reason: str | None = None
    successor_pid: int | None = None
    successor_exit: int | None = None
    listeners: tuple[str, ...] = ()
    readable: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    snapshot_size: int = 0
    timings: Mapping[str, float] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the successor took over."""
        return self.outcome == "ready"

    def describe(self) -> str:
        """Return a one-line summary, as logged."""
        phases = " ".join(
            f"{name}={seconds * 1000:.1f}ms" for name, seconds in self.timings.items()
        )
        who = f"successor pid {self.successor_pid}" if self.successor_pid else "no successor"
        if self.ok:
            return f"handoff ready: {who}, {self.snapshot_size} bytes, {phases}"
        return f"handoff failed at {self.stage}: {self.reason} ({who}, {phases})"
