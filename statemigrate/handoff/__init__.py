"""Hot-restart handoff: pass listening sockets and a state snapshot to a successor process.

The old process calls :func:`upgrade` (or :func:`send_handoff` for a successor it
did not start); the successor calls :func:`inherit` (or :func:`receive_handoff`).
The old process keeps serving until the successor reports ready, and goes on
serving if it fails. :mod:`statemigrate.handoff` also speaks systemd's notify
protocol and fd store (:func:`sd_notify`, :func:`fd_store`, :func:`listen_fds`).
For a :class:`~statemigrate.Service`, :func:`hand_over` and :func:`take_over` do
both sides, including the choice of schema versions (rollbacks included).
See ``docs/handoff.md`` for the protocol step by step.
"""

from statemigrate._errors import HandoffError
from statemigrate.handoff._drain import Drainer, DrainReport
from statemigrate.handoff._report import HandoffReport
from statemigrate.handoff._service import (
    choose_targets,
    hand_over,
    handoff_readable,
    take_over,
)
from statemigrate.handoff._signals import install_signal_trigger
from statemigrate.handoff._successor import Inheritance, inherit, receive_handoff
from statemigrate.handoff._systemd import (
    SystemdFds,
    fd_store,
    fd_store_remove,
    listen_fds,
    sd_notify,
)
from statemigrate.handoff._upgrade import ExportState, send_handoff, upgrade

__all__ = [
    "DrainReport",
    "Drainer",
    "ExportState",
    "HandoffError",
    "HandoffReport",
    "Inheritance",
    "SystemdFds",
    "choose_targets",
    "fd_store",
    "fd_store_remove",
    "hand_over",
    "handoff_readable",
    "inherit",
    "install_signal_trigger",
    "listen_fds",
    "receive_handoff",
    "sd_notify",
    "send_handoff",
    "take_over",
    "upgrade",
]
