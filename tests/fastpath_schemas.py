"""Schemas both fast paths of a restore are tested on: the typed forms
(``tests/model/test_typed.py``) and the in-place checker (``tests/model/test_inplace.py``).

Plain ones each fast path takes, and ones with a node it must decline (a model, a
dataclass, a constraint, a literal, a union, a datetime, a config).
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Annotated, Literal, NotRequired

import pydantic
from typing_extensions import TypedDict


class Flat(TypedDict):
    a: int
    b: str
    c: float
    d: bool
    e: bytes
    f: None


class Partial(TypedDict):
    a: int
    b: NotRequired[list[int]]
    c: NotRequired[str]


class Tree(TypedDict):
    children: list[Tree]


class Model(pydantic.BaseModel):
    a: int


@dataclasses.dataclass
class Record:
    a: int


class Positive(TypedDict):
    a: Annotated[int, pydantic.Field(gt=0)]


class Choice(TypedDict):
    a: Literal["x", "y"]


class Either(TypedDict):
    a: int | str


class Stamp(TypedDict):
    a: datetime.datetime


@pydantic.with_config(pydantic.ConfigDict(str_strip_whitespace=True))
class Stripped(TypedDict):
    a: str


@pydantic.with_config(pydantic.ConfigDict(extra="allow"))
class Open(TypedDict):
    a: int
