"""The obstore store an :class:`~statemigrate.stores.ObjectStore` works through: built
from a URL and its settings, or the one a caller built, wrapped in a
:class:`~statemigrate.stores._object_backend.Backend`.

obstore's bindings take settings differently from Rust's ``object_store``, which they
wrap: HTTP client settings given among the backend's make them panic, and the client
options always passed (the store's timeouts) replace those the environment holds. The
settings are sorted out here, before obstore sees them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from statemigrate._errors import StoreError
from statemigrate.stores._object_backend import REMOTE_CLASSES, Backend, obstore_module
from statemigrate.stores._object_errors import translate, unknown_setting
from statemigrate.stores._options import check_no_request_setting, check_no_settings, refused

__all__ = [
    "REMOTE_SCHEMES",
    "backend_for",
    "build",
    "wrap",
]

REMOTE_SCHEMES = frozenset({"s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl"})
"""URL schemes of object storage on another host (S3, Google Cloud Storage, Azure)."""

_LOCAL_SCHEMES = frozenset({"file", "memory"})
_ENV_PREFIXES = {
    "s3": "aws_",
    "s3a": "aws_",
    "gs": "google_",
    "az": "azure_",
    "azure": "azure_",
    "abfs": "azure_",
    "abfss": "azure_",
    "adl": "azure_",
}
"""The prefix of each remote backend's environment variables and config keys."""
_DEFAULT_TIMEOUT = 30.0
_DEFAULT_CONNECT_TIMEOUT = 5.0
_DEFAULT_RETRIES = 3
_DEFAULT_RETRY_TIMEOUT = 60.0
"""A remote store's request settings when none is given: seconds, and a count."""
_CLIENT_KEYS = frozenset(
    {
        "allow_http",
        "allow_invalid_certificates",
        "connect_timeout",
        "default_content_type",
        "default_headers",
        "http1_only",
        "http2_keep_alive_interval",
        "http2_keep_alive_timeout",
        "http2_keep_alive_while_idle",
        "http2_only",
        "pool_idle_timeout",
        "pool_max_idle_per_host",
        "proxy_url",
        "proxy_ca_certificate",
        "proxy_excludes",
        "root_certificate",
        "randomize_addresses",
        "read_timeout",
        "timeout",
        "user_agent",
    }
)
"""obstore's HTTP client settings (``ClientConfig``), as opposed to backend settings."""
def build(
    url: str,
    *,
    config: Mapping[str, Any] | None,
    client_options: Mapping[str, Any] | None,
    credential_provider: Callable[..., Any] | None,
    timeout: float | None,
    connect_timeout: float | None,
    retries: int | None,
    retry_timeout: float | None,
) -> Backend:
    """A backend for ``url``: ``s3://``, ``gs://``, ``az://`` (and their aliases),
    ``file://`` or ``memory://``. The request settings not given (``None``) take their
    defaults.

    Raises:
        StoreError: the URL is not supported, or obstore refused the configuration.
        ConfigurationError: ``config`` or ``client_options`` holds a key, or a request
            setting (a timeout, ``retries``, ``credential_provider``) is given, for a
            ``file://`` or ``memory://`` URL, which take none; or either holds a key
            obstore does not take for the URL's backend.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed "[" in the host
        raise StoreError("open", url, f"not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    location = url if url.endswith("://") else url.rstrip("/")
    if scheme not in REMOTE_SCHEMES | _LOCAL_SCHEMES:
        raise StoreError(
            "open",
            url,
            "unsupported URL: use s3://, gs://, az://, file:// or memory:// followed by a path",
        )
    if scheme in _LOCAL_SCHEMES:
        check_no_settings(scheme, "config", config)
        check_no_settings(scheme, "client_options", client_options)
        for option, value in (
            ("credential_provider", credential_provider),
            ("timeout", timeout),
            ("connect_timeout", connect_timeout),
            ("retries", retries),
            ("retry_timeout", retry_timeout),
        ):
            check_no_request_setting(scheme, option, value)
    obstore = obstore_module()
    path = unquote(parts.path)
    try:
        if scheme == "memory":
            return Backend(obstore.store.MemoryStore(), path, location, remote=False)
        if scheme == "file":
            if parts.netloc not in ("", "localhost") or not path.startswith("/"):
                raise StoreError("open", url, "a file:// URL needs an absolute path")
            store = obstore.store.LocalStore(prefix=path, mkdir=True)
            return Backend(store, "", location, remote=False)
        client: dict[str, Any] = {
            "timeout": timedelta(seconds=_DEFAULT_TIMEOUT if timeout is None else timeout),
            "connect_timeout": timedelta(
                seconds=_DEFAULT_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout
            ),
        }
        backend_config, client_config = _split_config(scheme, config)
        client.update(client_config)
        client.update(client_options or {})
        retry = {
            "max_retries": _DEFAULT_RETRIES if retries is None else retries,
            "retry_timeout": timedelta(
                seconds=_DEFAULT_RETRY_TIMEOUT if retry_timeout is None else retry_timeout
            ),
        }
        store = obstore.store.from_url(
            url,
            config=backend_config or None,
            client_options=client,
            retry_config=retry,
            credential_provider=credential_provider,
        )
    except StoreError:
        raise
    except Exception as exc:
        unknown = unknown_setting(
            scheme,
            _ENV_PREFIXES[scheme],
            exc,
            config=config,
            client_options=client_options,
        )
        if unknown is not None:
            raise unknown from exc
        raise translate("open", url, exc) from exc
    except BaseException as exc:
        # obstore's bindings turn a Rust panic into PanicException, a BaseException.
        # Settings known to cause one are sorted out above; this keeps any other from
        # escaping as something callers cannot catch as an error.
        if type(exc).__name__ != "PanicException":
            raise
        raise StoreError("open", url, f"obstore failed on this configuration: {exc}") from exc
    return Backend(store, "", location, remote=True)


def _split_config(
    scheme: str, config: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``config`` split into backend settings and HTTP client settings, the latter
    completed from the environment.

    Rust's object_store takes client settings (``allow_http``, ``timeout``...) among
    the backend's, and reads them from the environment (``AWS_ALLOW_HTTP``...) with
    the rest. obstore's bindings do neither: a client key in ``config`` makes them
    panic, and the ``client_options`` the store always passes (its timeouts) replace
    whatever the environment said. So client settings are taken out of ``config``
    and out of the environment here, and passed as client options; explicit ones
    win over the environment's.
    """
    prefix = _ENV_PREFIXES[scheme]
    client: dict[str, Any] = {}
    for name, value in os.environ.items():
        key = name.lower()
        if key.startswith(prefix) and key[len(prefix) :] in _CLIENT_KEYS:
            client[key[len(prefix) :]] = value
    backend: dict[str, Any] = {}
    for name, value in (config or {}).items():
        key = name.lower().removeprefix(prefix) if isinstance(name, str) else name
        if key in _CLIENT_KEYS:
            client[key] = value
        else:
            backend[name] = value
    return backend, client


