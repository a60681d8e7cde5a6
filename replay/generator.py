"""Deterministic synthetic Nasdaq TotalView-ITCH 5.0 feed: a trading day in miniature.

``generate(path, fmt="pcap"|"itch", n_messages=..., n_symbols=..., seed=...)`` writes a file
that the replay readers take like a real capture; the same arguments give byte-identical files.

What the feed holds, in order: System Event 'O'; one Stock Directory 'R' per symbol (locate
1..N: real Nasdaq tickers first, then ``SYM0042``-style names); a Stock Trading Action 'H' 'T'
per symbol; System Events 'S' and 'Q'; order flow; System Events 'M', 'E', 'C'. Setup messages
are stamped just before 09:30:00, 'Q' at 09:30:00 and the flow follows it (gaps of ~20 ns to a
few µs, strictly increasing), so a capture replays without hours of idle time.

Order flow per message, with the shares of a real Nasdaq day: add 'A' 40% / 'F' 4%, delete 'D'
~43%, replace 'U' 9%, executions 'E' 1.8% / 'C' 0.2%, partial cancel 'X' 1%, non-cross trade
'P' 0.5%, and rare halts ('H' state 'H', later 'T' for the same symbol). Symbols are drawn with
Zipf-like weights (the first tickers are the busiest). Each symbol's live-order count is steered
around a target (adds lean up below it, deletes above it), so after a short ramp the book is
in a steady state; the pool of each symbol is bounded and a full pool turns adds into deletes.

Exactness, checked by the tests with a reference book:
- order reference and match numbers are unique and increasing ('U' takes a new reference);
- 'D', 'X', 'E', 'C' and 'U' reference live orders only; 'X' cancels fewer shares than remain;
  'E'/'C' never execute more than remains and an execution of all remaining shares removes the
  order (no 'D' follows);
- books never cross: each symbol keeps a count of live orders per tick on each side in a
  window of ``W`` ticks and its best bid/ask, updated on every event, so every new bid (A/F/U)
  is strictly below the current best ask and every new ask strictly above the best bid;
- executions always hit the best price level of a side, oldest order first (the lowest
  reference at that price, i.e. price-time priority);
- a halted symbol gets no order flow but deletes and partial cancels until it resumes;
- 'P' (hidden liquidity) prints between the best bid and ask, reference 0 and side 'B' as
  Nasdaq sends them since 2010/2014; 'C' prints at the order's price with printable 'Y'.

Prices: Price(4) on a one-cent tick; each symbol has a reference price log-uniform in $10..$500
and lives in a window of ``W`` ticks (4096 for up to 4096 symbols, fewer above, so the level
counts stay within 64 MiB). New orders are placed a few ticks (35% at the inside, tail ~50
ticks) behind the tick just inside the book's centre; the centre is clamped ``W/8`` ticks from
the window edges, which bounds the random walk of the mid. Replaces move price by 0-10 ticks.
Order sizes: mostly 100, round lots to 1000, 18% odd lots, a few blocks to 5000.

Presets (``generate(preset=...)``, ``--preset``): the default above is shallow (~64 live
orders a symbol near the inside: about 32k live orders on 500 symbols). ``preset="deep"`` has
Nasdaq-like depth for the book benchmarks: 500 symbols by default; per-symbol live-order targets
(Zipf, summing to ``live_orders``: messages/18 within 1M..6M) that an opening ramp (adds lean
40% while a symbol is below 7/8 of its target) fills to half, then rise linearly to all of it
at the close, so a 30M-message day holds ~1.2M live orders mid-stream and ~1.65M at the close
and a 100M-message day ~5.5M (a real day peaks at ~5.3M); adds and deletes balanced around each
target (a 6% lean); 30% of new orders up to 3W/8 ticks from the inside (thousands of levels
on a busy book); references increasing through the day but skipping 1-4 numbers on a quarter
of the adds (as Nasdaq's, they are not perfectly dense). Executions take the oldest order at
the best price through per-level FIFO lists (O(1), not a scan of the symbol's pool); the lists
and int32 level counts cost 12 bytes per tick and side (<= 48 MiB), so the shallow preset,
whose output is unchanged, keeps its int16 counts and scan.

All randomness is a splitmix64 stream on a ``uint64[1]`` state inside the kernel; distributions
(price offsets, sizes, gaps, symbol weights) are lookup tables built from closed-form quantiles,
so nothing depends on numpy's RNG. Generation runs in chunks (1M messages by default) in one
``njit(cache=True)`` kernel that keeps all state in preallocated arrays between chunks and
encodes ITCH bytes straight into a chunk buffer; each chunk goes to a streaming writer
(``replay/writers.py``). Memory is bounded by the symbol count, not by the message count.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
from numba import njit
from numba.extending import register_jitable

from kernels.itch_spec import LENGTHS
from kernels.wire import wr_u16, wr_u32, wr_u48, wr_u64
from replay.writers import BinaryFileWriter, MoldPcapWriter

NS_PER_S = 1_000_000_000
MARKET_OPEN_NS = (9 * 3600 + 30 * 60) * NS_PER_S  # 09:30:00 in ns since midnight
TICK = 100  # one cent in Price(4) units


def trading_day_ns(day: str = "2026-11-02", tz: str = "America/New_York") -> int:
    """Epoch ns of local midnight of ``day`` (ITCH timestamps count from it)."""
    d = _dt.date.fromisoformat(day)
    midnight = _dt.datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz))
    return int(midnight.timestamp()) * NS_PER_S


#: 2026-11-02 00:00 America/New_York (EST, 05:00 UTC); == trading_day_ns("2026-11-02"), kept as a
#: literal so importing the module needs no time-zone database
DEFAULT_DATE_NS = 1_793_595_600 * NS_PER_S

REAL_TICKERS = (
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AVGO", "COST", "NFLX",
    "AMD", "PEP", "ADBE", "CSCO", "TMUS", "INTC", "QCOM", "TXN", "AMGN", "INTU",
    "CMCSA", "HON", "AMAT", "BKNG", "ISRG", "SBUX", "MDLZ", "GILD", "ADI", "VRTX",
    "ADP", "REGN", "LRCX", "PYPL", "MU", "PANW", "SNPS", "KLAC", "CDNS", "MAR",
    "ASML", "MELI", "ORLY", "CSX", "ABNB", "CRWD", "MRVL", "FTNT", "NXPI", "PDD",
    "QQQ", "TQQQ", "SQQQ", "PLTR", "COIN", "MSTR", "HOOD", "SOFI", "RIVN", "LCID",
)
MPIDS = ("GSCO", "MSCO", "UBSS", "JPMS", "CDRG", "NITE", "SBSH", "VIRT", "CITD", "BARD",
         "HRTF", "JSTR", "IMCC", "OPTV", "TWOS", "XTXM")

# per-message shares (out of WEIGHT_TOTAL) of the order-flow events, in kernel order
EVENTS = "AFDUECXP"
EV_A, EV_F, EV_D, EV_U, EV_E, EV_C, EV_X, EV_P = range(8)
DEFAULT_WEIGHTS = {"A": 40000, "F": 4000, "D": 43300, "U": 9000, "E": 1800, "C": 200, "X": 1000,
                   "P": 500}

# presets: None (the default, "shallow": ~64 live orders a symbol, ~50 ticks of depth) and "deep"
PRESETS = {
    None: "shallow: a few dozen live orders per symbol near the inside (the default)",
    "shallow": "the default",
    "deep": "Nasdaq-like depth: live orders rise from half of live_orders after the opening ramp "
            "to live_orders at the close (default messages/18, at least 1M, at most 6M: >= 1M "
            "mid-stream at 30M messages, ~5.5M at 100M), Zipf over 500 symbols (the busiest holds "
            "~5%), resting orders spread up to 3W/8 ticks (1,534 at 500 symbols) from the inside (thousands of levels on "
            "a busy symbol), references rising through the day with gaps (~60% dense), adds and "
            "deletes balanced around each symbol's target",
}
DEEP_SYMBOLS = 500
DEEP_STEER = 6000    # add/delete lean around the target (of 98,800): tracks the growing target
DEEP_RAMP = 40000    # lean while below 7/8 of the target: the opening ramp
DEEP_GROW = 512      # targets start at 512/1024 of the close's


def deep_live_orders(n_messages: int) -> int:
    """The deep preset's live orders at the close for a day of ``n_messages``: n/18 within
    1M..6M (a real Nasdaq day peaks at ~5.3M)."""
    return int(min(6_000_000, max(1_000_000, n_messages // 18)))


# generator state slots (int64 array)
G_TS = 0            # timestamp of the last message, ns since midnight
G_NEXT_REF = 1      # next order reference number
G_NEXT_MATCH = 2    # next match number
G_EMITTED = 3       # messages written so far
G_TOTAL = 4         # messages in the file
G_PHASE = 5         # see PH_*
G_IDX = 6           # position inside a per-symbol phase
G_FLOW_TOTAL = 7    # order-flow messages (halts and resumes included)
G_FLOW_DONE = 8
G_N_HALTED = 9      # symbols halted now (rows used in the halt list)
G_HALTS = 10        # halts started
G_OPEN_TS = 11      # 'Q' time
G_HALT_THRESH = 12  # halt probability per flow message, out of 2**32
G_MARGIN = 13       # ticks kept between the book centre and the window edges
G_SHIFT = 14        # add/delete weight moved to steer each symbol's live count to its target
G_FULL_EXEC = 15    # probability (out of 2**16) that an execution takes all remaining shares
G_HALT_MIN = 16     # halt duration, flow messages: min and span
G_HALT_SPAN = 17
G_ADMIN_GAP = 18    # gap between setup messages, ns
G_FIFO = 19         # 1: per-level FIFO lists (``lh``/``lt``, pool P_PREV/P_NEXT) find the oldest order
G_GROW = 20         # >0: targets grow from G_GROW/1024 of Y_TARGET at the open to all of it at the close
G_RAMP = 21         # >0: add/delete shift while a symbol is below 7/8 of its (grown) target
G_REF_GAP = 22      # 1: order references skip 1-4 numbers on a quarter of the adds (not dense)
G_LIVE = 23         # live orders now (all symbols)
G_PEAK_LIVE = 24    # most live orders at any point
G_MID_LIVE = 25     # live orders when half of the order flow is written
N_G = 26

# phases
PH_O, PH_R, PH_H, PH_S, PH_Q, PH_FLOW, PH_M, PH_E, PH_C, PH_DONE = range(10)

# per-symbol columns (int64[K, N_Y])
Y_LO = 0       # tick number of window index 0 (price = (Y_LO + idx) * TICK)
Y_ANCHOR = 1   # window index of the symbol's reference price
Y_BB = 2       # best bid index, -1 when no bids
Y_BA = 3       # best ask index, W when no asks
Y_NLIVE = 4    # live orders
Y_TARGET = 5   # steady-state live orders
Y_CAP = 6      # pool capacity
Y_BASE = 7     # first pool row of the symbol
Y_HALTED = 8
Y_TRACK = 9    # tracking number used on the symbol's order flow
Y_NSIDE = 10   # live orders per side: Y_NSIDE + 0 buy, Y_NSIDE + 1 sell
N_Y = 12

# pool columns (int64[P, 4])
P_REF = 0
P_PX = 1    # window index (ticks above Y_LO)
P_SH = 2    # remaining shares
P_SIDE = 3  # 0 buy, 1 sell
P_PREV = 4  # FIFO neighbours at the same price and side (pool rows, -1 none; G_FIFO only)
P_NEXT = 5
N_P = 6

MAX_HALTED = 16
TBL = 4096  # lookup tables of distributions: TBL entries, indexed by 12 random bits
MAX_MSG = 44  # longest message the generator writes ('P')

# the lengths the kernel writes, checked against the specification table once at import
_WRITTEN = {"S": 12, "R": 39, "H": 25, "A": 36, "F": 40, "D": 19, "X": 23, "U": 35, "E": 31,
            "C": 36, "P": 44}
assert all(LENGTHS[t] == n for t, n in _WRITTEN.items()) and max(_WRITTEN.values()) == MAX_MSG


# --------------------------------------------------------------------------------------------
# kernel helpers
# --------------------------------------------------------------------------------------------

@register_jitable(inline="always")
def _next(rng):
    """splitmix64: the next 64 random bits (uint64)."""
    z = rng[0] + np.uint64(0x9E3779B97F4A7C15)
    rng[0] = z
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@register_jitable(inline="always")
def _below(rng, n):
    """Uniform int64 in [0, n) for 0 < n < 2**32 (multiply-shift, no modulo)."""
    x = _next(rng) >> np.uint64(32)
    return np.int64((x * np.uint64(n)) >> np.uint64(32))


@register_jitable(inline="always")
def _bits(rng, k):
    """k random bits as int64 (k <= 62)."""
    return np.int64(_next(rng) >> np.uint64(64 - k))


@register_jitable(inline="always")
def _hdr(b, p, t, locate, track, ts):
    b[p] = t
    wr_u16(b, p + 1, locate)
    wr_u16(b, p + 3, track)
    wr_u48(b, p + 5, ts)


@register_jitable(inline="always")
def _put_stock(b, p, stock, s):
    for j in range(8):
        b[p + j] = stock[s, j]


@register_jitable
def _system_event(b, p, ts, code):
    _hdr(b, p, 83, 0, 0, ts)  # 'S'
    b[p + 11] = code
    return 12


@register_jitable
def _stock_directory(b, p, ts, s, stock):
    _hdr(b, p, 82, s + 1, 0, ts)  # 'R'
    _put_stock(b, p + 11, stock, s)
    b[p + 19] = 81  # market category 'Q' (Nasdaq Global Select)
    b[p + 20] = 78  # financial status 'N' (normal)
    wr_u32(b, p + 21, 100)  # round lot size
    b[p + 25] = 78  # round lots only 'N'
    b[p + 26] = 67  # issue classification 'C' (common stock)
    b[p + 27] = 90  # issue sub-type 'Z '
    b[p + 28] = 32
    b[p + 29] = 80  # authenticity 'P' (production)
    b[p + 30] = 78  # short sale threshold 'N'
    b[p + 31] = 78  # IPO flag 'N'
    b[p + 32] = 49  # LULD tier '1'
    b[p + 33] = 78  # ETP flag 'N'
    wr_u32(b, p + 34, 0)  # ETP leverage factor
    b[p + 38] = 78  # inverse 'N'
    return 39


@register_jitable
def _trading_action(b, p, ts, s, stock, track, state, r0, r1, r2, r3):
    _hdr(b, p, 72, s + 1, track, ts)  # 'H'
    _put_stock(b, p + 11, stock, s)
    b[p + 19] = state
    b[p + 20] = 32  # reserved
    b[p + 21] = r0
    b[p + 22] = r1
    b[p + 23] = r2
    b[p + 24] = r3
    return 25


@register_jitable(inline="always")
def _lvl_add(lvl, sy, s, side, idx):
    lvl[s, side, idx] += 1
    sy[s, Y_NSIDE + side] += 1
    if side == 0:
        if idx > sy[s, Y_BB]:
            sy[s, Y_BB] = idx
    elif idx < sy[s, Y_BA]:
        sy[s, Y_BA] = idx


@register_jitable
def _lvl_remove(lvl, sy, s, side, idx):
    """One order fewer at ``idx``; when the best level empties, scan to the next one (there is
    one: the scan runs only while the side still has orders)."""
    c = np.int64(lvl[s, side, idx]) - 1
    lvl[s, side, idx] = c
    left = sy[s, Y_NSIDE + side] - 1
    sy[s, Y_NSIDE + side] = left
    if left == 0:
        if side == 0:
            sy[s, Y_BB] = -1
        else:
            sy[s, Y_BA] = lvl.shape[2]
    elif c == 0:
        if side == 0:
            if idx == sy[s, Y_BB]:
                j = idx - 1
                while j >= 0 and lvl[s, 0, j] == 0:
                    j -= 1
                sy[s, Y_BB] = j
        elif idx == sy[s, Y_BA]:
            w = lvl.shape[2]
            j = idx + 1
            while j < w and lvl[s, 1, j] == 0:
                j += 1
            sy[s, Y_BA] = j


@register_jitable
def _fifo_push(pool, lh, lt, s, side, idx, j):
    """Append pool row ``j`` at the back of its price level's FIFO (references rise, so the
    head is always the oldest order: the one an execution takes)."""
    t = np.int64(lt[s, side, idx])
    pool[j, P_PREV] = t
    pool[j, P_NEXT] = -1
    if t >= 0:
        pool[t, P_NEXT] = j
    else:
        lh[s, side, idx] = j
    lt[s, side, idx] = j


@register_jitable
def _fifo_unlink(pool, lh, lt, s, j):
    """Take pool row ``j`` out of its level's FIFO (its P_SIDE/P_PX still name the level)."""
    side = pool[j, P_SIDE]
    idx = pool[j, P_PX]
    p = pool[j, P_PREV]
    nx = pool[j, P_NEXT]
    if p >= 0:
        pool[p, P_NEXT] = nx
    else:
        lh[s, side, idx] = nx
    if nx >= 0:
        pool[nx, P_PREV] = p
    else:
        lt[s, side, idx] = p


