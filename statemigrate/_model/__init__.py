"""The model layer: schemas, components, the registry and migration plans.

Pure data and pure functions: plain data and its comparison, schema versions and their
exporter, the in-place check, component marks and their export and import, the
registry of schemas and steps, and the planner. Nothing here reads bytes or files
(loading a migrations directory apart); see ``ARCHITECTURE.md``.
"""
