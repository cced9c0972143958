"""The one default size limit on a snapshot, shared by every reader and writer.

Readers (``DecodeLimits``), stores (``max_size``), the command line and the handoff's
memfd receive all default to :data:`DEFAULT_MAX_SNAPSHOT_SIZE`, so a snapshot one
part of the library commits is one every other part accepts. This module imports
nothing, so the stores can read the value without loading the format.
"""

__all__ = ["DEFAULT_MAX_SNAPSHOT_SIZE"]

DEFAULT_MAX_SNAPSHOT_SIZE = 4 << 30
"""The largest snapshot, in bytes, accepted or committed by default (4 GiB)."""