@register_jitable
def _pool_remove(pool, sy, st, lh, lt, s, j):
    """Swap-remove pool row ``j`` of symbol ``s`` (levels, and with G_FIFO its FIFO, are
    updated by the caller); the moved last row's FIFO neighbours are pointed at ``j``."""
    last = sy[s, Y_BASE] + sy[s, Y_NLIVE] - 1
    if j != last:
        for c in range(pool.shape[1]):
            pool[j, c] = pool[last, c]
        if st[G_FIFO] != 0:
            side = pool[j, P_SIDE]
            idx = pool[j, P_PX]
            p = pool[j, P_PREV]
            nx = pool[j, P_NEXT]
            if p >= 0:
                pool[p, P_NEXT] = j
            else:
                lh[s, side, idx] = j
            if nx >= 0:
                pool[nx, P_PREV] = j
            else:
                lt[s, side, idx] = j
    sy[s, Y_NLIVE] -= 1
    live = st[G_LIVE] - 1
    st[G_LIVE] = live


@register_jitable
def _place(b, a, anchor, side, d, w, margin):
    """Window index for a new order ``d`` ticks behind the inside, or -1 if the side has no room.

    The reference is the tick just inside the book's centre (joining the best price when the
    spread is one or two ticks, improving it when wider); the centre is kept ``margin`` ticks
    from the window edges. Bids end strictly below the best ask, asks strictly above the best
    bid: the book never crosses. ``b``/``a``: best bid/ask index (-1 / ``w`` when none);
    ``anchor``: the symbol's reference index, used when its book is empty.
    """
    if b >= 0 and a < w:
        c2 = b + a
    elif b >= 0:
        c2 = 2 * b + 1
    elif a < w:
        c2 = 2 * a - 1
    else:
        c2 = 2 * anchor + 1
    if c2 < 2 * margin:
        c2 = 2 * margin
    if c2 > 2 * (w - margin):
        c2 = 2 * (w - margin)
    if side == 0:
        idx = (c2 - 1) // 2 - d
        if idx >= a:
            idx = a - 1
        if idx < 0:
            idx = 0
        if idx >= a:
            return -1
    else:
        idx = c2 // 2 + 1 + d
        if idx <= b:
            idx = b + 1
        if idx > w - 1:
            idx = w - 1
        if idx <= b:
            return -1
    return idx


