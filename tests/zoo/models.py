"""BaseModel schemas of the zoo: the pydantic features a service's state uses."""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import ipaddress
import pathlib
import uuid
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NaiveDatetime,
    PlainSerializer,
    RootModel,
    SecretBytes,
    SecretStr,
    computed_field,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from zoo.records import Point

T = TypeVar("T")

# --- scalars and their kin ----------------------------------------------------------------


class Basic(BaseModel):
    """The plain scalars, as most states start."""

    count: int
    ratio: float
    name: str
    active: bool
    blob: bytes
    nothing: None = None


class Color(enum.Enum):
    RED = "red"
    GREEN = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    READ = "r"
    WRITE = "w"


class Enums(BaseModel):
    color: Color
    level: Level
    mode: Mode
    modes: set[Mode] = set()
    levels: list[Level] = []


class Literals(BaseModel):
    access: Literal["r", "w", "rw"]
    priority: Literal[1, 2, 3]
    flag: Literal[True] | None = None


class Times(BaseModel):
    at: datetime.datetime
    day: datetime.date
    clock: datetime.time
    span: datetime.timedelta
    aware: AwareDatetime
    naive: NaiveDatetime


class Numbers(BaseModel):
    price: decimal.Decimal
    exact: Annotated[decimal.Decimal, Field(max_digits=10, decimal_places=4)]
    ratio: float
    count: int
    limit: float = float("inf")


class Identifiers(BaseModel):
    ident: uuid.UUID
    path: pathlib.Path
    host: ipaddress.IPv4Address
    host6: ipaddress.IPv6Address
    network: ipaddress.IPv4Network
    interface: ipaddress.IPv6Interface


class Collections(BaseModel):
    tags: set[str]
    frozen: frozenset[int]
    pair: tuple[int, str]
    many: tuple[float, ...]
    queue: collections.deque[int]
    blobs: list[bytes]


class BigInts(BaseModel):
    """Python ints have no bound; counters and ids outgrow 64 bits."""

    counter: int
    balances: dict[str, int] = {}


class Texts(BaseModel):
    """Strings as Python holds them, lone surrogates included (e.g. from
    ``os.fsdecode`` of a file name that is not UTF-8)."""

    text: str
    words: list[str] = []
    by_text: dict[str, str] = {}


# --- aliases ------------------------------------------------------------------------------


class AliasRequired(BaseModel):
    """A field read under another name, without populate_by_name."""

    data: str = Field(alias="value")
    hits: int = 0


