"""Pre-trade risk: checks on every order intent, the kill switch, the stale-data guard, position
and PnL accounting from execution events, and the auto-hedge.

Undecorated bodies compiled by ``kernels/cpu.py`` (``njit``) and ``kernels/gpu.py``
(``numba.cuda``, one thread: the checks are a chain over shared state). Nothing allocates,
nothing raises; every product stays inside int64 because intents are bounded
(``MAX_PRICE`` x ``MAX_QTY`` < 2**62) and limits are validated at start.

Tables (``kernels/intents.py``): intents ``[n, NI]`` in, decisions ``[n, ND]`` and orders out
``[m, NI]`` (accepted intents, hedges, risk cancels) out, execution events ``[n, NE]`` in.

State (preallocated by ``pipeline.risk.RiskState``; columns below):
- ``g[G_*]``: globals: kill switch, connection, aggregates (gross, net, credit, PnL), counters.
- ``lim[L_*]``: global limits and settings, built from config (money in Price(4) x shares).
- ``ls[locate, LS_*]``: per-symbol limits, bound from the override table ``ovk``/``ovl`` the
  first time the feed shows the symbol (``feed_health``), so overrides and the restricted list
  are by symbol name while the hot path indexes by locate.
- ``ps[locate, PS_*]``: per-symbol position, cost, open quantities, mark, exposure
  contributions, our best resting prices, the head of the symbol's list of our orders, the
  last accepted order (duplicate check) and the symbol's feed session.
- ``hs[session, HS_*]``: the per-session feed status (next sequence number, gap open, last
  message time). A symbol is *sound* when its session has no open gap, its session spoke within
  ``silence_ns`` of the intent, and its book is neither crossed nor locked.
- ``ro[slot, RO_*]`` our live orders, ``oh[i] = (client order id, slot)`` a hash from id to slot
  (linear probing, at most half full), ``ofree`` the free slots (``g[G_FREE]`` on the stack).
- ``st[strategy, ST_*]`` and ``rt[strategy, kind, k]``: per-strategy latch and the sliding-window
  message-rate rings (the times of the last ``limit`` messages of each kind).
- ``rc[reason]``: rejections counted by reason code.

Exposure is worst case: every open order may fill. For a symbol with position ``p``, open
buy/sell quantities ``b``/``s`` and mark ``m`` (the reference price at the last look):
``W+ = p + b``, ``W- = p - s``; per-symbol limit ``max(W+, -W-) <= max_position``; gross
``sum max(W+, -W-) m``; net ``sum W+ m`` (long) and ``sum W- m`` (short); credit
``sum (|p| + b + s) m``. Fills move quantity from open to position and never increase any of
them at a fixed mark, so no sequence of intents, fills and cancels takes them past a limit
(property-tested). Aggregates are kept incrementally (each symbol's contribution is stored),
so a check is O(1); a symbol is re-marked whenever it is checked, filled or swept by
``mark_to_market``.

PnL is exact: average cost in integers. Closing ``c`` of ``|p|`` shares removes
``floor(|cost| c / |p|)`` of the cost (the whole cost when flat), so realised + unrealised equals
cash + position x mark exactly and a flat symbol's realised PnL is exact cash.

Inlining and compile time (CPU). numba IR inlining (``inline_cpu``) is kept for the small helpers
and the thin ``process_intent`` wrapper; the large bodies (``check_one``, ``commit``,
``order_alloc``, ``apply_fill``) are plain ``register_jitable``: numba compiles each on its own,
and LLVM inlines them into their callers (``kernels/cpu.py`` raises the inline threshold). With
``inline_cpu`` on them, numba compiled each body once to type it and then ran its passes again
over every inlined copy (``check_one`` and ``commit`` inside ``process_intent`` inside
``check_intents``, and again inside ``hedge_check``): those copies were 26 of the 39 s below.
``check_intents`` kept the same machine code: one function with only ``id_find`` out of line
(inlined too since 2026-12-07: "Hot path" below); the assembly differs in register and
stack-slot choice. Measured cold, empty cache
(``python -m bench.compile``; process CPU seconds; 2 shared vCPUs, numba 0.68.1, 2026-12-06):

  kernel           before  after (three runs)
  check_intents      28.6    7.6-9.2
  apply_exec         10.3    5.5-5.7
  mark_to_market      0.7    0.6
  every CPU kernel   55.4   31.6-33.0   (the others, unchanged code, 15-18: run-to-run spread)

A cold ``hftbot run --config-name smoke`` (its own compile step): 67.6 -> 32.3 s, risk 50.2 -> 14.7 s.

Compile time, one body per flags (2026-12-07). numba keeps a jitable's compiled body per set of
flags of the function calling it (the template's cache key holds the caller's flags). The
standalone typing of ``process_intent`` (an ``inline="always"`` overload compiles with the
overload defaults: no ``nogil``, no Python wrapper, runtime on) and ``check_intents`` differ, and
so did ``hedge_check`` (a plain jitable, under ``apply_exec``): ``check_one`` and ``commit`` were
compiled twice (4-5 and 2 s of CPU), ``order_close`` twice under ``apply_exec``. Now
``process_intent`` (``inline_cpu_nrt_off``), ``on_fill`` and ``hedge_check`` (``kernel_flags``)
are compiled on the CPU with the kernels' own flags (``_KERNEL_FLAGS``), so every helper under
them is compiled once and shared by both kernels; the machine code is the same. Cold, empty
cache, just these two kernels (process CPU s, 2 shared vCPUs, load 3-5, so +-20%):
``check_intents`` 19.8 -> 13.7, ``apply_exec`` 15.7 -> 12.9 (``bench.compile`` figures: README).

Hot path: no call left (2026-12-07). ``id_find`` was a plain jitable with a loop; LLVM left it a
call at each of its 2-3 sites per intent in ``check_one`` (the duplicate-id check, the order a
cancel/replace acts on), and in that large function a call spills and reloads most of the
caller's live values and passes the table as 9 scalars. It now reads the home slot inline
(``inline_cpu``, no loop, no reassignment: numba's IR inlining keeps SSA form) and leaves a
collision run to ``id_probe``. The same flow replayed from the same state, variants compiled in
one process and alternated (8 rounds; 2 shared vCPUs, load average 4.5-5.7, so absolute figures
are high), each intent's minimum over the rounds, mean: focused 61.3 -> 39.4 ns (replace p50
110 -> 70, new 80 -> 50), wide 76.1 -> 52.3 ns; per-run p50 85 -> 60 ns, p99 331 -> 245 ns.
``register_jitable(forceinline=True)`` on the loop version measured the same (40.1 / 52.9 ns)
but passes a CPU-only option to the CUDA target; ``inline_cpu`` on the loop version too (39.3)
but numba warns (``NumbaIRAssumptionWarning``, an error in the tests). Tried and not kept:
software prefetch (``kernels/prefetch.py``) of the lines an intent reads first (its two id
slots, its symbol's ``ps``, ``sym``, ``ls`` and ``bk`` rows) at the start of ``process_intent``:
focused 51.8 -> 53.0 ns, wide 69.6 -> 59.6 ns (same run: base vs variant); of the *next* intent's
lines at the end of each intent: 51.8 -> 66.6 and 69.6 -> 83.7 ns (the hints cost more than the
misses they hide: with 50 symbols the lines are in L1/L2 already); of the rate ring's next line
at each send (the head's line was written ``limit`` messages earlier), 2026-12-07: per-run p99
165 vs 170 ns focused, 335 vs 341 ns wide, 20 alternated rounds (noise). With every line an
intent reads loaded before its timed region, per-run p99 fell to ~105 ns in a quiet run
(``python -m bench.risk --lines``; README, "Where the p99 comes from, part two").

Risk hot path, same machine (shared and noisy; p50 / p99 ns per intent, focused and wide flow).
``python -m bench.risk``, three runs each: before focused 40-46 / 81-132, wide 42-44 / 116-169;
after focused 38-40 / 86-104, wide 43-44 / 175-194. Alternating A/B of the same timed loop
(median of 9 repeats, two rounds): before focused 41, 42 / 87, 102, wide 45, 45 / 152, 139;
after focused 40, 39 / 109, 107, wide 43, 42 / 164, 140. p50 and throughput unchanged; p99 is
within the run-to-run spread here, possibly up to ~10 ns higher (not resolved on this machine).
Tried and rejected: ``register_jitable`` on ``process_intent`` too (all kernels 24.6 s), but LLVM
leaves it an out-of-line call passing 18 arrays as ~150 scalar arguments: p50 62 / 65 ns; and
``resym`` and ``remark`` as plain jitables as well (25.5 s): ``resym`` stays a call on the
accepted path and the code no longer matches the old one (p50 42 / 43 ns).
"""