@register_jitable
def _resume(b, p, ts, s, stock, sy, hl, st, k):
    """Take halt-list row ``k`` (symbol ``s``) out and write its 'H' 'T' (reason T3)."""
    nh = st[G_N_HALTED]
    hl[k, 0] = hl[nh - 1, 0]
    hl[k, 1] = hl[nh - 1, 1]
    st[G_N_HALTED] = nh - 1
    sy[s, Y_HALTED] = 0
    return _trading_action(b, p, ts, s, stock, sy[s, Y_TRACK], 84, 84, 51, 32, 32)


@register_jitable
def _flow_batch(n_max, m, pos, obuf, ooff, olen, ots, counts, rng, st, sy, lvl, lh, lt, pool, stock, hl,
                sym_tbl, wts, off_tbl, sh_tbl, gap_tbl, ud_tbl, mpid_tbl):
    """Write order-flow messages until ``n_max`` messages are in the chunk or the flow is done.

    One call per chunk, not per message: a call that takes arrays costs reference-count
    updates on each of them, which would dominate the per-message time. Returns ``(m, pos)``.
    """
    w = lvl.shape[2]
    margin = st[G_MARGIN]
    smask = np.uint64(sym_tbl.shape[0] - 1)
    b = obuf
    fifo = st[G_FIFO] != 0
    grow = st[G_GROW]
    ramp = st[G_RAMP]
    flow_total = st[G_FLOW_TOTAL]
    while m < n_max and st[G_FLOW_DONE] < st[G_FLOW_TOTAL]:
        ts = st[G_TS] + gap_tbl[_bits(rng, 12)]
        p = pos
        fd = st[G_FLOW_DONE]
        if fd == flow_total // 2:
            st[G_MID_LIVE] = st[G_LIVE]
        remaining = st[G_FLOW_TOTAL] - fd
        nh = st[G_N_HALTED]
        ln = 0
        # resumes that are due (and all pending ones when the flow is about to end)
        for k in range(nh):
            if hl[k, 1] <= fd or remaining <= nh:
                ln = _resume(b, p, ts, hl[k, 0], stock, sy, hl, st, k)
                break
        if ln == 0:
            r = _next(rng)
            s = np.int64(sym_tbl[np.int64(r & smask)])
            track = sy[s, Y_TRACK]
            n = sy[s, Y_NLIVE]
            # a new halt (never so late that its resume would not fit)
            if (np.int64(r >> np.uint64(32)) < st[G_HALT_THRESH] and nh < MAX_HALTED
                    and sy[s, Y_HALTED] == 0 and remaining > nh + 2):
                hl[nh, 0] = s
                hl[nh, 1] = fd + st[G_HALT_MIN] + _below(rng, st[G_HALT_SPAN])
                st[G_N_HALTED] = nh + 1
                st[G_HALTS] += 1
                sy[s, Y_HALTED] = 1
                ln = _trading_action(b, p, ts, s, stock, track, 72, 84, 49, 32, 32)  # 'H' T1
        if ln == 0:
            # the event, with adds/deletes leaning toward the symbol's live-count target
            shift = st[G_SHIFT]
            tgt = sy[s, Y_TARGET]
            if grow > 0:  # the target rises through the day (deep preset)
                tgt = (tgt * (grow + ((1024 - grow) * fd) // flow_total)) >> 10
            if n >= tgt:
                shift = -shift
            elif ramp > 0 and 8 * n < 7 * tgt:
                shift = ramp
            u = _below(rng, wts[8])
            ev = EV_P
            acc = 0
            for e in range(8):
                we = wts[e]
                if e == EV_A:
                    we += shift
                elif e == EV_D:
                    we -= shift
                acc += we
                if u < acc:
                    ev = e
                    break
            if sy[s, Y_HALTED] != 0:
                if n == 0:  # nothing left to cancel: the halt ends now
                    for k in range(nh):
                        if hl[k, 0] == s:
                            ln = _resume(b, p, ts, s, stock, sy, hl, st, k)
                            break
                elif ev != EV_D and ev != EV_X:
                    ev = EV_D
            elif n == 0:
                if ev != EV_A and ev != EV_F and ev != EV_P:
                    ev = EV_A
            elif n >= sy[s, Y_CAP] and (ev == EV_A or ev == EV_F):
                ev = EV_D
        if ln == 0:
            base = sy[s, Y_BASE]
            lo = sy[s, Y_LO]
            locate = s + 1
            if ev == EV_A or ev == EV_F:
                side = _bits(rng, 1)
                d = off_tbl[_bits(rng, 12)]
                if d > margin - 2:
                    d = margin - 2
                bb = sy[s, Y_BB]
                ba = sy[s, Y_BA]
                anchor = sy[s, Y_ANCHOR]
                idx = _place(bb, ba, anchor, side, d, w, margin)
                if idx < 0:
                    side = 1 - side
                    idx = _place(bb, ba, anchor, side, d, w, margin)
                ref = st[G_NEXT_REF]
                step = 1
                if st[G_REF_GAP] != 0 and _bits(rng, 2) == 0:
                    step += 1 + _bits(rng, 2)
                st[G_NEXT_REF] = ref + step
                sh = sh_tbl[_bits(rng, 12)]
                j = base + n
                pool[j, P_REF] = ref
                pool[j, P_PX] = idx
                pool[j, P_SH] = sh
                pool[j, P_SIDE] = side
                sy[s, Y_NLIVE] = n + 1
                live = st[G_LIVE] + 1
                st[G_LIVE] = live
                if live > st[G_PEAK_LIVE]:
                    st[G_PEAK_LIVE] = live
                _lvl_add(lvl, sy, s, side, idx)
                if fifo:
                    _fifo_push(pool, lh, lt, s, side, idx, j)
                # (an if-expression written straight into the call of an inline="always"
                # helper lost the header bytes here with numba 0.68: keep it a variable)
                t = 65 if ev == EV_A else 70
                _hdr(b, p, t, locate, track, ts)
                wr_u64(b, p + 11, ref)
                b[p + 19] = 66 if side == 0 else 83
                wr_u32(b, p + 20, sh)
                _put_stock(b, p + 24, stock, s)
                wr_u32(b, p + 32, (lo + idx) * TICK)
                if ev == EV_A:
                    ln = 36
                else:
                    wr_u32(b, p + 36, mpid_tbl[_below(rng, mpid_tbl.shape[0])])
                    ln = 40
            elif ev == EV_P:
                bb = sy[s, Y_BB]
                ba = sy[s, Y_BA]
                if bb >= 0 and ba < w:
                    idx = bb + _below(rng, ba - bb + 1)
                elif bb >= 0:
                    idx = bb
                elif ba < w:
                    idx = ba
                else:
                    idx = sy[s, Y_ANCHOR]
                mt = st[G_NEXT_MATCH]
                st[G_NEXT_MATCH] = mt + 1
                _hdr(b, p, 80, locate, track, ts)
                wr_u64(b, p + 11, 0)
                b[p + 19] = 66  # always 'B' since 2014
                wr_u32(b, p + 20, sh_tbl[_bits(rng, 12)])
                _put_stock(b, p + 24, stock, s)
                wr_u32(b, p + 32, (lo + idx) * TICK)
                wr_u64(b, p + 36, mt)
                ln = 44
            elif ev == EV_E or ev == EV_C:
                bb = sy[s, Y_BB]
                ba = sy[s, Y_BA]
                if bb >= 0 and ba < w:
                    side = _bits(rng, 1)
                elif bb >= 0:
                    side = 0
                else:
                    side = 1
                px = bb if side == 0 else ba
                # the oldest order (lowest reference) at the best price of that side
                j = -1
                best_ref = np.int64(0)
                if fifo:
                    j = np.int64(lh[s, side, px])
                    best_ref = pool[j, P_REF]
                else:
                    for q in range(base, base + n):
                        if pool[q, P_PX] == px and pool[q, P_SIDE] == side:
                            if j < 0 or pool[q, P_REF] < best_ref:
                                j = q
                                best_ref = pool[q, P_REF]
                rem = pool[j, P_SH]
                if rem == 1 or _bits(rng, 16) < st[G_FULL_EXEC]:
                    ex = rem
                else:
                    ex = 1 + _below(rng, rem - 1)
                mt = st[G_NEXT_MATCH]
                st[G_NEXT_MATCH] = mt + 1
                if ex == rem:
                    _lvl_remove(lvl, sy, s, side, px)
                    if fifo:
                        _fifo_unlink(pool, lh, lt, s, j)
                    _pool_remove(pool, sy, st, lh, lt, s, j)
                else:
                    pool[j, P_SH] = rem - ex
                t = 69 if ev == EV_E else 67
                _hdr(b, p, t, locate, track, ts)
                wr_u64(b, p + 11, best_ref)
                wr_u32(b, p + 19, ex)
                wr_u64(b, p + 23, mt)
                if ev == EV_E:
                    ln = 31
                else:
                    b[p + 31] = 89  # printable 'Y'
                    wr_u32(b, p + 32, (lo + px) * TICK)
                    ln = 36
            else:
                # D, X, U on a random live order
                j = base + _below(rng, n)
                ref = pool[j, P_REF]
                side = pool[j, P_SIDE]
                idx = pool[j, P_PX]
                rem = pool[j, P_SH]
                if ev == EV_X and rem >= 2:
                    cx = 1 + _below(rng, rem - 1)
                    pool[j, P_SH] = rem - cx
                    _hdr(b, p, 88, locate, track, ts)
                    wr_u64(b, p + 11, ref)
                    wr_u32(b, p + 19, cx)
                    ln = 23
                elif ev == EV_U:
                    _lvl_remove(lvl, sy, s, side, idx)
                    if fifo:
                        _fifo_unlink(pool, lh, lt, s, j)
                    nidx = idx + ud_tbl[_bits(rng, 8)]
                    if nidx < 0:
                        nidx = 0
                    if nidx > w - 1:
                        nidx = w - 1
                    if side == 0:
                        if nidx >= sy[s, Y_BA]:
                            nidx = sy[s, Y_BA] - 1
                    elif nidx <= sy[s, Y_BB]:
                        nidx = sy[s, Y_BB] + 1
                    nref = st[G_NEXT_REF]
                    step = 1
                    if st[G_REF_GAP] != 0 and _bits(rng, 2) == 0:
                        step += 1 + _bits(rng, 2)
                    st[G_NEXT_REF] = nref + step
                    nsh = sh_tbl[_bits(rng, 12)]
                    pool[j, P_REF] = nref
                    pool[j, P_PX] = nidx
                    pool[j, P_SH] = nsh
                    _lvl_add(lvl, sy, s, side, nidx)
                    if fifo:
                        _fifo_push(pool, lh, lt, s, side, nidx, j)
                    _hdr(b, p, 85, locate, track, ts)
                    wr_u64(b, p + 11, ref)
                    wr_u64(b, p + 19, nref)
                    wr_u32(b, p + 27, nsh)
                    wr_u32(b, p + 31, (lo + nidx) * TICK)
                    ln = 35
                else:  # D (and an X on a one-share order)
                    _lvl_remove(lvl, sy, s, side, idx)
                    if fifo:
                        _fifo_unlink(pool, lh, lt, s, j)
                    _pool_remove(pool, sy, st, lh, lt, s, j)
                    _hdr(b, p, 68, locate, track, ts)
                    wr_u64(b, p + 11, ref)
                    ln = 19
        st[G_FLOW_DONE] = fd + 1
        st[G_TS] = ts
        st[G_EMITTED] += 1
        ooff[m] = p
        olen[m] = ln
        ots[m] = ts
        counts[b[p]] += 1
        pos = p + ln
        m += 1
    return m, pos


# --------------------------------------------------------------------------------------------
# the chunk kernel
# --------------------------------------------------------------------------------------------

def gen_chunk(n_max, obuf, ooff, olen, ots, rng, st, counts, sy, lvl, lh, lt, pool, stock, hl, sym_tbl,
              wts, off_tbl, sh_tbl, gap_tbl, ud_tbl, mpid_tbl):
    """Generate up to ``n_max`` messages into ``obuf`` (``ooff``/``olen``: offset and length of
    each, ``ots``: ITCH timestamp, ns since midnight). Resumes where the previous call stopped
    (all state lives in ``rng``, ``st``, ``sy``, ``lvl``, ``lh``/``lt`` (level FIFO heads and
    tails with G_FIFO, else 1x1x1), ``pool``, ``hl``); counts messages by
    type letter in ``counts``. ``obuf`` must hold ``n_max * MAX_MSG`` bytes. Returns the number
    of messages written (0 once the file is complete).
    """
    k_sym = sy.shape[0]
    m = 0
    pos = 0
    while m < n_max and st[G_PHASE] != PH_DONE:
        ph = st[G_PHASE]
        ts = st[G_TS]
        if ph == PH_FLOW:
            if st[G_FLOW_DONE] >= st[G_FLOW_TOTAL]:
                st[G_PHASE] = PH_M
            else:
                m, pos = _flow_batch(n_max, m, pos, obuf, ooff, olen, ots, counts, rng, st, sy,
                                     lvl, lh, lt, pool, stock, hl, sym_tbl, wts, off_tbl, sh_tbl, gap_tbl,
                                     ud_tbl, mpid_tbl)
            continue
        if ph == PH_O:
            ln = _system_event(obuf, pos, ts, 79)
            st[G_PHASE] = PH_R
            st[G_IDX] = 0
        elif ph == PH_R or ph == PH_H:
            ts += st[G_ADMIN_GAP] + _below(rng, st[G_ADMIN_GAP])
            k = st[G_IDX]
            if ph == PH_R:
                ln = _stock_directory(obuf, pos, ts, k, stock)
            else:
                ln = _trading_action(obuf, pos, ts, k, stock, 0, 84, 32, 32, 32, 32)
            k += 1
            st[G_IDX] = k
            if k == k_sym:
                st[G_IDX] = 0
                st[G_PHASE] = ph + 1
        elif ph == PH_S:
            ts += st[G_ADMIN_GAP]
            ln = _system_event(obuf, pos, ts, 83)
            st[G_PHASE] = PH_Q
        elif ph == PH_Q:
            ts = max(ts + 1, st[G_OPEN_TS])
            ln = _system_event(obuf, pos, ts, 81)
            st[G_PHASE] = PH_FLOW
        else:  # M, E, C
            ts += st[G_ADMIN_GAP] * 10 + _below(rng, st[G_ADMIN_GAP] * 10)
            code = 77 if ph == PH_M else (69 if ph == PH_E else 67)
            ln = _system_event(obuf, pos, ts, code)
            st[G_PHASE] = ph + 1
        st[G_TS] = ts
        ooff[m] = pos
        olen[m] = ln
        ots[m] = ts
        counts[obuf[pos]] += 1
        pos += ln
        m += 1
        st[G_EMITTED] += 1
    return m


_gen_chunk = njit(cache=True, nogil=True)(gen_chunk)


# --------------------------------------------------------------------------------------------
# tables (closed-form quantiles, no RNG)
# --------------------------------------------------------------------------------------------

def _quantiles(n: int = TBL) -> np.ndarray:
    return (np.arange(n, dtype=np.float64) + 0.5) / n


def _offset_table() -> np.ndarray:
    """Ticks behind the inside for new orders: 35% at the reference tick, a geometric-like tail
    (mean ~4 ticks, longest ~50)."""
    u = _quantiles()
    d = np.zeros(TBL, dtype=np.int64)
    tail = u >= 0.35
    d[tail] = 1 + np.floor(-np.log1p(-(u[tail] - 0.35) / 0.65) * 5.0).astype(np.int64)
    return d


def _deep_offset_table(max_ticks: int) -> np.ndarray:
    """The deep preset's ticks behind the inside: 30% at the reference tick, 40% a short
    geometric-like tail (mean ~4 ticks), 30% spread uniformly from 8 ticks out to ``max_ticks``
    (resting orders far from the inside: a busy symbol keeps thousands of price levels, as on
    Nasdaq)."""
    u = _quantiles()
    d = np.zeros(TBL, dtype=np.int64)
    near = (u >= 0.30) & (u < 0.70)
    d[near] = 1 + np.floor(-np.log1p(-(u[near] - 0.30) / 0.40 * 0.99) * 4.0).astype(np.int64)
    far = u >= 0.70
    d[far] = 8 + np.floor((u[far] - 0.70) / 0.30 * max(max_ticks - 8, 1)).astype(np.int64)
    return np.minimum(d, max_ticks)


def _shares_table() -> np.ndarray:
    """Order sizes: mostly 100, round lots up to 1000, odd lots, a few blocks up to 5000."""
    u = _quantiles()
    sh = np.full(TBL, 100, dtype=np.int64)
    odd = u < 0.18
    sh[odd] = 1 + np.floor(u[odd] / 0.18 * 99).astype(np.int64)
    lots = (u >= 0.63) & (u < 0.93)
    sh[lots] = 100 * (2 + np.floor((u[lots] - 0.63) / 0.30 * 9).astype(np.int64))
    block = u >= 0.93
    sh[block] = 100 * (11 + np.floor((u[block] - 0.93) / 0.07 * 40).astype(np.int64))
    return sh


def _gap_table(mean_gap_ns: float) -> np.ndarray:
    """Gaps between flow messages: 25% bursts of 20-300 ns, 75% 200 ns + exponential; mean
    ``mean_gap_ns`` (the shape is scaled). Every gap is at least 1 ns."""
    u = _quantiles()
    g = np.empty(TBL, dtype=np.float64)
    burst = u < 0.25
    g[burst] = 20 + u[burst] / 0.25 * 280
    v = (u[~burst] - 0.25) / 0.75
    g[~burst] = 200 - np.log1p(-v) * 1200
    g *= mean_gap_ns / g.mean()
    return np.maximum(1, np.round(g)).astype(np.int64)


def _replace_delta_table() -> np.ndarray:
    """Price moves of replaces (ticks, either way): 30% none, mostly one to three ticks."""
    u = _quantiles(256)
    mag = np.where(u < 0.30, 0, np.where(u < 0.65, 1, np.where(u < 0.85, 2, 3 + np.floor(
        (u - 0.85) / 0.15 * 8))))
    sign = np.where(np.arange(256) % 2 == 0, 1, -1)
    return (mag * sign).astype(np.int64)


def _symbol_names(n: int) -> list[str]:
    names = list(REAL_TICKERS[:n])
    for i in range(len(names), n):
        names.append(f"SYM{i:04d}")
    return names


def _symbol_table(weights: np.ndarray) -> np.ndarray:
    """Uniform bits -> symbol index with the given weights (quantized CDF, power-of-two size)."""
    k = len(weights)
    size = 1 << 16
    while size < 16 * k:
        size <<= 1
    cdf = np.cumsum(weights) / weights.sum()
    tbl = np.searchsorted(cdf, _quantiles(size), side="right").astype(np.int32)
    return np.minimum(tbl, k - 1)


def _splitmix_py(x: int) -> tuple[int, int]:
    """One splitmix64 step in Python (per-symbol setup values): (new state, output)."""
    m = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & m
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return x, z ^ (z >> 31)


# --------------------------------------------------------------------------------------------
# Python side
# --------------------------------------------------------------------------------------------

@dataclass
class GenSummary:
    """What a generated file holds."""

    path: str
    fmt: str
    n_messages: int
    n_symbols: int
    seed: int
    date_ns: int
    counts: dict[str, int]
    order_flow_messages: int
    n_halts: int
    n_orders_live_at_end: int
    last_order_ref: int
    last_match: int
    first_ts: int       # ns since midnight
    last_ts: int
    bytes_written: int
    n_packets: int = 0  # pcap only (message packets + end-of-session)
    elapsed_s: float = 0.0
    messages_per_s: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


class FeedGenerator:
    """The generator's state and its chunks, without a file: ``chunks()`` yields
    ``(buf, off, length, ts)`` views (valid until the next chunk) of the messages in order."""

    def __init__(self, *, n_messages: int, n_symbols: int | None = None, seed: int = 1,
                 chunk_messages: int = 1 << 20, live_per_symbol: int = 64,
                 halt_rate: float = 1e-5, mean_gap_ns: float = 1000.0,
                 weights: dict[str, int] | None = None, steer: int | None = None,
                 full_exec: float = 0.6, preset: str | None = None, live_orders: int | None = None):
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(p for p in PRESETS if p)}, got {preset!r}")
        deep = preset == "deep"
        self.preset = preset or "shallow"
        if n_symbols is None:
            n_symbols = DEEP_SYMBOLS if deep else 64
        if steer is None:
            steer = DEEP_STEER if deep else 2000
        if not 1 <= n_symbols <= 65535:
            raise ValueError(f"n_symbols must be 1..65535 (ITCH locate codes), got {n_symbols}")
        setup = 2 * n_symbols + 6
        if n_messages < setup:
            raise ValueError(f"n_messages must be at least {setup} for {n_symbols} symbols "
                             "(O, R and H per symbol, S, Q, M, E, C)")
        if not 0.0 <= halt_rate < 1.0:
            raise ValueError("halt_rate must be within [0, 1)")
        self.n_messages = int(n_messages)
        self.n_symbols = k = int(n_symbols)
        self.seed = int(seed)
        self.chunk_messages = int(chunk_messages)
        wd = dict(DEFAULT_WEIGHTS)
        if weights:
            unknown = set(weights) - set(EVENTS)
            if unknown:
                raise ValueError(f"unknown event letters {sorted(unknown)}")
            wd.update(weights)
        wts = np.array([wd[e] for e in EVENTS] + [0], dtype=np.int64)
        wts[8] = wts[:8].sum()
        steer = int(min(steer, wts[EV_A], wts[EV_D]))
        self.names = _symbol_names(k)

        # the window of ticks per symbol: level counts take K * 2 * W int16 (<= 64 MiB); deep:
        # counts int32 plus FIFO heads and tails (12 bytes a tick and side: <= 48 MiB), and the
        # centre may wander over a quarter of the window, so orders rest up to 3W/8 ticks from it
        if deep:
            w = int(min(4096, max(256, (1 << 21) // k)))
            margin = 3 * w // 8
        else:
            w = int(min(4096, max(256, (1 << 24) // k)))
            margin = min(512, w // 8)
        self.window = w

        # per-symbol values from a splitmix64 stream seeded by the seed
        x = (self.seed * 0x2545F4914F6CDD1D + 0x1234567) & ((1 << 64) - 1)
        sy = np.zeros((k, N_Y), dtype=np.int64)
        zipf = 1.0 / (np.arange(k, dtype=np.float64) + 4.0)
        zipf /= zipf.sum()
        if deep:
            if live_orders is None:
                live_orders = deep_live_orders(n_messages)
            if live_orders < 1:
                raise ValueError(f"live_orders must be positive, got {live_orders}")
            self.live_orders_target = int(live_orders)
            target = np.maximum(4, np.round(live_orders * zipf)).astype(np.int64)
            cap = target + target // 4 + 64
        else:
            self.live_orders_target = None
            target = np.maximum(4, np.round(live_per_symbol * k * zipf)).astype(np.int64)
            cap = np.minimum(32000, 2 * target + 32)
        base = np.zeros(k, dtype=np.int64)
        base[1:] = np.cumsum(cap)[:-1]
        for s in range(k):
            x, z = _splitmix_py(x)
            # reference price log-uniform in $10..$500, in ticks
            ticks = int(round(1000 * math.exp((z >> 11) / 2.0**53 * math.log(50.0))))
            lo = max(1, ticks - w // 2)
            sy[s, Y_LO] = lo
            sy[s, Y_ANCHOR] = min(max(ticks - lo, margin), w - margin)
            sy[s, Y_TRACK] = 1 + (z & 15)
        sy[:, Y_BB] = -1
        sy[:, Y_BA] = w
        sy[:, Y_TARGET] = target
        sy[:, Y_CAP] = cap
        sy[:, Y_BASE] = base
        self.sy = sy
        self.lvl = np.zeros((k, 2, w), dtype=np.int32 if deep else np.int16)
        fifo_shape = (k, 2, w) if deep else (1, 1, 1)
        self.lh = np.full(fifo_shape, -1, dtype=np.int32)
        self.lt = np.full(fifo_shape, -1, dtype=np.int32)
        self.pool = np.zeros((int(cap.sum()), N_P if deep else 4), dtype=np.int64)
        self.stock = np.frombuffer(b"".join(n.encode().ljust(8) for n in self.names),
                                   dtype=np.uint8).reshape(k, 8).copy()
        self.hl = np.zeros((MAX_HALTED, 2), dtype=np.int64)
        self.sym_tbl = _symbol_table(zipf)
        self.wts = wts
        self.off_tbl = _deep_offset_table(margin - 2) if deep else _offset_table()
        self.sh_tbl = _shares_table()
        self.gap_tbl = _gap_table(mean_gap_ns)
        self.ud_tbl = _replace_delta_table()
        self.mpid_tbl = np.array([int.from_bytes(m.encode(), "big") for m in MPIDS], dtype=np.int64)

        x, z = _splitmix_py(x)
        self.rng = np.array([z], dtype=np.uint64)
        st = np.zeros(N_G, dtype=np.int64)
        st[G_OPEN_TS] = MARKET_OPEN_NS
        st[G_ADMIN_GAP] = 200
        # setup messages end a little before 09:30 whatever the symbol count
        st[G_TS] = MARKET_OPEN_NS - NS_PER_S - 2 * k * 2 * int(st[G_ADMIN_GAP])
        st[G_NEXT_REF] = 1
        st[G_NEXT_MATCH] = 1
        st[G_TOTAL] = self.n_messages
        st[G_PHASE] = PH_O
        st[G_FLOW_TOTAL] = self.n_messages - setup
        st[G_HALT_THRESH] = int(halt_rate * 2**32)
        st[G_MARGIN] = margin
        st[G_SHIFT] = steer
        st[G_FULL_EXEC] = int(full_exec * 65536)
        st[G_HALT_MIN] = 2000
        st[G_HALT_SPAN] = 20000
        if deep:
            st[G_FIFO] = 1
            st[G_GROW] = DEEP_GROW
            st[G_RAMP] = min(DEEP_RAMP, int(wts[EV_D]))
            st[G_REF_GAP] = 1
        self.st = st
        self.counts = np.zeros(256, dtype=np.int64)

        n = self.chunk_messages
        self.obuf = np.zeros(n * MAX_MSG, dtype=np.uint8)
        self.ooff = np.zeros(n, dtype=np.int64)
        self.olen = np.zeros(n, dtype=np.int32)
        self.ots = np.zeros(n, dtype=np.int64)

    def next_chunk(self) -> int:
        """Generate the next chunk into ``obuf``/``ooff``/``olen``/``ots``; returns its size."""
        return int(_gen_chunk(self.chunk_messages, self.obuf, self.ooff, self.olen, self.ots,
                              self.rng, self.st, self.counts, self.sy, self.lvl, self.lh, self.lt, self.pool,
                              self.stock, self.hl, self.sym_tbl, self.wts, self.off_tbl,
                              self.sh_tbl, self.gap_tbl, self.ud_tbl, self.mpid_tbl))

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        while True:
            m = self.next_chunk()
            if m == 0:
                return
            yield self.obuf, self.ooff[:m], self.olen[:m], self.ots[:m]

    @property
    def done(self) -> bool:
        return int(self.st[G_PHASE]) == PH_DONE

    def count_dict(self) -> dict[str, int]:
        return {chr(t): int(c) for t, c in enumerate(self.counts) if c}

    @property
    def live_orders(self) -> int:
        return int(self.sy[:, Y_NLIVE].sum())

    def depth_stats(self) -> dict:
        """Live orders now, at half of the order flow and at the peak; live price levels (both
        sides, all symbols) and the most levels on one symbol now."""
        per_sym = (self.lvl != 0).sum(axis=(1, 2))
        return {"preset": self.preset, "live_orders_now": self.live_orders,
                "live_orders_mid": int(self.st[G_MID_LIVE]), "live_orders_peak": int(self.st[G_PEAK_LIVE]),
                "live_levels_now": int(per_sym.sum()), "max_levels_one_symbol_now": int(per_sym.max()),
                "live_orders_target": self.live_orders_target}


def generate(path: str | os.PathLike, *, fmt: str = "pcap", n_messages: int,
             n_symbols: int | None = None, seed: int = 1, date_ns: int = DEFAULT_DATE_NS,
             chunk_messages: int = 1 << 20, live_per_symbol: int = 64, halt_rate: float = 1e-5,
             mean_gap_ns: float = 1000.0, preset: str | None = None, live_orders: int | None = None,
             **writer_kwargs) -> GenSummary:
    """Write a synthetic ITCH 5.0 day to ``path``: ``fmt="pcap"`` (MoldUDP64 in pcap, through
    ``MoldPcapWriter(**writer_kwargs)``, ending with an end-of-session packet) or ``"itch"``
    (BinaryFILE through ``BinaryFileWriter``, ending with the zero-length record).

    ``n_messages`` counts every ITCH message in the file (setup and end messages included);
    capture times are ``date_ns`` + the ITCH timestamp. Deterministic in all arguments.

    ``preset="deep"``: Nasdaq-like depth (see ``PRESETS``); ``n_symbols`` defaults to 500 and
    ``live_orders`` (the live orders at the close) to :func:`deep_live_orders`. The summary's
    ``extra`` holds the live-order counts (now, mid-stream, peak) and live levels.
    """
    if fmt not in ("pcap", "itch"):
        raise ValueError(f"fmt must be 'pcap' or 'itch', got {fmt!r}")
    t0 = time.perf_counter()
    g = FeedGenerator(n_messages=n_messages, n_symbols=n_symbols, seed=seed,
                      chunk_messages=chunk_messages, live_per_symbol=live_per_symbol,
                      halt_rate=halt_rate, mean_gap_ns=mean_gap_ns, preset=preset, live_orders=live_orders)
    first_ts = -1
    n_packets = 0
    if fmt == "pcap":
        cap_ts = np.zeros(g.chunk_messages, dtype=np.int64)
        with MoldPcapWriter(path, **writer_kwargs) as w:
            for buf, off, ln, ts in g.chunks():
                if first_ts < 0:
                    first_ts = int(ts[0])
                c = cap_ts[: len(ts)]
                np.add(ts, date_ns, out=c)
                w.write_messages(buf, off, ln, c)
            w.end_session(date_ns + int(g.st[G_TS]))
        n_packets = w.n_packets
    else:
        with BinaryFileWriter(path, **writer_kwargs) as w:
            for buf, off, ln, ts in g.chunks():
                if first_ts < 0:
                    first_ts = int(ts[0])
                w.write_messages(buf, off, ln)
    elapsed = time.perf_counter() - t0
    assert g.done and int(g.st[G_EMITTED]) == n_messages
    return GenSummary(
        path=os.fspath(path), fmt=fmt, n_messages=int(n_messages), n_symbols=int(g.n_symbols),
        seed=int(seed), date_ns=int(date_ns), counts=g.count_dict(),
        order_flow_messages=int(g.st[G_FLOW_TOTAL]), n_halts=int(g.st[G_HALTS]),
        n_orders_live_at_end=g.live_orders, last_order_ref=int(g.st[G_NEXT_REF]) - 1,
        last_match=int(g.st[G_NEXT_MATCH]) - 1, first_ts=first_ts, last_ts=int(g.st[G_TS]),
        bytes_written=w.bytes_written, n_packets=n_packets, elapsed_s=round(elapsed, 3),
        messages_per_s=round(n_messages / elapsed, 1) if elapsed > 0 else 0.0,
        extra=g.depth_stats(),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m replay.generator",
                                 description="Write a deterministic synthetic ITCH 5.0 feed.")
    ap.add_argument("out", help="output file")
    ap.add_argument("--fmt", choices=("pcap", "itch"), default="pcap",
                    help="pcap: MoldUDP64 over UDP in pcap; itch: Nasdaq BinaryFILE")
    ap.add_argument("--messages", type=int, required=True, help="ITCH messages in the file")
    ap.add_argument("--symbols", type=int, default=None, help="symbols (default 64; deep: 500)")
    ap.add_argument("--preset", choices=("shallow", "deep"), default="shallow",
                    help="deep: Nasdaq-like depth (>= 1M live orders mid-stream at 30M messages)")
    ap.add_argument("--live-orders", type=int, default=None,
                    help="deep: live orders at the close (default: messages/18, 1M..6M)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--date", default="2026-11-02", help="trading day (America/New_York)")
    ap.add_argument("--halt-rate", type=float, default=1e-5, help="halts per flow message")
    ap.add_argument("--mean-gap-ns", type=float, default=1000.0)
    ap.add_argument("--live-per-symbol", type=int, default=64)
    ap.add_argument("--session", default="0000000001", help="MoldUDP64 session (pcap)")
    ap.add_argument("--vlan", type=int, default=None, help="802.1Q VLAN id (pcap)")
    ap.add_argument("--max-payload", type=int, default=1400, help="UDP payload bytes (pcap)")
    ap.add_argument("--usec", action="store_true", help="microsecond pcap timestamps")
    a = ap.parse_args(argv)
    wk: dict = {}
    if a.fmt == "pcap":
        wk = dict(session=a.session, vlan=a.vlan, max_payload=a.max_payload,
                  nanosecond=not a.usec)
    summary = generate(a.out, fmt=a.fmt, n_messages=a.messages, n_symbols=a.symbols,
                       seed=a.seed, date_ns=trading_day_ns(a.date), halt_rate=a.halt_rate,
                       mean_gap_ns=a.mean_gap_ns, live_per_symbol=a.live_per_symbol,
                       preset=None if a.preset == "shallow" else a.preset, live_orders=a.live_orders, **wk)
    print(summary.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
