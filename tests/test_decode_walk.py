"""The BinaryFILE record walk (``decode_binaryfile``) equals ``index_binaryfile`` + ``decode_batch``:
row for row (every column, the whole table), counter for counter, and where each call stops,
on the CPU and under the CUDA simulator; and the reader + ``DecodeStage`` take it for BinaryFILE
input with the same results as framing then decoding."""

from __future__ import annotations

import gzip
import struct
import types

import numpy as np
import pytest

from kernels import framing as F
from kernels import stats as S
from kernels.events import EventTable
from kernels.itch_spec import LENGTHS
from kernels.state import Events, Frames
from pipeline.stages import DecodeStage
from replay.capture import CaptureReader, RecordBatch
from tests.conftest import shared_data
from tests.packets import add_order, as_array, binaryfile, itch_msg


def _table(rows: int, seed: int) -> EventTable:
    """A table whose every column holds the same random bytes for the same seed: rows and slots
    a kernel leaves alone must stay as they were on both sides."""
    t = EventTable(rows)
    rng = np.random.default_rng(seed)
    for c in t.columns():
        c.view(np.uint8)[...] = rng.integers(0, 256, c.nbytes, dtype=np.uint8).reshape(c.view(np.uint8).shape)
    return t


#: the columns ``decode_binaryfile`` does not write (0 for a BinaryFILE: kept 0 by its caller)
WALK_LEAVES = ("sess", "rx")


def _index_then_decode(k, buf, pos, end, next_seq, max_msgs, table, stats):
    idx = (np.zeros(max_msgs, np.int64), np.zeros(max_msgs, np.int32), np.zeros(max_msgs, np.uint64),
           np.zeros(max_msgs, np.uint16), np.zeros(max_msgs, np.int64))
    n, pos, status = k.index_binaryfile(buf, pos, end, np.uint64(next_seq), *idx, stats)
    rows = k.decode_batch(Frames(buf, *idx), n, 0, Events(*table.columns()), stats)
    return int(rows), int(n), int(pos), int(status)


def assert_walk_equal(k, data: bytes, max_msgs: int, end: int | None = None, calls: int = 1000) -> int:
    """Call both ways from the start of ``data[:end]`` until either stops making progress; every
    call's result, the whole tables and the counters equal. Returns the records walked.

    The reference is the CPU's ``index_binaryfile`` + ``decode_batch`` (whole tables compared:
    skipped rows and unused slots included). On another backend its own index + decode is a
    second reference, compared on the rows written (its ``decode_batch`` decodes into fresh
    device columns: a skipped row or an unused ``aux``/``alpha`` slot is not left as it was)."""
    from kernels import cpu

    buf = as_array(data + b"\0" * 8)  # bytes past ``end``: a kernel must not read them as records
    end = len(data) if end is None else end
    t_ref, t_walk = _table(max_msgs, 7), _table(max_msgs, 7)
    # the walk leaves sess and rx alone (its caller keeps them 0): they must keep their bytes
    left_alone = {name: t_walk.cols[name].copy() for name in WALK_LEAVES}
    st_ref, st_walk = S.new_stats(), S.new_stats()
    other = k is not cpu
    if other:
        st_own, st_own_walk = S.new_stats(), S.new_stats()
    pos, next_seq, total = 0, 1, 0
    for _ in range(calls):
        ref = _index_then_decode(cpu, buf, pos, end, next_seq, max_msgs, t_ref, st_ref)
        got = k.decode_binaryfile(buf, pos, end, np.uint64(next_seq), max_msgs, Events(*t_walk.columns()),
                                  st_walk)
        assert tuple(int(x) for x in got) == ref
        for name, a, b in zip(t_ref.cols, t_ref.columns(), t_walk.columns()):
            if name in WALK_LEAVES:
                assert np.array_equal(b, left_alone[name]), f"the walk wrote {name}"
                assert not a[: ref[0]].any(), f"BinaryFILE rows with a {name}"
            else:
                assert np.array_equal(a, b), name
        assert np.array_equal(st_ref, st_walk), np.nonzero(st_ref != st_walk)
        rows, n, pos_next, status = ref
        if other:  # fresh tables each call: a reused table keeps unused slots of earlier rows
            t_own, t_own_walk = EventTable(max_msgs), EventTable(max_msgs)
            own = _index_then_decode(k, buf, pos, end, next_seq, max_msgs, t_own, st_own)
            ev = Events(*t_own_walk.columns())
            got = k.decode_binaryfile(buf, pos, end, np.uint64(next_seq), max_msgs, ev, st_own_walk)
            assert tuple(int(x) for x in got) == own == ref
            for name, a, b in zip(t_own.cols, t_own.columns(), t_own_walk.columns()):
                assert np.array_equal(a[:rows], b[:rows]), name
            assert np.array_equal(st_own, st_own_walk) and np.array_equal(st_own, st_ref)
        pos = pos_next
        next_seq += n
        total += n
        if n == 0 or status == F.EOS:
            break
    return total


