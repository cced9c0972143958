"""Fuzzing what a handoff reads from outside: the environment of receive_handoff() and listen_fds(),
and the control channel's decoder. Only HandoffError escapes, and a failed call never
closes a descriptor that was not passed to the process."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statemigrate import HandoffError
from statemigrate.handoff import listen_fds, receive_handoff
from statemigrate.handoff._env import FDS_VAR, PARENT_PID_VAR
from statemigrate.handoff._fdcheck import open_fds
from statemigrate.handoff._protocol import (
    MAGIC,
    PROTOCOL_VERSION,
    Abort,
    Commit,
    Failed,
    Hello,
    Ready,
    SnapshotOffer,
    decode_message,
    encode_message,
)

VARIABLES = (FDS_VAR, PARENT_PID_VAR, "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET")

# What an environment value can hold: any character but NUL, and the lone surrogates
# \udc80-\udcff by which Python shows bytes that are not UTF-8.
env_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\0")
    | st.sampled_from("\udc80\udcff"),
    max_size=40,
)
# Placeholders filled in per example: our pid, our parent's, a descriptor of ours.
PLACES = {"{pid}": os.getpid, "{ppid}": os.getppid}
numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(0, 300).map(str),
    st.sampled_from(
        [
            "",
            "0",
            "-0",
            "+3",
            " 3",
            "3 ",
            "٣",
            "²",
            "3_0",
            "0x3",
            "1e3",
            "00000000003",
            "2147483647",
            "2147483648",
            "4294967299",
            "9" * 5000,
            "{own}",
            "{pid}",
            "{ppid}",
        ]
    ),
    env_text,
)
names = st.sampled_from(["control", "http", "admin", "", "a b", "ü"]) | env_text
entries = st.builds(
    lambda name, sep, number: f"{name}{sep}{number}",
    names,
    st.sampled_from(["=", "", "=="]),
    numbers,
)
fds_values = st.one_of(env_text, numbers, st.lists(entries, max_size=5).map(":".join))
fdname_values = st.one_of(env_text, st.lists(names, max_size=5).map(":".join))


@pytest.fixture(scope="module")
def own_fd() -> Iterator[int]:
    """A descriptor this process opened itself: close-on-exec, never passed to it."""
    fd = os.open(os.devnull, os.O_RDONLY)
    yield fd
    os.close(fd)


def fill(value: str | None, own: int) -> str | None:
    if value is None:
        return None
    for place, get in PLACES.items():
        value = value.replace(place, str(get()))
    return value.replace("{own}", str(own))


def call_with_environment(
    call: Callable[[], object], variables: dict[str, str | None], own: int
) -> None:
    """Run ``call`` with ``variables`` set; check the property, restore the environment.

    The property: ``call`` returns or raises HandoffError (any other exception goes
    through and fails the test), and every descriptor it did not have a right to
    take is still open: 0-2, ``own``, and whatever else is close-on-exec.
    """
    saved = {name: os.environ.pop(name, None) for name in VARIABLES}
    kept = {fd for fd in open_fds() if fd <= 2 or not os.get_inheritable(fd)}
    assert own in kept
    try:
        for name, value in variables.items():
            filled = fill(value, own)
            if filled is not None:
                os.environ[name] = filled
        try:
            call()
        except HandoffError as exc:
            assert "\n" not in str(exc), str(exc)
        closed = kept - open_fds()
        assert not closed, f"descriptors {sorted(closed)} were closed by a failed call"
    finally:
        for name in VARIABLES:
            os.environ.pop(name, None)
        os.environ.update({k: v for k, v in saved.items() if v is not None})


@given(
    fds=st.none() | fds_values,
    parent=st.none() | st.just("{ppid}") | numbers,
)
def test_receive_handoff_raises_only_handoff_error_and_keeps_our_descriptors(own_fd, fds, parent):
    """Property: whatever STATEMIGRATE_FDS and STATEMIGRATE_PARENT_PID hold,
    receive_handoff() returns None or raises HandoffError, and closes none of this
    process's descriptors."""

    def call() -> None:
        assert receive_handoff() is None  # a real handoff cannot be forged from the environment

    call_with_environment(call, {FDS_VAR: fds, PARENT_PID_VAR: parent}, own_fd)


