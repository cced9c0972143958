"""The directory where gunicorn workers listen for their successors, the marks they
leave there, and the removal of the files of processes that are gone.

Each file is named after the pid of the master whose worker made it:

* ``<master>-<slot>.sock``: the Unix socket a worker of ``master`` listens on, for
  the worker of the same slot of the next master to take its state over;
* ``<master>-<slot>.ready``: written by a worker of ``master`` once it has taken the
  state over, holding its pid: the next generation counts them to retire the old
  master, and the old generation's worker waits for that pid when the new generation
  dies before it serves on its own;
* ``<master>.moved``: written by a worker of ``master`` whose state moved on, read by
  every worker ``master`` forks afterwards.

A clean exit removes them: a worker its socket, the master the rest (``on_exit``).
``kill -9`` leaves them behind, so each master removes at its start
(:meth:`HandoffDirectory.sweep`) the files no process uses any more. A file of a
master that lives is never touched. Of a master that is gone:

* ``.moved`` goes: only that master's workers read it, as they boot;
* ``.ready`` goes once the worker it names is gone too;
* ``.sock`` goes once nothing listens on it: no socket bound to its name (as
  ``/proc/net/unix`` lists them, which asks nothing of a listener), and a connection
  to it refused. An orphaned worker (its master killed) listens until it notices, a
  second or up to half gunicorn's ``timeout`` later, and a successor may still take
  its state over meanwhile. A socket file never comes back to life: a new listener
  binds a new file.

Pids tell whether a process is gone, so the directory is for the processes of one
pid namespace: containers sharing a volume each need their own.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from statemigrate._errors import ConfigurationError, StateMigrateError
from statemigrate.integrations._successor import gone
from statemigrate.stores._safedir import open_private_directory

__all__ = ["HandoffDirectory", "default_directory"]

# The room for a Unix socket's path (sun_path), its terminating NUL included.
_SUN_PATH_MAX = 108

_NAME = re.compile(r"(?P<master>\d+)(?:-\d+\.(?P<kind>sock|ready)|\.moved)")


def default_directory() -> Path:
    """Where the workers' sockets live unless told: private to the user, per machine."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"statemigrate-gunicorn-{os.geteuid()}"


@dataclass(frozen=True, slots=True)
class HandoffDirectory:
    """The directory of the workers' sockets and marks (``server_hooks(directory=)``)."""

    path: Path

    def socket(self, master: int, slot: int) -> Path:
        """Where the worker of ``slot`` forked by ``master`` listens for its successor."""
        return self.path / f"{master}-{slot}.sock"

    def ready(self, master: int, slot: int) -> Path:
        """The mark of ``master``'s worker of ``slot`` that took the state over."""
        return self.path / f"{master}-{slot}.ready"

    def moved(self, master: int) -> Path:
        """The mark of ``master``'s workers whose state moved to the next generation."""
        return self.path / f"{master}.moved"

    def check(self, workers: int) -> None:
        """Create the directory, private, or check that it is; in the master at start.

        Raises:
            ConfigurationError: its path leaves no room for the sockets' names, or it
                is not private (another owner, open to others, a symbolic link).
        """
        longest = self.socket(2**22, workers + 999)
        if len(os.fsencode(longest)) >= _SUN_PATH_MAX:
            raise ConfigurationError(
                "directory",
                f"{str(self.path)!r} is too long for the workers' Unix sockets"
                f" (at most {_SUN_PATH_MAX - 1} bytes with the socket's name)",
            )
        try:
            os.close(open_private_directory(str(self.path)))
        except StateMigrateError as exc:
            raise ConfigurationError("directory", str(exc)) from exc

    def forget(self, master: int) -> None:
        """Remove every file of ``master``: it exits, or it is an earlier process with
        the pid of one that starts."""
        for path in self.path.glob(f"{master}[-.]*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def sweep(self) -> list[str]:
        """Remove the files of processes that are gone (the rule is the module's);
        in the master at start, before it forks a worker. Returns their names.

        The files of this process's own pid are an earlier process's, with the same
        pid: this one has made none yet."""
        own = os.getpid()
        try:
            names = sorted(os.listdir(self.path))
        except OSError:
            return []
        bound: set[str] | None = None  # /proc/net/unix, read once if a socket needs it
        removed = []
        for name in names:
            found = _NAME.fullmatch(name)
            if found is None:
                continue  # not ours: left alone
            master = int(found["master"])
            path = self.path / name
            if master != own:
                if not gone(master):
                    continue
                if found["kind"] == "ready" and not _named_gone(path):
                    continue
                if found["kind"] == "sock":
                    if bound is None:
                        bound = _bound_names()
                    if str(path) in bound or not _refused(path):
                        continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(name)
        return removed


def _named_gone(ready: Path) -> bool:
    """Whether the worker a ``.ready`` mark names is gone. A mark that names none
    (being written, or cut by ``kill -9`` as it was) is kept: its writer may live."""
    try:
        text = ready.read_text().strip()
    except OSError:
        return False
    return text.isdigit() and gone(int(text))


def _bound_names() -> set[str]:
    """The names of the Unix sockets bound in this network namespace, without asking
    anything of them; none known where ``/proc/net/unix`` cannot be read."""
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="surrogateescape") as table:
            lines = table.read().splitlines()[1:]  # below the header
    except OSError:
        return set()
    # Num RefCount Protocol Flags Type St Inode Path: the path, if any, last.
    return {fields[7] for fields in (line.split(None, 7) for line in lines) if len(fields) == 8}


def _refused(path: Path) -> bool:
    """Whether a connection to the socket file ``path`` is refused: nothing listens
    on it. Any other outcome keeps it (a full queue, a listener of another network
    namespace, which then sees a connection closed at once)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
        probe.setblocking(False)  # a listener with a full queue must not hold the start
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    return False