class AliasByName(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    data: str = Field(alias="value")
    ttl: float | None = Field(default=None, alias="timeToLive")


class AliasValidationOnly(BaseModel):
    data: str = Field(validation_alias="value")
    note: str = Field(default="", validation_alias=AliasChoices("note", "comment"))


class AliasSerializationOnly(BaseModel):
    data: str = Field(serialization_alias="value")
    count: int = Field(default=0, serialization_alias="n")


class AliasGenerated(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    user_name: str
    last_seen: datetime.datetime | None = None


class ExtraAllow(BaseModel):
    """Extra keys kept, beside aliased required and optional fields."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(alias="fullName")
    nick: str | None = Field(default=None, alias="nickName")


class ExtraForbid(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(alias="fullName")
    nick: str | None = Field(default=None, alias="nickName")


# --- serialization ------------------------------------------------------------------------


class ComputedForbid(BaseModel):
    """A computed field is dumped, and extra="forbid" refuses it on the way back."""

    model_config = ConfigDict(extra="forbid")

    width: int
    height: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def area(self) -> int:
        return self.width * self.height


class FieldSerialized(BaseModel):
    when: datetime.datetime
    tags: set[str] = set()

    @field_serializer("when")
    def _when_as_timestamp(self, value: datetime.datetime) -> float:
        return value.timestamp()

    @field_serializer("tags")
    def _tags_sorted(self, value: set[str]) -> list[str]:
        return sorted(value)


class PlainSerialized(BaseModel):
    price: Annotated[decimal.Decimal, PlainSerializer(float, return_type=float)]
    code: Annotated[int, PlainSerializer(lambda n: f"{n:08d}", return_type=str)]


class ExcludedRequired(BaseModel):
    key: str
    token: str = Field(exclude=True)


class ExcludedOptional(BaseModel):
    key: str
    cache: dict[str, int] = Field(default_factory=dict, exclude=True)


class Secrets(BaseModel):
    password: SecretStr
    key: SecretBytes
    hint: SecretStr | None = None


# --- unions -------------------------------------------------------------------------------


class Cat(BaseModel):
    kind: Literal["cat"] = "cat"
    lives: int = 9


class Dog(BaseModel):
    kind: Literal["dog"] = "dog"
    good: bool = True


class Tagged(BaseModel):
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    pets: list[Annotated[Cat | Dog, Field(discriminator="kind")]] = []


class Short(BaseModel):
    name: str


class Long(BaseModel):
    name: str
    age: int = 0


class Untagged(BaseModel):
    value: int | float | str | bytes | None
    who: Short | Long


# --- structure ----------------------------------------------------------------------------


class Leaf(BaseModel):
    name: str
    weight: float = 1.0


class Nested(BaseModel):
    leaf: Leaf
    leaves: list[Leaf] = []
    by_name: dict[str, Leaf] = {}
    point: Point | None = None


class Animal(BaseModel):
    name: str


class Bird(Animal):
    wingspan: float = 0.0


class Polymorphic(BaseModel):
    """A field typed as a base model, holding an instance of a subclass."""

    animal: Animal
    animals: list[Animal] = []


class AnyHolder(BaseModel):
    value: Any
    meta: dict[str, Any] = {}


class Optionals(BaseModel):
    number: int | None = None
    label: str | None
    items: list[int] = Field(default_factory=list)
    weights: dict[str, float] = Field(default_factory=dict)
    since: datetime.datetime = Field(default_factory=lambda: datetime.datetime(2000, 1, 1))


class Constrained(BaseModel):
    port: Annotated[int, Field(ge=1, le=65535)]
    name: Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[a-z][a-z0-9-]*$")]
    tags: Annotated[list[str], Field(min_length=1, max_length=3)]
    price: Annotated[decimal.Decimal, Field(gt=0, max_digits=8, decimal_places=2)]
    ratio: Annotated[float, Field(ge=0, le=1)]
    step: Annotated[int, Field(multiple_of=5)]


class KeyedDicts(BaseModel):
    by_int: dict[int, str] = {}
    by_float: dict[float, int] = {}
    by_bool: dict[bool, int] = {}
    by_mode: dict[Mode, int] = {}
    by_pair: dict[tuple[int, int], str] = {}
    by_uuid: dict[uuid.UUID, int] = {}
    by_day: dict[datetime.date, int] = {}


class Tree(BaseModel):
    value: int
    children: list[Tree] = []


class Chain(BaseModel):
    name: str
    next: Chain | None = None


# --- validators ---------------------------------------------------------------------------


class Normalized(BaseModel):
    """Idempotent validators: validating their output again changes nothing."""

    email: str
    tags: list[str] = []

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("tags")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


class Stamped(BaseModel):
    """A validator that is not idempotent: each validation appends a mark."""

    history: list[str] = []

    @field_validator("history")
    @classmethod
    def _mark(cls, value: list[str]) -> list[str]:
        return [*value, "loaded"]


class Ranged(BaseModel):
    low: int
    high: int

    @model_validator(mode="after")
    def _ordered(self) -> Ranged:
        if self.low > self.high:
            raise ValueError("low must not exceed high")
        return self


class Split(BaseModel):
    """A before-validator that also takes a comma-separated string."""

    names: list[str]

    @field_validator("names", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return value.split(",") if isinstance(value, str) else value


# --- configurations -----------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(strict=True)

    when: datetime.datetime
    ident: uuid.UUID
    names: tuple[str, ...] = ()


class FrozenKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    shard: int
    name: str


class FrozenSet(BaseModel):
    keys: set[FrozenKey] = set()
    owner: FrozenKey | None = None


class Box(BaseModel, Generic[T]):
    item: T
    items: list[T] = []


class IntBox(Box[int]):
    """A parametrized generic, named so that pickle and a fresh process find it."""


class Ledger(RootModel[dict[int, decimal.Decimal]]):
    """A root model: the state is the mapping itself."""