from __future__ import annotations

import numpy as np
from numba.extending import overload, register_jitable

from kernels import KERNEL_FLAGS
from kernels.flags import load_flag
from kernels.wire import inline_cpu  # noqa: F401  (CPU-inline, CUDA-plain jitable)

from kernels.book import B_BEST, L_PRICE, S_HALT_OP, S_LAST_PX, S_LULD_LOWER, S_LULD_UPPER, S_STOCK
from kernels.book import S_TRADING_STATE
from kernels.intents import (D_ACCEPT, D_OUT, D_REASON, E_ID, E_KIND, E_LOCATE, E_PRICE, E_QTY, E_SIDE,
    E_TS, EX_ACK, EX_CANCEL_REJECT, EX_CANCELED, EX_CONNECT, EX_DISCONNECT, EX_FILL, EX_REJECT,
    EX_REPLACE_REJECT, EX_REPLACED, I_ID, I_KIND, I_LOCATE, I_ORIG, I_ORIGIN, I_PRICE, I_QTY, I_SIDE,
    I_STRATEGY, I_STYLE, I_TIF, I_TS, KIND_CANCEL, KIND_NEW, KIND_REPLACE, MAX_PRICE, MAX_QTY, NI,
    ORIGIN_DISCONNECT, ORIGIN_HEDGE, ORIGIN_KILL, ORIGIN_THROTTLE, R_BAD_FIELD, R_BAD_PRICE, R_BAD_QTY,
    R_BAD_SIDE, R_BAD_SYMBOL, R_BOOK_CROSSED, R_CREDIT_LIMIT, R_DISCONNECTED, R_DUPLICATE_ID,
    R_DUPLICATE_ORDER, R_GROSS_LIMIT, R_HALTED, R_KILL_SWITCH, R_LULD_BAND, R_MAX_NOTIONAL, R_MAX_QTY,
    R_NET_LIMIT, R_NO_REFERENCE, R_OK, R_OPEN_ORDERS_FULL, R_ORDER_PENDING, R_POSITION_LIMIT,
    R_PRICE_COLLAR, R_RESTRICTED, R_SELF_CROSS, R_STALE_GAP, R_STALE_SILENT, R_STRATEGY_DISABLED,
    R_THROTTLE_CANCEL, R_THROTTLE_MODIFY, R_THROTTLE_SUBMIT, R_UNKNOWN_ORDER, R_UNKNOWN_SYMBOL, SIDE_BUY,
    SIDE_SELL, STYLE_QUOTE, STYLE_TAKE, TIF_DAY, TIF_IOC)


# --- globals g[...] ----------------------------------------------------------------------------
G_KILL = 0            # 0, or the KILL_* reason that engaged the kill switch (latched)
G_KILL_DONE = 1       # 1 once a cancel was emitted for every working order after the kill
G_DISCONNECTED = 2    # 1 while the FIX session is down
G_OUT_N = 3           # rows written to the orders-out table in the current call
G_NEXT_ID = 4         # next client order id for risk-made orders (hedges, cancels)
G_ERROR = 5           # ERR_* (stops the call); 0 = none
G_FREE = 6            # free order slots on the ofree stack
G_OPEN = 7            # live order rows
G_HEDGE_LOC = 8       # locate of the hedge instrument once the feed showed it; -1 before
G_GROSS = 10          # aggregates, Price(4) x shares (hedge: x 10,000 for the beta)
G_NETLONG = 11
G_NETSHORT = 12
G_CREDIT = 13
G_UPNL = 14
G_RPNL = 15
G_HEDGE_E4 = 16
G_PEAK = 17           # highest realised + unrealised PnL so far (drawdown reference)
G_INTENTS = 20        # counters
G_ACCEPTED = 21
G_REJECTED = 22
G_EXEC = 23
G_FILLS = 24
G_FILLED_QTY = 25
G_UNKNOWN_EXEC = 26   # execution events for ids we do not hold (fills still update positions)
G_OVERFILLS = 27      # fills beyond an order's leaves quantity
G_KILL_CANCELS = 28
G_COD_CANCELS = 29
G_THROTTLE_CANCELS = 30
G_HEDGES = 31         # hedge orders accepted
G_HEDGES_REJECTED = 32
G_HEDGE_UNPRICED = 33  # hedge wanted but no price for the hedge instrument
G_GAPS = 34           # MoldUDP64 gaps seen by feed_health
G_BAD_EXEC = 35       # malformed execution events (skipped)
G_LATCHES = 36        # strategies disabled by the repeated-execution throttle
NG = 48

KILL_MANUAL = 1
KILL_SIGNAL = 2
KILL_FILE = 3
KILL_LOSS = 4
KILL_DRAWDOWN = 5
KILL_NAMES = {0: "off", KILL_MANUAL: "manual", KILL_SIGNAL: "signal", KILL_FILE: "kill file",
              KILL_LOSS: "loss limit", KILL_DRAWDOWN: "drawdown limit"}

ERR_OUT_FULL = 1

# --- global limits and settings lim[...] -------------------------------------------------------
L_MAX_GROSS = 0        # Price(4) x shares
L_MAX_NET = 1
L_MAX_CREDIT = 2
L_MAX_LOSS = 3         # kill when realised + unrealised < -max_loss
L_MAX_DRAWDOWN = 4     # kill when peak - (realised + unrealised) > max_drawdown
L_REF_MODE = 5         # REF_MID / REF_LAST
L_SILENCE_NS = 6       # 0 = no silence check
L_BLOCK_LOCKED = 7     # 1: a locked book (bid == ask) is unsound too
L_GAP_RESYNC_NS = 8    # > 0: a gap clears after this long; 0: only an explicit recovery clears it
L_DUP_WINDOW_NS = 9    # duplicate-order window; 0 = off
L_COD = 10             # 1: cancel every working order when the FIX session drops
L_THR_LIMIT = 12       # + TH_*: messages allowed per window (12..15)
L_THR_INTERVAL = 16    # + TH_*: window length, ns (16..19)
L_HEDGE_ON = 20
L_HEDGE_STOCK = 21     # packed stock of the hedge instrument; 0 = hedge in the filled symbol
L_HEDGE_BETA_BP = 22   # beta of the book against the hedge instrument, 1/10,000
L_HEDGE_THRESHOLD = 23  # |net exposure| above which to hedge, Price(4) x shares
L_HEDGE_TARGET = 24    # hedge back down to this |net exposure|
L_HEDGE_STRATEGY = 25  # strategy id the hedge orders run under (their throttles and latch)
NL = 32

REF_MID = 0   # mid of the book's best bid and ask, else the last trade
REF_LAST = 1  # the last trade, else the mid

TH_SUBMIT = 0
TH_MODIFY = 1
TH_CANCEL = 2
TH_EXEC = 3   # executions: the repeated-execution throttle
N_TH = 4

# --- per-symbol limits ls[locate, ...] -------------------------------------------------------------
LS_BOUND = 0        # packed stock this row was bound for (0: symbol not seen yet)
LS_RESTRICTED = 1
LS_MAX_QTY = 2
LS_MAX_NOTIONAL = 3  # Price(4) x shares
LS_MAX_POS = 4
LS_COLLAR_BPS = 5
NLS = 8

