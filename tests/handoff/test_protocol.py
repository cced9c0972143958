"""Control-channel messages: round trip, and hostile packets raise only HandoffError; the
channel behaves the same under the blocking driver and the asyncio one."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statemigrate import HandoffError
from statemigrate.handoff._drive import run_async, run_blocking
from statemigrate.handoff._fdcheck import open_fds
from statemigrate.handoff._protocol import (
    MAGIC,
    MAX_MESSAGE,
    PROTOCOL_VERSION,
    Abort,
    Applied,
    Channel,
    Commit,
    Failed,
    Held,
    Hello,
    NoMessage,
    Piece,
    Ready,
    Received,
    SnapshotOffer,
    decode_message,
    encode_message,
)

pids = st.integers(min_value=1, max_value=2**31 - 1)
names = st.text(min_size=1, max_size=20)
messages = st.one_of(
    st.builds(
        Hello,
        pid=pids,
        readable=st.dictionaries(
            names, st.lists(st.integers(-(2**40), 2**40), max_size=5).map(tuple), max_size=5
        ),
        serving=st.booleans(),
        precopy=st.booleans(),
        versions=st.dictionaries(names, st.integers(-(2**40), 2**40), max_size=5),
        code_version=st.text(max_size=200),
        held=st.booleans(),
    ),
    st.builds(Held, paused=st.floats(0, 3600, allow_nan=False)),
    st.builds(
        SnapshotOffer,
        size=st.integers(0, 2**62),
        listeners=st.lists(names, unique=True, max_size=5).map(tuple),
        fallback=st.text(max_size=200),
        paused=st.none() | st.floats(0, 3600, allow_nan=False),
        lossy=st.dictionaries(
            names,
            st.tuples(
                st.integers(-(2**40), 2**40), st.integers(-(2**40), 2**40), st.text(max_size=200)
            ),
            max_size=3,
        ),
    ),
    st.builds(
        Piece,
        round=st.integers(0, 2**16),
        kind=st.sampled_from(["full", "delta"]),
        size=st.integers(0, 2**62),
    ),
    st.builds(
        Applied,
        round=st.integers(0, 2**16),
        deltas=st.booleans(),
        records=st.integers(0, 2**62),
        why=st.text(max_size=200),
    ),
    st.builds(Ready, pid=pids),
    st.just(Commit()),
    st.builds(Failed, reason=st.text(max_size=200)),
    st.builds(Abort, reason=st.text(max_size=200)),
)


@given(messages)
def test_decode_inverts_encode(message):
    """Property: decode(encode(m)) == m for every message."""
    packet = encode_message(message)
    assert len(packet) <= MAX_MESSAGE
    assert decode_message(packet, stage="test") == message


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_handoff_error(packet):
    """Property: arbitrary bytes decode to a message or raise HandoffError, nothing else."""
    try:
        decode_message(packet, stage="test")
    except HandoffError as exc:
        assert exc.stage == "test"


@given(st.integers(1, 6), st.binary(max_size=100))
def test_arbitrary_bodies_raise_only_handoff_error(kind, body):
    """Property: a valid header with any body decodes or raises HandoffError, nothing else."""
    try:
        decode_message(MAGIC + bytes([PROTOCOL_VERSION, kind]) + body, stage="test")
    except HandoffError as exc:
        assert "protocol error" in str(exc)


@pytest.mark.parametrize(
    ("packet", "match"),
    [
        (b"", "not a handoff message"),
        (b"SMHX\x01\x03{}", "not a handoff message"),
        (MAGIC + b"\x02\x03{}", "peer speaks version 2"),
        (MAGIC + b"\x01\x0b{}", "unknown message kind 11"),
        (MAGIC + b"\x01\x0a{}", "bad HELD body: 'paused' must be seconds"),
        (MAGIC + b'\x01\x0a{"paused": -1}', "bad HELD body"),
        (MAGIC + b"\x01\x08" + b'{"round":0,"kind":"half","size":1}', "'kind' must be"),
        (MAGIC + b"\x01\x08" + b'{"round":-1,"kind":"full","size":1}', "'round' must be"),
        (MAGIC + b"\x01\x09" + b'{"round":0,"deltas":1,"records":0}', "'deltas' must be"),
        (MAGIC + b"\x01\x01" + b'{"pid":1,"readable":{},"precopy":"yes"}', "'precopy' must"),
        (MAGIC + b'\x01\x03{"pid": 0}', "bad READY body"),
        (MAGIC + b'\x01\x03{"pid": true}', "bad READY body"),
        (MAGIC + b'\x01\x01{"pid": 5, "readable": {"a": [1.5]}}', "bad HELLO body"),
        (MAGIC + b'\x01\x02{"size": 5, "listeners": ["a", "a"]}', "twice"),
        (MAGIC + b'\x01\x02{"size": 5, "listeners": [], "lossy": []}', "'lossy' must be"),
        (MAGIC + b'\x01\x02{"size": 5, "listeners": [], "lossy": {"a": [2, 1]}}', "'lossy'"),
        (MAGIC + b'\x01\x02{"size": 5, "listeners": [], "lossy": {"a": [2, 1.5, ""]}}', "'lossy'"),
        (MAGIC + b"\x01\x05[]", "not an object"),
        (MAGIC + b"\x01\x05\xff", "bad FAILED body"),
    ],
)
def test_malformed_packets_name_the_problem(packet, match):
    with pytest.raises(HandoffError, match=match):
        decode_message(packet, stage="test")


@pytest.mark.parametrize(
    ("body", "paused"),
    [
        (b'{"size":1,"listeners":[]}', None),  # an earlier release says nothing
        (b'{"size":1,"listeners":[],"paused":0}', 0.0),
        (b'{"size":1,"listeners":[],"paused":0.25}', 0.25),
        (b'{"size":1,"listeners":[],"paused":-1}', None),
        (b'{"size":1,"listeners":[],"paused":1e300}', None),
        (b'{"size":1,"listeners":[],"paused":true}', None),
        (b'{"size":1,"listeners":[],"paused":"1"}', None),
        (b'{"size":1,"listeners":[],"paused":[1]}', None),
    ],
)
def test_a_bad_pause_in_snapshot_only_costs_that_figure(body, paused):
    message = decode_message(MAGIC + bytes([PROTOCOL_VERSION, 2]) + body, stage="test")
    assert message == SnapshotOffer(size=1, paused=paused)


def test_fields_a_reader_does_not_know_are_ignored():
    """What lets a later release add optional fields that an earlier one reads past
    (``paused`` in SNAPSHOT, read by an earlier successor, say)."""
    body = b'{"size":1,"listeners":[],"added_later":{"x":[1]}}'
    message = decode_message(MAGIC + bytes([PROTOCOL_VERSION, 2]) + body, stage="test")
    assert message == SnapshotOffer(size=1)
    assert decode_message(MAGIC + bytes([PROTOCOL_VERSION, 4]) + b'{"x":1}', stage="t") == Commit()


def test_oversized_reasons_are_cut_to_fit():
    packet = encode_message(Failed(reason="x" * (2 * MAX_MESSAGE)))
    assert len(packet) < MAX_MESSAGE
    assert decode_message(packet, stage="t") == Failed(reason="x" * 2000)


DRIVERS = ["blocking", "asyncio"]


def receive(channel: Channel, driver: str, **kwargs: object) -> Received | NoMessage:
    """Run the channel's receive steps to the end with the chosen driver."""
    steps = channel.receive(stage="t", **kwargs)  # type: ignore[arg-type]
    if driver == "blocking":
        return run_blocking(steps, None)
    return asyncio.run(run_async(steps, None))


