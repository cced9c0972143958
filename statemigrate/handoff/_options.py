"""What a handoff is told: how long each wait may last, and which successor to start."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from statemigrate._errors import ConfigurationError

__all__ = ["HandoffTimeouts", "Spawn"]


@dataclass(frozen=True, slots=True)
class HandoffTimeouts:
    """How long each wait of a handoff may last, in seconds; one object for both sides.

    Every wait of a handoff is bounded: a successor that hangs, or an old process that
    vanishes, costs at most the wait concerned, after which the handoff fails and the
    old process goes on serving. The defaults suit a service whose start-up and
    restore take a few seconds; raise ``hello`` for slow start-ups and ``ready`` (and
    ``snapshot``) for large states. Keep ``writes`` well below ``snapshot``: the
    successor's wait for the snapshot covers the old process's wait for the writes,
    and the old process, which can go on serving, should be the one to give up.

    Attributes:
        hello: old process: from starting (or being connected to) the successor until
            its HELLO. Covers the successor's start-up, imports included, while the
            old process still serves.
        snapshot: successor: from its HELLO until the snapshot arrives (the old
            process pauses and exports meanwhile).
        precopy: old process, in a pre-copy handoff: each round, from the start of
            its export (round 0 in a forked child) until the successor acknowledges
            that it applied it. Covers the successor's restore of the full snapshot,
            while the old process still serves. Successor, when it announced
            pre-copy: the wait for each piece and for the snapshot, when longer than
            ``snapshot``.
        ready: old process: from sending the snapshot until READY. Covers the
            successor's restore, while writers are held.
        commit: successor: from its READY until COMMIT.
        serving: old process: from COMMIT until the successor confirms it serves
            (SERVING). Writers stay held meanwhile; a successor that dies or stays
            silent is stopped and this process takes its state back.
        kill_grace: old process: how long a failed successor it started gets to exit
            by itself, and then between ``SIGTERM`` and ``SIGKILL``. Successor: how
            long, once the channel closed without COMMIT, it waits to see the old
            process gone before it takes over (see
            :meth:`~statemigrate.handoff.Inheritance.ready`).
        writes: old process, in a server adapter: from the pause until the write
            requests already running when it began have ended (new ones are held
            meanwhile). A request whose client sends its body slowly keeps running
            as long as the client likes; past this wait the handoff fails at stage
            ``writes``, the held writes go on at once and this process serves on.

    Raises:
        ConfigurationError: a value is not a positive, finite number of seconds.
    """

    hello: float = 30.0
    snapshot: float = 60.0
    ready: float = 30.0
    precopy: float = 120.0
    commit: float = 30.0
    serving: float = 30.0
    kill_grace: float = 5.0
    writes: float = 10.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and value > 0):
                raise ConfigurationError(
                    f"timeouts.{item.name}",
                    f"must be a positive, finite number of seconds, not {value!r}",
                )


@dataclass(frozen=True, slots=True)
class Spawn:
    """A successor for the old process to start: its command line and surroundings.

    The successor inherits stdin, stdout and stderr, the listeners and one end of the
    control channel, and nothing else (``close_fds=True``).

    Attributes:
        argv: the command line, ``[sys.executable, "-m", "myservice"]`` for a Python
            service. It should call :func:`~statemigrate.handoff.receive_handoff`
            early.
        env: the successor's environment before the handoff's variables are added;
            ``os.environ`` by default.
        cwd: the successor's working directory; ours by default.

    Raises:
        ConfigurationError: ``argv`` is a string, empty, or holds something else than
            strings.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str] | None = None
    cwd: str | os.PathLike[str] | None = None

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        if isinstance(argv, str | bytes) or not isinstance(argv, Sequence):
            raise ConfigurationError("argv", f"must be a list of strings, not {argv!r}")
        if not argv or not all(isinstance(part, str) for part in argv):
            raise ConfigurationError("argv", f"must be a non-empty list of strings, not {argv!r}")
        object.__setattr__(self, "argv", tuple(argv))
        object.__setattr__(self, "env", env)
        object.__setattr__(self, "cwd", cwd)
