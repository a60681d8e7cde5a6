"""FIX 4.4 messages built and parsed in compiled code: the bridge's hot path.

Why not QuickFIX's own message objects: from Python one order through SWIG field objects costs
~20 µs to build and ~15-50 µs to send through ``Session.send`` (measured here, 2-vCPU EPYC,
quickfix-ssl 1.15.1.post4; DESIGN.md has ~40-45 µs), against a budget of 5 µs per order. So the
bridge builds the complete wire bytes here (header, sequence number, body length, checksum) from
the orders-out table (``kernels/intents.py``) in one call per batch and writes them to the
session's socket itself; QuickFIX keeps the session (logon, heartbeats, test requests, resend
requests, sequence resets, the persisted sequence numbers). See ``bridges/fix/bridge.py``.

Host-only by design: these bytes go to a socket the host owns, so the functions compile with
``njit`` only (the GPU pipeline hands order rows back through a mapped ring and the host encodes
them here).

Conventions (the wire contract with ``replay/venue``):
- ClOrdID ``<prefix>-<n>``: ``n`` the bridge's message number, strictly increasing over every
  application message it sends; the prefix changes at every start, so ids are unique across
  restarts. ``msg_ids[n - 1]`` is the client order id (``I_ID``) the message carries.
- Price(4) integers go out as decimals with four places, quantities as integers.
- TransactTime(60) is the feed clock: the session date + ITCH ns since midnight, 9 decimals.
"""

from __future__ import annotations

import numpy as np
import llvmlite.binding as _llvm
from llvmlite import ir
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from kernels.intents import (
    E_ID, E_KIND, E_LOCATE, E_ORIG, E_PRICE, E_QTY, E_SIDE, E_TS, EX_ACK, EX_CANCEL_REJECT, EX_CANCELED,
    EX_FILL, EX_REJECT, EX_REPLACE_REJECT, EX_REPLACED, I_ID, I_KIND, I_LOCATE, I_ORIG, I_PRICE, I_QTY,
    I_SIDE, I_TIF, I_TS, KIND_CANCEL, KIND_NEW, KIND_REPLACE, SIDE_BUY, TIF_IOC,
)

# _nrt=False: nothing here allocates; with numba's runtime every array passed to a helper cost an
# atomic incref/decref pair (kernels/cpu.py). The inline threshold is kernels/cpu.py's (a
# process-wide LLVM option, set here too so that the codec's cached machine code does not depend on
# which module a process imported first): the helpers below inline into encode_orders instead of
# ~60 calls per message passing arrays as exploded arguments. With the BodyLength written in place
# (no move of the body) and the CheckSum loop on unsigned indices: one order encoded in a compiled
# loop (thread CPU time, shared 2-vCPU VM, 2026-12-06) 336-368 ns before, 192-196 ns after, the
# same bytes.
_jit = njit(cache=True, nogil=True, _nrt=False)
_llvm.set_option("hftbot", "-inline-threshold=3000")

SOH = 1
HEADER_ROOM = 16          # "8=FIX.4.4|9=" (12) + 3 BodyLength digits + SOH: where the body starts
MAX_MSG = 512             # one order message is < 300 bytes
S_STOCK = 0               # kernels/book.py: sym[locate, S_STOCK] = 8 ASCII bytes, big-endian int64

# counters (int64 slots of the bridge's ``cnt`` array)
C_SENT_NEW = 0
C_SENT_CANCEL = 1
C_SENT_REPLACE = 2
C_BAD_ROW = 3             # an orders-out row the encoder refused (unknown kind, no such order)
C_BAD_REPORT = 4          # an inbound application message that could not be parsed
C_UNKNOWN_CLORDID = 5     # a report for a ClOrdID this bridge never sent (another prefix/session)
C_REPORTS = 6
C_ILLEGAL = 7             # order-state transitions refused (kernel ``order_event``)
C_DUP_REPORT = 8          # a duplicate report (same ExecID seen: PossDup resend)
N_COUNTERS = 16

# order states (the bridge's own view, per ClOrdID message number)
ST_NONE = 0
ST_PENDING_NEW = 1
ST_NEW = 2
ST_PARTIAL = 3
ST_FILLED = 4
ST_PENDING_CANCEL = 5
ST_CANCELLED = 6
ST_REJECTED = 7
ST_PENDING_REPLACE = 8
ST_REPLACED = 9
STATE_NAMES = ("none", "pending_new", "new", "partially_filled", "filled", "pending_cancel", "cancelled",
               "rejected", "pending_replace", "replaced")
N_STATES = 10

