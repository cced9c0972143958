"""The runtime layer: a service's components snapshotted to a store and restored.

:class:`~statemigrate.Service` (snapshot and commit), the restore transaction, and the
reports both return. It joins the model, the snapshot format and the stores; see
``ARCHITECTURE.md``.
"""
