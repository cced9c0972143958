"""Shared pytest set-up: hypothesis profiles chosen by STATEMIGRATE_HYPOTHESIS_PROFILE,
and the fixtures that test files of more than one folder use."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from _store_helpers.azurite import Azurite
    from _store_helpers.object_server import S3Server

# dev: quick feedback; ci (the default under CI=true): as many examples, on a machine
# whose slowness is no error; soak: opt-in, long, where the depth goes. Tests that need
# more examples to prove their point set their own.
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "soak", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
_default = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("STATEMIGRATE_HYPOTHESIS_PROFILE", _default))


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """An S3 server (moto) on loopback, one per test module that asks for it.

    Imported here rather than at the top: moto is slow to import, and only the
    object store's tests need it."""
    from _store_helpers.object_server import running_server

    with running_server() as server:
        yield server


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    """Azurite, the Azure Blob Storage emulator, on loopback, one per test module that
    asks for it; only the tests marked ``azurite`` do (STATEMIGRATE_AZURITE=1)."""
    from _store_helpers.azurite import running_azurite

    with running_azurite() as server:
        yield server


@pytest.fixture(autouse=True)
def _forget_handoff_descriptors(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts as a process no handoff started: a test that takes a handoff's
    descriptors in this process marks it a successor, which changes how later tests'
    checkpointers log a skip, so the mark is put back after every test."""
    from statemigrate._runtime import _gate

    monkeypatch.setattr(_gate, "_descriptors_taken", False)
    monkeypatch.delenv(_gate.FDS_VAR, raising=False)
    yield
