"""ITCH 5.0 decode: one message block -> one row of the event table.

Undecorated bodies compiled at the edge by ``kernels/cpu.py`` (``njit``) and ``kernels/gpu.py``
(``cuda.jit``). ``decode_message`` is the per-message body (one GPU thread each);
``decode_batch`` is the CPU loop that also compacts rows and counts outcomes.

Every read is guarded by the message length check: a block is decoded only when its length is
exactly the specification's length for its type (``kernels/itch_spec.py``), so no field read can
leave ``[off, off + length)``; the framing kernels guarantee that range lies inside ``buf``.

Where the time goes (issue 13: "decode at least 100M msg/s on one core"). Measured on the 2-vCPU
AMD EPYC (Zen 3) VM, 2026-12-07, the 10M-message generated day (A 40%, D 43%, U 9%, F 4%, E,
X, C, P: types random), CPU time (``time.process_time``) in paired alternated rounds, load
average 2.4-5.4 (other agents' jobs: wall time was 1.5-3x the CPU time and is not used here).
Decode alone (frame index built beforehand), ns/msg:

====================================================  =================  ==============
variant                                               2**18-row batches  4,096 rows
====================================================  =================  ==============
before: if-chain by type, byte-by-byte reads          37.7               30.9-31.6
if-chain, one-load reads, one store per column        --                 17.9
branch-free field table + one-load reads (this file)  26.8               14.3-15.2
store-only floor: the 15 one-dim columns, no decode   23.3               10.3
====================================================  =================  ==============

Instructions (``valgrind --tool=callgrind``, JIT code only, 1M messages, 4,096-row batches):
before 308 per message, this file 111, the store-only floor 37. Cold compile of ``decode_batch``
(fresh cache, process CPU time, 2 paired runs): 6.9-7.1 s before, 4.2-4.3 s now.

- Byte-by-byte reads: numba wraps every byte's index (``off + k < 0`` ? ``+ size``: a compare and
  a conditional move per byte; 36 bytes for an 'A') and LLVM cannot then merge the bytes into one
  load; the stores to the event table wrapped their (signed) row the same way (``sar``, ``and``
  per column). ``kernels/wire.py`` now reads with one unaligned load + ``bswap`` (``movbe``) on the
  CPU, and ``decode_message`` stores through an unsigned row: 31 -> 18 ns at 4,096 rows.
- Dispatch: the if-chain mispredicts on a random stream of types (A and D alone are 83%); the
  field table (``field_table``: per type, where the 8 bytes ending at each field start and a mask)
  writes the eight type-dependent columns branch-free: 18 -> 15 ns. Reference counting was
  already off (``_nrt=False``: no incref/decref in the loop); LLVM vectorises nothing here (one
  gather-like read per column per message).
- Tried, not kept: one ``[256, 16]`` table row per type (offsets and masks side by side, one base
  address instead of 16 constant addresses): 14.58 vs 14.57 ns, no gain. Software ``prefetchw``
  of every column 128 or 1,024 rows ahead (2**18-row batches, framing + decode): 31.95 -> 32.30
  and 32.41 -> 34.59 ns, worse: the stores are bandwidth-bound, not latency-bound.
- Stores per message: 15 one-dim columns, 98 bytes (kind 1, side 1, locate 2, tracking 2, sess 2,
  mpid 4, ts/rx/seq/ref/new_ref/shares/price/match/stock 8 each), plus the frame index the framing
  writes and decode reads back (off 8, length 4, seq 8, sess 2, rx 8: 30 bytes). Every column is
  read: ``apply_events`` reads kind, side, locate, ts, seq, ref, new_ref, shares, price, stock,
  aux, alpha; ``feed_health`` sess, seq, locate, ts; ``hftbot decode`` (``replay/render.py``)
  renders every field, tracking, mpid and match included, and rx; and a reused table must get 0
  in the columns a type lacks (``kernels/events.py``), so no store can be skipped.

The floor. ``python -m bench.decode`` (framing + decode, each contender a fresh process, 3
alternated rounds, load 3.8-4.7), CPU ns/msg:

===========================================  ==================  ==================
                                             2**18-row batches   16,384-row batches
===========================================  ==================  ==================
before (main): BinaryFILE framing + decode   42.1                33.4
this file                                    29.9                16.8
``ours.floor``: framing + stores only        28.5                10.1
itchcpp C++ parse, no output (peer)          49.4                56.4
===========================================  ==================  ==================

At 2**18-row batches (``CaptureReader``'s default) a batch's one-dim columns are 26 MB: the table
lives in L3/DRAM and framing + decode is within 5% of framing + storing alone: memory-bound, no
decode of this table layout at this batch size gets near 10 ns. At 16,384 rows (1.6 MB) framing
+ storing the table costs 10.1 ns/msg by itself: 100M msg/s is the floor of the current design,
not a target for its decode. Reaching it would take all of: batches that stay in L2, no frame
index (now: the record walk below), and fewer bytes per row (e.g. kind and side packed, ts and
rx as deltas).

Decoding straight from the record walk (``decode_binaryfile``, below): a BinaryFILE walk that
calls ``decode_message`` per record instead of writing the frame index (30 bytes a message
written, then read back), bit-identical rows and counts (``tests/test_decode_walk.py``).
``DecodeStage`` takes it for BinaryFILE chunks on the CPU (``replay/capture.py: RecordBatch``).
``python -m bench.decode`` (10M generated messages, each contender a fresh process, paired
alternated rounds (3 at 2**18 rows, 4 at 16,384) x 3 repetitions, 2026-12-07, load 1.3-1.9),
CPU ns/msg (wall within 0.1 ns):

============================================  ==================  ==================
                                              2**18-row batches   16,384-row batches
============================================  ==================  ==================
``ours.itch``: ``index_binaryfile`` + decode  29.6 (33.8M msg/s)  14.8 (67.1M msg/s)
``ours.walk``: ``decode_binaryfile``          18.0 (55.5M msg/s)  12.0 (83.4M msg/s)
``ours.floor``: framing + stores only         27.0                9.3
itchcpp C++ parse, no output (peer)           49.4                49.3
============================================  ==================  ==================

1.64x (2**18 rows) and 1.24x (16,384 rows) the throughput of index + decode in the same run.
Tried, not kept: the per-type counts taken after the walk, in a second pass over ``kind``,
instead of one ``stats`` increment per message: 11.12 -> 11.53 ns/msg (16,384 rows) and
18.35 -> 18.84 (2**18), slower.

The walk without the ``sess`` and ``rx`` stores (2026-12-07, second round). A BinaryFILE has no
session and no capture time, so the walk wrote the same two zeros (10 of the row's 98 bytes) into
every row; ``decode_message(..., sess_rx=False)`` now leaves both columns alone and
``DecodeStage`` keeps them 0 (it zeroes the rows another decode wrote there). Variants compiled
side by side in one process, alternated (16,384 rows, CPU ns/msg): 11.05 -> 10.10; then one
variant per fresh process, 4 each: 10.45-10.75 (one outlier 13.1) -> 9.62-9.85. Also tried: the
per-type count from the type byte instead of re-reading ``kind[row]``: -1 ns in one paired run,
nothing in the per-process runs, not kept. ``python -m bench.decode --only
itchcpp.scan,ours.itch,ours.walk`` (each contender a fresh process, best of 4 rounds x 3 at
16,384 rows, 3 x 3 at 2**18; quiet machine, load 0.6-0.8), CPU ns/msg:

============================================  ==================  ===================
                                              2**18-row batches   16,384-row batches
============================================  ==================  ===================
``ours.itch``: ``index_binaryfile`` + decode  29.8 (33.5M msg/s)  14.6 (68.7M msg/s)
``ours.walk``: ``decode_binaryfile``          11.7 (85.6M msg/s)  9.6 (104.0M msg/s)
itchcpp C++ parse, no output (peer)           48.9                55.4
============================================  ==================  ===================

So the walk decodes 100M msg/s on one core at 16,384-row batches (5.76x itchcpp's parse), and
the 2**18-row figure gained most (18.0 -> 11.7 ns: two fewer write streams through L3/DRAM).
Fresh processes of the same code spread by up to 1.5x here (9.7-14.6 ns at 16,384 rows in six
back-to-back runs; tried: the table's columns carved from one 2 MiB-aligned huge-page arena,
staggered by a line each: the same spread, so it is not where the table lands; without the
stagger, 12 ns every time: the columns' rows alias in the L1 sets): best of rounds, as above.
"""

