"""Turning obstore's exceptions into StoreError, in one place.

obstore raises its own classes (``obstore.exceptions``) and, for a missing object, the
built-in ``FileNotFoundError`` and ``NotImplementedError``. Their messages span many
lines (a request dump and a debug tree); a :class:`StoreError` carries one line: what
happened, the server's error code when there is one, and what to check. A setting
obstore does not know, refused as a store is built, is the caller's mistake rather
than the store's: a :class:`ConfigurationError` (:func:`unknown_setting`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from statemigrate._errors import ConfigurationError, StoreError

__all__ = ["is_missing_bucket", "kind_of", "translate", "unknown_setting"]

# obstore's words for a key of ``config`` its backend does not take, and for a key of
# ``client_options`` (a ValueError).
_UNKNOWN_KEY = re.compile(r"Configuration key: '([^'\n]*)' is not valid")
_INVALID_CLIENT_KEY = re.compile(r"Invalid key: ([^\n]*?)\.?$")
# What each backend's ``config`` takes, by the scheme's environment prefix.
_BACKEND_KEYS = {
    "aws_": "S3Config keys such as endpoint, region and access_key_id",
    "google_": "GCSConfig keys such as service_account and service_account_key",
    "azure_": "AzureConfig keys such as account_name, access_key and endpoint",
}
_CLIENT_OPTIONS = "client options such as allow_http and proxy_url"

# Error codes of S3 (XML <Code>), Azure and GCS for a bucket or container that is not there.
_NO_BUCKET = ("NoSuchBucket", "ContainerNotFound", "The specified bucket does not exist")
_CODE = re.compile(r"<Code>([A-Za-z0-9.]{1,64})</Code>")
_DETAIL_LIMIT = 240
# Where obstore asks for credentials when it was given none: the instance metadata
# service of AWS and Azure (IMDS) and of GCP.
_METADATA = re.compile(
    r"169\.254\.169\.254|metadata\.google\.internal|/latest/api/token|/metadata/identity"
)
_STATUS = re.compile(r"status code: ([0-9]{3}(?: [A-Za-z]+)*)")
# The backend obstore names in its message, and its variable that allows plain http.
_BACKEND = re.compile(r"\bGeneric (MicrosoftAzure|GCS) error\b")
_ALLOW_HTTP = {"MicrosoftAzure": "AZURE_ALLOW_HTTP", "GCS": "GOOGLE_ALLOW_HTTP"}
# A request line of obstore's message, to a plain-http URL.
_HTTP_REQUEST = re.compile(r"\b(?:GET|PUT|POST|HEAD|DELETE) http://")
# obstore's summary of a request it gave up on: "Error performing GET
# http://host:port/key in 60.103616253s, after 1 retries, max_retries: 3, ..."; a
# request never retried has no "after ..." part.
_PERFORMED = re.compile(
    r"Error performing [A-Z]+ https?://([^/\s]+)\S* in ([0-9.]+)(ns|µs|ms|s)\b"
    r"(?:, after ([0-9]+) retries)?"
)
_METHOD = re.compile(r"Error performing ([A-Z]+) ")
# The request that aborts a multipart upload (AbortMultipartUpload). obstore aborts an
# upload that failed; when the abort fails too, it raises the abort's error alone, and
# the upload's own is lost (obstore 0.12).
_ABORT = re.compile(r"Error performing DELETE \S*[?&]uploadId=")
# A URL's query (an upload's id, a listing's parameters): long, and nothing a reader acts on.
_QUERY = re.compile(r"(https?://[^\s?]*)\?\S*")
_SECONDS_PER_UNIT = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
_OVERLOADED = "the server is overloaded and asks for fewer requests"
# What an answer of each status says of the server. obstore retries all of them.
_SERVER_TROUBLE = {
    429: _OVERLOADED,
    500: "the server is failing",
    502: "the server is overloaded or failing",
    503: "the server is overloaded or failing",
    504: "the server is overloaded or failing",
}
# S3's error codes of a server asking for fewer requests, whatever the status.
_THROTTLED = ("SlowDown", "RequestLimitExceeded", "TooManyRequests", "ServerBusy")


def kind_of(exc: BaseException) -> str:
    """Which of obstore's outcomes ``exc`` is: ``not_found``, ``exists``,
    ``precondition``, ``denied``, ``unsupported``, ``config`` or ``other``."""
    if isinstance(exc, FileNotFoundError):
        return "not_found"
    if isinstance(exc, NotImplementedError):
        return "unsupported"
    name = type(exc).__name__
    return {
        "NotFoundError": "not_found",
        "AlreadyExistsError": "exists",
        "PreconditionError": "precondition",
        "PermissionDeniedError": "denied",
        "UnauthenticatedError": "denied",
        "NotSupportedError": "unsupported",
        "UnknownConfigurationKeyError": "config",
        "InvalidPathError": "config",
    }.get(name, "other")


def is_missing_bucket(exc: BaseException) -> bool:
    """``exc`` says that the bucket or container itself does not exist."""
    text = str(exc)
    return any(marker in text for marker in _NO_BUCKET)


def translate(op: str, target: str, exc: BaseException) -> StoreError:
    """The :class:`StoreError` for an exception obstore raised during ``op`` on ``target``.

    The caller chains it: ``raise translate(op, target, exc) from exc``.
    """
    kind = kind_of(exc)
    code = _server_code(exc)
    suffix = f" ({code})" if code else ""
    if is_missing_bucket(exc):
        detail = "the bucket or container does not exist" + suffix
    elif kind == "not_found":
        detail = "no such object" + suffix
    elif kind == "denied":
        detail = f"access denied{suffix}: check the credentials and the bucket's policy"
    elif kind == "unsupported":
        detail = f"the backend does not support this operation: {_first_line(exc)}"
    elif kind == "config":
        detail = f"invalid configuration: {_first_line(exc)}"
    elif kind in ("exists", "precondition"):
        detail = f"a precondition failed{suffix}: {_first_line(exc)}"
    elif _METADATA.search(str(exc)):
        detail = _no_credentials(exc)
    elif _plain_http_refused(exc):
        detail = (
            "the endpoint is plain http and allow_http is not set: set it"
            " (client_options={'allow_http': True}; on the command line --store-option"
            f" allow_http=true, or {_allow_http_variable(exc)}=true) [{_first_line(exc)}]"
        )
    elif (status := _server_status(exc)) is not None:
        detail = _server_trouble(exc, status, code)
    elif _was_reset(exc):
        detail = _reset(exc)
    elif _unanswered(exc):
        detail = _no_answer(exc)
    elif _unreachable(exc):
        detail = f"cannot reach the server: {_first_line(exc)}"
    else:
        detail = f"{type(exc).__name__}: {_first_line(exc)}"
    if _ABORT.search(str(exc)):
        detail = _abort_failed(detail)
    return StoreError(op, target, detail)


def _abort_failed(detail: str) -> str:
    """One line for a multipart upload that failed and whose abort failed too: obstore
    raises the abort's error in place of the upload's, so ``detail`` (what the abort
    met) is all there is to say of either; usually both met the same trouble. The
    parts sent stay in the bucket, unseen, until a lifecycle rule removes them."""
    return (
        f"the multipart upload failed, and aborting it failed too: {detail}; obstore"
        " reports only the abort's error, not the upload's. The parts already sent may"
        " remain in the bucket as an incomplete upload: a lifecycle rule that expires"
        " incomplete multipart uploads removes them (docs/stores.md, Limits)"
    )


def _no_credentials(exc: BaseException) -> str:
    """What to say when obstore, given no credentials, fell back to asking the cloud's
    instance metadata service and that failed: off the cloud, the usual case."""
    status = _STATUS.search(str(exc))
    answer = f"answered {status.group(1)}" if status else "did not answer"
    return (
        "no credentials found: none in the configuration or the environment"
        " (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, GOOGLE_SERVICE_ACCOUNT,"
        f" AZURE_STORAGE_ACCOUNT_KEY, ...), and the instance metadata service {answer}"
    )


def _server_code(exc: BaseException) -> str | None:
    match = _CODE.search(str(exc))
    return match.group(1) if match else None


def _plain_http_refused(exc: BaseException) -> bool:
    """obstore's HTTP client refused an ``http://`` URL: without ``allow_http`` it
    builds no request for one, and says only "builder error" (BadScheme in the debug
    tree that follows)."""
    text = str(exc)
    return bool(_HTTP_REQUEST.search(text)) and (
        "BadScheme" in text or "builder error" in text
    )


def _allow_http_variable(exc: BaseException) -> str:
    """The environment variable that sets allow_http for the backend that raised
    ``exc``, which obstore names in its message (``Generic MicrosoftAzure error``)."""
    match = _BACKEND.search(str(exc))
    return _ALLOW_HTTP.get(match.group(1) if match else "", "AWS_ALLOW_HTTP")


def _server_status(exc: BaseException) -> str | None:
    """The status line of a server error (5xx) or of throttling (429) that obstore
    gave up retrying, such as ``503 Service Unavailable``."""
    status = _STATUS.search(str(exc))
    if status is None:
        return None
    number = int(status.group(1)[:3])
    return status.group(1) if number == 429 or 500 <= number <= 599 else None


def _server_trouble(exc: BaseException, status: str, code: str | None) -> str:
    """One line for a server that answered with an error of its own: the status and
    S3's error code, what they say of the server, and how often it was asked."""
    if code in _THROTTLED:
        trouble = _OVERLOADED
    else:
        trouble = _SERVER_TROUBLE.get(int(status[:3]), "the server failed")
    suffix = f" ({code})" if code else ""
    return f"the store answered {status}{suffix}: {trouble}; {_retried(exc)}"