# per-message-number order table: int64 [capacity, NO]
O_STATE = 0
O_ID = 1          # client order id (I_ID) of this request
O_ORIG_MSG = 2    # cancel / replace: message number of the order it acts on
O_KIND = 3        # KIND_NEW / KIND_CANCEL / KIND_REPLACE
O_QTY = 4
O_CUM = 5
O_LOCATE = 6
O_SIDE = 7
O_PRICE = 8
O_ACKED = 9       # acknowledgements seen (ack, reject, replace, cancel ack): must end at 1
O_T_FEED = 10     # feed timestamp (I_TS) of the intent
O_REJ = 11        # rejected: OrdRejReason(103) / CxlRejReason(102) from the venue
O_TIF = 12        # TIF_DAY / TIF_IOC (for a re-send)
O_SEQ = 13        # MsgSeqNum it went out with (a session-level Reject names it by RefSeqNum)
NO = 14
REJ_SESSION = 1000  # O_REJ of a request refused by the counterparty's session layer (35=3) or 35=j


@_jit
def _put(out, p, s):
    for i in range(s.shape[0]):
        out[p + i] = s[i]
    return p + s.shape[0]


@_jit
def _put_int(out, p, v):
    """Decimal digits of ``v`` (>= 0)."""
    if v < 0:
        out[p] = 45  # '-'
        p += 1
        v = -v
    n = 1
    t = v // 10
    while t > 0:
        n += 1
        t //= 10
    return _put_fixed(out, p, v, n)


@_jit
def _put_fixed(out, p, v, width):
    """``v`` as exactly ``width`` decimal digits (zero-padded)."""
    for i in range(width - 1, -1, -1):
        out[p + i] = 48 + v % 10
        v //= 10
    return p + width


@_jit
def _put_tag(out, p, tag):
    p = _put_int(out, p, tag)
    out[p] = 61  # '='
    return p + 1


