"""A zoo of the schemas pydantic users write, for the snapshot round-trip proof.

Every schema lives at module level (``models``, ``records``) so that a fresh process can
import it; ``table`` lists them with the strategy that draws their states, and
``restore_batch`` is the fresh process that restores a batch of committed snapshots and
compares each restored state with the state that was committed.
"""
