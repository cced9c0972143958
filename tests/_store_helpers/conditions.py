"""The conditional requests an ObjectStore relies on, checked against a server."""

from __future__ import annotations

from typing import Any

import obstore
import pytest


def assert_enforces_conditions(raw: Any) -> None:
    """Check that the server behind obstore store ``raw`` refuses a create-only put of
    an existing object (If-None-Match: *), an update with a stale etag (If-Match), and
    a GET with a stale If-Match: what the store's commit and reads rely on."""
    first = obstore.put(raw, "x", b"1", mode="create")
    with pytest.raises(obstore.exceptions.AlreadyExistsError):
        obstore.put(raw, "x", b"2", mode="create")
    second = obstore.put(raw, "x", b"3", mode={"e_tag": first["e_tag"]})
    with pytest.raises(obstore.exceptions.PreconditionError):
        obstore.put(raw, "x", b"4", mode={"e_tag": first["e_tag"]})
    with pytest.raises(obstore.exceptions.PreconditionError):
        obstore.get(raw, "x", options={"if_match": first["e_tag"]})
    assert obstore.get(raw, "x", options={"if_match": second["e_tag"]}).bytes() == b"3"