def _retried(exc: BaseException) -> str:
    performed = _PERFORMED.search(str(exc))
    if performed is None:
        return "not retried"
    retries = int(performed.group(4) or 0)
    if retries == 0:
        return "not retried"
    times = "once" if retries == 1 else f"{retries} times"
    return f"retried {times} in {_elapsed(performed)} s"


def _elapsed(performed: re.Match[str]) -> str:
    seconds = float(performed.group(2)) * _SECONDS_PER_UNIT[performed.group(3)]
    return f"{seconds:.1f}"


def _unanswered(exc: BaseException) -> bool:
    """The request timed out after the connection was made: the server took it and
    sent no answer. (A connection that could not be made in time times out too, but
    its error names the connect step, ``tcp connect error``.)"""
    text = str(exc)
    timed_out = "kind: Timeout" in text or "TimedOut" in text
    return timed_out and "tcp connect error" not in text and "ConnectError" not in text


def _no_answer(exc: BaseException) -> str:
    """One line for a server that accepted the connection and never answered."""
    performed = _PERFORMED.search(str(exc))
    if performed is None:
        return f"no answer from the server: {_first_line(exc)}"
    attempts = int(performed.group(4) or 0) + 1
    requests = "1 request" if attempts == 1 else f"{attempts} requests"
    return (
        f"no answer from {performed.group(1)} within {_elapsed(performed)} s ({requests}):"
        " the server accepted the connection but sent no response; the timeout and"
        " retry_timeout settings bound this wait"
    )


