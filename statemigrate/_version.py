"""The library's version: the one place it is written.

Packaging reads it (``[tool.hatch.version]`` in pyproject.toml), ``statemigrate``
re-exports it as ``__version__``, and every snapshot's header records it as its producer.
"""

__version__ = "0.1.0"