from __future__ import annotations

import numpy as np
from numba.extending import register_jitable

from kernels import stats as S
from kernels.framing import EOS, MORE
from kernels.itch_spec import LENGTHS, MESSAGES
from kernels.wire import inline_cpu, rd_u8, rd_u16, rd_u32, rd_u64

_LEN = np.zeros(256, dtype=np.int64)
for _t, _l in LENGTHS.items():
    _LEN[ord(_t)] = _l
#: message length by type byte, 0 for unknown types (a compile-time constant in kernels)
MESSAGE_LENGTH = _LEN

OK = 0  # decode_message result for a decoded row; otherwise the stats slot of the reason


#: the one-dimensional columns the field table fills, in ``FIELD_START`` / ``FIELD_MASK`` order
FIELD_COLUMNS = ("side", "mpid", "ref", "new_ref", "shares", "price", "match", "stock")


def field_table():
    """``(start, mask, slots)`` from ``kernels/itch_spec.py``: for each type byte and each column
    of ``FIELD_COLUMNS``, ``start`` is where the 8 bytes ending at the field's last byte begin
    and ``mask`` keeps the field's bytes of that big-endian word (0 where the type does not carry
    the column, with ``start`` 0: a read inside every message, masked to 0); ``slots[t]`` is 1
    when the type also has ``aux`` / ``alpha`` fields (written by ``decode_slots``)."""
    start = np.zeros((256, len(FIELD_COLUMNS)), dtype=np.int64)
    mask = np.zeros((256, len(FIELD_COLUMNS)), dtype=np.uint64)
    slots = np.zeros(256, dtype=np.uint8)
    for t, (_name, length, fields) in MESSAGES.items():
        if length < 11:  # the header read (8 bytes from offset 3) and the masked reads from 0
            raise ValueError(f"ITCH type {t!r}: length {length} is shorter than its header")
        for _fname, off, size, _kind, col, _slot in fields:
            if col in FIELD_COLUMNS:
                c = FIELD_COLUMNS.index(col)
                if off + size - 8 < 0 or off + size > length or mask[ord(t), c] != 0:
                    raise ValueError(f"ITCH type {t!r}: field {col} at {off}+{size} cannot be read as "
                                     "the 8 bytes ending at it inside the message (or is repeated)")
                start[ord(t), c] = off + size - 8
                mask[ord(t), c] = np.uint64((1 << (8 * size)) - 1)
            elif col in ("aux", "alpha"):
                slots[ord(t)] = 1
    return start, mask, slots