# --- per-symbol state ps[locate, ...] ----------------------------------------------------------
PS_POS = 0           # shares, + long            (fields 0-15: what every check reads, two lines)
PS_OPEN_BUY = 1      # worst-case open buy shares (leaves + pending replace increases)
PS_OPEN_SELL = 2
PS_MARK = 3          # Price(4)
PS_SESS = 4          # feed session the symbol's messages arrive on; -1 never seen
PS_OUR_BID = 5       # our best resting buy price (0: none)
PS_OUR_ASK = 6       # our best resting sell price (0: none)
PS_HEAD = 7          # first of our orders on this symbol (ro list), -1 none
PS_C_GROSS = 8       # this symbol's contribution to each aggregate
PS_C_NETLONG = 9
PS_C_NETSHORT = 10
PS_C_CREDIT = 11
PS_C_UPNL = 12
PS_C_HEDGE = 13
PS_COST = 14         # signed cost of the open position, Price(4) x shares
PS_HEDGE_OPEN = 15   # signed open shares of hedge orders
PS_DUP_SIDE = 16     # last accepted new order: side, price, qty, ts, strategy
PS_DUP_PX = 17
PS_DUP_QTY = 18
PS_DUP_TS = 19
PS_DUP_STRAT = 20
PS_RPNL = 21         # realised PnL, Price(4) x shares
PS_BOUGHT = 22       # shares bought / sold (fills)
PS_SOLD = 23
PS_FILLS = 24
NPS = 32

# --- per-session feed status hs[session, ...] ------------------------------------------------------
HS_NEXT = 0          # next expected MoldUDP64 sequence number (0: none seen)
HS_GAP_OPEN = 1      # 1 from a gap until recovery
HS_GAPS = 2
HS_GAP_MSGS = 3
HS_LAST_TS = 4       # time of the newest message
HS_GAP_TS = 5        # time of the latest gap
NHS = 8

# --- our orders ro[slot, ...] ----------------------------------------------------------------------
RO_ID = 0            # (fields 0-7: what a cancel / replace check reads, one line)
RO_STATE = 1         # OS_*; 0 = free row
RO_STRAT = 2
RO_LOC = 3
RO_SIDE = 4
RO_QTY = 5           # total order quantity
RO_LEAVES = 6        # shares counted open (pending replace: the increase it may bring)
RO_CUM = 7           # shares filled
RO_PRICE = 8
RO_ORIGIN = 9
RO_LINK = 10         # replace partner: the new row of a replacing order, or the original of a new row
RO_PREV = 11         # the symbol's list of our orders
RO_NEXT = 12
RO_TS = 13
RO_TIF = 14
NRO = 16

OS_PENDING_NEW = 1
OS_WORKING = 2
OS_PENDING_CANCEL = 3
OS_REPLACING = 4        # an original order with a replace in flight
OS_PENDING_REPLACE = 5  # the replacement (new id) until the venue confirms it

ST_DISABLED = 0
ST_HEAD = 1          # + TH_*: next write position in each rate ring
ST_FILLS = 5
NST = 8

BP = 10_000
NEVER = -(1 << 62)   # empty rate-ring slot


# --- client order id -> order slot: open addressing, linear probing, backward-shift deletion ------
@inline_cpu
def id_home(key, mask):
    """Home slot of a client order id (> 0). Shifts and xors only (no overflow on any backend);
    rising ids land in neighbouring slots, and the table is kept at most half full."""
    return (key ^ (key >> 17) ^ (key >> 41)) & mask


@register_jitable
def id_probe(oh, key, i, mask):
    """``id_find`` from slot ``i`` on: the rest of a collision run (out of line)."""
    while oh[i, 1] != -1:
        if oh[i, 0] == key:
            return oh[i, 1]
        i = (i + 1) & mask
    return -1


@inline_cpu
def id_find(oh, key):
    """Slot of the live order with client order id ``key``, or -1. ``oh[i] = (id, slot)``, slot
    -1 = empty: key and value share a cache line.

    The home slot is read inline (it answers almost every lookup: the table is at most half full
    and rising ids land in neighbouring slots); a collision run goes on in ``id_probe``. Written
    without a loop or a reassignment, so numba's IR inlining keeps its SSA form. As one plain
    ``register_jitable`` (the loop) LLVM left it a call at each of its sites in ``check_one``
    (2-3 per intent), and in that large function a call spills and reloads most of the caller's
    registers and passes the table as 9 scalars; inlined, the flow's intents cost about 20 ns
    less at the median (module docstring, "Hot path")."""
    mask = oh.shape[0] - 1
    i = id_home(key, mask)
    v = oh[i, 1]
    if v == -1 or oh[i, 0] == key:
        return v
    return id_probe(oh, key, (i + 1) & mask, mask)


@register_jitable
def id_insert(oh, key, val):
    """Index an absent id (the table has at least twice the slots of live orders)."""
    mask = oh.shape[0] - 1
    i = id_home(key, mask)
    while oh[i, 1] != -1:
        i = (i + 1) & mask
    oh[i, 0] = key
    oh[i, 1] = val


@register_jitable
def id_delete(oh, key):
    """Remove an id; later entries of its run shift back so lookups never need tombstones."""
    mask = oh.shape[0] - 1
    i = id_home(key, mask)
    while oh[i, 1] != -1 and oh[i, 0] != key:
        i = (i + 1) & mask
    if oh[i, 1] == -1:
        return
    j = i
    while True:
        j = (j + 1) & mask
        if oh[j, 1] == -1:
            break
        h = id_home(oh[j, 0], mask)
        # entry j may fill the hole at i unless its home lies cyclically in (i, j]
        if (i <= j and (h <= i or h > j)) or (i > j and h <= i and h > j):
            oh[i, 0] = oh[j, 0]
            oh[i, 1] = oh[j, 1]
            i = j
    oh[i, 1] = -1


# --- market view -----------------------------------------------------------------------------------
@inline_cpu
def market(loc, mode, bk, li, sym):
    """(reference, best bid, best ask) of a symbol, Price(4); 0 where absent.

    Written without branches or reassignments: it is inlined into several kernels, and numba's
    SSA repair after inlining warns about variables assigned on two paths. An empty side
    (``bk == -1``) reads level row 0 and masks it to 0."""
    b = bk[loc * 2, B_BEST]
    a = bk[loc * 2 + 1, B_BEST]
    bid = li[b * (b > 0), L_PRICE] * (b >= 0)
    ask = li[a * (a > 0), L_PRICE] * (a >= 0)
    last = sym[loc, S_LAST_PX]
    both = (bid > 0) * (ask > 0)
    mid = ((bid + ask) >> 1) * both
    by_mid = mid + last * (mid <= 0)      # REF_MID: the mid, else the last trade
    by_last = last + mid * (last <= 0)    # REF_LAST: the last trade, else the mid
    use_last = mode == REF_LAST
    return by_mid * (1 - use_last) + by_last * use_last, bid, ask


# --- exposure and PnL aggregates ---------------------------------------------------------------
@inline_cpu
def resym(loc, g, lim, ps):
    """Recompute the symbol's contributions to every aggregate, apply the differences, and engage
    the kill switch on the loss or drawdown limit."""
    pos = ps[loc, PS_POS]
    ob = ps[loc, PS_OPEN_BUY]
    osl = ps[loc, PS_OPEN_SELL]
    m = ps[loc, PS_MARK]
    wp = pos + ob
    wm = pos - osl
    cg = (wp if wp > -wm else -wm) * m
    cnl = wp * m
    cns = wm * m
    ap = pos if pos >= 0 else -pos
    cc = (ap + ob + osl) * m
    cu = pos * m - ps[loc, PS_COST]
    if lim[L_HEDGE_STOCK] == 0 or loc == g[G_HEDGE_LOC]:
        ch = (pos + ps[loc, PS_HEDGE_OPEN]) * m * BP
    else:
        ch = pos * m * lim[L_HEDGE_BETA_BP]
    g[G_GROSS] += cg - ps[loc, PS_C_GROSS]
    g[G_NETLONG] += cnl - ps[loc, PS_C_NETLONG]
    g[G_NETSHORT] += cns - ps[loc, PS_C_NETSHORT]
    g[G_CREDIT] += cc - ps[loc, PS_C_CREDIT]
    g[G_UPNL] += cu - ps[loc, PS_C_UPNL]
    g[G_HEDGE_E4] += ch - ps[loc, PS_C_HEDGE]
    ps[loc, PS_C_GROSS] = cg
    ps[loc, PS_C_NETLONG] = cnl
    ps[loc, PS_C_NETSHORT] = cns
    ps[loc, PS_C_CREDIT] = cc
    ps[loc, PS_C_UPNL] = cu
    ps[loc, PS_C_HEDGE] = ch
    total = g[G_RPNL] + g[G_UPNL]
    if total > g[G_PEAK]:
        g[G_PEAK] = total
    if g[G_KILL] == 0:
        if total < -lim[L_MAX_LOSS]:
            g[G_KILL] = KILL_LOSS
        elif g[G_PEAK] - total > lim[L_MAX_DRAWDOWN]:
            g[G_KILL] = KILL_DRAWDOWN


