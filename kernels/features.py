"""Per-update book features for subscribed symbols.

Written into a float64 feature matrix (one row per book update or trade on a subscribed
symbol; columns ``F_*`` below) with an int64 key matrix (ts, locate, seq, kind): the model's
input. Prices are in Price(4) units, sizes in shares, times in ns.

- spread = best ask - best bid (0 when a side is empty); mid and microprice (size-weighted
  mid, ``kernels`` STYLE example); imbalance over the top ``N`` levels, in [-1, 1];
- ofi: order-flow imbalance at the best levels (Cont, Kukanov and Stoikov 2014), summed with
  exponential decay (time constant ``tau_flow``);
- trade_flow: signed traded shares with the same decay: + buyer-initiated. The sign of an
  E/C execution is the opposite of the resting order's side (exact); a P/Q print is signed by
  its price against the mid (quote rule), 0 at the mid;
- last trade price and size; realised volatility: sqrt of the exponentially decayed sum
  (``tau_rv``) of squared log-returns of the mid; dt: ns since the symbol's previous update.
"""

from __future__ import annotations

import math

from numba.extending import register_jitable

# feature matrix columns
F_BID_PX, F_BID_QTY, F_ASK_PX, F_ASK_QTY, F_SPREAD, F_MID, F_MICRO, F_IMBALANCE = 0, 1, 2, 3, 4, 5, 6, 7
F_OFI, F_TRADE_FLOW, F_LAST_PX, F_LAST_QTY, F_RV, F_DT = 8, 9, 10, 11, 12, 13
N_FEATURES = 14
FEATURE_NAMES = ("bid_px", "bid_qty", "ask_px", "ask_qty", "spread", "mid", "microprice", "imbalance",
                 "ofi", "trade_flow", "last_px", "last_qty", "rv", "dt_ns")
# key matrix columns
K_TS, K_LOCATE, K_SEQ, K_KIND = 0, 1, 2, 3
N_KEYS = 4

# per-symbol feature state fs[locate, ...]
FS_BID_PX, FS_BID_QTY, FS_ASK_PX, FS_ASK_QTY, FS_OFI, FS_FLOW, FS_RV, FS_MID, FS_TS = 0, 1, 2, 3, 4, 5, 6, 7, 8
N_FS = 10

# parameters p[...]
P_TAU_FLOW, P_TAU_RV, P_TOP_N = 0, 1, 2
N_PARAMS = 4

ASK_EMPTY = 4.0e18  # sentinel prices for an empty side in the OFI comparisons
BID_EMPTY = -1.0


@register_jitable
def microprice(bid_px, bid_qty, ask_px, ask_qty):
    total = bid_qty + ask_qty
    if total <= 0:
        return 0.5 * (bid_px + ask_px)
    return (bid_px * ask_qty + ask_px * bid_qty) / total


@register_jitable
def ofi_increment(bp, bq, ap, aq, pbp, pbq, pap, paq):
    """Cont-Kukanov-Stoikov order-flow imbalance of one best-quote change."""
    e = 0.0
    if bp >= pbp:
        e += bq
    if bp <= pbp:
        e -= pbq
    if ap <= pap:
        e -= aq
    if ap >= pap:
        e += paq
    return e


@register_jitable
def decay(dt, tau):
    if tau <= 0.0 or dt <= 0:
        return 1.0
    return math.exp(-dt / tau)


@register_jitable
def write_features(row, loc, ts, seq, kind, bid_px, bid_qty, ask_px, ask_qty, imb, trade_sign, trade_qty,
                   last_px, last_qty, prev_update_ts, fs, p, fo, fk):
    """Update the symbol's feature state with this event and write feature row ``row``."""
    dt = ts - prev_update_ts if prev_update_ts > 0 else 0
    # OFI against the previous best quotes (empty sides compare as far-away prices)
    bp = bid_px if bid_qty > 0 else BID_EMPTY
    ap = ask_px if ask_qty > 0 else ASK_EMPTY
    w = decay(dt, p[P_TAU_FLOW])
    ofi = fs[loc, FS_OFI] * w + ofi_increment(bp, bid_qty, ap, ask_qty, fs[loc, FS_BID_PX], fs[loc, FS_BID_QTY],
                                             fs[loc, FS_ASK_PX], fs[loc, FS_ASK_QTY])
    flow = fs[loc, FS_FLOW] * w + trade_sign * trade_qty
    both = bid_qty > 0 and ask_qty > 0
    mid = 0.5 * (bid_px + ask_px) if both else 0.0
    rv = fs[loc, FS_RV] * decay(dt, p[P_TAU_RV])
    if both and fs[loc, FS_MID] > 0.0:
        r = math.log(mid / fs[loc, FS_MID])
        rv += r * r
    fs[loc, FS_BID_PX] = bp
    fs[loc, FS_BID_QTY] = bid_qty
    fs[loc, FS_ASK_PX] = ap
    fs[loc, FS_ASK_QTY] = ask_qty
    fs[loc, FS_OFI] = ofi
    fs[loc, FS_FLOW] = flow
    fs[loc, FS_RV] = rv
    if both:
        fs[loc, FS_MID] = mid
    fk[row, K_TS] = ts
    fk[row, K_LOCATE] = loc
    fk[row, K_SEQ] = seq
    fk[row, K_KIND] = kind
    fo[row, F_BID_PX] = bid_px
    fo[row, F_BID_QTY] = bid_qty
    fo[row, F_ASK_PX] = ask_px
    fo[row, F_ASK_QTY] = ask_qty
    fo[row, F_SPREAD] = ask_px - bid_px if both else 0.0
    fo[row, F_MID] = mid
    fo[row, F_MICRO] = microprice(bid_px, bid_qty, ask_px, ask_qty) if both else 0.0
    fo[row, F_IMBALANCE] = imb
    fo[row, F_OFI] = ofi
    fo[row, F_TRADE_FLOW] = flow
    fo[row, F_LAST_PX] = last_px
    fo[row, F_LAST_QTY] = last_qty
    fo[row, F_RV] = math.sqrt(rv)
    fo[row, F_DT] = dt
