"""Property checks of a registry's migrations, run with hypothesis on generated states.

:func:`check_migrations` derives one check per step, per pair of versions joined by
more than one path, and per schema version, and states for each:

step ``a -> b``
    For every valid state ``x`` of version ``a``: the step returns plain data that
    validates at ``b``. When the reverse step ``b -> a`` exists, going back gives ``x``
    again if the step is lossless, and ``x`` apart from the step's declared
    ``lost_fields`` if it is lossy; and losing twice loses nothing more than losing
    once (``step(reverse(step(x))) == step(x)``).
paths ``u => v``
    Every path of steps from ``u`` to ``v`` (without repeated versions) gives the same
    data, apart from the fields that lossy steps on either path declare lost.
snapshot ``v``
    A state of version ``v`` (a validated model, dataclass or dict, holding the rich
    values services keep) survives encode, commit to a
    :class:`~statemigrate.MemoryStore` and restore by a :class:`~statemigrate.Service`
    exactly: same values and same types, recursively. A snapshot may instead refuse the
    state with a one-line :class:`~statemigrate.StateMigrateError` naming the component
    and version (nothing is committed then; the result's note counts such refusals).
    Restored by code running the newest version, it equals what the planned steps give.

Steps may mutate their input, so each one always receives a private copy, and each
runs twice, the second time from another state of ``random``: a step whose two results
differ is named as not deterministic. A failure
carries hypothesis' shrunk counterexample, the step or path that broke, and where the
data differed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import HealthCheck, Phase, Verbosity, given
from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.errors import FailedHealthCheck, Flaky, HypothesisException, Unsatisfiable

from statemigrate._errors import MigrationCheckError
from statemigrate._model._plan import Step
from statemigrate._model._registry import Registry
from statemigrate.testing._exact import cut
from statemigrate.testing._properties import (
    PROPERTIES,
    Broken,
    Nondeterministic,
    comparable_pairs,
    simple_paths,
)
from statemigrate.testing._strategies import (
    DEFAULT_MAX_SIZE,
    Draws,
    Form,
    from_schema_counted,
)

__all__ = [
    "CheckFailure",
    "CheckKind",
    "CheckReport",
    "CheckResult",
    "MigrationCheck",
    "check_migrations",
    "migration_checks",
]

CheckKind = Literal["step", "paths", "snapshot"]

_SHOWN = 1500  # characters of a counterexample shown before it is shortened
_SHOWN_REFUSAL = 200  # characters of a refusal quoted in a note
# A snapshot check fails when its snapshot refused at least 9 in 10 of this many states
# or more (or every state, however few).
_REFUSALS_COUNTED = 10
_GENERIC_ADVICE = "pass a strategy for this version explicitly"


@dataclass(frozen=True)
class CheckFailure:
    """One broken property, with its shrunk counterexample.

    Attributes:
        check: the id of the check that failed (e.g. ``kvcache-step-3-2``).
        title: what was checked, e.g. ``kvcache 3 -> 2 (drop_hits)``.
        what: the property that broke, one line.
        detail: how it broke: the exception, or where the data differed.
        example: the smallest input hypothesis found (plain data), or ``None`` when no
            input could be generated at all.
        version: the schema version of ``example``.
        examples_run: examples tried until the first failing one (before shrinking).
    """

    check: str
    title: str
    what: str
    detail: str
    example: Any
    version: int | None
    examples_run: int

    def __str__(self) -> str:
        lines = [f"{self.title}: {self.what}"]
        if self.version is not None:
            shown = cut(self.example, _SHOWN)
            lines.append(
                f"  counterexample (version {self.version}, shrunk; first failure after"
                f" {self.examples_run} example{'s' if self.examples_run != 1 else ''}):"
                f" {shown}"
            )
        lines += [f"  {line}" for line in self.detail.splitlines()]
        return "\n".join(lines)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one :class:`MigrationCheck`.

    Attributes:
        check: the check.
        examples: how many generated examples the property ran on (shrinking included).
        failure: what broke, or ``None``.
        note: why nothing was compared, when that is the case (e.g. every other path
            runs through a lossy step that names no fields), how many states a
            snapshot refused (with a clear error) instead of committing them, and
            whether validation refused most of the drawn states (the few it accepted
            were all that was checked).
    """

    check: MigrationCheck
    examples: int
    failure: CheckFailure | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        """True when the property held for every example."""
        return self.failure is None