@pytest.mark.parametrize("driver", DRIVERS)
def test_channel_refuses_descriptors_on_messages_that_carry_none(driver):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    try:
        baseline = open_fds()
        Channel(a).send(Ready(pid=5), [r], stage="t")
        with pytest.raises(HandoffError, match="READY carried 1 descriptors"):
            receive(Channel(b), driver, max_fds=1, deadline=time.monotonic() + 5)
        assert open_fds() == baseline
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        b.close()


@pytest.mark.parametrize("driver", DRIVERS)
def test_channel_reports_timeout_and_close(driver):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        channel = Channel(b)
        assert receive(channel, driver, deadline=time.monotonic() + 0.05) == NoMessage("timeout")
        a.close()
        assert receive(channel, driver, deadline=time.monotonic() + 5) == NoMessage("closed")


@pytest.mark.parametrize("driver", DRIVERS)
def test_channel_reports_the_watched_descriptor(driver):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    try:
        os.write(w, b"!")  # stands in for a pidfd that turned readable: the peer exited
        got = receive(Channel(b), driver, deadline=time.monotonic() + 5, watch=r)
        assert got == NoMessage("exited")
        Channel(a).send(Commit(), stage="t")  # a waiting message wins over the watch
        got = receive(Channel(b), driver, deadline=time.monotonic() + 5, watch=r)
        assert got == Received(Commit())
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        b.close()


# -- hostile bodies: every malformation is a protocol error, never a foreign exception ----

