"""What ``/proc`` says of another process of this host: whether it still runs, and
since when. Both the handoff's trial record and the stores' second-writer check ask,
and a pid alone is not enough for either: pids are reused."""

from __future__ import annotations

__all__ = ["start_ticks"]


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot; ``None`` once it has
    exited (a zombie has: it serves nobody) or when ``/proc`` cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            raw = stat_file.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        if fields[0] in (b"Z", b"X"):
            return None
        return int(fields[19])  # field 22, starttime
    except (IndexError, ValueError):
        return None