@dataclass(frozen=True)
class CheckReport:
    """Every check's result; see :func:`check_migrations`."""

    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(result.ok for result in self.results)

    @property
    def failures(self) -> list[CheckFailure]:
        """The failures, in check order."""
        return [result.failure for result in self.results if result.failure is not None]

    def raise_for_failures(self) -> None:
        """Raise :class:`~statemigrate.MigrationCheckError` if any check failed."""
        if not self.ok:
            raise MigrationCheckError(self.failures)

    def to_markdown(self) -> str:
        """Render the report as markdown (a pull-request comment, a CI log)."""
        failed = len(self.failures)
        status = "passed" if self.ok else f"{failed} of {len(self.results)} checks failed"
        lines = [f"### statemigrate check: {status}", ""]
        for result in self.results:
            mark = "ok" if result.ok else "FAILED"
            note = f" ({_printable(result.note)})" if result.note else ""
            lines.append(f"- {mark}: {result.check} [{result.examples} examples]{note}")
        for failure in self.failures:
            lines += ["", f"**{failure.title}**", "", "```", _printable(str(failure)), "```"]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_markdown()


@dataclass(frozen=True)
class MigrationCheck:
    """One property check of a registry; :meth:`run` runs it.

    Build them with :func:`migration_checks`. ``version`` is the version the generated
    states belong to; ``target`` is the other end of a step or of the paths.
    """

    kind: CheckKind
    component: str
    version: int
    target: int | None
    registry: Registry = field(repr=False, compare=False)
    steps: tuple[Step, ...] = ()
    paths: tuple[tuple[Step, ...], ...] = ()
    strategy: st.SearchStrategy[Any] | None = field(default=None, repr=False, compare=False)
    max_size: int = DEFAULT_MAX_SIZE

    @property
    def id(self) -> str:
        """A short id fit for a test name, e.g. ``kvcache-step-1-2``."""
        if self.kind == "snapshot":
            return f"{self.component}-snapshot-v{self.version}"
        return f"{self.component}-{self.kind}-{self.version}-{self.target}"

    def __str__(self) -> str:
        if self.kind == "step":
            return str(self.steps[0])
        if self.kind == "paths":
            return f"{self.component} {self.version} => {self.target} ({len(self.paths)} paths)"
        return f"{self.component} v{self.version} snapshot round trip"

    def run(
        self, *, settings: Settings | None = None, max_examples: int | None = None
    ) -> CheckResult:
        """Run the property on generated states and return the result.

        Args:
            settings: hypothesis settings to start from (default: the loaded profile,
                with no example database so nothing is written to disk).
            max_examples: examples to run, overriding ``settings``.
        """
        missing = self._missing_schemas()
        if missing:
            return CheckResult(self, 0, missing)
        calls = 0
        first_failure = 0
        refused: list[str] = []
        body = PROPERTIES[self.kind]
        broken: list[Broken] = []  # the last failure, should hypothesis not see it again

        def test(value: Any) -> None:
            nonlocal calls, first_failure
            calls += 1
            try:
                refusal = body(self, value)
            except Broken as exc:
                first_failure = first_failure or calls
                broken[:] = [exc]
                raise
            if refusal is not None:
                refused.append(refusal)

        draws = Draws()
        try:
            strategy = self._strategy(draws)
            runner = _settings(settings, max_examples)(given(strategy)(test))
            runner()
        except Broken as exc:
            return CheckResult(
                self,
                calls,
                CheckFailure(
                    self.id,
                    str(self),
                    exc.what,
                    exc.detail,
                    exc.example,
                    self.version,
                    first_failure,
                ),
            )
        except Flaky:
            return CheckResult(self, calls, self._flaky(broken, calls, first_failure))
        except (Unsatisfiable, FailedHealthCheck, HypothesisException) as exc:
            advice = f"pass a strategy for ({self.component!r}, {self.version}) in strategies="
            reason = _first_line(exc)
            if reason.endswith(_GENERIC_ADVICE):  # the strategies' own, said more exactly
                reason = reason.removesuffix(_GENERIC_ADVICE).rstrip("; ")
            failure = CheckFailure(
                self.id,
                str(self),
                f"cannot generate valid states of version {self.version}",
                f"{type(exc).__name__}: {reason}; {advice}",
                None,
                None,
                calls,
            )
            return CheckResult(self, calls, failure)
        except Exception as exc:
            # Not a property that broke (that raises Broken) but the drawing or the
            # check itself: reported as this check's failure, so that the other checks
            # still run and the command line prints a report, not a traceback.
            return CheckResult(self, calls, self._crashed(exc, calls))
        if _mostly_refused(len(refused), calls) or _no_plain_form(refused):
            return CheckResult(self, calls, self._refused_failure(refused, calls))
        unchecked = draws.coverage.missing()
        if unchecked:
            return CheckResult(self, calls, self._unchecked_failure(unchecked, calls))
        notes = []
        if self.kind == "paths" and not comparable_pairs(self.paths):
            notes.append("not compared: lossy steps that name no lost fields")
        if refused:
            notes.append(
                f"{len(refused)} of {calls} states refused by snapshot, e.g."
                f" {_shortened(refused[0], _SHOWN_REFUSAL)}"
            )
        if draws.mostly_refused:
            notes.append(
                f"{draws.refused} of {draws.drawn} drawn states failed validation at version"
                f" {self.version} and were drawn again (a validator, a constraint, or"
                " some other rule of the schema that the strategies do not follow), so"
                " the states checked lean to the few it"
                " accepts, often small or empty; pass a strategy for"
                f" ({self.component!r}, {self.version}) in strategies="
            )
        return CheckResult(self, calls, None, "; ".join(notes))

    def _missing_schemas(self) -> CheckFailure | None:
        """The failure of a step into or out of a version with no schema, found before
        anything is drawn: no state could be checked, and a restore planned across the
        step would fail. The wording is :meth:`~statemigrate.Registry.check`'s."""
        registered = set(self.registry.versions(self.component))
        ends = (self.version, self.target) if self.kind == "step" else ()
        absent = [end for end in dict.fromkeys(ends) if end is not None and end not in registered]
        if not absent:
            return None
        shown = " or ".join(str(end) for end in absent)
        return CheckFailure(
            self.id,
            str(self),
            f"no schema version {shown}",
            "register the schema or remove the step (Registry.check() and `statemigrate"
            " schemas check` report it too)",
            None,
            None,
            0,
        )

    def _crashed(self, exc: Exception, calls: int) -> CheckFailure:
        """The failure of a run that an unexpected error stopped: in the testing kit,
        or in a strategy passed in ``strategies=``, while drawing or checking a state."""
        return CheckFailure(
            self.id,
            str(self),
            f"checking {self.component!r} version {self.version} stopped on an unexpected"
            f" {type(exc).__name__}: {_first_line(exc)}",
            "the testing kit, or a strategy passed in strategies=, failed on this schema;"
            f" pass a strategy for ({self.component!r}, {self.version}) in strategies= to"
            " check it meanwhile",
            None,
            None,
            calls,
        )

    def _refused_failure(self, refused: list[str], calls: int) -> CheckFailure:
        """The failure of a snapshot check whose states the snapshot (nearly) all
        refused, or refused for a value's type: what passed was checked on next to
        nothing, or a service holding such states could not commit a snapshot either
        (a custom type with no plain form)."""
        what = (
            "so the round trip was checked on next to nothing"
            if _mostly_refused(len(refused), calls)
            else "holding a value of a type no snapshot can write"
        )
        return CheckFailure(
            self.id,
            str(self),
            f"{len(refused)} of {calls} states refused by snapshot, {what}",
            f"e.g. {refused[0]}\na service holding such states cannot commit a snapshot"
            " either: give the values a plain form the schema validates back (see"
            " \"Custom types\" in docs/schemas.md), or, when a strategy passed in"
            " strategies= draws them, make it draw states a snapshot takes",
            None,
            None,
            calls,
        )

    def _unchecked_failure(self, unchecked: list[str], calls: int) -> CheckFailure:
        """The failure of a run whose states never held a union member, a literal or
        an enum value (see ``_coverage``): what passed never checked it."""
        example = (
            f"pass a strategy for ({self.component!r}, {self.version}) in strategies= that"
            " draws it, e.g. st.one_of(states(registry, ...), st.just(a_state_holding_it))"
        )
        return CheckFailure(
            self.id,
            str(self),
            f"{unchecked[0]}; {example}",
            "\n".join(unchecked[1:]),
            None,
            None,
            calls,
        )

    def _flaky(self, broken: list[Broken], calls: int, first_failure: int) -> CheckFailure:
        """The failure of a run that hypothesis found flaky: an example failed and then
        passed when run again, or the other way round. A step that is not
        deterministic does that; the last failure seen, when there is one, says more
        (which step differed, and on what) than hypothesis' own report."""
        again = (
            "it did not fail again when run once more: a step is not deterministic;"
            " steps must be deterministic: no clock, randomness, I/O or state kept"
            " between calls"
        )
        if broken:
            (exc,) = broken
            detail = exc.detail
            if not isinstance(exc, Nondeterministic):
                detail += f"\n{again}"
            return CheckFailure(
                self.id, str(self), exc.what, detail, exc.example, self.version, first_failure
            )
        steps = dict.fromkeys(step.name for path in (self.steps, *self.paths) for step in path)
        return CheckFailure(
            self.id,
            str(self),
            "the same input gave different results",
            f"one of {', '.join(steps)} is not deterministic, or a strategy passed in"
            " draws differently for the same input; steps must be deterministic: no"
            " clock, randomness, I/O or state kept between calls",
            None,
            None,
            calls,
        )

    def _strategy(self, draws: Draws) -> st.SearchStrategy[Any]:
        """The states to check; a derived strategy counts its draws into ``draws``."""
        schema = self.registry.schema_for(self.component, self.version)
        # The snapshot check round-trips what a component holds; steps see plain data.
        form: Form = "state" if self.kind == "snapshot" else "plain"
        if self.strategy is None:
            return from_schema_counted(schema, draws, max_size=self.max_size, form=form)

        def normalize(value: object) -> object:
            # A user's strategy may draw states (model instances) or plain data.
            state = schema.validate(value)
            return state if form == "state" else schema.export(state, walk=True)

        return self.strategy.map(normalize)


