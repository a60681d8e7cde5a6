"""Fuzz: random and mutated captures never crash, never read out of bounds, and every byte and
message is accounted for by reason.

Out-of-bounds reads are caught by running the undecorated kernel bodies as plain Python over a
buffer that raises on any index outside it (negative ones included); the compiled CPU kernels
must then give exactly the same records and counters.
"""

from __future__ import annotations

import types

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels import cpu, framing, itch
from kernels import stats as S
from kernels.itch_spec import LENGTHS
from kernels.state import Events, Frames
from replay.capture import MIN_CHUNK, CaptureReader
from replay.report import truncation_line
from tests.packets import binaryfile, itch_msg, mold, pcap_bytes, pcapng_bytes, udp_frame


class Guarded(np.ndarray):
    """A uint8 buffer whose scalar reads fail outside [0, len)."""

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)) and not 0 <= idx < self.shape[0]:
            raise IndexError(f"kernel read buf[{idx}] outside [0, {self.shape[0]})")
        return super().__getitem__(idx)


def _guard(fn):
    def run(buf, *args):
        return fn(buf.view(Guarded), *args)
    return run


def _guard_bundle(fn):
    """``_guard`` for a kernel that takes its buffer in a bundle (first argument: ``Frames``,
    ``Payloads``)."""
    def run(bundle, *args):
        return fn(bundle._replace(buf=bundle.buf.view(Guarded)), *args)
    return run


# The kernel bodies as plain Python, reading through the guard.
PYTHON_BODIES = types.SimpleNamespace(
    index_pcap=_guard(framing.index_pcap), index_pcapng=_guard(framing.index_pcapng),
    index_binaryfile=_guard(framing.index_binaryfile), split_mold=_guard_bundle(framing.split_mold),
    decode_batch=_guard_bundle(itch.decode_batch),
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])
types_ = st.sampled_from(sorted(LENGTHS))
messages = st.lists(st.tuples(types_, st.integers(0, 255)), min_size=0, max_size=12).map(
    lambda xs: [itch_msg(t, locate=i + 1, fill=f) for i, (t, f) in enumerate(xs)])


def run_both(path):
    """Decode with the guarded Python bodies and the compiled CPU kernels; return both."""
    out = []
    for k in (PYTHON_BODIES, cpu):
        reader = CaptureReader(path, backend=k, chunk_bytes=MIN_CHUNK)
        from kernels.events import EventTable

        table = EventTable(reader.batch_rows)
        recs = []
        for b in reader:
            table.n = k.decode_batch(Frames(b.buf, b.off, b.length, b.seq, b.sess, b.rx), b.n, 0,
                                     Events(*table.columns()), reader.stats)
            recs.append(table.to_records())
        out.append((np.concatenate(recs) if recs else None, reader))
    (r_py, rd_py), (r_cpu, rd_cpu) = out
    assert np.array_equal(rd_py.stats, rd_cpu.stats)
    assert (r_py is None and r_cpu is None) or np.array_equal(r_py, r_cpu)
    assert rd_py.trailing_bytes == rd_cpu.trailing_bytes
    return rd_cpu


def assert_messages_accounted(st_):
    assert st_[S.MESSAGES_IN] == (st_[S.DECODED] + st_[S.UNKNOWN_TYPE] + st_[S.BAD_LENGTH])
    assert st_[S.DECODED] == st_[S.TYPE_BASE:S.TYPE_BASE + 256].sum()


def mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for pos, val in flips:
        if b:
            b[pos % len(b)] = val
    if cut is not None and b:
        b = b[: cut % (len(b) + 1)]
    return bytes(b)


mutations = st.tuples(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
                      st.one_of(st.none(), st.integers(0, 10**6)))


@SETTINGS
@given(st.lists(messages, min_size=1, max_size=5), mutations, st.booleans())
def test_mutated_pcap_and_pcapng_never_crash_and_account_for_everything(tmp_path, packets, mut, ng):
    frames = [udp_frame(mold(b"FUZZ", 1 + 12 * i, m)) for i, m in enumerate(packets)]
    data = pcapng_bytes(frames) if ng else pcap_bytes(frames)
    path = tmp_path / "m.cap"
    path.write_bytes(mutate(data, *mut))
    if path.stat().st_size < 3:
        return
    reader = run_both(path)
    s = reader.stats
    assert_messages_accounted(s)
    if reader.format == "pcap":
        skipped = sum(int(s[c]) for c in (S.FILTERED, S.NON_IPV4, S.IP_FRAGMENT, S.BAD_IP, S.BAD_UDP,
                                          S.SNAP_TRUNCATED, S.BAD_LINKTYPE))
        assert s[S.PACKETS] == s[S.UDP_ACCEPTED] + skipped
    assert s[S.MOLD_PACKETS] == s[S.UDP_ACCEPTED]


