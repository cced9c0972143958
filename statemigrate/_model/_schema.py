"""Schema versions: one pydantic-validated shape of a component's state, and its fingerprint.

Any type pydantic's :class:`~pydantic.TypeAdapter` accepts can be a schema: a
``BaseModel``, a ``TypedDict`` (validated state stays plain dicts, which is far cheaper
for large caches), a dataclass, or a plain annotated type such as ``dict[str, int]``.

Exports and validation use one representation, the *plain form* (see ``_export``):
fields under their Python names (never aliases), leaves in pydantic's JSON conventions,
validated back in lax mode by name. Every schema that registers keeps the round-trip
contract: ``validate(export(x))`` equals ``x`` in value and type, or :meth:`export`
refuses ``x`` with an :class:`~statemigrate.ExportError` naming the path; a schema
with a part that has no plain form does not register.

The fingerprint of a schema is a hash of its canonical JSON Schema in validation mode
(see ``_fingerprint``), with the Python types pydantic's JSON Schema leaves out added (a
dict's key type, ``tuple[X, ...]`` for a list, ...; see ``_jsonschema``). It covers what
that shows: fields, their names, types, required-ness, constraints (bounds, lengths,
patterns), enum and literal values, and plain defaults.
It does not cover what JSON Schema cannot show: a ``default_factory``, validators and
serializers, ``strict``, private attributes. It stays the same across processes, Python
versions with the same pydantic, and cosmetic edits: titles, descriptions and
docstrings, examples, and the names of nested classes are not part of it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pydantic
import pydantic_core

from statemigrate._errors import ExportError, RegistrationError, ValidationError, first_line
from statemigrate._model._compare import (
    NOT_A_FIELD,
    Difference,
    first_changed_value,
    first_difference,
)
from statemigrate._model._export import (
    Exporter,
    NotExportable,
    SchemaNotExportable,
    compile_exporter,
)
from statemigrate._model._fingerprint import (
    canonical_json_schema,
    canonical_text,
    fingerprint_of,
)
from statemigrate._model._floatcolumns import FloatCheck, compile_float_check, walk_needed
from statemigrate._model._inplace import InPlaceChecker, Node, compile_checker, schema_tree
from statemigrate._model._jsonschema import validation_schema
from statemigrate._model._paths import FieldName, format_path, located_path
from statemigrate._model._plaindata import same_plain
from statemigrate._model._plan import check_component, check_version
from statemigrate._model._schematype import (
    TYPEDDICT_HINT,
    SchemaKind,
    extra_allowed,
    record_fields,
    reject_function,
    reject_typing_typeddict,
)
from statemigrate._model._shown import shown
from statemigrate._model._typed import TypedForm, compile_typed_form
from statemigrate._model._validity import (
    UnknownKey,
    Unsure,
    ValidityCheck,
    compile_validity_check,
)

# SchemaKind, canonical_json_schema and fingerprint_of live in _schematype and
# _fingerprint; they stay importable from here.
__all__ = ["SchemaKind", "SchemaVersion", "canonical_json_schema", "fingerprint_of"]


@dataclass(frozen=True)
class SchemaVersion:
    """One registered version of a component's schema.

    Build it with :meth:`create` (the registry does); the constructor takes the
    already computed parts.

    Attributes:
        component: the component name.
        version: the schema version (1 and up).
        type: the schema type as registered.
        adapter: the pydantic adapter that validates and dumps it.
        fingerprint: 32 hex digits of SHA-256 over the canonical JSON Schema.
        kind: ``"model"``, ``"typeddict"``, ``"dataclass"`` or ``"other"``.
        fields: the top-level field names for record kinds, in declaration order.
        required_fields: the fields that must be present.
        in_place: the checker :meth:`adopt` uses to keep data without a copy, or None
            when the schema has parts it does not know (see ``statemigrate._model._inplace``).
        in_place_plain: the same checker, accepting only data that is also strictly
            plain, so that a restore checks a step's output for both in one walk; None
            where that proof is not made (no C checks, int keys, very deep schemas).
        exporter: turns states into the plain form (see ``statemigrate._model._export``).
        typed: the schema as a msgspec type, which decodes a section straight into
            what :meth:`validate` returns, or None when msgspec cannot state the schema
            exactly (see ``statemigrate._model._typed``).
        tree: the schema as the in-place checker reads it, or None when it declines
            it; field changes are proven on it (see ``statemigrate._model._fieldchanges``).
        validity: the walk that tells, without a copy, that a plain state surely
            validates (see ``statemigrate._model._validity``), or None with no tree.
        float_check: whether plain data holds an ``int`` in a float field, by passes
            over the float columns: True, False, or None when only a walk of the data
            can tell (see ``statemigrate._model._floatcolumns``).
    """

    component: str
    version: int
    type: object
    adapter: pydantic.TypeAdapter[Any] = field(repr=False, compare=False)
    fingerprint: str
    kind: SchemaKind = "other"
    fields: tuple[str, ...] = ()
    required_fields: frozenset[str] = frozenset()
    in_place: InPlaceChecker | None = field(default=None, repr=False, compare=False)
    in_place_plain: InPlaceChecker | None = field(default=None, repr=False, compare=False)
    exporter: Exporter | None = field(default=None, repr=False, compare=False)
    allows_extra: bool = False
    typed: TypedForm | None = field(default=None, repr=False, compare=False)
    tree: Node | None = field(default=None, repr=False, compare=False)
    validity: ValidityCheck | None = field(default=None, repr=False, compare=False)
    float_check: FloatCheck = field(default=walk_needed, repr=False, compare=False)

    @classmethod
    def create(cls, component: str, version: int, type_: object) -> SchemaVersion:
        """Build the adapter and fingerprint for ``type_``.

        Raises:
            RegistrationError: the name or version is invalid; ``type_`` is a
                ``typing.TypedDict`` on Python < 3.12 (pydantic needs
                ``typing_extensions.TypedDict`` there); or pydantic cannot build a
                validator or a JSON Schema for it.
        """
        check_component(component)
        check_version(version)
        where = f"schema {component!r} version {version}"
        reject_typing_typeddict(type_, where)
        reject_function(type_, where)
        try:
            adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(cast(Any, type_))
            # Bounds keep their Python type in pydantic's JSON Schema (a Decimal stays a
            # Decimal); the JSON-ready form makes them text that json can hash.
            exporter = compile_exporter(adapter.core_schema)
            schema = pydantic_core.to_jsonable_python(validation_schema(adapter))
            fingerprint = fingerprint_of(schema)
        except SchemaNotExportable as exc:
            raise RegistrationError(
                f"{where}: field {exc}; a snapshot could not hold it, so no state of this"
                " schema could be restored"
            ) from exc
        except pydantic.PydanticUserError as exc:
            if exc.code == "typed-dict-version":
                raise RegistrationError(f"{where}: {TYPEDDICT_HINT}") from exc
            hint = ""
            if exc.code == "class-not-fully-defined":
                # Annotations are resolved in the defining module's globals, so types
                # defined inside a function cannot be found from here.
                hint = "; define the schema and every type it refers to at module level"
            # The first line says what; the rest is advice for pydantic's own users
            # (unknown types such as bytearray get a paragraph of it).
            message = (exc.message.strip().splitlines() or [exc.code or "error"])[0]
            raise RegistrationError(
                f"{where}: pydantic cannot use {shown(type_)}: {message}{hint}"
            ) from exc
        except (
            pydantic.PydanticSchemaGenerationError,
            pydantic_core.PydanticSerializationError,
            pydantic_core.SchemaError,  # e.g. an invalid regex pattern
            TypeError,
            ValueError,  # e.g. a float bound too large for a float
            NameError,
            OverflowError,
        ) as exc:
            if _INT_TEXT_LIMIT in str(exc):
                raise RegistrationError(f"{where}: {_int_past_text_limit()}") from exc
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise RegistrationError(
                f"{where}: pydantic cannot use {shown(type_)}: {detail}"
            ) from exc
        kind, names, required = record_fields(type_, schema)
        tree = schema_tree(adapter.core_schema)
        return cls(
            component=component,
            version=version,
            type=type_,
            adapter=adapter,
            fingerprint=fingerprint,
            kind=kind,
            fields=names,
            required_fields=required,
            in_place=compile_checker(adapter.core_schema, name=f"{component} v{version}"),
            in_place_plain=compile_checker(
                adapter.core_schema, name=f"{component} v{version}, plain", proving=True
            ),
            exporter=exporter,
            allows_extra=extra_allowed(adapter.core_schema),
            typed=compile_typed_form(adapter.core_schema, tree),
            tree=tree,
            validity=None if tree is None else compile_validity_check(tree),
            float_check=compile_float_check(adapter.core_schema),
        )

    def validate(self, data: object) -> Any:
        """Validate plain data and return the state it describes.

        For a ``TypedDict`` schema the result is a new plain dict; for a model or a
        dataclass, an instance of it. Validation is pydantic's lax mode (whatever the
        schema's ``strict`` settings), which parses the strings that :meth:`export`
        writes for datetimes, UUIDs and so on, with fields taken by their Python names
        as :meth:`export` writes them (aliases are for other inputs).

        Raises:
            ValidationError: the data does not fit; ``errors`` holds pydantic's error
                list (without the offending input, which may be a whole cache) and the
                pydantic error is chained.
        """
        try:
            return self.adapter.validate_python(data, strict=False, by_alias=False, by_name=True)
        except pydantic.ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            raise ValidationError(
                self.component,
                self.version,
                _summarize(exc, self.adapter.core_schema),
                errors=cast(list[dict[str, object]], errors),
            ) from exc
        except MemoryError:
            raise
        except Exception as exc:
            # pydantic wraps only ValueError and AssertionError from a validator; anything
            # else (a RuntimeError, the OSError of a path too long to check) comes through
            # raw, and would escape a commit or a restore as if the library had failed.
            raise ValidationError(
                self.component,
                self.version,
                f"validation raised {type(exc).__name__}: {first_line(exc):.200}",
            ) from exc

    def adopt(self, box: list[Any], *, plain: bool = False) -> Any:
        """Validate the one item of ``box`` and take it over, emptying ``box``.

        Same result and errors as :meth:`validate`, for data the caller hands over and
        no longer uses: a restore's decoded and migrated section. When the data already
        is exactly what :meth:`validate` would return, and nothing else refers to any of
        its dicts or lists, it is returned itself rather than copied; for a ``TypedDict``
        schema over a large cache that skips a copy costing about as much as decoding.
        The data comes in a list so that the caller holds no reference of its own while
        references are counted. ``plain=True`` says the data passed the plain-data
        check (``not_plain_output``), which makes that comparison cheaper; the result is
        the same.

        Raises:
            ValidationError: as :meth:`validate`.
        """
        return self.adopt_kept(box, plain=plain)[0]

    def adopt_kept(
        self, box: list[Any], *, plain: bool = False, copied: list[Any] | None = None
    ) -> tuple[Any, bool]:
        """:meth:`adopt`, and whether the data was kept as it is rather than validated
        into a copy. When it was copied, the data is appended to ``copied`` (if given),
        for a caller that compares it with the copy.

        Raises:
            ValidationError: as :meth:`validate`.
        """
        if self.in_place is not None:
            try:
                kept = self.in_place(box, plain=plain)
            except Exception:  # e.g. a key whose __eq__ raises: let pydantic judge it
                kept = False
            if kept:
                return box.pop(), True
        data = box.pop()
        if copied is not None:
            copied.append(data)
        return self.validate(data), False

    def adopt_proven(self, box: list[Any]) -> bool:
        """Whether the data in ``box`` is, in one walk, strictly plain and exactly what
        :meth:`validate` returns (by :attr:`in_place_plain`); the data then stays in the
        box as the state. False when that is not proven, or cannot be asked (no proving
        checker, or a key whose ``__eq__`` raises): the caller checks the usual way."""
        if self.in_place_plain is None:
            return False
        try:
            return self.in_place_plain(box)
        except Exception:
            return False

    @property
    def exports_as_is(self) -> bool:
        """Whether a valid state that packs as it is (``strictly_plain``) is its own plain
        form: the schema's exporter is an identity one (a ``TypedDict`` of plain types),
        whose walk would only rebuild an equal copy of it, with the same values, types
        and key order, when the state is also exactly what validation returns (kept by
        :meth:`adopt_kept`)."""
        exporter = self.exporter
        assert exporter is not None  # set by create()
        return exporter.identity

    def export(
        self, state: object, *, walk: bool = False, check: bool = False, prove: bool = True
    ) -> Any:
        """Turn a state of this schema into its plain form.

        The state of a schema whose valid states are plain data already (a
        ``TypedDict`` of ``str``, ``int``, ``float``, ``bool``, ``bytes``, ``None``,
        lists, ``str``-keyed dicts and ``Any``) is returned as it is, without a walk:
        exporting a cache of a million entries costs nothing, and the snapshot encoder
        refuses, with its path, any value in it that is not plain after all; the caller
        then exports again with ``walk=True``, which converts what can be converted
        (e.g. an int past 64 bits). The caller must encode or copy the result before the
        component changes it. Such a state is validated only at its top level, unless
        ``check`` is given: the whole state is then checked to validate (see
        :meth:`check_restorable`), as a commit needs.

        Anything else is read by its declared shape (see ``statemigrate._model._export``) into
        new plain data: models and dataclasses field by field from their attributes,
        under field names. A model or dataclass may also be given as the dict of its
        fields (what a component without ``export_state`` holds); it is validated first.
        When the schema has parts whose conversion is not known to round-trip
        (validators, ambiguous unions, private attributes, custom types), the result is
        validated back and compared with the state.

        For every state ``x`` this returns, ``validate(export(x))`` equals ``x``.
        With ``prove=False`` that is not checked (the result is not validated back):
        for a caller that only compares two exports of states it already holds, as a
        restore does to check a rollback; it must not write the result anywhere.

        Raises:
            ExportError: the state holds a value with no plain form, or one that would
                come back changed, or (given as the dict of its fields) validation
                refuses it; the error names the path.
            ValidationError: the state is not an instance of the schema nor a dict.
        """
        exporter = self.exporter
        assert exporter is not None  # set by create()
        convert = exporter.convert
        if exporter.walk_identity is not None:  # an identity exporter's
            # Checked alike whether handed over as it is or walked (because it did not
            # pack as it is), and then converted only where it is not plain.
            if self.kind == "typeddict" and type(state) is dict:
                self._check_top_level_keys(state)
            if check:
                self.check_restorable(state)
            if not walk:
                return state
            convert = exporter.walk_identity
        elif self.kind in ("model", "dataclass"):
            state = self._instance(state)
        try:
            plain = convert(state)
            if prove and (not exporter.exact or exporter.must_check()):
                # An exact exporter is checked only for a value nested too deep for
                # pydantic, or a bounded deque: a refusal then is the value's, not the
                # schema's.
                self._check_round_trip(state, plain, by_validation=not exporter.exact)
        except NotExportable as exc:
            raise ExportError(
                self.component,
                self.version,
                format_path(exc.path),
                exc.detail,
                by_validation=exc.by_validation,
            ) from exc
        except RecursionError as exc:
            # The exporter walks the state with Python calls, a few per level: a state
            # nested deep in recursive types can exhaust the interpreter's stack.
            raise ExportError(
                self.component,
                self.version,
                "(root)",
                "the state is nested too deep in recursive types to be exported within"
                f" Python's recursion limit ({sys.getrecursionlimit()})",
            ) from exc
        return plain

    def misreads(self, data: object) -> str | None:
        """What this schema would change in plain data that a different schema wrote
        under this version (its fingerprint differs), or None when it reads the data
        back as written. See :meth:`read_back`."""
        return self.read_back(data)[1]

    def read_back(self, data: object) -> tuple[Any, str | None]:
        """The state this schema validates plain ``data`` into, which a different schema
        wrote under this version (its fingerprint differs), and what it would change in
        that data: ``(state, None)`` when it reads the data back as written,
        ``(None, problem)`` otherwise.

        The data is validated, exported again and compared with itself: a field renamed
        without a new version comes back as a lost key (and its successor filled from a
        default), a narrowed type as a changed value. One change is accepted: a number
        that comes back as an exactly equal number of a wider type (``True`` or ``1`` as
        ``1.0``, ``True`` as ``1``), which loses nothing; ``-0.0`` as ``0`` or ``1.0`` as
        ``1`` is refused. Costs a validation and an export
        of the whole state; a restore pays it only when the fingerprints differ, and
        keeps the state when no step runs after, rather than validating twice.

        Most such data reads back unchanged (the schemas differ in form only), and
        :func:`same_plain` shows it at C speed. Only data that may differ is exported
        again with the export's own checks and compared value by value in Python, which
        takes ten times longer and says what differs.
        """
        try:
            state = self.validate(data)
        except ValidationError as exc:
            return None, f"it does not validate: {exc.detail}"
        if self._converts_back(state, data):
            return state, None
        try:
            again = self.export(state, walk=True)
        except ExportError as exc:
            return None, f"at {exc.path}: {exc.detail}"
        except ValidationError as exc:
            return None, f"it does not validate: {exc.detail}"
        # A bool or int written where this schema has a wider number (an int in a
        # float field, as an identity exporter writes it) comes back as that number,
        # equal and with nothing lost: what a restore of matching fingerprints does too.
        difference = first_difference(data, again, widening=True)
        if difference is None:
            return state, None
        path, detail = difference
        return None, f"at {format_path(path)}: {detail}"

    def _converts_back(self, state: object, data: object) -> bool:
        """Whether ``state``, validated from plain ``data``, exports to that very data.

        The export's round-trip check is left out: it validates the plain form again
        and compares the result with ``state``, and when that form is ``data`` exactly,
        validating it gives ``state`` again. A state of an identity exporter is its own
        plain form, as a snapshot writes it, once :func:`same_plain` finds it plain: a
        cache of a million entries is not walked in Python. Any error leaves the answer
        to the full export, which reports it.
        """
        exporter = self.exporter
        assert exporter is not None  # set by create()
        if exporter.identity:
            return same_plain(state, data)
        try:
            plain = exporter.convert(state)
        except (NotExportable, RecursionError):
            return False
        return same_plain(plain, data)

    def change_by_validation(self, state: object) -> Difference | None:
        """What validating the plain ``state`` would change without a word, as the
        commit's check tells it without a copy: the path and what happens there (a key
        that is not a field is dropped; an int in a ``float`` field becomes another
        number), or None when the state surely validates as it is.

        Raises:
            Unsure: the check cannot tell (there is no check for this schema, or a value
                of another type that validation converts or refuses): pydantic must.
        """
        if self.validity is None:
            raise Unsure
        try:
            self.validity(state)
        except UnknownKey as exc:
            return exc.path, NOT_A_FIELD
        except NotExportable as exc:  # validation would take it, changed
            return exc.path, exc.detail
        return None

    def check_restorable(self, state: object) -> None:
        """Refuse a plain state that a restore would not take back: a record deep inside
        it without a required field, a value of a type validation refuses, or a key that
        is not a field (validation would drop it).

        A walk that copies nothing accepts what surely validates (about a second for a
        million records); whatever it is unsure of, pydantic validates, and its
        refusal names the path. Either way an ``int`` in a ``float`` field that
        validation would make another number (``2**53 + 1`` as ``2.0**53``) is refused:
        after pydantic, by the walk a state that does not pack as it is takes.

        Raises:
            ExportError: the state would not restore as it is; the error names the path.
        """
        try:
            change = self.change_by_validation(state)
        except Unsure:
            pass  # pydantic decides
        else:
            if change is None:
                return
            raise ExportError(self.component, self.version, format_path(change[0]), change[1])
        try:
            self.validate(state)
        except ValidationError as exc:
            path, reason = self._first_error(exc)
            raise ExportError(
                self.component, self.version, path, f"a restore would refuse it: {reason}"
            ) from exc
        walk = self.exporter.walk_identity if self.exporter is not None else None
        if walk is not None:
            # pydantic takes an int that its float field would change without a word
            # (the walk above stops at the first value it is unsure of, which may come
            # before it); the walk refuses it, as it refuses one it converts.
            try:
                walk(state)
            except NotExportable as exc:
                raise ExportError(
                    self.component, self.version, format_path(exc.path), exc.detail
                ) from None

    def _check_top_level_keys(self, state: dict[Any, Any]) -> None:
        """Refuse a plain ``TypedDict`` state that lacks a required field, or holds a key
        that validation would drop or refuse: either would not come back as it is.

        Costs one look per field; values nested deeper are not validated at snapshot
        time (see docs/schemas.md).
        """
        missing = self.required_fields.difference(state)
        if missing:
            name = min(missing)
            raise ExportError(
                self.component,
                self.version,
                format_path([FieldName(name)]),
                "this required field is missing",
            )
        if not self.allows_extra:
            unknown = [key for key in state if key not in self.fields]
            if unknown:
                raise ExportError(
                    self.component,
                    self.version,
                    format_path([unknown[0]]),
                    "this key is not a field of the schema; the restore would drop it",
                )

    def _instance(self, state: object) -> object:
        cls = cast(type, self.type)
        if isinstance(state, dict):
            try:
                validated = self.validate(state)
            except ValidationError as exc:
                # These are the component's own values, most often made by validation
                # already: a refusal may be the schema's (a validator that does not take
                # its own output back) as much as the values'.
                path, reason = self._first_error(exc)
                raise ExportError(
                    self.component,
                    self.version,
                    path,
                    f"validating the component's fields to export them refuses this value:"
                    f" {reason}",
                    by_validation=True,
                ) from exc
            # Lax validation takes some values the fields hold as others: refused, as
            # the export refuses them where it reads the values itself.
            changed = first_changed_value(state, validated, kinds=True)
            if changed is not None:
                path_parts, detail = changed
                field, *inside = path_parts  # the dict's keys are the fields' names
                where = format_path([FieldName(str(field)), *inside])
                raise ExportError(self.component, self.version, where, detail)
            return validated
        if not isinstance(state, cls):
            # pydantic would serialize an unrelated object by duck typing; refuse it.
            raise ValidationError(
                self.component,
                self.version,
                f"cannot export {type(state).__qualname__}: expected an instance of"
                f" {cls.__qualname__} or a dict",
            )
        return state

    def _check_round_trip(self, state: object, plain: object, *, by_validation: bool) -> None:
        try:
            again = self.validate(plain)
        except ValidationError as exc:
            where, reason = self._first_error(exc)
            raise ExportError(
                self.component,
                self.version,
                where,
                f"its plain form does not validate back: {reason}",
                by_validation=by_validation,
            ) from exc
        difference = first_difference(state, again)
        if difference is not None:
            path, detail = difference
            # The comparison walks a TypedDict as a dict: its schema tells the fields,
            # which the exporter's paths name ``.name``, from keys.
            steps = located_path(self.adapter.core_schema, path, labelled=False)
            raise ExportError(
                self.component,
                self.version,
                format_path(steps),
                detail,
                by_validation=by_validation,
            )

    def _first_error(self, exc: ValidationError) -> tuple[str, str]:
        """Where in the state the first of a validation's errors is, and what it says."""
        first = exc.errors[0] if exc.errors else {}
        location = first.get("loc")
        if not isinstance(location, tuple | list):
            return "(root)", exc.detail
        steps = located_path(self.adapter.core_schema, location)
        return format_path(steps), str(first.get("msg", exc.detail))

    def json_schema(self, *, by_alias: bool = False) -> dict[str, Any]:
        """Return the canonical JSON Schema that the fingerprint hashes.

        It is pydantic's, with fields under their Python names (under their aliases
        with ``by_alias``, as releases before lock format 3 wrote it) and the Python
        types it leaves out added under keywords of their own (``x-statemigrate-keys``
        for a dict's key type, and others; see ``statemigrate._model._jsonschema``).
        Keys are sorted, cosmetic keywords removed and nested definitions renamed
        ``d0``, ``d1``, ... in order of first use (see :func:`canonical_json_schema`).
        """
        raw = validation_schema(self.adapter, by_alias=by_alias)
        result: dict[str, Any] = json.loads(canonical_text(raw))
        return result

    def __str__(self) -> str:
        return f"{self.component} version {self.version}"


