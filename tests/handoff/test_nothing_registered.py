"""A handoff of a service with no registered component: it moves nothing, and both
processes warn once, naming the service."""

from __future__ import annotations

import logging

import pytest
from handoff_children.precopy import build_service
from inprocess_handoff import hand_over_in_process

import statemigrate as sm


def _in_process(old: sm.Service, new: sm.Service, *, asynchronous: bool) -> None:
    assert hand_over_in_process(old, new, asynchronous=asynchronous).ok


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_both_sides_warn_that_nothing_moves(
    asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        _in_process(sm.Service("shop"), sm.Service("shop"), asynchronous=asynchronous)
    handed, took = _warnings(caplog)
    assert handed.startswith("handoff: service 'shop' hands over no component: ")
    assert took.startswith("handoff: service 'shop' took over no component: ")
    for line in (handed, took):
        assert "app.state" in line and "not moved" in line
        assert "register the components" in line
        assert "docs/asgi.md" in line and "docs/servers.md" in line


def test_a_service_with_components_warns_of_nothing(caplog: pytest.LogCaptureFixture) -> None:
    (old, obj), (new, copy) = build_service(1), build_service(1)
    obj.entries["a"] = 1
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        _in_process(old, new, asynchronous=False)
    assert dict(copy.entries) == {"a": 1}
    assert _warnings(caplog) == []
