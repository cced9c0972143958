"""Fixtures of the store tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _store_helpers import scratch_dir


@pytest.fixture
def base() -> Iterator[Path]:
    """A private scratch directory, on tmpfs when there is one, removed afterwards."""
    with scratch_dir() as path:
        yield path
