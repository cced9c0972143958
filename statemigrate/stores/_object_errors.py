"""Turning obstore's exceptions into StoreError, in one place.

obstore raises its own classes (``obstore.exceptions``) and, for a missing object, the
built-in ``FileNotFoundError`` and ``NotImplementedError``. Their messages span many
lines (a request dump and a debug tree); a :class:`StoreError` carries one line: what
happened, the server's error code when there is one, and what to check.
"""

from __future__ import annotations

import re

from statemigrate._errors import StoreError

__all__ = ["is_missing_bucket", "kind_of", "translate"]

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
    elif _unreachable(exc):
        detail = f"cannot reach the server: {_first_line(exc)}"
    else:
        detail = f"{type(exc).__name__}: {_first_line(exc)}"
    return StoreError(op, target, detail)


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
    if len(line) > _DETAIL_LIMIT:
        line = line[: _DETAIL_LIMIT - 3] + "..."
    return line or type(exc).__name__
