"""The object store's errors from a server that fails: a 5xx or 429 answer is one line
naming the status, S3's error code and the retries; a server that takes the connection
and never answers is said to give no answer, not to be out of reach; an upload whose
abort failed too says both, and where its parts may stay."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _store_helpers.fault_server import failing_server, hung_server, resetting_server
from _store_helpers.object_server import HOST, KEYS, S3Server, cable_to, s3_place
from _store_helpers.payload import make_payload

from statemigrate import StoreError
from statemigrate.stores import ObjectStore
from statemigrate.stores._object_errors import translate

MiB = 1 << 20


def store_at(endpoint: str, **options: Any) -> ObjectStore:
    return ObjectStore(
        "s3://snapshots/app",
        config={"endpoint": endpoint, **KEYS},
        client_options={"allow_http": True},
        **options,
    )


def actions(store: ObjectStore) -> list[Callable[[], object]]:
    """Each request a store makes first: reading the pointer, listing, committing."""
    return [store.open, store.generations, lambda: store.commit(b"snapshot")]


@pytest.mark.parametrize(
    ("status", "reason", "code", "expected"),
    [
        (
            500, "Internal Server Error", "InternalError",
            "the store answered 500 Internal Server Error (InternalError): the server is failing",
        ),
        (
            502, "Bad Gateway", None,
            "the store answered 502 Bad Gateway: the server is overloaded or failing",
        ),
        (
            503, "Slow Down", "SlowDown",
            "the store answered 503 Service Unavailable (SlowDown): the server is overloaded"
            " and asks for fewer requests",
        ),
        (
            504, "Gateway Timeout", None,
            "the store answered 504 Gateway Timeout: the server is overloaded or failing",
        ),
        (
            429, "Too Many Requests", None,
            "the store answered 429 Too Many Requests: the server is overloaded and asks for"
            " fewer requests",
        ),
    ],
)
def test_a_server_error_is_one_line_with_its_status_and_code(
    status: int, reason: str, code: str | None, expected: str
) -> None:
    with failing_server(status, reason, code) as server:
        store = store_at(server.endpoint, retries=1)
        for action in actions(store):
            with pytest.raises(StoreError) as info:
                action()
            detail = info.value.detail
            assert re.fullmatch(re.escape(expected) + r"; retried once in [0-9]+\.[0-9] s", detail)
            assert "GenericError" not in detail and "\n" not in str(info.value)


@pytest.mark.parametrize(("retries", "said"), [(0, "not retried"), (2, "retried 2 times in")])
def test_a_server_error_says_how_often_it_was_retried(retries: int, said: str) -> None:
    with failing_server(503, "Slow Down", "SlowDown") as server:
        with pytest.raises(StoreError) as info:
            store_at(server.endpoint, retries=retries).open()
        assert said in info.value.detail
        assert server.requests == retries + 1


@pytest.mark.parametrize(("retries", "requests"), [(0, "1 request"), (1, "2 requests")])
def test_a_server_that_never_answers_is_said_to_give_no_answer(
    retries: int, requests: str
) -> None:
    with hung_server() as server:
        store = store_at(server.endpoint, timeout=0.1, retries=retries)
        for action in actions(store):
            with pytest.raises(StoreError) as info:
                action()
            detail = info.value.detail
            assert re.fullmatch(
                rf"no answer from {HOST}:{server.port} within [0-9]+\.[0-9] s \({requests}\):"
                " the server accepted the connection but sent no response; the timeout and"
                " retry_timeout settings bound this wait",
                detail,
            ), detail


@pytest.mark.parametrize(("retries", "said"), [(0, "not retried"), (1, "retried once in")])
def test_a_connection_reset_mid_request_says_so(retries: int, said: str) -> None:
    """A server (or a proxy before it) that takes the request and resets the
    connection is named with what happened, not called out of reach: obstore's first
    line says only "error sending request", as for a server that refuses connections."""
    with resetting_server() as server:
        store = store_at(server.endpoint, retries=retries)
        for action in actions(store):
            with pytest.raises(StoreError) as info:
                action()
            detail = info.value.detail
            assert detail.startswith(
                f"the connection to {HOST}:{server.port} was reset during a GET request"
                " (by the server, or a proxy or load balancer before it); " + said
            ), detail
            assert "cannot reach" not in detail and "\n" not in str(info.value)
        assert server.request_lines[0] == "GET /snapshots/app/current HTTP/1.1"


class GenericError(Exception):
    """Stands for obstore's exception of that name: translate reads its text."""


