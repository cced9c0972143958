"""A lone surrogate inside a union's member is refused as in any other str field: at its
own path, as a lone surrogate, whatever the union's shape (tagged or not; TypedDict,
BaseModel or dataclass members), not as the tag of another member."""

from __future__ import annotations

from typing import Any

import pytest
from holders import Holder
from hypothesis import given, settings
from hypothesis import strategies as st
from union_shapes import KINDS, MEMBERS, TEXT_FIELD, member_of, schema_of

from statemigrate import ExportError, MemoryStore, Registry, Service

_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_TEXT = st.text(st.characters(max_codepoint=0x2FF), max_size=3)


def commit_error(kind: str, tagged: bool, state: Any) -> ExportError:
    registry = Registry()
    registry.add_schema("pay", 1, schema_of(kind, tagged))

    @registry.migratable("pay", version=1)
    class Pay(Holder):
        pass

    service = Service("svc", registry=registry)
    service.register(Pay(state))
    with pytest.raises(ExportError) as info:
        service.commit(MemoryStore())
    return info.value


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    tagged=st.booleans(),
    member=st.sampled_from(MEMBERS),
    in_note=st.booleans(),
    before=st.lists(st.sampled_from(MEMBERS), max_size=2),
    surrogate=_SURROGATES,
    prefix=_TEXT,
    suffix=_TEXT,
)
def test_a_lone_surrogate_in_a_union_member_is_refused_at_its_own_path(
    kind: str,
    tagged: bool,
    member: str,
    in_note: bool,
    before: list[str],
    surrogate: str,
    prefix: str,
    suffix: str,
) -> None:
    """Property: for every union shape and member, a commit of a state whose member holds
    a lone surrogate says so at the string's own path, as a refusal of the value (not of
    a validation that changes it)."""
    text = prefix + surrogate + suffix
    in_note = in_note and member == "voucher"
    payments = [member_of(kind, other, "ok") for other in before]
    if in_note:
        payments.append(member_of(kind, member, "ok", note=text))
        where = f"payments[{len(before)}].notes[0]"
    else:
        payments.append(member_of(kind, member, text))
        where = f"payments[{len(before)}].{TEXT_FIELD[member]}"
    error = commit_error(kind, tagged, {"owner": "ann", "payments": payments})
    assert f"at {where}: the string holds a lone surrogate" in str(error)
    assert not error.by_validation


def test_the_tagged_typeddict_voucher_of_the_report() -> None:
    """The case first seen: a voucher of a tagged TypedDict union was refused at its tag,
    as breaking the card's Literal."""
    state = {"owner": "ann", "payments": [{"kind": "voucher", "code": "\ud800", "notes": []}]}
    message = str(commit_error("typeddict", True, state))
    assert "at payments[0].code: the string holds a lone surrogate '\\ud800'" in message
    assert "Input should be 'card'" not in message


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tagged", [True, False], ids=["tagged", "untagged"])
def test_a_member_broken_otherwise_is_still_refused_for_its_own_reason(
    kind: str, tagged: bool
) -> None:
    """A value no member validates (a voucher's code set to an int without validation)
    keeps the refusal of the first member that tried it, as before."""
    voucher = member_of(kind, "voucher", "ok")
    if kind == "typeddict":
        voucher["code"] = 5
    else:
        object.__setattr__(voucher, "code", 5)
    message = str(commit_error(kind, tagged, {"owner": "ann", "payments": [voucher]}))
    assert "at payments[0]" in message
