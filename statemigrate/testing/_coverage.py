"""Which choices of a schema the drawn states held: each member of a discriminated
union, each value of a ``Literal`` or an enum, by path.

A check passes on the states it draws; a choice that no checked state held was not
checked at all. A validator that refuses every state holding a union member (or the
strategies failing to draw it) once let a step that mishandles that member pass, so a
check run reads :meth:`Coverage.missing` after its run and fails on what it lists.

The rule cannot fire on a healthy schema by chance. A choice is listed only when no
checked state held it and either

- at least :data:`REFUSED_STATES` drawn states held it and validation refused every
  one (a state-wide refusal rate of one in two, independent of the choice, does that
  about once in a million runs; a schema refusing more than that is already degenerate),
- or its place was drawn in at least :data:`PER_CHOICE` states per choice there and it
  was never drawn (each choice is drawn about evenly, so about ``e**-20``, once in
  500 million).

Both count states, not occurrences, so a choice repeated inside one state counts once;
and neither can be reached in runs shorter than 20 examples.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PER_CHOICE", "REFUSED_STATES", "Coverage"]

REFUSED_STATES = 20
PER_CHOICE = 20

Choice = tuple[str, Any]  # a path as messages show it, and the choice's label


@dataclass
class Coverage:
    """The choices declared at build time and the ones drawn, per drawn state."""

    choices: dict[str, list[Any]] = field(default_factory=dict)
    pending: list[Choice] = field(default_factory=list)
    redrawn: list[Choice] = field(default_factory=list)  # in values drawn again
    drawn: Counter[Choice] = field(default_factory=Counter)  # in states drawn
    kept: Counter[Choice] = field(default_factory=Counter)  # in states checked
    reached: Counter[str] = field(default_factory=Counter)  # states drawing the place

    def declare(self, path: str, labels: list[Any]) -> None:
        self.choices.setdefault(path, list(labels))

    def begin(self) -> None:
        """A new state is drawn. One whose draw was given up (a value refused at every
        try) counts as drawn and refused."""
        if self.pending or self.redrawn:
            self.end(kept=False)

    def record(self, path: str, label: Any) -> Any:
        self.pending.append((path, label))
        return label

    def mark(self) -> int:
        return len(self.pending)

    def forget(self, mark: int) -> None:
        """A value drawn since ``mark`` was refused and is drawn again."""
        self.redrawn += self.pending[mark:]
        del self.pending[mark:]

    def end(self, *, kept: bool) -> None:
        """The state drawn since :meth:`begin` is checked, or refused."""
        drawn = set(self.pending) | set(self.redrawn)
        self.drawn.update(drawn)
        self.reached.update({path for path, _ in drawn})
        if kept:
            self.kept.update(set(self.pending))
        self.pending, self.redrawn = [], []

    def missing(self) -> list[str]:
        """One line per choice no checked state held, by the rule above."""
        lines = []
        for path, labels in self.choices.items():
            for label in labels:
                if self.kept[(path, label)]:
                    continue
                drawn = self.drawn[(path, label)]
                if drawn >= REFUSED_STATES:
                    why = f"validation refused all {drawn} drawn states holding it"
                elif not drawn and self.reached[path] >= PER_CHOICE * len(labels):
                    why = f"never drawn in the {self.reached[path]} states that drew {_at(path)}"
                else:
                    continue
                lines.append(f"{_at(path)}: {label!r} is in no checked state ({why})")
        return lines


def _at(path: str) -> str:
    return path or "the top level"
