"""Run a command as a child subreaper, so orphaned generations are reaped, not left as zombies.

In a handoff chain each generation is the child of the previous one, which exits;
its successor is then re-parented to the nearest subreaper (or to pid 1, which in
some containers never reaps). This wrapper adopts and reaps them all and exits once
no descendant is left.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"prctl failed: errno {ctypes.get_errno()}", file=sys.stderr)
        return 2
    os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return 0


if __name__ == "__main__":
    sys.exit(main())
