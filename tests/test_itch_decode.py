"""ITCH 5.0 decode kernel against the specification table, on every backend."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import stats as S
from kernels.itch import MESSAGE_LENGTH
from kernels.itch_spec import LENGTHS, MESSAGES
from replay.render import event_fields
from tests.conftest import decode_blocks
from tests.itch_ref import spec_decode

ALL_TYPES = sorted(MESSAGES)


def random_block(rng: np.random.Generator, t: str) -> bytes:
    body = rng.integers(0, 256, LENGTHS[t] - 1, dtype=np.uint8).tobytes()
    return t.encode() + body


def test_spec_covers_every_itch50_message_type_of_the_2023_spec():
    assert set(MESSAGES) == set("SRHYLVWKJhAFEXCDUPQBINO")
    assert LENGTHS["O"] == 48 and LENGTHS["A"] == 36 and LENGTHS["R"] == 39 and LENGTHS["I"] == 50
    for t, (_name, length, fields) in MESSAGES.items():
        assert MESSAGE_LENGTH[ord(t)] == length
        covered = sorted((off, off + size) for _n, off, size, *_ in fields)
        pos = 1
        for a, b in covered:  # fields tile the message exactly after the type byte
            assert a == pos, (t, a, pos)
            pos = b
        assert pos == length, t


def test_random_messages_of_every_type_decode_to_the_spec_values(backend):
    rng = np.random.default_rng(5)
    blocks = [random_block(rng, t) for t in ALL_TYPES for _ in range(3)]
    recs, stats = decode_blocks(backend, blocks)
    assert len(recs) == len(blocks)
    assert stats[S.DECODED] == len(blocks) and stats[S.MESSAGES_IN] == len(blocks)
    for rec, block in zip(recs, blocks):
        assert event_fields(rec) == spec_decode(block)
        assert stats[S.TYPE_BASE + block[0]] == 3


def test_unknown_types_and_wrong_lengths_are_counted_and_skipped(backend):
    rng = np.random.default_rng(9)
    good = random_block(rng, "A")
    blocks = [b"Z" + bytes(20), good[:-1], good + b"\0", good, b"a" + bytes(35), random_block(rng, "O")]
    recs, stats = decode_blocks(backend, blocks)
    assert [chr(r["kind"]) for r in recs] == ["A", "O"]
    assert stats[S.UNKNOWN_TYPE] == 2
    assert stats[S.BAD_LENGTH] == 2
    assert stats[S.DECODED] == 2 and stats[S.MESSAGES_IN] == 6
    assert event_fields(recs[0]) == spec_decode(good)


def test_empty_block_is_counted_not_read(backend):
    recs, stats = decode_blocks(backend, [b""])
    assert len(recs) == 0 and stats[S.MOLD_EMPTY_MESSAGE] == 1


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ALL_TYPES), st.binary(min_size=60, max_size=60))
def test_any_bytes_of_a_known_type_decode_exactly_as_specified(t, noise):
    from kernels import cpu

    block = t.encode() + noise[: LENGTHS[t] - 1]
    recs, _ = decode_blocks(cpu, [block])
    assert event_fields(recs[0]) == spec_decode(block)


def test_framing_fields_are_carried_into_the_event_table():
    from kernels import cpu

    rng = np.random.default_rng(1)
    recs, _ = decode_blocks(cpu, [random_block(rng, "D"), random_block(rng, "E")])
    assert recs["seq"].tolist() == [1, 2]
    assert recs["sess"].tolist() == [0, 0]


def _slots_used(t: str) -> dict[str, set[int]]:
    used: dict[str, set[int]] = {"aux": set(), "alpha": set()}
    for _name, _off, size, _kind, col, slot in MESSAGES[t][2]:
        if col in used:
            used[col].update(range(slot, slot + (size if col == "alpha" else 1)))
    return used


def test_a_reused_table_gets_every_column_of_a_row_and_keeps_unused_slots(backend):
    """The event table is reused batch after batch: decode must write every one-dimensional
    column of a row (0 where the type has no such field) and every ``aux`` / ``alpha`` slot
    its type uses. Slots a type does not use must not be read (``kernels/events.py``): the CPU
    kernel leaves them as they were; the CUDA edge copies whole rows from fresh device columns,
    so there they are 0."""
    from kernels.events import EventTable
    from kernels.state import Events, Frames
    from tests.packets import lay_out

    rng = np.random.default_rng(13)
    types = [t for t in ALL_TYPES for _ in range(2)]
    rng.shuffle(types)
    blocks = [random_block(rng, t) for t in types]
    buf, off, length = lay_out(blocks)
    n = len(blocks)
    frames = Frames(buf, off, length.astype(np.int32), np.arange(1, n + 1, dtype=np.uint64),
                    np.full(n, 3, np.uint16), np.arange(n, dtype=np.int64) * 7)
    clean, dirty = EventTable(n), EventTable(n)
    for col in dirty.columns():
        col.view(np.uint8).reshape(-1)[:] = rng.integers(0, 256, col.nbytes, dtype=np.uint8)
    before = {name: col.copy() for name, col in dirty.cols.items()}
    for table in (clean, dirty):
        table.n = backend.decode_batch(frames, n, 0, Events(*table.columns()), S.new_stats())
    assert clean.n == dirty.n == n
    for name, col in clean.cols.items():
        if name not in ("aux", "alpha"):
            assert np.array_equal(col, dirty.cols[name]), name
    for i, t in enumerate(types):
        used = _slots_used(t)
        for name in ("aux", "alpha"):
            for s in range(clean.cols[name].shape[1]):
                kept = before[name][i, s] if backend.__name__ == "kernels.cpu" else 0
                want = clean.cols[name][i, s] if s in used[name] else kept
                assert dirty.cols[name][i, s] == want, (t, name, s)


def test_big_endian_readers_agree_at_every_offset_on_every_path():
    """``kernels/wire.py``: on the CPU a C-contiguous buffer is read with one load + bswap, a
    strided one with the byte-by-byte body, which is also what CUDA and the simulator (plain
    Python) run; all three give the big-endian value at every (unaligned) offset."""
    from numba import njit

    from kernels.wire import rd_u8, rd_u16, rd_u32, rd_u48, rd_u64

    @njit
    def read_all(b, out):
        for o in range(out.shape[0]):
            out[o, 0] = rd_u8(b, o)
            out[o, 1] = rd_u16(b, o)
            out[o, 2] = rd_u32(b, o)
            out[o, 3] = rd_u48(b, o)
            out[o, 4] = np.int64(rd_u64(b, o))

    raw = np.random.default_rng(3).integers(0, 256, 72, dtype=np.uint8)
    raw[:8] = 0xFF  # top bits set: no sign extension anywhere
    want = np.array([[int.from_bytes(raw[o:o + w].tobytes(), "big") for w in (1, 2, 4, 6, 8)]
                     for o in range(64)], dtype=np.uint64).view(np.int64)
    contiguous, strided = np.zeros((64, 5), np.int64), np.zeros((64, 5), np.int64)
    read_all(raw, contiguous)
    read_all(np.repeat(raw, 2)[::2], strided)
    python = np.array([[rd_u8(raw, o), rd_u16(raw, o), rd_u32(raw, o), rd_u48(raw, o),
                        np.int64(rd_u64(raw, o))] for o in range(64)], dtype=np.int64)
    assert np.array_equal(contiguous, want)
    assert np.array_equal(strided, want)
    assert np.array_equal(python, want)
