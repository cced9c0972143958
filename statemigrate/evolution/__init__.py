"""Development tools for evolving schemas: the schema lock, diffs and migration stubs.

Used while writing a new schema version, by the ``statemigrate`` command and in CI,
never by a running service; see ``docs/schemas.md`` and ``docs/migrations.md``.
"""
