"""A checkpoint chain folded into one full snapshot before a service restores it, when
a component's plan cannot migrate the chain's deltas.

A service restores a chain piece by piece: its base, then each delta, which is
migrated record by record (:mod:`statemigrate._runtime._delta`). A plan with a
whole-data step (``FieldChanges`` without ``records=``, a change of a dict's key type,
any step written over the whole state) cannot migrate a delta, though it migrates the
full state the chain holds. So when the chain's deltas carry a section that needs such
a plan, the restore folds the chain first, as ``statemigrate migrate`` does
(:func:`~statemigrate._runtime._chainread.compose_chain`): the base with every delta
applied, at the versions the pieces were written at. The full snapshot this gives
carries the newest piece's id, generation and producer, and is restored like any other:
verified, migrated through every step of each plan, validated, applied all or nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from statemigrate._errors import StateMigrateError
from statemigrate._model._allowlossy import AllowLossy
from statemigrate._runtime._chainread import Chain, compose_chain
from statemigrate._runtime._deltawrite import takes_whole_states_only
from statemigrate._runtime._restore import Registered
from statemigrate._snapshot._header import SnapshotHeader

__all__ = ["fold_chain", "fold_reasons"]

logger = logging.getLogger("statemigrate")


def fold_reasons(
    headers: Sequence[SnapshotHeader], entries: Sequence[Registered], *, allow_lossy: AllowLossy
) -> list[str]:
    """Why a chain with these headers (base first) must be folded before ``entries``
    restore it: one ``component/instance (...)`` per registered component that a delta
    of the chain carries a section for, and that takes whole states only (its own
    ``import_state``, no ``import_records``) or runs a version whose plan from the
    section's has a whole-data step. Empty when every delta can be applied as it is.

    A plan that cannot be found (no path, a lossy step not allowed) is no reason: the
    chain's base fails on it whether folded or not, with the planner's own error.
    """
    by_key = {(entry.component, entry.instance): entry for entry in entries}
    reasons: dict[str, str] = {}
    for header in headers[1:]:
        for section in header.sections:
            entry = by_key.get((section.component, section.instance))
            if entry is None or entry.key in reasons:
                continue
            if takes_whole_states_only(entry.obj):
                reasons[entry.key] = f"{entry.key} (its own import_state, no import_records)"
                continue
            try:
                plan = entry.registry.plan(
                    entry.component, section.version, entry.spec.version, allow_lossy=allow_lossy
                )
            except StateMigrateError:
                continue
            if not plan.record_wise:
                reasons[entry.key] = f"{entry.key} (step {plan.whole_steps[0]})"
    return list(reasons.values())


def fold_chain(
    chain: Chain, reasons: Sequence[str], *, key: bytes | None, entries: Sequence[Registered]
) -> bytes:
    """The full snapshot ``chain`` restores to, for a restore that cannot apply its
    deltas for ``reasons`` (see :func:`fold_reasons`), and an INFO line saying so.

    Record keys are matched by value with each component's registry, as applying the
    deltas would match them (``-0.0`` deletes ``0.0``).

    Raises:
        SnapshotError: a section does not decode, or a delta cannot be applied to its
            base's plain data (see :func:`~statemigrate._runtime._chainread.composed_sections`).
    """
    registries = {entry.component: entry.registry for entry in entries}
    newest = chain.pieces[-1].header
    deltas = len(chain.pieces) - 1
    logger.info(
        "checkpoint chain %s gen %d: folding its full snapshot (gen %d) and %d delta%s"
        " into one full snapshot at the versions written before migrating, since these"
        " components cannot take a delta as it is: %s",
        newest.snapshot_id[:12],
        newest.generation,
        chain.pieces[0].header.generation,
        deltas,
        "" if deltas == 1 else "s",
        "; ".join(reasons),
    )
    return compose_chain(chain, key=key, registry=registries.get).to_bytes()