_NO_PLAIN_FORM = " value has no plain form"
"""How a snapshot's refusal of a value of a type it cannot write ends (see
``statemigrate._model._plaindata``): the type's, not the value's, fault."""


def _no_plain_form(refused: list[str]) -> bool:
    """Whether the snapshot refused a value for its type, which no value of it has: a
    service commits no state holding one, however few of the drawn states did."""
    return any(_NO_PLAIN_FORM in refusal for refusal in refused)


def _mostly_refused(refused: int, calls: int) -> bool:
    """Whether a snapshot check refused so many of its states that passing means
    nothing: all of them, or at least 9 in 10 of ten or more. Lone surrogates alone
    leave most states checked (see docs/testing.md), so this is a schema's fault."""
    if not refused:
        return False
    return refused == calls or (calls >= _REFUSALS_COUNTED and refused * 10 >= calls * 9)


def _settings(base: Settings | None, max_examples: int | None) -> Settings:
    parent = base if base is not None else Settings(database=None)
    suppressed = {*parent.suppress_health_check, HealthCheck.too_slow}
    return Settings(
        parent,
        max_examples=max_examples if max_examples is not None else parent.max_examples,
        deadline=None,
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        # The explain phase re-runs variations of the failing example for a prose
        # hint; the counterexample and the step are what a migration author needs.
        phases=[phase for phase in parent.phases if phase != Phase.explain],
        suppress_health_check=sorted(suppressed, key=lambda check: check.value),
    )


