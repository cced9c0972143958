"""Shared pytest set-up: hypothesis profiles chosen by STATEMIGRATE_HYPOTHESIS_PROFILE."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# dev: quick feedback; ci: more examples (the default under CI=true); soak: opt-in, long.
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "soak", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
_default = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("STATEMIGRATE_HYPOTHESIS_PROFILE", _default))
