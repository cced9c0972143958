"""Authenticated snapshots (HMAC-SHA256): forgeries without the key fail with kind "auth"."""

from __future__ import annotations

import secrets

import pytest
import xxhash
from golden import (
    GOLDEN_KEY,
    PRODUCER,
    load_golden,
    redigest,
    reseal,
    rewrite_preamble,
    split,
)

from statemigrate._errors import SnapshotError
from statemigrate._snapshot import _format
from statemigrate._snapshot._chunks import compress_chunk
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._format import FLAG_AUTHENTICATED, assemble, open_snapshot
from statemigrate._snapshot._msgpack import pack_data

OTHER_KEY = b"not the golden key, also public"


def kind_of(blob: bytes, key: bytes | None) -> str:
    try:
        snapshot = open_snapshot(blob, key=key)
        for index in range(len(snapshot.header.sections)):
            snapshot.read_section(index)
    except SnapshotError as exc:
        return exc.kind
    return "accepted"


def forgeries() -> dict[str, bytes]:
    """What a writer without the key can make from the authenticated golden snapshot.

    Every xxh3 checksum is recomputed; only the MAC, which needs the key, is not.
    """
    blob, _ = load_golden("v1-mac")
    header, chunks = split(blob, key=GOLDEN_KEY)
    old_mac = blob[-32:]

    def keep_mac(forged: bytes) -> bytes:
        return forged[:-32] + old_mac

    newer = {**header, "generation": header["generation"] + 1}
    state = {**header, "meta": {"purpose": "forged"}}
    # The forger's own state for the first section, checksums and sizes all correct.
    raw = pack_data({"forged": True})
    stored = compress_chunk(raw, level=1)
    first = header["sections"][0]
    replaced_section = {
        **first, "raw_size": len(raw), "checksum": xxhash.xxh3_64_intdigest(raw),
        "chunks": [[int(stored.codec), len(raw), 0, 0]],
    }
    replaced = {**header, "sections": [replaced_section, *header["sections"][1:]]}
    swapped = [bytes(stored.data), *chunks[len(first["chunks"]) :]]
    return {
        "header field changed, old MAC kept": keep_mac(reseal(newer, chunks, key=OTHER_KEY)),
        "meta changed, old MAC kept": keep_mac(reseal(state, chunks, key=OTHER_KEY)),
        "section replaced, checksums recomputed": keep_mac(
            reseal(replaced, swapped, key=OTHER_KEY)
        ),
        "MAC zeroed": blob[:-32] + bytes(32),
        "MAC from another key": reseal(newer, chunks, key=OTHER_KEY),
        "MAC flag dropped, xxh3-128 digest": reseal(newer, chunks),
        "MAC flag dropped, same bytes": redigest(
            rewrite_preamble(blob, flags=0)[:-32] + old_mac[:16], key=None
        ),
        "xxh3-128 digest under the MAC flag": redigest(
            rewrite_preamble(blob, flags=FLAG_AUTHENTICATED), key=None
        )[:-16] + bytes(16),
    }


def test_the_authenticated_golden_opens_only_with_its_key() -> None:
    blob, _ = load_golden("v1-mac")
    assert kind_of(blob, GOLDEN_KEY) == "accepted"
    assert open_snapshot(blob, key=GOLDEN_KEY).authenticated
    assert kind_of(blob, None) == "auth"
    assert kind_of(blob, OTHER_KEY) == "auth"
    assert kind_of(blob, GOLDEN_KEY[:-1] + b"!") == "auth"


def test_a_key_refuses_unauthenticated_snapshots() -> None:
    blob, _ = load_golden("v1-small")
    assert kind_of(blob, None) == "accepted"
    assert kind_of(blob, GOLDEN_KEY) == "auth"


@pytest.mark.parametrize("name", sorted(forgeries()))
def test_forgeries_without_the_key_fail_authentication(name: str) -> None:
    assert kind_of(forgeries()[name], GOLDEN_KEY) == "auth"


@pytest.mark.parametrize("name", ["v1-mac", "v2-mac"])
def test_every_byte_changed_in_an_authenticated_snapshot_is_refused(name: str) -> None:
    """Each byte xor 0xff, opened with the key: refused, as auth or a structural error
    found before the MAC is checked (magic, preamble check, lengths)."""
    blob, _ = load_golden(name)
    data = bytearray(blob)
    kinds: dict[str, int] = {}
    for position in range(len(data)):
        data[position] ^= 0xFF
        kind = kind_of(bytes(data), GOLDEN_KEY)
        kinds[kind] = kinds.get(kind, 0) + 1
        data[position] ^= 0xFF
    assert sum(kinds.values()) == len(blob)
    assert "accepted" not in kinds
    assert set(kinds) <= {"auth", "corrupt", "not_snapshot"}
    assert kinds["auth"] >= len(blob) - 64  # all but the preamble and footer


def test_the_format_authenticates_but_does_not_order_snapshots() -> None:
    """Replaying an older, genuinely authenticated snapshot passes the format layer: the
    generation in its header is what the restore layer compares."""
    key = secrets.token_bytes(32)
    older, newer = (
        encode_snapshot([SectionInput("c", "i", 1, "", {"n": n})], producer=PRODUCER,
                        key=key, generation=n).to_bytes()
        for n in (1, 2)
    )
    assert open_snapshot(older, key=key).header.generation == 1
    assert open_snapshot(newer, key=key).header.generation == 2


def test_the_key_never_appears_in_the_snapshot() -> None:
    key = secrets.token_bytes(32)
    blob = encode_snapshot(
        [SectionInput("c", "i", 1, "", {"payload": "x" * 1000})], producer=PRODUCER, key=key
    ).to_bytes()
    assert key not in blob
    assert key[:8] not in blob


def test_negative_control_forgery_check_flags_a_reader_that_skips_the_mac(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_format, "_verify_digest", lambda buf, body_end, key: None)
    forged = forgeries()
    assert kind_of(forged["header field changed, old MAC kept"], GOLDEN_KEY) == "accepted"
    assert kind_of(forged["section replaced, checksums recomputed"], GOLDEN_KEY) == "accepted"


@pytest.mark.parametrize("version", [1, 2])
def test_assemble_with_a_key_writes_a_32_byte_mac_and_the_flag(version: int) -> None:
    header, chunks = split(load_golden("v1-small")[0])
    blob = b"".join(assemble(header, chunks, key=OTHER_KEY, version=version))
    assert int.from_bytes(blob[10:12], "little") == FLAG_AUTHENTICATED
    # The total length: in the preamble (version 1), in the footer before the 32-byte
    # MAC (version 2).
    total_at = 16 if version == 1 else len(blob) - 32 - 32 + 8
    assert int.from_bytes(blob[total_at : total_at + 8], "little") == len(blob)
    assert kind_of(blob, OTHER_KEY) == "accepted"