# -- hand-built streams ----------------------------------------------------------------------------
def _rec(msg: bytes) -> bytes:
    return struct.pack(">H", len(msg)) + msg


EDGE = {
    "adds": binaryfile([add_order(i, side=b"BS"[i % 2 : i % 2 + 1]) for i in range(1, 12)]),
    "every_type": binaryfile([itch_msg(t, locate=i + 1, fill=(37 * i) & 0xFF)
                              for i, t in enumerate(sorted(LENGTHS))]),
    "end_of_session_then_garbage": binaryfile([add_order(1), add_order(2)]) + b"\x01\x02garbage",
    "end_of_session_first": b"\0\0" + binaryfile([add_order(1)]),
    "no_end_record": binaryfile([add_order(i) for i in range(1, 5)], end_of_session=False),
    "unknown_types": b"".join(_rec(m) for m in (b"Z" + bytes(20), add_order(1), b"\xff", b"z" * 36,
                                                add_order(2))) + b"\0\0",
    "short_and_long": b"".join(_rec(m) for m in (add_order(1)[:-1], add_order(2), add_order(3) + b"\0", b"A",
                                                 itch_msg("E")[:20], itch_msg("E"))) + b"\0\0",
    "one_byte_length_record": b"\x00\x01A" + _rec(add_order(5)),
    "empty": b"",
    "one_byte": b"\x00",
}


@pytest.mark.parametrize("case", sorted(EDGE))
def test_walk_equals_index_and_decode_on_edge_cases(backend, case):
    data = EDGE[case]
    for max_msgs in (1, 3, 64):
        assert_walk_equal(backend, data, max_msgs)


def test_walk_stops_where_framing_does_at_every_chunk_end(backend):
    """A record cut at the chunk end is left for the next chunk: the same position, status and
    rows for every possible ``end`` (inside the length, inside the message, at a boundary)."""
    from kernels import cpu

    if backend is cpu:
        data = EDGE["unknown_types"] + EDGE["adds"]
        ends = range(len(data) + 1)
    else:  # the simulator is slow: fewer ends
        data = EDGE["short_and_long"]
        ends = range(0, len(data) + 1, 7)
    for end in ends:
        assert_walk_equal(backend, data, 4, end=end)


def test_walk_equals_index_and_decode_on_a_generated_day(backend, tmp_path):
    from kernels import cpu
    from replay.generator import generate

    path = tmp_path / "day.itch"
    n_msgs = 20_000 if backend is cpu else 300
    generate(path, fmt="itch", n_messages=n_msgs, n_symbols=8, seed=5)
    data = path.read_bytes()
    for max_msgs in ((1 << 16, 4096, 333) if backend is cpu else (128,)):
        assert assert_walk_equal(backend, data, max_msgs) == n_msgs