#: compile-time constants of the kernels (``field_table``)
FIELD_START, FIELD_MASK, HAS_SLOTS = field_table()
TS_MASK = np.uint64(0xFFFFFFFFFFFF)


@register_jitable
def decode_slots(buf, o, t, r, aux, alpha):
    """The ``aux`` / ``alpha`` fields (types with ``HAS_SLOTS``: the rarely seen types and C,
    well under 1% of a day's messages), out of line. Slots a type does not use are not written."""
    if t == 67:  # 'C' executed with price: printable
        alpha[r, 0] = buf[o + 31]
    elif t == 81:  # 'Q' cross trade
        alpha[r, 0] = buf[o + 39]
    elif t == 83:  # 'S' system event
        alpha[r, 0] = buf[o + 11]
    elif t == 82:  # 'R' stock directory
        alpha[r, 0] = buf[o + 19]
        alpha[r, 1] = buf[o + 20]
        aux[r, 0] = rd_u32(buf, o + 21)
        alpha[r, 2] = buf[o + 25]
        alpha[r, 3] = buf[o + 26]
        alpha[r, 4] = buf[o + 27]
        alpha[r, 5] = buf[o + 28]
        alpha[r, 6] = buf[o + 29]
        alpha[r, 7] = buf[o + 30]
        alpha[r, 8] = buf[o + 31]
        alpha[r, 9] = buf[o + 32]
        alpha[r, 10] = buf[o + 33]
        aux[r, 1] = rd_u32(buf, o + 34)
        alpha[r, 11] = buf[o + 38]
    elif t == 72:  # 'H' trading action
        alpha[r, 0] = buf[o + 19]
        alpha[r, 1] = buf[o + 20]
        alpha[r, 2] = buf[o + 21]
        alpha[r, 3] = buf[o + 22]
        alpha[r, 4] = buf[o + 23]
        alpha[r, 5] = buf[o + 24]
    elif t == 89:  # 'Y' Reg SHO
        alpha[r, 0] = buf[o + 19]
    elif t == 76:  # 'L' market participant position
        alpha[r, 0] = buf[o + 23]
        alpha[r, 1] = buf[o + 24]
        alpha[r, 2] = buf[o + 25]
    elif t == 86:  # 'V' MWCB decline levels, Price(8)
        aux[r, 0] = np.int64(rd_u64(buf, o + 11))
        aux[r, 1] = np.int64(rd_u64(buf, o + 19))
        aux[r, 2] = np.int64(rd_u64(buf, o + 27))
    elif t == 87:  # 'W' MWCB status
        alpha[r, 0] = buf[o + 11]
    elif t == 75:  # 'K' IPO quoting period update
        aux[r, 0] = rd_u32(buf, o + 19)
        alpha[r, 0] = buf[o + 23]
    elif t == 74:  # 'J' LULD auction collar
        aux[r, 0] = rd_u32(buf, o + 23)
        aux[r, 1] = rd_u32(buf, o + 27)
        aux[r, 2] = rd_u32(buf, o + 31)
    elif t == 104:  # 'h' operational halt
        alpha[r, 0] = buf[o + 19]
        alpha[r, 1] = buf[o + 20]
    elif t == 73:  # 'I' NOII
        aux[r, 0] = np.int64(rd_u64(buf, o + 11))
        alpha[r, 0] = buf[o + 27]
        aux[r, 1] = rd_u32(buf, o + 36)
        aux[r, 2] = rd_u32(buf, o + 40)
        alpha[r, 1] = buf[o + 48]
        alpha[r, 2] = buf[o + 49]
    elif t == 78:  # 'N' retail interest
        alpha[r, 0] = buf[o + 19]
    elif t == 79:  # 'O' direct listing with capital raise
        alpha[r, 0] = buf[o + 19]
        aux[r, 0] = rd_u32(buf, o + 20)
        aux[r, 1] = rd_u32(buf, o + 24)
        aux[r, 2] = np.int64(rd_u64(buf, o + 32))
        aux[r, 3] = rd_u32(buf, o + 40)
        aux[r, 4] = rd_u32(buf, o + 44)