@given(
    count=st.none() | numbers,
    pid=st.none() | st.just("{pid}") | numbers,
    fdnames=st.none() | fdname_values,
)
def test_listen_fds_raises_only_handoff_error_and_keeps_our_descriptors(
    own_fd, count, pid, fdnames
):
    """Property: whatever LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES hold, listen_fds()
    returns or raises HandoffError, and closes none of this process's descriptors."""

    def call() -> None:
        got = listen_fds(listeners={"http"}, memfds={"snapshot"})
        # Nothing here is inheritable, so at most an empty set can be taken (LISTEN_FDS=0).
        assert got is None or (not got.listeners and not got.memfds)

    variables = {"LISTEN_FDS": count, "LISTEN_PID": pid, "LISTEN_FDNAMES": fdnames}
    call_with_environment(call, variables, own_fd)


def test_the_property_catches_a_broken_variant(own_fd):
    """The check above fails for a call that closes a descriptor of ours, or that lets
    a foreign exception out (as receiving did with an fd beyond C int range)."""
    victim = os.dup(own_fd)
    try:
        with pytest.raises(AssertionError, match=f"descriptors \\[{victim}\\] were closed"):
            call_with_environment(lambda: os.close(victim), {}, own_fd)
    finally:
        try:
            os.close(victim)
        except OSError:
            pass
    with pytest.raises(OverflowError):
        call_with_environment(lambda: os.fstat(2**31), {}, own_fd)
    assert os.get_inheritable(own_fd) is False


# -- the control channel's decoder ---------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
fields = st.sampled_from(["pid", "readable", "size", "listeners", "reason"]) | st.text(max_size=8)
valid_messages = st.one_of(
    st.builds(
        Hello,
        pid=st.integers(1, 2**31 - 1),
        readable=st.dictionaries(st.text(max_size=5), st.lists(st.integers()).map(tuple)),
    ),
    st.builds(SnapshotOffer, size=st.integers(0, 2**63 - 1), listeners=st.just(("http",))),
    st.builds(Ready, pid=st.integers(1, 2**31 - 1)),
    st.just(Commit()),
    st.builds(Failed, reason=st.text(max_size=20)),
    st.builds(Abort, reason=st.text(max_size=20)),
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid packet's body with a slice replaced by arbitrary bytes."""
    body = encode_message(draw(valid_messages))[len(MAGIC) + 2 :]
    start = draw(st.integers(0, len(body)))
    end = draw(st.integers(start, len(body)))
    return body[:start] + draw(st.binary(max_size=8)) + body[end:]


bodies = st.one_of(
    st.dictionaries(fields, json_values, max_size=5).map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.integers(0, 30_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(0, 20_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.text(max_size=50).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
    mutated(),
)


@given(st.integers(0, 9), bodies)
def test_decoder_raises_only_handoff_error(kind, body):
    """Property: a packet with a valid header and any body decodes to a message whose
    re-encoding decodes to itself, or raises HandoffError with a one-line message."""
    try:
        message = decode_message(MAGIC + bytes([PROTOCOL_VERSION, kind]) + body, stage="fuzz")
    except HandoffError as exc:
        assert exc.stage == "fuzz"
        assert "\n" not in str(exc) and len(str(exc)) < 400, str(exc)
    else:
        if not isinstance(message, Failed | Abort):  # reasons are cut to fit on encoding
            assert decode_message(encode_message(message), stage="fuzz") == message


@given(st.binary(max_size=300))
def test_decoder_takes_any_bytes(packet):
    """Property: arbitrary bytes decode to a message or raise HandoffError, nothing else."""
    try:
        decode_message(packet, stage="fuzz")
    except HandoffError as exc:
        assert exc.stage == "fuzz"
