"""The error of a command line that argparse took but the command cannot use."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """A missing argument or a value of the wrong form that only the command can see
    (what follows ``--``, a ``--store-option`` its URL's scheme does not take): one
    line and status 2, as argparse's own refusals."""
