"""Schemas of many kinds for the round-trip tests (tests/roundtrip/), and a registry that
holds each at version 1 and, wrapped in an envelope, at version 2, with the steps
between them.

Module level, so that the command line can load the registry as
``roundtrip_zoo:build_registry`` and a fresh process can import the schemas.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import uuid
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, NamedTuple, NotRequired, TypeVar

import pydantic
import pydantic.dataclasses
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    computed_field,
    conint,
    constr,
    field_validator,
)
from typing_extensions import TypedDict
from zoo.models import Cat, Dog  # the tagged union's members, shared with that zoo
from zoo.table import Holder

from statemigrate import MemfdStore, Registry, Service, TmpfsStore

T = TypeVar("T")


class Color(enum.Enum):
    RED = 1
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    READ = "read"
    WRITE = "write"


class Shade(enum.Enum):
    """A plain enum of str values: its values as text validate back into members."""

    DARK = "dark"
    LIGHT = "light"


class Perm(enum.IntFlag):
    R = 4
    W = 2


class Scalars(BaseModel):
    count: int
    ratio: float
    name: str
    raw: bytes
    flag: bool
    nothing: None = None
    huge: int = 2**70
    negative_huge: int = -(2**80)


class Floats(BaseModel):
    """Non-finite floats need ``allow_inf_nan``, pydantic's default for ``float``."""

    values: list[float]
    by_score: dict[float, str] = {}
    zero: float = -0.0


class Times(TypedDict):
    at: datetime.datetime
    on: datetime.date
    daily: datetime.time
    span: datetime.timedelta
    zoned: NotRequired[datetime.datetime]


class Ids(BaseModel):
    id: uuid.UUID
    price: decimal.Decimal
    precise: Annotated[decimal.Decimal, Field(max_digits=12, decimal_places=4)]
    ids: frozenset[uuid.UUID] = frozenset()


class Enums(BaseModel):
    color: Color
    level: Level
    mode: Mode
    literal: Literal["a", "b", 3] = "a"
    by_level: dict[Level, str] = {}
    by_mode: dict[Mode, int] = {}
    by_shade: dict[Shade, bool] = {}
    perms: Perm = Perm.R
    by_perm: dict[Perm, str] = {}


class Collections(BaseModel):
    tags: set[str] = set()
    frozen: frozenset[int] = frozenset()
    pair: tuple[int, str] = (0, "")
    many: tuple[float, ...] = ()
    queue: collections.deque[int] = Field(default_factory=collections.deque)
    nested: list[dict[str, list[int]]] = []
    by_id: dict[int, list[str]] = {}
    by_day: dict[datetime.date, int] = {}
    empty_list: list[int] = []
    empty_dict: dict[str, int] = {}


class Point(NamedTuple):
    x: int
    y: int = 0


@dataclasses.dataclass
class Span:
    start: datetime.datetime
    end: datetime.datetime | None = None
    points: list[Point] = dataclasses.field(default_factory=list)


class Shapes(BaseModel):
    origin: Point
    spans: list[Span] = []


class Pets(BaseModel):
    pets: list[Annotated[Cat | Dog, Field(discriminator="kind")]] = []
    favourite: Cat | Dog | None = None
    either: int | str = 0
    maybe: datetime.date | None = None


class Account(BaseModel):
    """Defaults, aliases, a validator, a computed field and extra fields."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    user_id: int = Field(alias="userId")
    display: str = Field(default="", validation_alias="displayName")
    scores: list[int] = Field(default_factory=list)

    @field_validator("display")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        return sum(self.scores)


class Tree(BaseModel):
    label: str
    children: list[Tree] = []


class Box(BaseModel, Generic[T]):
    item: T
    history: list[T] = []


class Limits(BaseModel):
    small: conint(ge=0, le=100) = 0  # type: ignore[valid-type]
    code: constr(pattern=r"^[A-Z]{3}$") = "ABC"  # type: ignore[valid-type]
    ratio: Annotated[float, Field(gt=0, le=1)] = 0.5
    few: Annotated[list[int], Field(max_length=3)] = []


class Texts(TypedDict):
    text: str
    words: list[str]
    by_text: dict[str, str]


class Ledger(RootModel[dict[str, decimal.Decimal]]):
    pass


class Endpoints(BaseModel):
    home: pydantic.AnyUrl
    api: pydantic.HttpUrl | None = None
    mirrors: list[pydantic.AnyHttpUrl] = []


@pydantic.dataclasses.dataclass
class Reading:
    """A pydantic dataclass with defaults and a nested stdlib dataclass."""

    sensor: str
    at: datetime.datetime
    span: Span | None = None
    values: list[float] = dataclasses.field(default_factory=list)


ZOO: dict[str, Any] = {
    "scalars": Scalars,
    "floats": Floats,
    "times": Times,
    "ids": Ids,
    "enums": Enums,
    "collections": Collections,
    "shapes": Shapes,
    "pets": Pets,
    "account": Account,
    "tree": Tree,
    "box": Box[datetime.datetime],
    "limits": Limits,
    "texts": Texts,
    "ledger": Ledger,
    "span": Span,
    "endpoints": Endpoints,
    "reading": Reading,
    "bare-dict": dict[int, Level],
    "bare-tuple": tuple[int, datetime.date, Mode],
}
"""Every zoo schema under its component name."""


def holder_class(registry: Registry, name: str, version: int) -> type[Holder]:
    """A new component class holding ``name`` at ``version`` in ``registry``."""
    cls: type[Holder] = registry.migratable(name, version=version)(
        type(f"Holder_{name}_{version}", (Holder,), {})
    )
    return cls


def restore_from(kind: str, writer: Service, reader: Service, directory: Path) -> None:
    """Commit ``writer``'s state to a store of ``kind`` and restore ``reader`` from it."""
    if kind == "tmpfs":
        with TmpfsStore(directory) as tmpfs:
            writer.commit(tmpfs)
        with TmpfsStore(directory) as tmpfs:
            reader.restore(tmpfs.open())
    else:
        with MemfdStore() as memfd:
            writer.commit(memfd)
            reader.restore(memfd.open())


def envelope(name: str, schema: Any) -> Any:
    """Version 2 of a zoo schema: its version 1 value under ``value``, and a revision."""
    return pydantic.create_model(
        f"Envelope_{name.replace('-', '_')}", value=(schema, ...), revision=(int, 0)
    )


def _upgrade(data: Any) -> Any:
    return {"value": data, "revision": 1}


def _downgrade(data: Any) -> Any:
    return data["value"]


def build_registry() -> Registry:
    """Every zoo schema at version 1 and its envelope at version 2, with both steps."""
    registry = Registry()
    for name, schema in ZOO.items():
        registry.add_schema(name, 1, schema)
        registry.add_schema(name, 2, envelope(name, schema))
        registry.add_migration(name, 1, 2, _upgrade)
        registry.add_migration(name, 2, 1, _downgrade, lossy=("revision",))
    return registry