def test_walk_equals_index_and_decode_on_real_data(backend):
    from kernels import cpu

    data = shared_data("itch50-nasdaq-01302019-head4096", "sample.itch").read_bytes()
    if backend is cpu:
        assert assert_walk_equal(backend, data, 1 << 16) > 50
        assert_walk_equal(backend, data, 17)
    else:  # the simulator walks one thread in Python: a prefix, and its cut last record
        assert assert_walk_equal(backend, data, 64, end=1500) > 10


# -- the reader and the decode stage ------------------------------------------------------------------
class _Counting:
    """The CPU backend, counting what ``index_binaryfile`` frames and refusing ``decode_batch``
    (proves the stage walked), or without the walk (``walk=False``: frame then decode)."""

    def __init__(self, walk: bool, strict: bool):
        from kernels import cpu

        self.cpu = cpu
        self.WALK_BINARYFILE = walk
        self.decode_binaryfile = cpu.decode_binaryfile
        self.indexed = 0
        self.strict = strict

    def index_binaryfile(self, *args):
        n, pos, status = self.cpu.index_binaryfile(*args)
        self.indexed += n
        return n, pos, status

    def decode_batch(self, *args):
        if self.strict:
            raise AssertionError("a BinaryFILE batch was decoded from a frame index")
        return self.cpu.decode_batch(*args)


def replay(path, walk: bool, touch: bool = False, **kw):
    """Every batch of ``path`` through ``CaptureReader`` and ``DecodeStage``: (records, stats,
    trailing bytes, error, backend). ``touch``: read each batch's frame index before decoding it."""
    k = _Counting(walk, strict=walk and not touch)
    reader = CaptureReader(path, backend=k, **kw)
    stage = DecodeStage(k, reader.batch_rows, reader.stats)
    recs = []
    for batch in reader:
        if touch:
            assert batch.n > 0 and batch.off[0] >= 0
        recs.append(stage(batch).to_records())
    out = np.concatenate(recs) if recs else np.zeros(0, EventTable(1).to_records().dtype)
    return out, reader.stats.copy(), reader.trailing_bytes, reader.error, k


def assert_replays_equal(path, **kw):
    walked = replay(path, True, **kw)
    framed = replay(path, False, **kw)
    touched = replay(path, True, touch=True, **kw)
    assert walked[4].indexed == 0  # no frame index written
    assert framed[4].indexed == touched[4].indexed == framed[1][S.MESSAGES_IN]
    for other in (framed, touched):
        assert np.array_equal(walked[0], other[0])
        assert np.array_equal(walked[1], other[1]), np.nonzero(walked[1] != other[1])
        assert walked[2:4] == other[2:4]
    return walked


@pytest.mark.parametrize("tail", ["end", "garbage", "cut", "none"])
def test_stage_walks_binaryfile_chunks_like_framing_then_decoding(tmp_path, tail):
    """Several chunks and batches (records cut at every chunk end), the end-of-session record,
    garbage after it, a file cut inside a record: the same rows, counters and reports."""
    from replay.generator import generate

    src = tmp_path / "day.itch"
    generate(src, fmt="itch", n_messages=70_000, n_symbols=16, seed=3)
    data = src.read_bytes()
    assert data.endswith(b"\0\0")
    body = data[:-2]
    data = {"end": data, "garbage": data + b"\x00\x05after", "cut": body[:-7], "none": body}[tail]
    path = tmp_path / "x.itch"
    path.write_bytes(data)
    recs, st, trailing, error, _ = assert_replays_equal(path, chunk_bytes=1 << 20, batch_rows=1 << 16)
    assert len(recs) == st[S.DECODED] > 60_000
    assert np.array_equal(recs["seq"], np.arange(1, len(recs) + 1, dtype=np.uint64))
    assert st[S.END_OF_SESSION] == (tail in ("end", "garbage"))
    p = 0  # bytes after the last complete record (after the end-of-session record)
    while p + 2 <= len(data) and 0 < struct.unpack_from(">H", data, p)[0] <= len(data) - p - 2:
        p += 2 + struct.unpack_from(">H", data, p)[0]
    assert trailing == len(data) - p - 2 * (tail in ("end", "garbage"))
    assert trailing == {"end": 0, "garbage": 7, "none": 0}.get(tail, trailing)
    assert (trailing > 0) == (tail in ("garbage", "cut"))
    assert (error is not None) == (tail == "cut")