def _printable(text: str) -> str:
    """``text`` with every character that does not print escaped as ``repr`` escapes
    it (``\\x1b``, ``\\ud872``), line breaks apart. A refusal or a step's exception
    may quote a drawn value as it is: raw, a control character garbles a CI log, and a
    lone surrogate cannot even be written to a UTF-8 stream."""
    if text.isprintable() or all(char.isprintable() or char == "\n" for char in text):
        return text
    return "\n".join(
        "".join(char if char.isprintable() else repr(char)[1:-1] for char in line)
        for line in text.split("\n")
    )


def _shortened(text: str, limit: int) -> str:
    """``text`` cut at a space before ``limit`` characters, ``...`` after it: a
    refusal's message quotes values, which a cut at any character could split."""
    if len(text) <= limit:
        return text
    head = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return f"{head.rstrip(',;:')} ..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- building and running all checks -----------------------------------------------------


def migration_checks(
    registry: Registry,
    *,
    components: Iterable[str] | None = None,
    strategies: Mapping[tuple[str, int], st.SearchStrategy[Any]] | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    max_paths: int = 6,
) -> list[MigrationCheck]:
    """List every check of ``registry``: per step, per multi-path pair, per version.

    A step into or out of a version without a schema gets a step check that fails
    without drawing anything, as :meth:`~statemigrate.Registry.check` reports it; it
    takes part in no paths check.

    Args:
        registry: the registry to check.
        components: only these components (default: every one with a schema or a
            step).
        strategies: a strategy per ``(component, version)`` to use instead of the one
            derived from the schema; it may draw plain data or states.
        max_size: the largest generated collection.
        max_paths: how many paths between two versions are compared at most.
    """
    names = list(components) if components is not None else registry.components()
    own = dict(strategies or {})
    checks: list[MigrationCheck] = []
    for name in names:
        versions = registry.versions(name)
        every_step = registry.steps(name)
        steps = [s for s in every_step if {s.source, s.target} <= set(versions)]
        common: dict[str, Any] = {"registry": registry, "max_size": max_size}
        for step in every_step:
            checks.append(
                MigrationCheck(
                    "step",
                    name,
                    step.source,
                    step.target,
                    steps=(step,),
                    strategy=own.get((name, step.source)),
                    **common,
                )
            )
        for source in versions:
            for target in versions:
                paths = simple_paths(steps, source, target, limit=max_paths)
                if source != target and len(paths) > 1:
                    checks.append(
                        MigrationCheck(
                            "paths",
                            name,
                            source,
                            target,
                            paths=tuple(paths),
                            strategy=own.get((name, source)),
                            **common,
                        )
                    )
        for version in versions:
            checks.append(
                MigrationCheck(
                    "snapshot",
                    name,
                    version,
                    None,
                    strategy=own.get((name, version)),
                    **common,
                )
            )
    return checks