@inline_cpu
def decode_message(buf, off, length, mseq, msess, mrx, row,
                   kind, side, locate, tracking, sess, mpid, ts, rx, seq, ref, new_ref, shares,
                   price, match, stock, aux, alpha, sess_rx):
    """Decode the ITCH block ``buf[off:off+length]`` into ``row``.

    Returns ``OK`` or the stats slot of the reason it was skipped (unknown type, bad length);
    a skipped row is left with ``kind = 0``. ``sess_rx``: store ``msess`` and ``mrx`` in the
    ``sess`` and ``rx`` columns; False leaves both columns alone (the BinaryFILE walk: a file has
    neither, and its caller keeps them 0; a literal, so the stores are compiled out).

    Branch-free for the 1-D columns: every type writes all eight ``FIELD_COLUMNS`` from the
    field table (one 8-byte big-endian read ending at the field, masked; 0 where the type has
    no such field), so a random stream of types costs no mispredicted dispatch. Every read lies
    inside ``[off, off + length)``: ``field_table`` checks it for every type at import, and a
    block is decoded only when its length is its type's.
    """
    if length < 1:
        kind[row] = 0
        return S.MOLD_EMPTY_MESSAGE
    t = rd_u8(buf, off)
    expected = MESSAGE_LENGTH[t]
    if length != expected:
        kind[row] = 0
        if expected == 0:
            return S.UNKNOWN_TYPE
        return S.BAD_LENGTH
    r = np.uint64(row)  # unsigned: no negative-index wraparound on the stores
    kind[r] = t
    locate[r] = rd_u16(buf, off + 1)
    h = rd_u64(buf, off + 3)  # tracking (2 bytes) + timestamp (6 bytes)
    tracking[r] = h >> np.uint64(48)
    ts[r] = np.int64(h & TS_MASK)
    seq[r] = mseq
    if sess_rx:
        sess[r] = msess
        rx[r] = mrx
    side[r] = rd_u64(buf, off + FIELD_START[t, 0]) & FIELD_MASK[t, 0]
    mpid[r] = rd_u64(buf, off + FIELD_START[t, 1]) & FIELD_MASK[t, 1]
    ref[r] = rd_u64(buf, off + FIELD_START[t, 2]) & FIELD_MASK[t, 2]
    new_ref[r] = rd_u64(buf, off + FIELD_START[t, 3]) & FIELD_MASK[t, 3]
    shares[r] = np.int64(rd_u64(buf, off + FIELD_START[t, 4]) & FIELD_MASK[t, 4])
    price[r] = np.int64(rd_u64(buf, off + FIELD_START[t, 5]) & FIELD_MASK[t, 5])
    match[r] = rd_u64(buf, off + FIELD_START[t, 6]) & FIELD_MASK[t, 6]
    stock[r] = rd_u64(buf, off + FIELD_START[t, 7]) & FIELD_MASK[t, 7]
    if HAS_SLOTS[t]:
        decode_slots(buf, off, t, r, aux, alpha)
    return OK