@_jit
def _put_price(out, p, px):
    """Price(4) integer as ``123.4500``."""
    p = _put_int(out, p, px // 10000)
    out[p] = 46  # '.'
    return _put_fixed(out, p + 1, px % 10000, 4)


@_jit
def _put_clordid(out, p, prefix, n):
    p = _put(out, p, prefix)
    out[p] = 45  # '-'
    return _put_int(out, p + 1, n)


@_jit
def _put_stock(out, p, stk):
    """8 ASCII bytes packed big-endian in an int64 (``kernels.events.pack_ascii``), right-trimmed."""
    v = np.uint64(stk)
    n = 0
    for b in range(8):
        c = np.int64((v >> np.uint64(56 - 8 * b)) & np.uint64(0xFF))
        if c == 32 or c == 0:
            break
        out[p + n] = c
        n += 1
    if n == 0:
        out[p] = 63  # '?': the symbol was never seen on the feed (risk refuses such orders)
        n = 1
    return p + n


@_jit
def _put_hms(out, p, ns, digits):
    """ns since midnight as ``HH:MM:SS.fff...`` with ``digits`` fractional digits (3, 6 or 9)."""
    if ns < 0:
        ns = 0
    sec = ns // 1_000_000_000
    frac = ns % 1_000_000_000
    if sec >= 86400:
        sec = 86399
        frac = 999_999_999
    p = _put_fixed(out, p, sec // 3600, 2)
    out[p] = 58
    p = _put_fixed(out, p + 1, (sec // 60) % 60, 2)
    out[p] = 58
    p = _put_fixed(out, p + 1, sec % 60, 2)
    out[p] = 46
    scale = 1
    for _ in range(9 - digits):
        scale *= 10
    return _put_fixed(out, p + 1, frac // scale, digits)


@_jit
def civil_date(days):
    """Days since 1970-01-01 -> YYYYMMDD (H. Hinnant's civil_from_days)."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return y * 10000 + m * 100 + d


@_jit
def _put_field_int(out, p, tag, v):
    p = _put_tag(out, p, tag)
    p = _put_int(out, p, v)
    out[p] = SOH
    return p + 1


@_jit
def _put_field_char(out, p, tag, c):
    p = _put_tag(out, p, tag)
    out[p] = c
    out[p + 1] = SOH
    return p + 2


@_jit
def encode_orders(n, rows, seq0, wall_ns, msg0, fix):
    """Write ``n`` orders-out rows (``kernels/intents.py``) as FIX 4.4 messages into ``fix.out``.

    ``fix``: the encoder's tables, a ``kernels.state.FixArrays`` bundle (unpacked below).
    ``seq0``: MsgSeqNum of the first message; ``wall_ns``: UTC ns for SendingTime(52);
    ``date``: YYYYMMDD (uint8[8]) of the feed clock for TransactTime(60); ``msg0``: the message
    number of the first message (ClOrdID ``prefix-msg0``). ``msg_ids[m - 1]`` gets the client
    order id of message ``m``; ``msg_of`` is an open-addressing map client id -> message number
    (``id_put``/``id_get``) that resolves OrigClOrdID; ``ot`` the per-message order table (state
    PENDING_*). ``offs[k]`` gets the end offset of message ``k`` (``offs`` has n + 1 entries,
    offs[0] = 0). Returns the messages written; a row that cannot be encoded (unknown kind, a
    cancel of an order this bridge never sent) is skipped and counted by the caller via the
    ``C_BAD_ROW``: it gets ``offs[k + 1] == offs[k]``. ``out`` must hold ``n * MAX_MSG`` bytes.
    """
    sym, date, sender, target, prefix, msg_ids, msg_of, ot, out, offs, cnt, bad = fix
    day_ns = wall_ns % 86_400_000_000_000
    today = civil_date(wall_ns // 86_400_000_000_000)
    p = 0
    seq = seq0
    msg = msg0
    offs[0] = 0
    for k in range(n):
        kind = rows[k, I_KIND]
        orig_msg = 0
        if kind == KIND_CANCEL or kind == KIND_REPLACE:
            orig_msg = id_get(msg_of, rows[k, I_ORIG])
            if orig_msg <= 0:
                cnt[C_BAD_ROW] += 1
                offs[k + 1] = p
                continue
        elif kind != KIND_NEW:
            cnt[C_BAD_ROW] += 1
            offs[k + 1] = p
            continue
        start = p
        b = start + HEADER_ROOM
        q = b
        q = _put_tag(out, q, 35)
        out[q] = 68 if kind == KIND_NEW else (70 if kind == KIND_CANCEL else 71)  # D F G
        out[q + 1] = SOH
        q = _put_field_int(out, q + 2, 34, seq)
        q = _put_tag(out, q, 49)
        q = _put(out, q, sender)
        out[q] = SOH
        q = _put_tag(out, q + 1, 52)
        q = _put_fixed(out, q, today, 8)
        out[q] = 45
        q = _put_hms(out, q + 1, day_ns, 6)
        out[q] = SOH
        q = _put_tag(out, q + 1, 56)
        q = _put(out, q, target)
        out[q] = SOH
        q = _put_tag(out, q + 1, 11)
        q = _put_clordid(out, q, prefix, msg)
        out[q] = SOH
        q += 1
        if kind != KIND_NEW:
            q = _put_tag(out, q, 41)
            q = _put_clordid(out, q, prefix, orig_msg)
            out[q] = SOH
            q += 1
        if kind != KIND_CANCEL:
            q = _put_field_char(out, q, 21, 49)                      # HandlInst 1: automated
        if rows[k, I_QTY] > 0:
            q = _put_field_int(out, q, 38, rows[k, I_QTY])
        if kind != KIND_CANCEL:
            q = _put_field_char(out, q, 40, 50)                      # OrdType 2: limit
            q = _put_tag(out, q, 44)
            q = _put_price(out, q, rows[k, I_PRICE])
            out[q] = SOH
            q += 1
        q = _put_field_char(out, q, 54, 49 if rows[k, I_SIDE] == SIDE_BUY else 50)
        q = _put_tag(out, q, 55)
        loc = rows[k, I_LOCATE]
        stk = sym[loc, S_STOCK] if 0 <= loc < sym.shape[0] else 0
        q = _put_stock(out, q, stk)
        out[q] = SOH
        q += 1
        if kind != KIND_CANCEL:
            q = _put_field_char(out, q, 59, 51 if rows[k, I_TIF] == TIF_IOC else 48)
        q = _put_tag(out, q, 60)
        q = _put(out, q, date)
        out[q] = 45
        q = _put_hms(out, q + 1, rows[k, I_TS], 9)
        out[q] = SOH
        q += 1
        body = q - b
        # the header before the body: in place when BodyLength has 3 digits (100-999 bytes: every
        # order message with CompIDs of a few letters), else written and the body moved to it
        h = _put(out, start, _BEGIN)
        if 100 <= body <= 999:
            h = _put_fixed(out, h, body, 3)
            out[h] = SOH
            q = b + body
        else:
            h = _put_int(out, h, body)
            out[h] = SOH
            h += 1
            if h < b:
                for i in range(body):
                    out[h + i] = out[b + i]
            elif h > b:
                for i in range(body - 1, -1, -1):
                    out[h + i] = out[b + i]
            q = h + body
        # CheckSum: unsigned indices (no negative-index wrap-around per byte), so LLVM vectorizes it
        cs = 0
        for i in range(np.uint64(start), np.uint64(q)):
            cs += out[i]
        q = _put_tag(out, q, 10)
        q = _put_fixed(out, q, cs % 256, 3)
        out[q] = SOH
        p = q + 1
        offs[k + 1] = p
        # bookkeeping for the reports that will come back
        msg_ids[msg - 1] = rows[k, I_ID]
        id_put(msg_of, rows[k, I_ID], msg)
        r = msg - 1
        ot[r, O_STATE] = ST_PENDING_NEW if kind == KIND_NEW else (
            ST_PENDING_CANCEL if kind == KIND_CANCEL else ST_PENDING_REPLACE)
        ot[r, O_ID] = rows[k, I_ID]
        ot[r, O_ORIG_MSG] = orig_msg
        ot[r, O_KIND] = kind
        ot[r, O_QTY] = rows[k, I_QTY]
        ot[r, O_CUM] = 0
        ot[r, O_LOCATE] = loc
        ot[r, O_SIDE] = rows[k, I_SIDE]
        ot[r, O_PRICE] = rows[k, I_PRICE]
        ot[r, O_ACKED] = 0
        ot[r, O_T_FEED] = rows[k, I_TS]
        ot[r, O_TIF] = rows[k, I_TIF]
        ot[r, O_SEQ] = seq
        if kind == KIND_NEW:
            cnt[C_SENT_NEW] += 1
        elif kind == KIND_CANCEL:
            cnt[C_SENT_CANCEL] += 1
            order_event(ot, orig_msg - 1, ST_PENDING_CANCEL, cnt, bad)
        else:
            cnt[C_SENT_REPLACE] += 1
            order_event(ot, orig_msg - 1, ST_PENDING_REPLACE, cnt, bad)
        seq += 1
        msg += 1
    return msg - msg0


_BEGIN = np.frombuffer(b"8=FIX.4.4\x019=", np.uint8).copy()


# --- one call per send: encode + write(2), the tables passed as one pointer table ---------------
# From Python, numba's dispatcher unboxes every array of an argument: the 12 of a FixArrays bundle
# cost ~2 µs a call, a third of a single order's host cost (measured from Python, 2026-12-06, load
# 3.2 on the 2 vCPUs: an empty njit function taking (n, rows, seq0, wall_ns, msg0, FixArrays) p50
# 2.6 µs; taking (n, rows, seq0, msg0, fd, table) 0.6 µs). ``send_orders`` takes the bundle as one
# int64 table of addresses and shapes
# (``fix_table``) and rebuilds the views inside compiled code, reads the wall clock there, and
# writes the bytes with the write(2) system call; the caller keeps the arrays alive (the bridge
# allocates them once).

@intrinsic
def _as_ptr(typingctx, addr):
    """An int64 address as a ``void*`` (for ``numba.carray``)."""
    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)
    return types.voidptr(types.int64), codegen


@intrinsic
def sys_write(typingctx, fd, addr, n):
    """libc ``write(fd, addr, n)``: bytes written, or -1 (errno left for the caller to redo)."""
    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(64), [ir.IntType(32), cgutils.voidptr_t, ir.IntType(64)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "write")
        return builder.call(fn, [builder.trunc(args[0], ir.IntType(32)),
                                 builder.inttoptr(args[1], cgutils.voidptr_t), args[2]])
    return types.int64(types.int64, types.int64, types.int64), codegen


@_jit
def write_all(fd, addr, nbytes):
    """write(2) the ``nbytes`` at ``addr`` to ``fd`` until all are taken or a call takes none
    (error, full non-blocking socket): the bytes written (the caller finishes or reports)."""
    wr = 0
    while wr < nbytes:
        r = sys_write(fd, addr + wr, nbytes - wr)
        if r <= 0:
            break
        wr += r
    return wr


CLOCK_REALTIME = 0    # time.time_ns()
CLOCK_MONOTONIC = 1   # time.perf_counter_ns() / time.monotonic_ns() (CPython on Linux)


@intrinsic
def clock_ns(typingctx, clk):
    """libc ``clock_gettime(clk)`` in ns (the vDSO: no system call)."""
    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        ts_t = ir.LiteralStructType([i64, i64])
        ts = cgutils.alloca_once(builder, ts_t)
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32), ts_t.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        builder.call(fn, [builder.trunc(args[0], ir.IntType(32)), ts])
        sec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 0))
        nsec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 1))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)
    return types.int64(types.int64), codegen


# fix_table slots: the 12 arrays of a FixArrays bundle (address, dim 0, dim 1 each), then scalars
T_ARRAYS = 0
T_LAST_WRITE = 36     # CLOCK_MONOTONIC ns when the last write(2) returned (perf_counter_ns)
T_NBYTES = 37         # bytes encoded by the last call
T_WRITTEN = 38        # of them, written by the last call
NT = 40
_FIX_DTYPES = (np.int64, np.uint8, np.uint8, np.uint8, np.uint8, np.int64, np.int64, np.int64, np.uint8, np.int64,
               np.int64, np.int64)
_FIX_NDIM = (2, 1, 1, 1, 1, 1, 2, 2, 1, 1, 1, 2)

# send_orders' result: messages encoded, plus these flags << 32
SEND_SHORT = 1        # write(2) did not take every byte: the caller writes out[T_WRITTEN:T_NBYTES]
SEND_ILLEGAL = 2      # an order-state transition was refused (cnt[C_ILLEGAL] rose): log it


def fix_table(fix) -> np.ndarray:
    """The pointer table of a ``kernels.state.FixArrays`` bundle for ``send_orders``. The arrays
    must be C-contiguous with the encoder's dtypes, and must outlive every call using the table."""
    t = np.zeros(NT, np.int64)
    for i, (a, dt, nd) in enumerate(zip(fix, _FIX_DTYPES, _FIX_NDIM)):
        if a.dtype != dt or a.ndim != nd or not a.flags.c_contiguous or not a.flags.writeable:
            raise ValueError(f"FixArrays.{fix._fields[i]}: want a writeable C-contiguous {np.dtype(dt)} "
                             f"array of {nd} dimensions, got {a.dtype} {a.shape}")
        t[T_ARRAYS + 3 * i] = a.ctypes.data
        t[T_ARRAYS + 3 * i + 1] = a.shape[0]
        t[T_ARRAYS + 3 * i + 2] = a.shape[1] if nd == 2 else 1
    return t


@njit(cache=True, nogil=True)   # with numba's runtime: carray's views are built here (no allocation)
def send_orders(n, rows, seq0, msg0, fd, t):
    """Encode ``n`` orders-out rows as ``encode_orders`` does (SendingTime from the wall clock read
    here) into the bundle's ``out`` and write them to ``fd``; ``t``: ``fix_table`` of the bundle.
    Returns the messages encoded, with ``SEND_*`` flags in bits 32 and up; ``t[T_NBYTES]`` and
    ``t[T_WRITTEN]`` say what was written (a failed or short write stops: the caller writes the
    rest, or sees the error), ``t[T_LAST_WRITE]`` when."""
    cnt = carray(_as_ptr(t[30]), (t[31],), np.int64)
    fix = (carray(_as_ptr(t[0]), (t[1], t[2]), np.int64), carray(_as_ptr(t[3]), (t[4],), np.uint8),
           carray(_as_ptr(t[6]), (t[7],), np.uint8), carray(_as_ptr(t[9]), (t[10],), np.uint8),
           carray(_as_ptr(t[12]), (t[13],), np.uint8), carray(_as_ptr(t[15]), (t[16],), np.int64),
           carray(_as_ptr(t[18]), (t[19], t[20]), np.int64), carray(_as_ptr(t[21]), (t[22], t[23]), np.int64),
           carray(_as_ptr(t[24]), (t[25],), np.uint8), carray(_as_ptr(t[27]), (t[28],), np.int64), cnt,
           carray(_as_ptr(t[33]), (t[34], t[35]), np.int64))   # FixArrays' order; fix_table's slots
    illegal = cnt[C_ILLEGAL]
    k = encode_orders(n, rows, seq0, clock_ns(CLOCK_REALTIME), msg0, fix)
    nbytes = fix[9][n]
    wr = 0
    if k > 0:
        wr = write_all(fd, t[3 * 8], nbytes)
        t[T_LAST_WRITE] = clock_ns(CLOCK_MONOTONIC)
    t[T_NBYTES] = nbytes
    t[T_WRITTEN] = wr
    flags = 0
    if wr < nbytes and k > 0:
        flags |= SEND_SHORT
    if cnt[C_ILLEGAL] != illegal:
        flags |= SEND_ILLEGAL
    return k | (flags << 32)


# --- client id -> message number: open addressing, int64 keys > 0 --------------------------------
@_jit
def _slot(key, mask):
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64(h >> np.uint64(33)) & mask


@_jit
def id_put(tab, key, val):
    """``tab`` int64[cap, 2] (cap a power of two, at most half full); overwrite or insert."""
    mask = tab.shape[0] - 1
    i = _slot(key, mask)
    while tab[i, 0] != 0 and tab[i, 0] != key:
        i = (i + 1) & mask
    tab[i, 0] = key
    tab[i, 1] = val


@_jit
def id_get(tab, key):
    """The value for ``key``, or 0."""
    if key <= 0:
        return 0
    mask = tab.shape[0] - 1
    i = _slot(key, mask)
    while tab[i, 0] != 0:
        if tab[i, 0] == key:
            return tab[i, 1]
        i = (i + 1) & mask
    return 0


# --- inbound: ExecutionReport / OrderCancelReject -> execution events ----------------------------
@_jit
def _parse_int(buf, a, b):
    v = 0
    neg = False
    i = a
    if i < b and buf[i] == 45:
        neg = True
        i += 1
    if i >= b:
        return -1
    while i < b:
        c = buf[i]
        if c < 48 or c > 57:
            if c == 46:   # a decimal point: integer part only (quantities are whole shares)
                break
            return -1
        v = v * 10 + (c - 48)
        i += 1
    return -v if neg else v


@_jit
def _parse_price(buf, a, b):
    """Decimal text -> Price(4) integer, exactly (no float); -1 when malformed."""
    v = 0
    frac = -1
    i = a
    if i >= b:
        return -1
    while i < b:
        c = buf[i]
        if c == 46:
            if frac >= 0:
                return -1
            frac = 0
        elif 48 <= c <= 57:
            if frac >= 4:
                if c != 48:
                    return -1  # finer than Price(4)
            else:
                v = v * 10 + (c - 48)
                if frac >= 0:
                    frac += 1
        else:
            return -1
        i += 1
    if frac < 0:
        frac = 0
    for _ in range(4 - frac):
        v *= 10
    return v


@_jit
def _parse_clordid(buf, a, b, prefix):
    """Message number of ``prefix-<n>``, or 0 when the id is not ours."""
    m = prefix.shape[0]
    if b - a < m + 2:
        return 0
    for i in range(m):
        if buf[a + i] != prefix[i]:
            return 0
    if buf[a + m] != 45:
        return 0
    v = _parse_int(buf, a + m + 1, b)
    return v if v > 0 else 0


@_jit
def _parse_hms_ns(buf, a, b):
    """``YYYYMMDD-HH:MM:SS[.f...]`` -> ns since midnight; -1 when malformed."""
    if b - a < 17 or buf[a + 8] != 45:
        return -1
    h = _parse_int(buf, a + 9, a + 11)
    mi = _parse_int(buf, a + 12, a + 14)
    s = _parse_int(buf, a + 15, a + 17)
    if h < 0 or mi < 0 or s < 0:
        return -1
    ns = ((h * 60 + mi) * 60 + s) * 1_000_000_000
    if b > a + 18 and buf[a + 17] == 46:
        scale = 100_000_000
        for i in range(a + 18, b):
            c = buf[i]
            if c < 48 or c > 57:
                return -1
            ns += (c - 48) * scale
            scale //= 10
    return ns


@_jit
def order_event(ot, r, new_state, cnt, bad):
    """Move message ``r``'s order to ``new_state`` if the transition is legal; else count it and
    record (row, from, to) in ``bad`` (a ring of the latest refused transitions)."""
    cur = ot[r, O_STATE]
    if LEGAL[cur, new_state] == 0:
        k = cnt[C_ILLEGAL] % bad.shape[0]
        bad[k, 0] = r + 1
        bad[k, 1] = cur
        bad[k, 2] = new_state
        cnt[C_ILLEGAL] += 1
        return False
    ot[r, O_STATE] = new_state
    return True


def _legal() -> np.ndarray:
    t = np.zeros((N_STATES, N_STATES), np.int8)
    allow = {
        ST_PENDING_NEW: (ST_NEW, ST_REJECTED, ST_PARTIAL, ST_FILLED, ST_CANCELLED, ST_PENDING_CANCEL,
                         ST_PENDING_REPLACE),
        ST_NEW: (ST_PARTIAL, ST_FILLED, ST_PENDING_CANCEL, ST_PENDING_REPLACE, ST_CANCELLED, ST_REPLACED),
        ST_PARTIAL: (ST_PARTIAL, ST_FILLED, ST_PENDING_CANCEL, ST_PENDING_REPLACE, ST_CANCELLED, ST_REPLACED),
        ST_PENDING_CANCEL: (ST_CANCELLED, ST_PARTIAL, ST_FILLED, ST_NEW, ST_REJECTED),
        ST_PENDING_REPLACE: (ST_REPLACED, ST_PARTIAL, ST_FILLED, ST_NEW, ST_CANCELLED, ST_REJECTED),
    }
    for a, bs in allow.items():
        for b in bs:
            t[a, b] = 1
    return t


#: LEGAL[from, to] == 1 for an allowed order-state transition. One row per message number: a new
#: order goes pending_new -> new -> partially_filled* -> filled | cancelled (| rejected); while a
#: cancel or replace request for it is out it is pending_cancel / pending_replace, and goes back
#: to new / partially_filled when the request is refused, or to cancelled / replaced. A cancel
#: request's own row goes pending_cancel -> cancelled | rejected; a replace request's row
#: pending_replace -> new / partially_filled (it is now the order) | rejected. Terminal states
#: (filled, cancelled, rejected, replaced) go nowhere.
LEGAL = _legal()


@_jit
def _live_state(ot, r):
    """new or partially_filled, from the cumulative quantity."""
    return ST_PARTIAL if ot[r, O_CUM] > 0 else ST_NEW


@_jit
def parse_reports(buf, starts, ends, n, prefix, ot, n_msgs, ex, cnt, bad, fills):
    """Parse ``n`` inbound application messages (raw FIX in ``buf[starts[k]:ends[k]]``) into
    execution events ``ex`` (``kernels/intents.py`` E_* columns) for risk, and advance the
    per-message order states. ``fills`` int64[.., 4] receives (msg, qty, price, feed ts) of every
    fill. Returns (events written, fills written)."""
    ne = 0
    nf = 0
    for k in range(n):
        a = starts[k]
        b = ends[k]
        mtype = 0
        clo = 0
        orig = 0
        exec_type = 0
        last_qty = -1
        last_px = -1
        cum = -1
        ts = -1
        resp_to = 0
        ordstat = 0
        poss_dup = False
        rej = 99
        i = a
        ok = True
        while i < b:
            # tag
            t = 0
            while i < b and buf[i] != 61:
                c = buf[i]
                if c < 48 or c > 57:
                    ok = False
                    break
                t = t * 10 + (c - 48)
                i += 1
            if not ok or i >= b:
                ok = i >= b and t == 0
                break
            i += 1
            v0 = i
            while i < b and buf[i] != SOH:
                i += 1
            v1 = i
            i += 1
            if t == 35:
                mtype = buf[v0] if v1 - v0 == 1 else -1
            elif t == 11:
                clo = _parse_clordid(buf, v0, v1, prefix)
            elif t == 41:
                orig = _parse_clordid(buf, v0, v1, prefix)
            elif t == 150:
                exec_type = buf[v0]
            elif t == 39:
                ordstat = buf[v0]
            elif t == 32:
                last_qty = _parse_int(buf, v0, v1)
            elif t == 31:
                last_px = _parse_price(buf, v0, v1)
            elif t == 14:
                cum = _parse_int(buf, v0, v1)
            elif t == 60:
                ts = _parse_hms_ns(buf, v0, v1)
            elif t == 434:
                resp_to = buf[v0]
            elif t == 43:
                poss_dup = buf[v0] == 89
            elif t == 103 or t == 102:
                rej = _parse_int(buf, v0, v1)
        if not ok or (mtype != 56 and mtype != 57):  # '8' ExecutionReport, '9' OrderCancelReject
            cnt[C_BAD_REPORT] += 1
            continue
        if clo <= 0 or clo > n_msgs:
            cnt[C_UNKNOWN_CLORDID] += 1
            continue
        cnt[C_REPORTS] += 1
        r = clo - 1
        if ts < 0:
            ts = 0
        if mtype == 57:  # OrderCancelReject: the request failed, the order keeps working
            if orig <= 0 or orig > n_msgs:
                cnt[C_UNKNOWN_CLORDID] += 1
                continue
            o = orig - 1
            if ot[r, O_ACKED] > 0 and poss_dup:
                cnt[C_DUP_REPORT] += 1
                continue
            ot[r, O_ACKED] += 1
            ot[r, O_REJ] = rej
            order_event(ot, r, ST_REJECTED, cnt, bad)
            if ot[o, O_STATE] == ST_PENDING_CANCEL or ot[o, O_STATE] == ST_PENDING_REPLACE:
                order_event(ot, o, _live_state(ot, o), cnt, bad)
            ex[ne, E_KIND] = EX_REPLACE_REJECT if resp_to == 50 else EX_CANCEL_REJECT
            ex[ne, E_ID] = ot[r, O_ID] if resp_to == 50 else ot[o, O_ID]
            ex[ne, E_ORIG] = ot[o, O_ID]
            ex[ne, E_TS] = ts
            ne += 1
            continue
        if exec_type == 70:  # 'F' trade
            if last_qty <= 0 or last_px <= 0:
                cnt[C_BAD_REPORT] += 1
                continue
            if cum >= 0 and cum <= ot[r, O_CUM]:
                cnt[C_DUP_REPORT] += 1   # already counted (a resent report)
                continue
            ot[r, O_CUM] += last_qty
            full = ordstat == 50 or (ot[r, O_QTY] > 0 and ot[r, O_CUM] >= ot[r, O_QTY])
            if ot[r, O_STATE] == ST_PENDING_CANCEL or ot[r, O_STATE] == ST_PENDING_REPLACE:
                if full:
                    order_event(ot, r, ST_FILLED, cnt, bad)
            else:
                order_event(ot, r, ST_FILLED if full else ST_PARTIAL, cnt, bad)
            ex[ne, E_KIND] = EX_FILL
            ex[ne, E_ID] = ot[r, O_ID]
            ex[ne, E_LOCATE] = ot[r, O_LOCATE]
            ex[ne, E_SIDE] = ot[r, O_SIDE]
            ex[ne, E_QTY] = last_qty
            ex[ne, E_PRICE] = last_px
            ex[ne, E_TS] = ts
            ne += 1
            if nf < fills.shape[0]:
                fills[nf, 0] = clo
                fills[nf, 1] = last_qty
                fills[nf, 2] = last_px
                fills[nf, 3] = ts
                nf += 1
            continue
        if ot[r, O_ACKED] > 0 and (exec_type == 48 or exec_type == 56 or exec_type == 53):
            cnt[C_DUP_REPORT] += 1   # one acknowledgement per ClOrdID
            continue
        if exec_type == 48:  # '0' new
            ot[r, O_ACKED] += 1
            if ot[r, O_STATE] == ST_PENDING_NEW:
                order_event(ot, r, ST_NEW, cnt, bad)
            ex[ne, E_KIND] = EX_ACK
            ex[ne, E_ID] = ot[r, O_ID]
            ex[ne, E_TS] = ts
            ne += 1
        elif exec_type == 56:  # '8' rejected
            ot[r, O_ACKED] += 1
            ot[r, O_REJ] = rej
            order_event(ot, r, ST_REJECTED, cnt, bad)
            if ot[r, O_KIND] == KIND_NEW:
                ex[ne, E_KIND] = EX_REJECT
                ex[ne, E_ID] = ot[r, O_ID]
            else:
                o = ot[r, O_ORIG_MSG] - 1
                if o >= 0 and (ot[o, O_STATE] == ST_PENDING_CANCEL or ot[o, O_STATE] == ST_PENDING_REPLACE):
                    order_event(ot, o, _live_state(ot, o), cnt, bad)
                ex[ne, E_KIND] = EX_REPLACE_REJECT if ot[r, O_KIND] == KIND_REPLACE else EX_CANCEL_REJECT
                ex[ne, E_ID] = ot[r, O_ID] if ot[r, O_KIND] == KIND_REPLACE else (ot[o, O_ID] if o >= 0 else 0)
            ex[ne, E_TS] = ts
            ne += 1
        elif exec_type == 52 or exec_type == 67:  # '4' cancelled, 'C' expired
            if orig > 0 and orig <= n_msgs and ot[r, O_KIND] == KIND_CANCEL:
                # our cancel request done: the request row and the order it named
                o = orig - 1
                if ot[r, O_ACKED] > 0:
                    cnt[C_DUP_REPORT] += 1
                    continue
                ot[r, O_ACKED] += 1
                order_event(ot, r, ST_CANCELLED, cnt, bad)
                order_event(ot, o, ST_CANCELLED, cnt, bad)
                ex[ne, E_ID] = ot[o, O_ID]
            else:  # unsolicited: IOC remainder, venue cancel, cancel-on-disconnect
                if ot[r, O_STATE] == ST_CANCELLED:
                    cnt[C_DUP_REPORT] += 1
                    continue
                order_event(ot, r, ST_CANCELLED, cnt, bad)
                ex[ne, E_ID] = ot[r, O_ID]
            ex[ne, E_KIND] = EX_CANCELED
            ex[ne, E_TS] = ts
            ne += 1
        elif exec_type == 53:  # '5' replaced
            ot[r, O_ACKED] += 1
            o = orig - 1 if orig > 0 and orig <= n_msgs else ot[r, O_ORIG_MSG] - 1
            if o >= 0:
                ot[r, O_CUM] = ot[o, O_CUM]
                order_event(ot, o, ST_REPLACED, cnt, bad)
            order_event(ot, r, _live_state(ot, r), cnt, bad)
            ex[ne, E_KIND] = EX_REPLACED
            ex[ne, E_ID] = ot[r, O_ID]
            ex[ne, E_ORIG] = ot[o, O_ID] if o >= 0 else 0
            ex[ne, E_TS] = ts
            ne += 1
        elif exec_type == 54 or exec_type == 69 or exec_type == 73:  # pending cancel/replace, status
            pass
        else:
            cnt[C_BAD_REPORT] += 1
    return ne, nf
