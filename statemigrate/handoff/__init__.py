"""Hot-restart handoff: pass listening sockets and a state snapshot to a successor process.

Two levels, one verb pair each:

* any bytes: the old process calls :func:`send_handoff` with a :class:`Spawn` (a
  successor it starts) or a connected socket (one started by someone else); the
  successor calls :func:`receive_handoff` and then :meth:`Inheritance.hello` and
  :meth:`Inheritance.ready`;
* a :class:`~statemigrate.Service`: :func:`hand_over` and :func:`take_over` do both
  sides, including the choice of schema versions (rollbacks included).

The old process keeps serving until the successor reports ready, and goes on serving
if it fails (:class:`SuccessorFailedError`, a :class:`HandoffError`). The server is
held and released through one :class:`ServerControl` object; every wait is bounded
by one :class:`HandoffTimeouts` object. Each call that waits has an asyncio flavour
(``*_async``, with an :class:`AsyncServerControl`) running the same steps on the
event loop. :mod:`statemigrate.handoff` also speaks systemd's notify protocol and fd
store (:func:`sd_notify`, :func:`fd_store`, :func:`listen_fds`). See
``docs/handoff.md`` for the protocol step by step.

After a handoff the successor can be put on trial (:func:`begin_trial`): it watches
its trial (:func:`watch_trial`), which an operator or a health check makes permanent
(:func:`promote_trial`) or reverts to the permanent generation
(:func:`revert_trial`); after a crash during the trial, :func:`start_generation`
restores the permanent state. See ``docs/trials.md``.

:func:`started_by_handoff` tells a successor from a cold start before any of this
runs: only a cold start restores its last checkpoint itself.

The service level and the trials load on first access to one of their names, so that
the bytes level imports without the model layer.
"""

from typing import TYPE_CHECKING

from statemigrate import _lazy
from statemigrate._errors import HandoffError, SuccessorFailedError, TrialError
from statemigrate.handoff._control import (
    AsyncControlCallbacks,
    AsyncServerControl,
    ControlCallbacks,
    ServerControl,
)
from statemigrate.handoff._drain import Drainer, DrainReport
from statemigrate.handoff._env import started_by_handoff
from statemigrate.handoff._options import HandoffTimeouts, Spawn
from statemigrate.handoff._receive import Inheritance, receive_handoff
from statemigrate.handoff._report import HandoffReport, TakeOverReport
from statemigrate.handoff._send import ExportState, send_handoff, send_handoff_async
from statemigrate.handoff._signals import install_signal_trigger, install_signal_trigger_async
from statemigrate.handoff._systemd import (
    SystemdFds,
    fd_store,
    fd_store_remove,
    listen_fds,
    sd_notify,
)
from statemigrate.handoff._trialrecord import GenerationInfo, TrialRecord, read_trial

if TYPE_CHECKING:
    from statemigrate.handoff._service import (
        choose_targets,
        hand_over,
        hand_over_async,
        take_over,
        take_over_async,
    )
    from statemigrate.handoff._trial import (
        TrialWatch,
        begin_trial,
        promote_trial,
        request_revert,
        revert_trial,
        watch_trial,
    )
    from statemigrate.handoff._trialstart import (
        GenerationStart,
        generation_to_run,
        start_generation,
    )

_LAZY = {
    **dict.fromkeys(
        ("choose_targets", "hand_over", "hand_over_async", "take_over", "take_over_async"),
        "statemigrate.handoff._service",
    ),
    **dict.fromkeys(
        (
            "TrialWatch",
            "begin_trial",
            "promote_trial",
            "request_revert",
            "revert_trial",
            "watch_trial",
        ),
        "statemigrate.handoff._trial",
    ),
    **dict.fromkeys(
        ("GenerationStart", "generation_to_run", "start_generation"),
        "statemigrate.handoff._trialstart",
    ),
}
"""Public names whose modules load on first access (they import the service layer)."""

__all__ = [
    "AsyncControlCallbacks",
    "AsyncServerControl",
    "ControlCallbacks",
    "DrainReport",
    "Drainer",
    "ExportState",
    "GenerationInfo",
    "GenerationStart",
    "HandoffError",
    "HandoffReport",
    "HandoffTimeouts",
    "Inheritance",
    "ServerControl",
    "Spawn",
    "SuccessorFailedError",
    "SystemdFds",
    "TakeOverReport",
    "TrialError",
    "TrialRecord",
    "TrialWatch",
    "begin_trial",
    "choose_targets",
    "fd_store",
    "fd_store_remove",
    "generation_to_run",
    "hand_over",
    "hand_over_async",
    "install_signal_trigger",
    "install_signal_trigger_async",
    "listen_fds",
    "promote_trial",
    "read_trial",
    "receive_handoff",
    "request_revert",
    "revert_trial",
    "sd_notify",
    "send_handoff",
    "send_handoff_async",
    "start_generation",
    "started_by_handoff",
    "take_over",
    "take_over_async",
    "watch_trial",
]

__getattr__, __dir__ = _lazy.lazy_names(__name__, globals(), _LAZY)