@SETTINGS
@given(st.binary(min_size=3, max_size=3000), st.sampled_from([b"", b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a"]))
def test_random_bytes_never_crash(tmp_path, noise, magic):
    path = tmp_path / "r.bin"
    path.write_bytes(magic + noise)
    reader = run_both(path)
    assert_messages_accounted(reader.stats)


@SETTINGS
@given(messages, mutations)
def test_mutated_binaryfile_accounts_for_every_byte(tmp_path, msgs, mut):
    path = tmp_path / "m.itch"
    path.write_bytes(mutate(binaryfile(msgs), *mut))
    size = path.stat().st_size
    if size < 3:
        return
    reader = run_both(path)
    s = reader.stats
    assert_messages_accounted(s)
    # every byte is a framed message, the end-of-session record, or counted as trailing/garbage
    framed = 2 * int(s[S.MESSAGES_IN]) + 2 * int(s[S.END_OF_SESSION])
    data = path.read_bytes()
    pos = 0
    for _ in range(int(s[S.MESSAGES_IN])):
        pos += 2 + int.from_bytes(data[pos:pos + 2], "big")
    assert pos + 2 * int(s[S.END_OF_SESSION]) + reader.trailing_bytes == size
    assert framed <= size


@SETTINGS
@given(st.lists(types_, min_size=1, max_size=40), st.integers(0, 10**6))
def test_truncated_binaryfile_reports_exactly_n_messages_and_k_trailing_bytes(tmp_path, kinds, cut_at):
    msgs = [itch_msg(t, locate=i + 1) for i, t in enumerate(kinds)]
    data = binaryfile(msgs, end_of_session=False)
    cut = cut_at % (len(data) + 1)
    if cut < 3:
        return
    path = tmp_path / "t.itch"
    path.write_bytes(data[:cut])
    complete, end = 0, 0
    for m in msgs:
        if end + 2 + len(m) > cut:
            break
        end += 2 + len(m)
        complete += 1
    reader = run_both(path)
    assert reader.stats[S.DECODED] == complete
    assert reader.trailing_bytes == cut - end
    line = truncation_line(int(reader.stats[S.DECODED]), reader.trailing_bytes)
    assert line == f"{complete} messages decoded, {cut - end} trailing bytes"


def test_the_guard_catches_out_of_range_reads():
    """The fuzz tests above mean something only if the guard really fires."""
    import pytest

    buf = np.zeros(10, np.uint8)
    bad_off = np.array([8], np.int64)  # a 36-byte 'A' block cannot start at byte 8 of 10
    buf[8] = ord("A")
    from kernels.events import EventTable

    t = EventTable(1)
    length = np.array([36], np.int32)
    z = np.zeros(1, np.uint64), np.zeros(1, np.uint16), np.zeros(1, np.int64)
    with pytest.raises(IndexError, match="outside"):
        PYTHON_BODIES.decode_batch(Frames(buf, bad_off, length, *z), 1, 0, Events(*t.columns()), S.new_stats())
    with pytest.raises(IndexError, match="outside"):
        buf.view(Guarded)[-1]


def test_make_fuzz_harness_accounts_for_every_byte_and_catches_disagreements():
    """`make fuzz` (bench/fuzz.py) in small: a few batches of each kind, every byte accounted
    for and the kernels' counters matched; and its byte walk does notice a wrong answer."""
    from bench import fuzz

    pool = fuzz.Pool(20_000, seed=5)
    fz = fuzz.Fuzzer(pool, 64)
    rng = np.random.default_rng(5)
    for b in range(12):
        (fz.binaryfile_batch if b % 4 == 3 else fz.pcap_batch)(np.random.default_rng(int(rng.integers(2**63))))
    assert fz.batches == 12 and fz.bytes_in == int(fz.acct.sum()) > 0
    assert fz.acct[fuzz.A_DECODED] > 0 and fz.acct[fuzz.A_FRAMING] > 0
    assert "(every byte accounted for)" in fuzz.report(fz, 1.0, 0.0)
    # kernels that claim nothing was framed, though three good records are there: the walk disagrees
    buf = np.concatenate([pool.header, pool.rec[pool.rec_start[0]:pool.rec_start[3]]])
    z = np.zeros(8, np.int64)
    acct, chk, types = np.zeros(fuzz.N_ACCT, np.int64), np.zeros(16, np.int64), np.zeros(256, np.int64)
    err = fuzz._account_pcap(buf, len(buf), pool.little, pool.linktype, 24, z, z, 0, z, z.astype(np.int32), 0,
                             types, acct, chk)
    assert err != 0


@SETTINGS
@given(st.integers(0, 10**6), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=3))
def test_cut_or_flipped_gzip_never_raises_and_keeps_what_came_before(tmp_path, cut_at, flips):
    """A gzip-compressed BinaryFILE cut anywhere and/or with bytes overwritten: the reader either
    refuses it up front (nothing readable) or reads up to the damage; a cut alone loses nothing
    that a gzip reader could still get out."""
    import gzip
    import zlib

    from replay.capture import COMPRESSED_DAMAGE, CaptureError

    msgs = [itch_msg(t, locate=i + 1) for i, t in enumerate(sorted(LENGTHS) * 20)]
    z = gzip.compress(binaryfile(msgs, end_of_session=False))
    data = mutate(z, flips, cut_at % (len(z) + 1))
    path = tmp_path / "x.itch.gz"
    path.write_bytes(data)
    if len(data) < 3:
        return
    try:
        reader = CaptureReader(path, chunk_bytes=MIN_CHUNK)
    except CaptureError as exc:
        assert "nothing could be read" in str(exc) or "too short" in str(exc)
        return
    decode = cpu.decode_batch
    from kernels.events import EventTable

    table = EventTable(reader.batch_rows)
    for b in reader:
        decode(Frames(b.buf, b.off, b.length, b.seq, b.sess, b.rx), b.n, 0, Events(*table.columns()), reader.stats)
    assert_messages_accounted(reader.stats)
    damaged = data != z
    assert (reader.error is not None and reader.error.startswith(COMPRESSED_DAMAGE)) == (reader.damage_at is not None)
    if not flips and damaged:  # cut only: every record a gzip reader can still decompress is decoded
        prefix = zlib.decompressobj(31).decompress(data)
        pos = complete = 0
        while pos + 2 <= len(prefix) and pos + 2 + int.from_bytes(prefix[pos:pos + 2], "big") <= len(prefix):
            pos += 2 + int.from_bytes(prefix[pos:pos + 2], "big")
            complete += 1
        assert reader.stats[S.DECODED] == complete
        assert reader.damage_at == len(data) and reader.trailing_bytes == len(prefix) - pos