_INT_TEXT_LIMIT = "for integer string conversion"
"""Python's words when it refuses to write an int of more digits than
``sys.get_int_max_str_digits()`` as text: typing's ``repr`` of a ``Literal``,
pydantic's validator of a ``Literal`` or an enum, and ``json`` writing a default or a
bound into the fingerprint's text all do it, and all raise it as a ``ValueError``."""


def _int_past_text_limit() -> str:
    """Why a schema holding an int past Python's digit limit does not register."""
    limit = sys.get_int_max_str_digits()
    return (
        f"an int in the type (a Literal or enum value, a default, a bound) has more than"
        f" {limit} digits, which Python does not write as text"
        " (sys.get_int_max_str_digits()), so no validator or fingerprint can be made of"
        " it; use an int of fewer digits"
    )


def _summarize(
    exc: pydantic.ValidationError, core_schema: Mapping[str, Any], *, limit: int = 3
) -> str:
    """pydantic's first errors on one line, each at its path in the form of every other
    message (``items[''].quantity``, ``users key 'x'``); joined with dots, a key ``''``
    or ``'SKU-1'`` read as a field (``items..quantity``)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:limit]:
        loc = format_path(located_path(core_schema, error["loc"]))
        parts.append(f"{loc}: {error['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more error{'s' if more > 1 else ''}")
    return "; ".join(parts)
