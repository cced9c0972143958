"""Fixtures of the command-line tests."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture
def hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key file or section size limit from the environment, and sys.path restored
    after a command that loads a project's registry (which puts the project's folder
    on it)."""
    monkeypatch.delenv("STATEMIGRATE_KEY_FILE", raising=False)
    monkeypatch.delenv("STATEMIGRATE_MAX_SECTION_SIZE", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