@inline_cpu
def remark(loc, ref, g, lim, ps):
    if ref > 0 and ref != ps[loc, PS_MARK]:
        ps[loc, PS_MARK] = ref
        resym(loc, g, lim, ps)


@register_jitable
def apply_fill(loc, side, q, px, g, ps):
    """Position, average cost and realised PnL for ``q`` shares at ``px`` (exact integers)."""
    sq = q if side == SIDE_BUY else -q
    pos = ps[loc, PS_POS]
    cost = ps[loc, PS_COST]
    if pos == 0 or (pos > 0) == (sq > 0):
        pos += sq
        cost += sq * px
    else:
        sgn = 1 if pos > 0 else -1
        ap = pos * sgn
        ac = cost * sgn
        close = q if q < ap else ap
        # the share of the cost removed: floor(ac * close / ap) without overflowing
        rem = (ac // ap) * close + ((ac % ap) * close) // ap
        pnl = sgn * (close * px - rem)
        ps[loc, PS_RPNL] += pnl
        g[G_RPNL] += pnl
        cost -= sgn * rem
        pos -= sgn * close
        left = q - close
        if left > 0:  # the fill flips the position
            s2 = 1 if sq > 0 else -1
            pos += s2 * left
            cost += s2 * left * px
    ps[loc, PS_POS] = pos
    ps[loc, PS_COST] = cost
    if side == SIDE_BUY:
        ps[loc, PS_BOUGHT] += q
    else:
        ps[loc, PS_SOLD] += q
    ps[loc, PS_FILLS] += 1


# --- message-rate rings --------------------------------------------------------------------------
@inline_cpu
def throttle_ok(s, kind, now, lim, st, rt):
    """May strategy ``s`` send one more message of ``kind`` at ``now``? Exact sliding window: yes
    when the ``limit``-th most recent one is at least ``interval`` ns old."""
    lm = lim[L_THR_LIMIT + kind]
    if lm <= 0:
        return False
    return rt[s, kind, st[s, ST_HEAD + kind]] <= now - lim[L_THR_INTERVAL + kind]


@inline_cpu
def throttle_record(s, kind, now, lim, st, rt):
    lm = lim[L_THR_LIMIT + kind]
    if lm <= 0:
        return
    h = st[s, ST_HEAD + kind]
    rt[s, kind, h] = now
    st[s, ST_HEAD + kind] = (h + 1) * (h + 1 < lm)  # wraps to 0 (branch-free: this body is inlined)


# --- our orders ------------------------------------------------------------------------------------
@register_jitable
def best_recompute(loc, ro, ps):
    """Our best resting buy and sell prices on a symbol, from its list of our orders."""
    bid = 0
    ask = 0
    x = ps[loc, PS_HEAD]
    while x >= 0:
        p = ro[x, RO_PRICE]
        if ro[x, RO_SIDE] == SIDE_BUY:
            if p > bid:
                bid = p
        elif ask == 0 or p < ask:
            ask = p
        x = ro[x, RO_NEXT]
    ps[loc, PS_OUR_BID] = bid
    ps[loc, PS_OUR_ASK] = ask


@register_jitable
def order_alloc(oid, loc, side, price, qty, leaves, state, strat, origin, tif, link, now, g, ps, ro, oh,
                ofree):
    """Take a free slot for a live order, index it by id, link it into its symbol's list."""
    nf = g[G_FREE]
    x = ofree[nf - 1]
    g[G_FREE] = nf - 1
    g[G_OPEN] += 1
    id_insert(oh, oid, x)
    ro[x, RO_ID] = oid
    ro[x, RO_LOC] = loc
    ro[x, RO_SIDE] = side
    ro[x, RO_PRICE] = price
    ro[x, RO_QTY] = qty
    ro[x, RO_LEAVES] = leaves
    ro[x, RO_CUM] = 0
    ro[x, RO_STATE] = state
    ro[x, RO_STRAT] = strat
    ro[x, RO_ORIGIN] = origin
    ro[x, RO_LINK] = link
    ro[x, RO_TS] = now
    ro[x, RO_TIF] = tif
    h = ps[loc, PS_HEAD]
    ro[x, RO_PREV] = -1
    ro[x, RO_NEXT] = h
    if h >= 0:
        ro[h, RO_PREV] = x
    ps[loc, PS_HEAD] = x
    if side == SIDE_BUY:
        ps[loc, PS_OPEN_BUY] += leaves
        if price > ps[loc, PS_OUR_BID]:
            ps[loc, PS_OUR_BID] = price
    else:
        ps[loc, PS_OPEN_SELL] += leaves
        if ps[loc, PS_OUR_ASK] == 0 or price < ps[loc, PS_OUR_ASK]:
            ps[loc, PS_OUR_ASK] = price
    if origin == ORIGIN_HEDGE:
        ps[loc, PS_HEDGE_OPEN] += leaves * (1 - 2 * side)  # + buy, - sell
    return x


@register_jitable
def reduce_leaves(x, q, ps, ro):
    """Take ``q`` (<= leaves) shares off an order's open quantity."""
    loc = ro[x, RO_LOC]
    ro[x, RO_LEAVES] -= q
    if ro[x, RO_SIDE] == SIDE_BUY:
        ps[loc, PS_OPEN_BUY] -= q
        if ro[x, RO_ORIGIN] == ORIGIN_HEDGE:
            ps[loc, PS_HEDGE_OPEN] -= q
    else:
        ps[loc, PS_OPEN_SELL] -= q
        if ro[x, RO_ORIGIN] == ORIGIN_HEDGE:
            ps[loc, PS_HEDGE_OPEN] += q


@register_jitable
def order_free(x, g, ps, ro, oh, ofree):
    """Release a live order row: open quantity, symbol list, our best prices, id index, slot."""
    loc = ro[x, RO_LOC]
    reduce_leaves(x, ro[x, RO_LEAVES], ps, ro)
    p = ro[x, RO_PREV]
    nx = ro[x, RO_NEXT]
    if p >= 0:
        ro[p, RO_NEXT] = nx
    else:
        ps[loc, PS_HEAD] = nx
    if nx >= 0:
        ro[nx, RO_PREV] = p
    price = ro[x, RO_PRICE]
    if price == ps[loc, PS_OUR_BID] or price == ps[loc, PS_OUR_ASK]:
        best_recompute(loc, ro, ps)  # x is already out of the list
    id_delete(oh, ro[x, RO_ID])
    ro[x, RO_STATE] = 0
    ro[x, RO_LINK] = -1
    nf = g[G_FREE]
    ofree[nf] = x
    g[G_FREE] = nf + 1
    g[G_OPEN] -= 1


@register_jitable
def order_close(x, g, lim, ps, ro, oh, ofree):
    """An order is gone (done, cancelled, rejected): free it, and settle a replace in flight."""
    loc = ro[x, RO_LOC]
    link = ro[x, RO_LINK]
    if link >= 0:
        if ro[x, RO_STATE] == OS_PENDING_REPLACE:  # the replacement died: the original stays
            ro[link, RO_LINK] = -1
            if ro[link, RO_STATE] == OS_REPLACING:
                ro[link, RO_STATE] = OS_WORKING
        else:  # the original died with a replace in flight: the replace cannot happen
            order_free(link, g, ps, ro, oh, ofree)
    order_free(x, g, ps, ro, oh, ofree)
    resym(loc, g, lim, ps)


@register_jitable
def emit_cancel(x, origin, now, out, g, ro):
    """Write a cancel for live order ``x`` to the orders-out table; False when the table is full."""
    o = g[G_OUT_N]
    if o >= out.shape[0]:
        g[G_ERROR] = ERR_OUT_FULL
        return False
    out[o, I_LOCATE] = ro[x, RO_LOC]
    out[o, I_SIDE] = ro[x, RO_SIDE]
    out[o, I_PRICE] = ro[x, RO_PRICE]
    out[o, I_QTY] = ro[x, RO_LEAVES]
    out[o, I_TIF] = ro[x, RO_TIF]
    out[o, I_KIND] = KIND_CANCEL
    out[o, I_STYLE] = STYLE_QUOTE
    out[o, I_ID] = g[G_NEXT_ID]
    out[o, I_ORIG] = ro[x, RO_ID]
    out[o, I_STRATEGY] = ro[x, RO_STRAT]
    out[o, I_TS] = now
    out[o, I_ORIGIN] = origin
    g[G_NEXT_ID] += 1
    g[G_OUT_N] = o + 1
    ro[x, RO_STATE] = OS_PENDING_CANCEL
    return True


@register_jitable
def cancel_all(strategy, origin, now, out, g, ro):
    """A cancel for every working order (of ``strategy``; all when < 0) without one in flight.
    A replacement in flight is covered by the cancel of its original (and cancelled itself if
    the venue confirms it). Returns the cancels written, or -1 when the out table filled."""
    n = 0
    for x in range(ro.shape[0]):
        s = ro[x, RO_STATE]
        if s == OS_PENDING_NEW or s == OS_WORKING or s == OS_REPLACING:
            if strategy < 0 or ro[x, RO_STRAT] == strategy:
                if not emit_cancel(x, origin, now, out, g, ro):
                    return -1
                n += 1
    return n


@register_jitable
def service_kill(now, out, g, ro):
    """Once the kill switch is engaged (by anyone: a kernel, a signal handler, a method), emit a
    cancel for every working order, once. False when the out table filled (retried next call)."""
    if g[G_KILL] != 0 and g[G_KILL_DONE] == 0:
        n = cancel_all(-1, ORIGIN_KILL, now, out, g, ro)
        if n < 0:
            return False
        g[G_KILL_CANCELS] += n
        g[G_KILL_DONE] = 1
    return True


# --- the checks ------------------------------------------------------------------------------------
# The hot path (check_one, commit and what they call) is compiled on its own (``register_jitable``)
# and inlined by LLVM into ``process_intent``, which numba inlines into ``check_intents`` (module
# docstring: IR-inlining these large bodies cost 28.6 s of compile for check_intents alone).
@register_jitable
def check_one(src, k, g, lim, ls, ps, hs, ro, oh, st, rt, bk, li, sym):
    """Every pre-trade check on intent row ``k`` of ``src``, in order; the first failure wins.

    Returns ``(reason, slot of the order a cancel/replace acts on or -1)``. Side effect: the
    symbol is re-marked to its reference price (a fresher mark is right whatever the outcome).
    """
    kind = src[k, I_KIND]
    now = src[k, I_TS]
    if load_flag(g, G_KILL) != 0:   # set by another thread mid-batch (kernels/flags.py)
        return R_KILL_SWITCH, -1
    if g[G_DISCONNECTED] != 0:
        return R_DISCONNECTED, -1
    s = src[k, I_STRATEGY]
    if s < 0 or s >= st.shape[0] or src[k, I_ID] <= 0:
        return R_BAD_FIELD, -1
    if kind == KIND_CANCEL:
        o = id_find(oh, src[k, I_ORIG])
        if o < 0 or ro[o, RO_STRAT] != s or ro[o, RO_STATE] == OS_PENDING_REPLACE:
            return R_UNKNOWN_ORDER, -1
        if ro[o, RO_STATE] == OS_PENDING_CANCEL or ro[o, RO_STATE] == OS_REPLACING:
            return R_ORDER_PENDING, o
        if not throttle_ok(s, TH_CANCEL, now, lim, st, rt):
            return R_THROTTLE_CANCEL, o
        return R_OK, o
    if kind != KIND_NEW and kind != KIND_REPLACE:
        return R_BAD_FIELD, -1
    if st[s, ST_DISABLED] != 0:
        return R_STRATEGY_DISABLED, -1
    tif = src[k, I_TIF]
    style = src[k, I_STYLE]
    if (tif != TIF_DAY and tif != TIF_IOC) or (style != STYLE_QUOTE and style != STYLE_TAKE):
        return R_BAD_FIELD, -1
    loc = src[k, I_LOCATE]
    side = src[k, I_SIDE]
    if loc <= 0 or loc >= ps.shape[0]:
        return R_BAD_SYMBOL, -1
    if side != SIDE_BUY and side != SIDE_SELL:
        return R_BAD_SIDE, -1
    price = src[k, I_PRICE]
    qty = src[k, I_QTY]
    if price <= 0 or price > MAX_PRICE:
        return R_BAD_PRICE, -1
    if qty <= 0 or qty > MAX_QTY:
        return R_BAD_QTY, -1
    if id_find(oh, src[k, I_ID]) >= 0:
        return R_DUPLICATE_ID, -1
    o = -1
    extra = qty  # worst-case open shares this intent adds
    if kind == KIND_REPLACE:
        o = id_find(oh, src[k, I_ORIG])
        if o < 0 or ro[o, RO_STRAT] != s or ro[o, RO_STATE] == OS_PENDING_REPLACE:
            return R_UNKNOWN_ORDER, -1
        if ro[o, RO_STATE] != OS_WORKING and ro[o, RO_STATE] != OS_PENDING_NEW:
            return R_ORDER_PENDING, o
        if ro[o, RO_LOC] != loc or ro[o, RO_SIDE] != side:
            return R_BAD_FIELD, o
        if qty <= ro[o, RO_CUM]:
            return R_BAD_QTY, o
        extra = qty - ro[o, RO_QTY]
        if extra < 0:
            extra = 0
    # the symbol: known, allowed, trading, market data sound
    if ls[loc, LS_BOUND] == 0:
        return R_UNKNOWN_SYMBOL, o
    if ls[loc, LS_RESTRICTED] != 0:
        return R_RESTRICTED, o
    tst = sym[loc, S_TRADING_STATE]
    # 'H' halted, 'P' paused (LULD), 'Q' quotation only; 'h' operational halt
    if tst == 72 or tst == 80 or tst == 81 or sym[loc, S_HALT_OP] == 72:
        return R_HALTED, o
    sess = ps[loc, PS_SESS]
    if sess < 0:
        return R_UNKNOWN_SYMBOL, o
    if hs[sess, HS_GAP_OPEN] != 0:
        return R_STALE_GAP, o
    if lim[L_SILENCE_NS] > 0 and now - hs[sess, HS_LAST_TS] > lim[L_SILENCE_NS]:
        return R_STALE_SILENT, o
    ref, bid, ask = market(loc, lim[L_REF_MODE], bk, li, sym)
    if bid > 0 and ask > 0 and (bid > ask or (bid == ask and lim[L_BLOCK_LOCKED] != 0)):
        return R_BOOK_CROSSED, o
    if ref <= 0:
        return R_NO_REFERENCE, o
    remark(loc, ref, g, lim, ps)
    if g[G_KILL] != 0:  # the re-mark crossed the loss or drawdown limit
        return R_KILL_SWITCH, o
    # price
    bps = ls[loc, LS_COLLAR_BPS]
    if side == SIDE_BUY:
        if price * BP > ref * (BP + bps):
            return R_PRICE_COLLAR, o
        up = sym[loc, S_LULD_UPPER]
        if up > 0 and price > up:
            return R_LULD_BAND, o
    else:
        if price * BP < ref * (BP - bps):
            return R_PRICE_COLLAR, o
        lo = sym[loc, S_LULD_LOWER]
        if lo > 0 and price < lo:
            return R_LULD_BAND, o
    # size
    if qty > ls[loc, LS_MAX_QTY]:
        return R_MAX_QTY, o
    if price * qty > ls[loc, LS_MAX_NOTIONAL]:
        return R_MAX_NOTIONAL, o
    # our own orders
    if side == SIDE_BUY:
        if ps[loc, PS_OUR_ASK] > 0 and price >= ps[loc, PS_OUR_ASK]:
            return R_SELF_CROSS, o
    elif ps[loc, PS_OUR_BID] > 0 and price <= ps[loc, PS_OUR_BID]:
        return R_SELF_CROSS, o
    if kind == KIND_NEW and ps[loc, PS_DUP_STRAT] == s and ps[loc, PS_DUP_SIDE] == side \
            and ps[loc, PS_DUP_PX] == price and ps[loc, PS_DUP_QTY] == qty \
            and now - ps[loc, PS_DUP_TS] < lim[L_DUP_WINDOW_NS]:
        return R_DUPLICATE_ORDER, o
    # exposure, worst case: every open order fills
    pos = ps[loc, PS_POS]
    ob = ps[loc, PS_OPEN_BUY]
    osl = ps[loc, PS_OPEN_SELL]
    if side == SIDE_BUY:
        ob += extra
    else:
        osl += extra
    wp = pos + ob
    wm = pos - osl
    if side == SIDE_BUY:
        if wp > ls[loc, LS_MAX_POS]:
            return R_POSITION_LIMIT, o
    elif -wm > ls[loc, LS_MAX_POS]:
        return R_POSITION_LIMIT, o
    m = ps[loc, PS_MARK]
    cg = (wp if wp > -wm else -wm) * m
    if cg > ps[loc, PS_C_GROSS] and g[G_GROSS] - ps[loc, PS_C_GROSS] + cg > lim[L_MAX_GROSS]:
        return R_GROSS_LIMIT, o
    if side == SIDE_BUY:
        c = wp * m
        if c > ps[loc, PS_C_NETLONG] and g[G_NETLONG] - ps[loc, PS_C_NETLONG] + c > lim[L_MAX_NET]:
            return R_NET_LIMIT, o
    else:
        c = wm * m
        if c < ps[loc, PS_C_NETSHORT] and g[G_NETSHORT] - ps[loc, PS_C_NETSHORT] + c < -lim[L_MAX_NET]:
            return R_NET_LIMIT, o
    ap = pos if pos >= 0 else -pos
    cc = (ap + ob + osl) * m
    if cc > ps[loc, PS_C_CREDIT] and g[G_CREDIT] - ps[loc, PS_C_CREDIT] + cc > lim[L_MAX_CREDIT]:
        return R_CREDIT_LIMIT, o
    if g[G_FREE] <= 0:
        return R_OPEN_ORDERS_FULL, o
    if kind == KIND_NEW:
        if not throttle_ok(s, TH_SUBMIT, now, lim, st, rt):
            return R_THROTTLE_SUBMIT, o
    elif not throttle_ok(s, TH_MODIFY, now, lim, st, rt):
        return R_THROTTLE_MODIFY, o
    return R_OK, o


@register_jitable
def commit(src, k, o, out, g, lim, ps, ro, oh, ofree, st, rt):
    """Book an accepted intent: open orders, rate rings, and its row in the orders-out table
    (``G_OUT_N`` has room: callers check). Returns that row."""
    kind = src[k, I_KIND]
    now = src[k, I_TS]
    s = src[k, I_STRATEGY]
    row = g[G_OUT_N]
    for j in range(NI):
        out[row, j] = src[k, j]
    g[G_OUT_N] = row + 1
    if kind == KIND_CANCEL:
        out[row, I_LOCATE] = ro[o, RO_LOC]
        out[row, I_SIDE] = ro[o, RO_SIDE]
        out[row, I_PRICE] = ro[o, RO_PRICE]
        out[row, I_QTY] = ro[o, RO_LEAVES]
        ro[o, RO_STATE] = OS_PENDING_CANCEL
        throttle_record(s, TH_CANCEL, now, lim, st, rt)
        return row
    loc = src[k, I_LOCATE]
    side = src[k, I_SIDE]
    price = src[k, I_PRICE]
    qty = src[k, I_QTY]
    if kind == KIND_NEW:
        order_alloc(src[k, I_ID], loc, side, price, qty, qty, OS_PENDING_NEW, s, src[k, I_ORIGIN],
                    src[k, I_TIF], -1, now, g, ps, ro, oh, ofree)
        ps[loc, PS_DUP_SIDE] = side
        ps[loc, PS_DUP_PX] = price
        ps[loc, PS_DUP_QTY] = qty
        ps[loc, PS_DUP_TS] = now
        ps[loc, PS_DUP_STRAT] = s
        throttle_record(s, TH_SUBMIT, now, lim, st, rt)
    else:
        extra = qty - ro[o, RO_QTY]
        if extra < 0:
            extra = 0
        x = order_alloc(src[k, I_ID], loc, side, price, qty, extra, OS_PENDING_REPLACE, s, ro[o, RO_ORIGIN],
                        src[k, I_TIF], o, now, g, ps, ro, oh, ofree)
        ro[o, RO_LINK] = x
        ro[o, RO_STATE] = OS_REPLACING
        throttle_record(s, TH_MODIFY, now, lim, st, rt)
    resym(loc, g, lim, ps)
    return row


#: the CPU kernels' compile flags (``kernels.KERNEL_FLAGS``, with the Python wrapper every
#: ``njit`` gets); see ``kernel_flags``
_KERNEL_FLAGS = {**KERNEL_FLAGS, "no_cpython_wrapper": False}


def kernel_flags(fn):
    """``register_jitable`` whose CPU compile uses the kernels' flags (``_KERNEL_FLAGS``); a plain
    device function on CUDA. numba keeps a jitable's compiled body per set of flags of the
    function that calls it: ``check_one`` and ``commit`` called from ``check_intents`` and, under
    ``apply_exec``, from ``hedge_check`` (a jitable, default flags) were compiled twice."""
    overload(fn, target="cpu", strict=False, jit_options=dict(_KERNEL_FLAGS))(lambda *args, **kwargs: fn)
    overload(fn, target="cuda", strict=False)(lambda *args, **kwargs: fn)
    return fn


def inline_cpu_nrt_off(fn):
    """``inline_cpu`` (``kernels/wire.py``) whose own CPU compile, the one numba makes to type it
    before inlining, runs without the reference-counting runtime, as the kernels that inline it
    (``kernels/cpu.py``: ``_nrt=False``). The jitables it calls are compiled once per set of
    flags: with the default flags (``_nrt`` on) there, ``check_one`` and ``commit`` were compiled
    twice for ``check_intents``, once under that typing and once for the kernel (module
    docstring, "Compile time")."""
    overload(fn, target="cpu", inline="always", strict=False, jit_options=dict(_KERNEL_FLAGS))(
        lambda *args, **kwargs: fn)
    overload(fn, target="cuda", strict=False)(lambda *args, **kwargs: fn)
    return fn


@inline_cpu_nrt_off
def process_intent(k, intents, res, out, g, lim, ls, ps, hs, ro, oh, ofree, st, rt, rc, bk, li, sym):
    """One step of ``check_intents``: the whole check set and the bookkeeping for intent ``k``
    (what the benchmark times). False when ``out`` is full (``g[G_ERROR]``)."""
    if load_flag(g, G_KILL) != 0 and g[G_KILL_DONE] == 0 and not service_kill(intents[k, I_TS], out, g, ro):
        return False
    if g[G_OUT_N] >= out.shape[0]:
        g[G_ERROR] = ERR_OUT_FULL
        return False
    reason, o = check_one(intents, k, g, lim, ls, ps, hs, ro, oh, st, rt, bk, li, sym)
    g[G_INTENTS] += 1
    res[k, D_REASON] = reason
    if reason == R_OK:
        res[k, D_OUT] = commit(intents, k, o, out, g, lim, ps, ro, oh, ofree, st, rt)
        res[k, D_ACCEPT] = 1
        g[G_ACCEPTED] += 1
    else:
        res[k, D_ACCEPT] = 0
        res[k, D_OUT] = -1
        rc[reason] += 1
        g[G_REJECTED] += 1
    return True


def check_intents(n, intents, res, out, risk, book):
    """Check ``n`` order intents in order; write a decision per intent and the accepted orders
    (plus any kill-switch cancels) to ``out`` from row ``g[G_OUT_N]``.

    ``risk``: risk's state and limits, read by name (``kernels.state.RiskArrays``, or
    ``RiskTables``); ``book``: the book state's ``bk``, ``li``, ``sym``, read by name
    (``BookArrays``, or ``BookRefs``). Returns the intents processed: ``n``, or fewer when ``out``
    filled (``g[G_ERROR] = ERR_OUT_FULL``).
    """
    g, lim, ls, ps, hs, ro = risk.g, risk.lim, risk.ls, risk.ps, risk.hs, risk.ro
    oh, ofree, st, rt, rc = risk.oh, risk.ofree, risk.st, risk.rt, risk.rc
    bk, li, sym = book.bk, book.li, book.sym
    k = 0
    while k < n:
        if not process_intent(k, intents, res, out, g, lim, ls, ps, hs, ro, oh, ofree, st, rt, rc, bk, li,
                              sym):
            break
        k += 1
    if k == n and n > 0:
        service_kill(intents[n - 1, I_TS], out, g, ro)
    return k


# --- execution events ------------------------------------------------------------------------------
@kernel_flags
def hedge_check(loc, now, out, g, lim, ls, ps, hs, ro, oh, ofree, st, rt, rc, bk, li, sym):
    """After a fill: when |net exposure| passes the threshold, make a hedge intent (in the hedge
    instrument scaled by beta, or in the filled symbol) back down to the target, and send it
    through the same checks as any intent."""
    e4 = g[G_HEDGE_E4]
    ae = e4 if e4 >= 0 else -e4
    if ae <= lim[L_HEDGE_THRESHOLD] * BP:
        return
    excess = ae - lim[L_HEDGE_TARGET] * BP
    if excess <= 0:
        return
    if lim[L_HEDGE_STOCK] != 0:
        h = g[G_HEDGE_LOC]
        if h < 0:
            g[G_HEDGE_UNPRICED] += 1
            return
        side = SIDE_SELL if e4 > 0 else SIDE_BUY
        ref, bid, ask = market(h, lim[L_REF_MODE], bk, li, sym)
        if ref <= 0:
            g[G_HEDGE_UNPRICED] += 1
            return
        q = excess // (ref * BP)
    else:
        h = loc
        x = ps[h, PS_POS] + ps[h, PS_HEDGE_OPEN]
        if x == 0 or (x > 0) != (e4 > 0):
            return
        side = SIDE_SELL if x > 0 else SIDE_BUY
        ref, bid, ask = market(h, lim[L_REF_MODE], bk, li, sym)
        if ref <= 0:
            g[G_HEDGE_UNPRICED] += 1
            return
        q = excess // (ref * BP)
        ax = x if x > 0 else -x
        if q > ax:
            q = ax
    if q <= 0:
        return
    if q > MAX_QTY:
        q = MAX_QTY
    px = ref
    if side == SIDE_BUY and ask > 0:
        px = ask
    elif side == SIDE_SELL and bid > 0:
        px = bid
    row = g[G_OUT_N]
    out[row, I_LOCATE] = h
    out[row, I_SIDE] = side
    out[row, I_PRICE] = px
    out[row, I_QTY] = q
    out[row, I_TIF] = TIF_IOC
    out[row, I_KIND] = KIND_NEW
    out[row, I_STYLE] = STYLE_TAKE
    out[row, I_ID] = g[G_NEXT_ID]
    out[row, I_ORIG] = 0
    out[row, I_STRATEGY] = lim[L_HEDGE_STRATEGY]
    out[row, I_TS] = now
    out[row, I_ORIGIN] = ORIGIN_HEDGE
    reason, o = check_one(out, row, g, lim, ls, ps, hs, ro, oh, st, rt, bk, li, sym)
    if reason == R_OK:
        g[G_NEXT_ID] += 1
        commit(out, row, o, out, g, lim, ps, ro, oh, ofree, st, rt)
        g[G_HEDGES] += 1
    else:
        rc[reason] += 1
        g[G_HEDGES_REJECTED] += 1


@kernel_flags
def on_fill(k, x, ev, out, g, lim, ls, ps, hs, ro, oh, ofree, st, rt, rc, bk, li, sym):
    q = ev[k, E_QTY]
    px = ev[k, E_PRICE]
    now = ev[k, E_TS]
    if q <= 0 or px <= 0 or px > MAX_PRICE or q > MAX_QTY:
        g[G_BAD_EXEC] += 1
        return
    strat = -1
    if x >= 0:
        loc = ro[x, RO_LOC]
        side = ro[x, RO_SIDE]
        strat = ro[x, RO_STRAT]
        if ro[x, RO_STATE] == OS_PENDING_REPLACE:
            # a fill reported on the replacement before its confirmation: the position moves;
            # the open quantity stays counted (conservative) until the replace settles
            g[G_UNKNOWN_EXEC] += 1
        else:
            lv = ro[x, RO_LEAVES]
            take = q if q < lv else lv
            if q > lv:
                g[G_OVERFILLS] += 1
            reduce_leaves(x, take, ps, ro)
            ro[x, RO_CUM] += q
            if ro[x, RO_LEAVES] == 0:
                order_close(x, g, lim, ps, ro, oh, ofree)
    else:
        loc = ev[k, E_LOCATE]
        side = ev[k, E_SIDE]
        if loc <= 0 or loc >= ps.shape[0] or (side != SIDE_BUY and side != SIDE_SELL):
            g[G_BAD_EXEC] += 1
            return
        g[G_UNKNOWN_EXEC] += 1
    apply_fill(loc, side, q, px, g, ps)
    ref, bid, ask = market(loc, lim[L_REF_MODE], bk, li, sym)
    if ref > 0:
        ps[loc, PS_MARK] = ref
    elif ps[loc, PS_MARK] == 0:
        ps[loc, PS_MARK] = px
    resym(loc, g, lim, ps)
    g[G_FILLS] += 1
    g[G_FILLED_QTY] += q
    if strat >= 0:
        st[strat, ST_FILLS] += 1
        if not throttle_ok(strat, TH_EXEC, now, lim, st, rt) and st[strat, ST_DISABLED] == 0:
            st[strat, ST_DISABLED] = 1
            g[G_LATCHES] += 1
            n = cancel_all(strat, ORIGIN_THROTTLE, now, out, g, ro)
            if n > 0:
                g[G_THROTTLE_CANCELS] += n
        throttle_record(strat, TH_EXEC, now, lim, st, rt)
    if lim[L_HEDGE_ON] != 0 and g[G_KILL] == 0 and g[G_OUT_N] < out.shape[0]:
        hedge_check(loc, now, out, g, lim, ls, ps, hs, ro, oh, ofree, st, rt, rc, bk, li, sym)


def apply_exec(n, ev, out, risk, book):
    """Apply ``n`` execution events in order: acknowledgements, rejects, fills (positions, PnL,
    repeated-execution throttle, auto-hedge), cancels, replaces, session disconnect/connect.
    Risk-made orders (hedges, cancels) go to ``out`` from row ``g[G_OUT_N]``. ``risk`` and
    ``book`` as for ``check_intents``. Returns the events processed (fewer than ``n`` only when
    ``out`` filled: ``g[G_ERROR]``)."""
    g, lim, ls, ps, hs, ro = risk.g, risk.lim, risk.ls, risk.ps, risk.hs, risk.ro
    oh, ofree, st, rt, rc = risk.oh, risk.ofree, risk.st, risk.rt, risk.rc
    bk, li, sym = book.bk, book.li, book.sym
    k = 0
    while k < n:
        now = ev[k, E_TS]
        if not service_kill(now, out, g, ro):
            break
        if g[G_OUT_N] + 2 > out.shape[0]:  # room for a hedge and a cancel
            g[G_ERROR] = ERR_OUT_FULL
            break
        g[G_EXEC] += 1
        kind = ev[k, E_KIND]
        if kind == EX_DISCONNECT:
            g[G_DISCONNECTED] = 1
            if lim[L_COD] != 0:
                c = cancel_all(-1, ORIGIN_DISCONNECT, now, out, g, ro)
                if c < 0:
                    break
                g[G_COD_CANCELS] += c
        elif kind == EX_CONNECT:
            g[G_DISCONNECTED] = 0
        else:
            x = id_find(oh, ev[k, E_ID])
            if kind == EX_FILL:
                on_fill(k, x, ev, out, g, lim, ls, ps, hs, ro, oh, ofree, st, rt, rc, bk, li, sym)
            elif x < 0:
                g[G_UNKNOWN_EXEC] += 1
            elif kind == EX_ACK:
                if ro[x, RO_STATE] == OS_PENDING_NEW:
                    ro[x, RO_STATE] = OS_WORKING
            elif kind == EX_REJECT or kind == EX_CANCELED:
                order_close(x, g, lim, ps, ro, oh, ofree)
            elif kind == EX_CANCEL_REJECT:
                if ro[x, RO_STATE] == OS_PENDING_CANCEL:
                    if g[G_KILL] != 0 or (g[G_DISCONNECTED] != 0 and lim[L_COD] != 0):
                        # the order must go: ask again
                        origin = ORIGIN_KILL if g[G_KILL] != 0 else ORIGIN_DISCONNECT
                        if not emit_cancel(x, origin, now, out, g, ro):
                            break
                    elif ro[x, RO_LINK] >= 0:
                        ro[x, RO_STATE] = OS_REPLACING
                    else:
                        ro[x, RO_STATE] = OS_WORKING
            elif kind == EX_REPLACED:
                if ro[x, RO_STATE] != OS_PENDING_REPLACE:
                    g[G_UNKNOWN_EXEC] += 1
                else:
                    orig = ro[x, RO_LINK]
                    cum = ro[orig, RO_CUM]
                    ro[orig, RO_LINK] = -1
                    order_free(orig, g, ps, ro, oh, ofree)
                    ro[x, RO_LINK] = -1
                    ro[x, RO_CUM] = cum
                    ro[x, RO_STATE] = OS_WORKING
                    left = ro[x, RO_QTY] - cum
                    loc = ro[x, RO_LOC]
                    if left <= 0:
                        order_close(x, g, lim, ps, ro, oh, ofree)
                    else:
                        # the reserve becomes the replacement's open quantity
                        add = left - ro[x, RO_LEAVES]
                        ro[x, RO_LEAVES] = left
                        sgn = 1
                        if ro[x, RO_SIDE] == SIDE_BUY:
                            ps[loc, PS_OPEN_BUY] += add
                        else:
                            ps[loc, PS_OPEN_SELL] += add
                            sgn = -1
                        if ro[x, RO_ORIGIN] == ORIGIN_HEDGE:
                            ps[loc, PS_HEDGE_OPEN] += sgn * add
                        resym(loc, g, lim, ps)
                        if g[G_KILL] != 0 or (g[G_DISCONNECTED] != 0 and lim[L_COD] != 0):
                            origin = ORIGIN_KILL if g[G_KILL] != 0 else ORIGIN_DISCONNECT
                            if not emit_cancel(x, origin, now, out, g, ro):
                                break
            elif kind == EX_REPLACE_REJECT:
                if ro[x, RO_STATE] == OS_PENDING_REPLACE:
                    order_close(x, g, lim, ps, ro, oh, ofree)
                else:
                    g[G_UNKNOWN_EXEC] += 1
            else:
                g[G_BAD_EXEC] += 1
        k += 1
    if k == n and n > 0:
        service_kill(ev[n - 1, E_TS], out, g, ro)
    return k


# --- feed status, marks, kill switch -----------------------------------------------------------
@register_jitable
def bind_symbol(loc, stk, g, lim, ls, ovk, ovl):
    """Give a newly seen symbol its limits: its override row if ``ovk`` names it, else the
    defaults (the last row of ``ovl``)."""
    r = ovl.shape[0] - 1
    for j in range(ovk.shape[0]):
        if ovk[j] == stk:
            r = j
            break
    for c in range(ls.shape[1]):
        ls[loc, c] = ovl[r, c]
    ls[loc, LS_BOUND] = stk
    if stk == lim[L_HEDGE_STOCK]:
        g[G_HEDGE_LOC] = loc


def feed_health(n, sess, seq, locate, ts, g, lim, ls, ps, hs, ovk, ovl, sym):
    """Per-session feed status from ``n`` events of the event table (after the book applied
    them): MoldUDP64 gaps (a sequence number beyond the next expected one opens a gap on the
    session until recovery), the newest message time (silence), each symbol's session, and
    limits bound to newly seen symbols. Sequence number 0 (scrubbed captures) is not checked.
    Returns the gaps found."""
    nsym = ps.shape[0]
    nsess = hs.shape[0]
    resync = lim[L_GAP_RESYNC_NS]
    gaps = 0
    for k in range(n):
        s = np.int64(sess[k])
        t = ts[k]
        if s < nsess:
            q = np.int64(seq[k])
            if q != 0:
                nxt = hs[s, HS_NEXT]
                if nxt != 0 and q > nxt:
                    hs[s, HS_GAPS] += 1
                    hs[s, HS_GAP_MSGS] += q - nxt
                    hs[s, HS_GAP_OPEN] = 1
                    hs[s, HS_GAP_TS] = t
                    gaps += 1
                if q >= nxt:
                    hs[s, HS_NEXT] = q + 1
            if t > hs[s, HS_LAST_TS]:
                hs[s, HS_LAST_TS] = t
            if hs[s, HS_GAP_OPEN] != 0 and resync > 0 and t - hs[s, HS_GAP_TS] >= resync:
                hs[s, HS_GAP_OPEN] = 0
            loc = np.int64(locate[k])
            if 0 < loc < nsym:
                ps[loc, PS_SESS] = s
                stk = sym[loc, S_STOCK]
                if stk != 0 and ls[loc, LS_BOUND] != stk:
                    bind_symbol(loc, stk, g, lim, ls, ovk, ovl)
    g[G_GAPS] += gaps
    return gaps


def mark_to_market(now, out, g, lim, ps, ro, bk, li, sym):
    """Re-mark every symbol with a position or open orders to its reference price (unrealised
    PnL, exposures); the loss and drawdown limits may engage the kill switch, whose cancels go
    to ``out``. Returns the symbols re-marked."""
    c = 0
    for loc in range(1, ps.shape[0]):
        if ps[loc, PS_POS] != 0 or ps[loc, PS_OPEN_BUY] != 0 or ps[loc, PS_OPEN_SELL] != 0:
            ref, bid, ask = market(loc, lim[L_REF_MODE], bk, li, sym)
            if ref > 0 and ref != ps[loc, PS_MARK]:
                ps[loc, PS_MARK] = ref
                resym(loc, g, lim, ps)
                c += 1
    service_kill(now, out, g, ro)
    return c


def kill_switch(reason, now, out, g, ro):
    """Engage the kill switch (latched; the first reason stays) and emit a cancel for every
    working order. Returns the rows in ``out``."""
    if g[G_KILL] == 0:
        g[G_KILL] = reason
    service_kill(now, out, g, ro)
    return g[G_OUT_N]
