"""The snapshot layer: the container's bytes, and nothing else.

The payload codec (msgpack, zstandard), the chunk writer, the header schema and the
container (layout, verification, decoding limits). It knows plain data but neither
files nor stores nor components; see ``ARCHITECTURE.md`` and ``docs/format.md``.
"""