def wrap(store: object, prefix: str) -> Backend:
    """A backend over an obstore store built by the caller.

    Raises:
        StoreError: ``store`` is not an obstore store.
    """
    obstore = obstore_module()
    if not isinstance(store, obstore.store.ObjectStoreMethods):
        raise StoreError("open", type(store).__name__, "is not an obstore store")
    location = repr(store)
    if prefix.strip("/"):
        location += "/" + prefix.strip("/")
    return Backend(store, prefix, location, remote=type(store).__name__ in REMOTE_CLASSES)


def backend_for(
    location: str | object,
    prefix: str,
    *,
    config: Mapping[str, Any] | None,
    client_options: Mapping[str, Any] | None,
    credential_provider: Callable[..., Any] | None,
    timeout: float | None,
    connect_timeout: float | None,
    retries: int | None,
    retry_timeout: float | None,
) -> Backend:
    """The backend an :class:`~statemigrate.stores.ObjectStore` works through, under
    ``prefix``: built from ``location`` when it is a URL (see :func:`build`), else
    ``location``, a store built by the caller, wrapped.

    Raises:
        StoreError: as :func:`build` or :func:`wrap`.
        ConfigurationError: a URL's settings were given with a store built by the
            caller.
    """
    url_options = {
        "config": config,
        "client_options": client_options,
        "credential_provider": credential_provider,
        "timeout": timeout,
        "connect_timeout": connect_timeout,
        "retries": retries,
        "retry_timeout": retry_timeout,
    }
    if isinstance(location, str):
        backend = build(
            location,
            config=config,
            client_options=client_options,
            credential_provider=credential_provider,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retries=retries,
            retry_timeout=retry_timeout,
        )
        if prefix.strip("/"):
            backend = Backend(
                backend.store,
                backend.key(prefix.strip("/")),
                f"{backend.location}/{prefix.strip('/')}",
                remote=backend.remote,
            )
    else:
        for name, option in url_options.items():
            if option is not None:
                raise refused(
                    name, "None with an obstore store passed in (set it on that store)", option
                )
        backend = wrap(location, prefix)
    return backend