def decode_batch(frames, n, start_row, ev, stats):
    """Decode the first ``n`` message blocks of ``frames`` into rows ``start_row...`` of ``ev``,
    skipping and counting bad ones.

    Bundles (``kernels/state.py``): ``frames`` Frames (the bytes and one descriptor per message),
    ``ev`` Events (the event table's columns). Returns the row after the last one written.
    Counts ``stats[MESSAGES_IN]``, ``DECODED``, per-type counts at ``stats[TYPE_BASE + type]``
    and the reason of every skipped block.
    """
    buf, msg_off, msg_len, msg_seq, msg_sess, msg_rx = frames
    kind, side, locate, tracking, sess, mpid, ts, rx, seq, ref, new_ref, shares, price, match, stock, aux, alpha = ev
    row = start_row
    for i in range(n):
        r = decode_message(buf, msg_off[i], msg_len[i], msg_seq[i], msg_sess[i], msg_rx[i], row,
                           kind, side, locate, tracking, sess, mpid, ts, rx, seq, ref, new_ref,
                           shares, price, match, stock, aux, alpha, True)
        if r == OK:
            stats[S.TYPE_BASE + kind[row]] += 1
            row += 1
        else:
            stats[r] += 1
    stats[S.MESSAGES_IN] += n
    stats[S.DECODED] += row - start_row
    return row


def decode_binaryfile(buf, pos, end, next_seq, max_msgs, ev, stats):
    """Walk the Nasdaq BinaryFILE records of ``buf[pos:end]`` (2-byte big-endian length, then the
    message; a zero length ends the session) and decode each straight into rows ``0...`` of
    ``ev`` (Events): ``index_binaryfile`` + ``decode_batch`` in one pass, without the frame
    index between them. The same rows, counters and stopping points as the two of them: at most
    ``max_msgs`` records (the frame index's rows), messages numbered from ``next_seq``, a record
    cut by ``end`` left for the next call, ``stats[END_OF_SESSION]`` at the zero-length record,
    then ``stats[MESSAGES_IN]``, ``DECODED``, per-type counts and the reason of every skipped
    block as ``decode_batch`` counts them. ``max_msgs`` must not exceed the table's rows.

    ``sess`` and ``rx`` are not written: a BinaryFILE has no session and no capture time, and the
    caller keeps both columns 0 (``DecodeStage`` zeroes the rows another decode wrote there).
    The two stores were 1 ns of ~10.5 a message at 16,384 rows (module docstring).

    Returns ``(rows written, records walked, new_pos, status)``; ``status`` as
    ``index_binaryfile``'s (``EOS`` after the end-of-session record, else ``MORE``).
    """
    kind, side, locate, tracking, sess, mpid, ts, rx, seq, ref, new_ref, shares, price, match, stock, aux, alpha = ev
    row = 0
    n = 0
    status = MORE
    while n < max_msgs:
        if pos + 2 > end:
            break
        blen = rd_u16(buf, pos)
        if blen == 0:
            stats[S.END_OF_SESSION] += 1
            pos += 2
            status = EOS
            break
        if pos + 2 + blen > end:
            break
        r = decode_message(buf, pos + 2, blen, next_seq + np.uint64(n), 0, 0, row,
                           kind, side, locate, tracking, sess, mpid, ts, rx, seq, ref, new_ref,
                           shares, price, match, stock, aux, alpha, False)
        if r == OK:
            stats[S.TYPE_BASE + kind[row]] += 1
            row += 1
        else:
            stats[r] += 1
        n += 1
        pos += 2 + blen
    stats[S.MESSAGES_IN] += n
    stats[S.DECODED] += row
    return row, n, pos, status