def check_migrations(
    registry: Registry,
    *,
    components: Iterable[str] | None = None,
    strategies: Mapping[tuple[str, int], st.SearchStrategy[Any]] | None = None,
    max_examples: int | None = None,
    settings: Settings | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    raise_on_failure: bool = True,
) -> CheckReport:
    """Check every step, path and snapshot round trip of ``registry`` on generated states.

    See the module documentation for the properties. Each check runs ``max_examples``
    examples (default: the loaded hypothesis profile's); a failing one is shrunk to a
    small counterexample.

    Args:
        registry: the registry to check.
        components: only these components.
        strategies: per ``(component, version)``, a strategy to use instead of the
            derived one (for schemas with custom validators).
        max_examples: examples per check.
        settings: hypothesis settings to start from.
        max_size: the largest generated collection.
        raise_on_failure: raise instead of returning a failed report.

    Returns:
        The report of every check.

    Raises:
        MigrationCheckError: a check failed and ``raise_on_failure`` is true; its
            ``failures`` hold the counterexamples.
    """
    checks = migration_checks(
        registry, components=components, strategies=strategies, max_size=max_size
    )
    report = CheckReport(
        tuple(check.run(settings=settings, max_examples=max_examples) for check in checks)
    )
    if raise_on_failure:
        report.raise_for_failures()
    return report