def _was_reset(exc: BaseException) -> bool:
    """The connection was made and then reset (RST) while the request was under way.
    obstore's first line says only "error sending request", as for a server that
    could not be reached; the debug tree below it names the reset."""
    text = str(exc)
    return "ConnectionReset" in text or "Connection reset by peer" in text


def _reset(exc: BaseException) -> str:
    """One line for a connection the server, or something between (a proxy, a load
    balancer), reset in the middle of a request."""
    performed = _PERFORMED.search(str(exc))
    if performed is None:
        return f"the connection to the server was reset during the request: {_first_line(exc)}"
    method = _METHOD.search(str(exc))
    request = f"a {method.group(1)} request" if method else "the request"
    return (
        f"the connection to {performed.group(1)} was reset during {request} (by the"
        f" server, or a proxy or load balancer before it); {_retried(exc)}"
    )


def _unreachable(exc: BaseException) -> bool:
    text = str(exc)
    return any(
        marker in text
        for marker in ("error sending request", "Connection refused", "timed out", "TimedOut")
    )


def _first_line(exc: BaseException) -> str:
    """The first line of obstore's message, without the request dump that follows."""
    line = (str(exc).strip().splitlines() or [""])[0]
    # "Error performing GET http://... in 4ms - Server returned ..." repeats the URL and
    # timings; the server's code, when there is one, is reported separately.
    line = re.sub(r"<\?xml.*", "", line).strip()
    line = _QUERY.sub(r"\1", line)
    if len(line) > _DETAIL_LIMIT:
        # What went wrong follows the request, after " - " ("HTTP error: error sending
        # request"): the request's URL is what to shorten, not the reason.
        request, dash, reason = line.rpartition(" - ")
        if dash and len(reason) <= _DETAIL_LIMIT // 2:
            line = request[: _DETAIL_LIMIT - len(reason) - len(dash) - 3] + "..." + dash + reason
        else:
            line = line[: _DETAIL_LIMIT - 3] + "..."
    return line or type(exc).__name__


def unknown_setting(
    scheme: str,
    env_prefix: str,
    exc: BaseException,
    *,
    config: Mapping[str, Any] | None,
    client_options: Mapping[str, Any] | None,
) -> ConfigurationError | None:
    """The :class:`ConfigurationError` for ``exc`` when it is obstore's refusal of a
    key of ``config`` or ``client_options`` it does not know, raised as a store for a
    ``scheme://`` URL was built (``env_prefix`` names its backend); ``None`` for
    anything else. The message names the key as the caller spelt it and says what
    the option takes: ``config: 'bogus' is not a setting of s3:// URLs (obstore's
    S3Config keys such as endpoint, ..., or its client options such as ...)``.
    """
    text = str(exc)
    if type(exc).__name__ == "UnknownConfigurationKeyError":
        option, given = "config", config
        match = _UNKNOWN_KEY.search(text)
        allowed = f"obstore's {_BACKEND_KEYS[env_prefix]}, or its {_CLIENT_OPTIONS}"
    elif isinstance(exc, ValueError) and client_options:
        option, given = "client_options", client_options
        match = _INVALID_CLIENT_KEY.match(text.strip())
        if match is None:
            return None
        allowed = f"obstore's {_CLIENT_OPTIONS}"
    else:
        return None
    said = match.group(1) if match else None
    # obstore names the key in lower case; the caller may have written AWS_BOGUS.
    key: object = next(
        (name for name in given or {} if isinstance(name, str) and name.lower() == said),
        said,
    )
    if key is None:
        detail = f"holds a key that is not a setting of {scheme}:// URLs ({allowed})"
    else:
        detail = f"{key!r} is not a setting of {scheme}:// URLs ({allowed})"
    return ConfigurationError(option, detail)