# obstore's error for a connect that timed out (connect_timeout=0.2 against a listener
# whose queue was full), as it printed it: no server took the connection.
_CONNECT_TIMED_OUT = """\
Generic S3 error: Error performing GET http://127.0.0.1:42389/snapshots/app/current \
in 201.940528ms - HTTP error: error sending request

Debug source:
Generic {
    store: "S3",
    source: RetryError(
        RetryErrorImpl {
            method: GET,
            retries: 0,
            max_retries: 0,
            elapsed: 201.940528ms,
            retry_timeout: 60s,
            inner: Http(
                HttpError {
                    kind: Timeout,
                    source: reqwest::Error {
                        kind: Request,
                        source: hyper_util::client::legacy::Error(
                            Connect,
                            ConnectError(
                                "tcp connect error",
                                127.0.0.1:42389,
                                Custom {
                                    kind: TimedOut,
                                    error: Elapsed(
                                        (),
                                    ),
                                },
                            ),
                        ),
                    },
                },
            ),
        },
    ),
}"""


def test_a_connection_never_made_is_still_out_of_reach() -> None:
    """The negative control of the test above: a connect that times out also reads
    TimedOut in obstore's error, but no server took the connection. (obstore's own
    text, not a live socket: whether a full listen queue drops a connect or lets it
    through depends on the kernel.)"""
    error = translate("open", "s3://snapshots/app/current", GenericError(_CONNECT_TIMED_OUT))
    assert error.detail.startswith("cannot reach the server: "), error.detail
    assert "no answer" not in error.detail


def test_a_long_first_line_keeps_its_reason_and_drops_the_query() -> None:
    """obstore's first line names the request, then what went wrong after " - ": an
    upload's id in the URL must not push the reason past the cut."""
    url = f"http://{HOST}:9000/snapshots/app/generations/" + "0" * 20 + "." + "a" * 32
    text = (
        f"Generic S3 error: Error performing PUT {url}?partNumber=2&uploadId={'u' * 120}"
        " in 3.2ms - HTTP error: error sending request\n\nDebug source:\nGeneric {\n}"
    )
    detail = translate("write", "s3://snapshots/app", GenericError(text)).detail
    assert detail.endswith(" - HTTP error: error sending request"), detail
    assert "uploadId" not in detail and "\n" not in detail


def test_a_failed_upload_whose_abort_fails_too_says_both(s3: S3Server) -> None:
    """The connection is cut mid-upload, so obstore's abort of the upload (a DELETE of
    its uploadId) fails too, and obstore raises that error alone: the line says the
    upload failed, what the abort met, and that the parts may stay behind."""
    place = s3_place(s3)
    big = make_payload(4, 12 * MiB + 123)
    with cable_to(s3) as cable:
        store = ObjectStore(
            place.url,
            config={**place.options["config"], "endpoint": cable.endpoint},
            client_options={"allow_http": True},
            retries=0,
            timeout=5.0,
            connect_timeout=2.0,
        )

        def upload() -> Iterator[bytes]:
            yield big[: 9 * MiB]
            cable.cut()
            yield big[9 * MiB :]

        with pytest.raises(StoreError) as info:
            store.commit(upload())
    error = info.value
    assert error.op == "write" and "/generations/" in error.target
    assert error.detail.startswith(
        "the multipart upload failed, and aborting it failed too: cannot reach the server:"
    ), error.detail
    # The abort's own reason, whole: not cut away behind the upload's id.
    assert "DELETE" in error.detail and "error sending request;" in error.detail
    assert "uploadId" not in error.detail and "..." not in error.detail
    assert "incomplete multipart uploads" in error.detail and "\n" not in str(error)
