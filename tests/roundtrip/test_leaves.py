"""Leaf types the plain form writes as text come back as they were: pydantic's URL
classes (AnyUrl, HttpUrl, PostgresDsn, ...), paths and IP addresses."""

from __future__ import annotations

import ipaddress
import pathlib
from collections.abc import Callable

import pydantic
from pydantic import AnyUrl, BaseModel, HttpUrl, PostgresDsn

from statemigrate.testing._properties import exact_differences

RoundTrip = Callable[[object, object], object]  # the round_trip fixture


class Endpoints(BaseModel):
    home: AnyUrl
    api: HttpUrl
    database: PostgresDsn
    mirrors: list[HttpUrl] = []
    fallback: AnyUrl | None = None
    core: pydantic.AnyHttpUrl | None = None
    path: pathlib.Path = pathlib.Path("/srv")
    address: ipaddress.IPv6Address = ipaddress.IPv6Address("::1")


def test_pydantic_url_classes_round_trip(round_trip: RoundTrip) -> None:
    """Before, every state holding one was refused: 'expected a URL, found AnyUrl'."""
    state = Endpoints(
        home="https://example.org/a?b=1#c",
        api="https://api.example.org:8443/v1/",
        database="postgres://user:secret@db1:5432,db2:5433/app",
        mirrors=["http://m1.example.org", "http://m2.example.org/x"],
        fallback="ftp://files.example.org",
        core="http://localhost",
    )
    restored = round_trip(Endpoints, state)
    assert not exact_differences(state, restored)
    assert isinstance(restored, Endpoints)
    assert type(restored.database) is PostgresDsn and str(restored.database) == str(state.database)