def test_stage_walks_gzip_and_edge_cases(tmp_path):
    for name, data in EDGE.items():
        if len(data) < 3:
            continue
        path = tmp_path / f"{name}.itch"
        path.write_bytes(data)
        assert_replays_equal(path)
        gz = tmp_path / f"{name}.itch.gz"
        gz.write_bytes(gzip.compress(data))
        assert_replays_equal(gz)


def test_stage_walks_real_data():
    path = shared_data("itch50-nasdaq-01302019-head4096", "sample.itch")
    recs, st, trailing, error, _ = assert_replays_equal(path)
    assert len(recs) > 50 and trailing > 0 and error is not None  # the sample ends inside a record


def test_record_batch_reads_as_a_message_batch_after_the_walk(tmp_path):
    """A walked batch still hands out its frame index (framed again, counted once)."""
    from kernels import cpu

    path = tmp_path / "x.itch"
    path.write_bytes(EDGE["unknown_types"])
    reader = CaptureReader(path)
    stage = DecodeStage(cpu, reader.batch_rows, reader.stats)
    batches = 0
    for batch in reader:
        assert isinstance(batch, RecordBatch)
        t = stage(batch)
        assert batch.records() is None
        assert batch.n == 5 and t.n == 2
        assert list(batch.length[: batch.n]) == [21, 36, 1, 36, 36]
        assert list(batch.seq[: batch.n]) == [1, 2, 3, 4, 5]
        batches += 1
    assert batches == 1
    st = reader.stats
    assert (st[S.MESSAGES_IN], st[S.DECODED], st[S.UNKNOWN_TYPE], st[S.END_OF_SESSION]) == (5, 2, 3, 1)


def test_check_content_and_a_stage_without_the_walk_leave_binaryfile_as_before(tmp_path):
    """``check_content`` reads batches as MessageBatch (indexed), then iteration starts afresh and
    walks; a backend without ``WALK_BINARYFILE`` (the cuda edge) frames and decodes."""
    from kernels import cpu

    path = tmp_path / "x.itch"
    path.write_bytes(EDGE["every_type"])
    reader = CaptureReader(path)
    reader.check_content()
    assert reader.stats[S.MESSAGES_IN] == 0
    stage = DecodeStage(cpu, reader.batch_rows, reader.stats)
    n = sum(stage(b).n for b in reader)
    assert n == len(LENGTHS) == reader.stats[S.DECODED]
    no_walk = types.SimpleNamespace(decode_batch=cpu.decode_batch)
    assert not DecodeStage(no_walk, 4, S.new_stats()).walks and DecodeStage(cpu, 4, S.new_stats()).walks


def test_stage_zeroes_sess_and_rx_that_another_decode_wrote_before_it_walks(tmp_path):
    """The walk does not write ``sess`` / ``rx`` (a BinaryFILE has neither): once a fused step was
    handed the columns (``events()``) and left values there, the stage zeroes them before it walks,
    so the walked rows read as a BinaryFILE's (as framing then decoding writes them)."""
    from kernels import cpu

    path = tmp_path / "x.itch"
    path.write_bytes(EDGE["adds"])
    reader = CaptureReader(path)
    stage = DecodeStage(cpu, reader.batch_rows, reader.stats)
    first = next(iter(reader))
    assert stage(first).n == 11
    ev = stage.events()  # what a fused step writes into
    ev.sess[:] = 7
    ev.rx[:] = 123_456
    reader = CaptureReader(path)
    stage.stats = reader.stats
    t = stage(next(iter(reader)))
    assert t.n == 11 and not t.cols["sess"].any() and not t.cols["rx"].any()
    assert list(t.cols["seq"][:11]) == list(range(1, 12))
