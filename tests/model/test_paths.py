"""Paths into a state as messages show them (_model/_paths.py): record fields, keys,
a dict's key itself and set items; pydantic's error locations read as paths; long keys
and long paths shortened."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import AfterValidator, BaseModel, RootModel, TypeAdapter
from typing_extensions import TypedDict

from statemigrate._errors import ExportError
from statemigrate._model._paths import DictKey, FieldName, SetItem, format_path, located_path
from statemigrate._model._schema import SchemaVersion


def test_a_long_path_shows_its_ends_and_its_length() -> None:
    """Before, a path 1,024 steps deep made a message of over 3 KB."""
    path: list[object] = [FieldName("data"), *([0] * 1023), "leaf"]
    text = format_path(path)
    assert text == "data[0][0][0][0][0] ... [0][0][0]['leaf'] (1025 steps)"
    assert format_path([FieldName("a"), "k", 0]) == "a['k'][0]"
    sixteen: list[object] = [0] * 16
    assert format_path(sixteen) == "[0]" * 16



def test_a_long_key_shows_its_start_and_its_length() -> None:
    """Before, a key was shown whole: a 100,000-character key made a 100 KB message."""
    forty = "x" * 40
    assert format_path([FieldName("by_name"), forty]) == f"by_name[{forty!r}]"
    assert format_path([FieldName("by_name"), "x" * 100_000]) == (
        f"by_name[{forty!r}...(100000 chars)]"
    )
    nul = b"\x00"
    assert format_path([nul * 50]) == f"[{nul * 40!r}...(50 bytes)]"
    assert format_path([-(10**50)]) == f"[{str(-(10**50))[:40]}...(51 digits)]"
    # Past 4,300 digits Python writes no int as text; its size is shown instead.
    assert format_path([10**5000]) == "[<an int of 16610 bits>]"
    assert format_path([DictKey("k" * 41), 0]) == f"(root) key {'k' * 40!r}...(41 chars)[0]"
    assert format_path([FieldName("s"), SetItem((1,) * 30)]).startswith("s{(1, 1, 1, 1, 1")
    assert len(format_path([FieldName("s"), SetItem((1,) * 30)])) == 2 + 40 + 3 + 1


class _ByName(TypedDict):
    by_name: dict[str, str]


def test_an_export_refusal_under_a_long_key_stays_one_short_line() -> None:
    schema = SchemaVersion.create("c", 1, _ByName)
    with pytest.raises(ExportError) as caught:
        schema.export({"by_name": {"x" * 100_000: "bad\udc80"}}, walk=True)
    assert caught.value.path == f"by_name[{'x' * 40!r}...(100000 chars)]"
    assert len(str(caught.value)) < 300
    with pytest.raises(ExportError) as unknown:
        schema.export({"by_name": {}, "y" * 100_000: 1})
    assert unknown.value.path == f"[{'y' * 40!r}...(100000 chars)]"


# --- pydantic's error locations as paths -----------------------------------------------------


class _Row(TypedDict):
    hits: int


class _Node(BaseModel):
    rows: dict[str, list[_Row]]
    either: int | list[int] = 0


def test_a_location_names_record_fields_and_keys_as_paths_do() -> None:
    """Fields of models and TypedDicts alike render ``.name``, keys ``['k']``: one form,
    as the exporter's own paths have. Before, a location was rendered all as keys."""
    core = TypeAdapter(_Node).core_schema
    path = located_path(core, ("rows", "k", 0, "hits"))
    assert format_path(path) == "rows['k'][0].hits"


def test_a_location_leaves_out_the_step_naming_a_union_member() -> None:
    core = TypeAdapter(_Node).core_schema
    assert format_path(located_path(core, ("either", "list[int]", 1))) == "either[1]"
    # Plain data has no such steps: past a union, the rest is kept as it is.
    assert format_path(located_path(core, ("either", 1), labelled=False)) == "either[1]"


def _even(key: int) -> int:
    if key % 2:
        raise ValueError("odd key")
    return key


Even = Annotated[int, AfterValidator(_even)]


class _Keyed(BaseModel):
    by_id: dict[Even, int]
    nested: dict[str, dict[Even, int]] = {}
    deep: dict[str, dict[str, Even]] = {}


def test_a_key_that_does_not_validate_is_named_as_the_key() -> None:
    """pydantic locates a key's own error with a step ``[key]`` after the key. Before,
    that step was shown as one more key: ``by_id['3']['[key]']``."""
    core = TypeAdapter(_Keyed).core_schema
    assert format_path(located_path(core, ("by_id", "3", "[key]"))) == "by_id key '3'"
    assert format_path(located_path(core, ("nested", "a", "3", "[key]"))) == (
        "nested['a'] key '3'"
    )
    # Under a dict of dicts, a value's error at the key "[key]" has that location too.
    assert format_path(located_path(core, ("deep", "a", "[key]"))) == "deep['a']['[key]']"


def test_an_export_refused_for_a_key_names_the_key() -> None:
    schema = SchemaVersion.create("c", 1, _Keyed)
    with pytest.raises(ExportError) as caught:
        schema.export(_Keyed.model_construct(by_id={3: 1}))
    assert str(caught.value).startswith(
        "c version 1 cannot be snapshotted: at by_id key '3': its plain form does"
        " not validate back: Value error, odd key"
    )


def test_a_field_whose_name_is_no_identifier_is_shown_as_a_key() -> None:
    """A TypedDict's field may be named anything: ``.a b`` would not read as one step."""
    assert format_path([FieldName("rows"), "k", FieldName("a b")]) == "rows['k']['a b']"


def test_a_dict_keys_own_error_is_located_at_the_key() -> None:
    """pydantic puts ``'[key]'`` after a key whose own validation failed: the path
    names the key, ``users[1] key 'x'``, not a step ``['[key]']`` into its value."""
    adapter = TypeAdapter(dict[str, dict[int, bool]])
    path = located_path(adapter.core_schema, ["users", "x", "[key]"])
    assert format_path(path) == "['users'] key 'x'"
    # Here the values are dicts: their own key "[key]" has that location too, so it
    # is not told apart (see test_a_key_that_does_not_validate_is_named_as_the_key).
    assert format_path(located_path(adapter.core_schema, ["x", "[key]"])) == "['x']['[key]']"
    # Plain data has no such step: there a key '[key]' is a key.
    plain = located_path(adapter.core_schema, ["x", "[key]"], labelled=False)
    assert format_path(plain) == "['x']['[key]']"
    assert format_path([DictKey("x")]) == "(root) key 'x'"
    assert format_path([FieldName("s"), SetItem(1)]) == "s{1}"


class _Quota(TypedDict):
    quotas: dict[str, int]


class _Teams(RootModel[dict[str, _Quota]]):
    pass


def test_a_path_the_comparison_found_names_fields_as_the_exporter_does() -> None:
    """The comparison walks a TypedDict as a dict, and a root model by its one field
    ``root``: read against the schema, its path names the TypedDict's fields
    ``.name``. Before, a step ``root`` was read as the dict's key, and every step after
    it one place off: ``root.quotas['quotas']['x']``."""
    core = TypeAdapter(_Teams).core_schema
    found = [FieldName("root"), "quotas", "quotas", "x"]
    assert format_path(located_path(core, found, labelled=False)) == "root['quotas'].quotas['x']"
    # pydantic's locations have no such step: there "root" is a key of the dict.
    assert format_path(located_path(core, ["root", "quotas"])) == "['root'].quotas"