KINDS = {"HELLO": 1, "SNAPSHOT": 2, "READY": 3, "COMMIT": 4, "FAILED": 5, "ABORT": 6}


def packet(kind: str, body: bytes) -> bytes:
    return MAGIC + bytes([PROTOCOL_VERSION, KINDS[kind]]) + body


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


DEEP_BODIES = {
    "HELLO": b'{"pid": 5, "readable": {"a": ' + deep(20_000) + b"}}",
    "SNAPSHOT": b'{"size": 1, "listeners": ' + deep(20_000) + b"}",
    "READY": deep(20_000),
    "COMMIT": b'{"x": ' + b'{"y": ' * 9_000 + b"1" + b"}" * 9_000 + b"}",
    "FAILED": b"[" * 60_000,  # unterminated as well
    "ABORT": b'{"reason": "[[[[", "r": ' + deep(20_000) + b"}",
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_deeply_nested_bodies_are_protocol_errors(kind):
    with pytest.raises(HandoffError, match=f"bad {kind} body: nested more than 8 levels"):
        decode_message(packet(kind, DEEP_BODIES[kind]), stage="test")


def test_brackets_inside_strings_do_not_count_as_nesting():
    reason = '[[[[[[[[[[{{{{{{{{{{ \\" ]]]]'
    got = decode_message(packet("FAILED", b'{"reason": "%s"}' % reason.encode()), stage="t")
    assert got == Failed(reason=reason.replace('\\"', '"'))


@pytest.mark.parametrize(
    ("kind", "body", "match"),
    [
        ("READY", b'{"pid": ' + b"9" * 5000 + b"}", "an integer of 5000 digits"),
        ("READY", b'{"pid": -' + b"9" * 400 + b"}", "an integer of 400 digits"),
        ("READY", b'{"pid": 2147483648}', "'pid' must be an integer from 1 to 2147483647"),
        ("HELLO", b'{"pid": 99999999999999999999}', "an integer of 20 digits"),
        ("SNAPSHOT", b'{"size": 9223372036854775808, "listeners": []}', "'size' must be"),
        ("SNAPSHOT", b'{"size": 1e400, "listeners": []}', "'size' must be an integer"),
        ("SNAPSHOT", b'{"size": NaN, "listeners": []}', "NaN is not a number"),
        ("SNAPSHOT", b'{"size": -Infinity, "listeners": []}', "-Infinity is not a number"),
        ("HELLO", b'{"pid": 5, "readable": {"a": [9223372036854775808]}}', "64-bit integers"),
        ("HELLO", b'{"pid": 5, "readable": [1]}', "'readable' must be an object, got list"),
        ("HELLO", b'{"pid": "5", "readable": {}}', "got '5'"),
        ("HELLO", b'{"pid": [5], "readable": {}}', "got a list of 1 items"),
        ("HELLO", b'{"pid": 5, "readable": {"\\ud800": [1]}}', "unpaired surrogate"),
        ("HELLO", b'{"pid": 5, "readable": {}, "versions": [1]}', "'versions' must be an"),
        ("HELLO", b'{"pid": 5, "readable": {}, "versions": {"a": "1"}}', "'versions'['a']"),
        ("HELLO", b'{"pid": 5, "readable": {}, "code_version": 3}', "'code_version' must"),
        ("SNAPSHOT", b'{"size": 1, "listeners": ["\\udfff"]}', "unpaired surrogate"),
        ("FAILED", b'{"reason": "x\\ud800y"}', "'reason' holds an unpaired surrogate at 1"),
        ("ABORT", b'{"reason": null}', "'reason' must be a string, got NoneType"),
        ("READY", b'{"pid": 5, "pid": 6}', "key 'pid' appears twice"),
        ("READY", b"5", "the body is int, not an object"),
        ("COMMIT", b'"x"', "the body is str, not an object"),
        ("ABORT", b"", "Expecting value"),
        ("FAILED", b'{"reason": "caf\xc3"}', "not UTF-8 at byte 15"),
        ("FAILED", '{"reason": "x"}'.encode("utf-16"), "not UTF-8 at byte 0"),
        ("FAILED", '{"reason": "x"}'.encode("utf-32-le"), "Expecting property name"),
        ("FAILED", b'\xef\xbb\xbf{"reason": "x"}', "BOM"),
    ],
)
def test_hostile_bodies_name_the_problem_on_one_line(kind, body, match):
    with pytest.raises(HandoffError) as caught:
        decode_message(packet(kind, body), stage="test")
    message = str(caught.value)
    assert message.startswith(f"handoff failed at test: protocol error: bad {kind} body: ")
    assert match in message
    assert "\n" not in message and len(message) < 200
