"""The directory where gunicorn workers listen for their successors, and the marks they
leave there.

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
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from statemigrate._errors import ConfigurationError, StateMigrateError
from statemigrate.stores._safedir import open_private_directory

__all__ = ["HandoffDirectory", "default_directory"]

# The room for a Unix socket's path (sun_path), its terminating NUL included.
_SUN_PATH_MAX = 108


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
