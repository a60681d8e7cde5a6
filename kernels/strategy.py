"""Strategy: the model's signal plus the book -> order intents (``kernels/intents.py``).

Undecorated bodies compiled by ``kernels/cpu.py`` (njit) and ``kernels/gpu.py`` (numba.cuda, one
thread: a symbol's decisions are a chain over its state). Nothing allocates, nothing raises.

Per feature row ``r`` of a subscribed symbol (``f``/``fk``: ``kernels/features.py``) with the
model's prediction ``pred[r]`` (expected mid move over the model's horizon, Price(4) units), at
most one intent, the first that applies of:

1. **cancel** our resting quote (once risk has accepted it) on a side the signal has turned
   against: the bid when ``pred <= -cancel_threshold``, the ask when ``pred >= +cancel_threshold``;
2. **take** (IOC at the opposite best price, ``take_size`` capped at the shares shown there)
   when the prediction beats half the spread by ``take_edge``: buy when
   ``pred - spread/2 >= take_edge``, sell when ``-pred - spread/2 >= take_edge``;
3. **quote** (day order joining the best price on the favoured side, ``quote_size``) when
   ``pred >= quote_threshold`` (bid) or ``pred <= -quote_threshold`` (ask), unless our quote
   on that side is still working.

A new order is sent only while the worst-case position stays within ``max_position``:
``position + open buys + in-flight buys + qty <= max_position`` (sells mirrored), and only if
it cannot cross one of our own resting orders (accounting's best resting prices, ``PS_OUR_*``,
and our quotes in flight): risk would reject it as a self-cross. Rows are
skipped when the book is one-sided, crossed or locked, wider than ``max_spread``, or when the
symbol had an intent less than ``min_interval_ns`` ago (feed time).

Positions and open orders are the risk/accounting stage's (``kernels/risk.py``: ``ps[locate,
PS_POS / PS_OPEN_BUY / PS_OPEN_SELL / PS_OUR_BID / PS_OUR_ASK]``, columns passed in ``pi``),
updated from risk decisions and execution reports; the
strategy adds what it has sent that accounting has not seen yet (``SS_PEND_*``, released by
``strategy_ack`` with risk's decisions). Its own state per symbol is ``ss[locate, SS_*]``: the
time of its last intent and the client order id and price of its working quote per side
(cleared when risk rejects the quote, when the strategy cancels it, or, once risk accepted it,
when accounting shows nothing open on that side). Without a risk stage nothing is ever
acknowledged: in-flight shares then only grow, and ``max_position`` caps the intents.

Prices are Price(4) integers, quantities shares, times ns since midnight (the feed clock).
"""

from __future__ import annotations

from numba.extending import register_jitable

from kernels.features import F_ASK_PX, F_ASK_QTY, F_BID_PX, F_BID_QTY, K_LOCATE, K_TS
from kernels.intents import (D_ACCEPT, I_ID, I_KIND, I_LOCATE, I_ORIG, I_ORIGIN, I_PRICE, I_QTY, I_SIDE,
                             I_STRATEGY, I_STYLE, I_TIF, I_TS, KIND_CANCEL, KIND_NEW, ORIGIN_STRATEGY, SIDE_BUY,
                             SIDE_SELL, STYLE_QUOTE, STYLE_TAKE, TIF_DAY, TIF_IOC)

# --- per-symbol strategy state ss[locate, ...] ---------------------------------------------------
SS_LAST_TS = 0     # feed time of the symbol's last intent (0: none yet)
SS_BID_ID = 1      # client order id of our working bid quote (0: none)
SS_ASK_ID = 2
SS_PEND_BUY = 3    # shares of new orders sent that accounting has not acknowledged
SS_PEND_SELL = 4
SS_INTENTS = 5     # intents made for the symbol
SS_BID_PX = 6      # price of our working bid quote
SS_ASK_PX = 7
SS_BID_ACK = 8     # 1 once risk accepted our bid quote (only an accepted order is cancelled)
SS_ASK_ACK = 9
NSS = 12

# --- globals sg[...] -----------------------------------------------------------------------------
SG_NEXT_ID = 0     # next client order id
SG_ROWS = 1        # rows seen
SG_SKIP_BOOK = 2   # skipped: one-sided, crossed, locked or too wide a book
SG_SKIP_INTERVAL = 3  # skipped: an intent on the symbol less than min_interval_ns ago
SG_SKIP_POSITION = 4  # a signal strong enough to trade, but the position limit held it back
SG_CANCELS = 5
SG_TAKES = 6
SG_QUOTES = 7
SG_REJECTED = 8    # intents risk rejected (strategy_ack)
SG_SKIP_SELF = 9   # a new order would have crossed one of our own resting orders
NSG = 16

# --- parameters: floats pf[...] and integers pi[...] ---------------------------------------------
PF_QUOTE_TH = 0
PF_CANCEL_TH = 1
PF_TAKE_EDGE = 2
NPF = 4
PI_QUOTE_SIZE = 0
PI_TAKE_SIZE = 1
PI_MAX_POS = 2
PI_MAX_SPREAD = 3
PI_MIN_INTERVAL = 4
PI_STRATEGY = 5
# columns of accounting's per-symbol table ``ps`` (``kernels/risk.py`` ``PS_*``), passed in rather
# than imported: a cached compiled kernel keeps the constants it was compiled with, and numba's
# cache only notices changes to this file, not to kernels/risk.py
PI_PS_POS = 6
PI_PS_OPEN_BUY = 7
PI_PS_OPEN_SELL = 8
PI_PS_OUR_BID = 9
PI_PS_OUR_ASK = 10
NPI = 12


@register_jitable
def emit(out, k, loc, side, price, qty, tif, kind, style, oid, orig, strategy, ts):
    out[k, I_LOCATE] = loc
    out[k, I_SIDE] = side
    out[k, I_PRICE] = price
    out[k, I_QTY] = qty
    out[k, I_TIF] = tif
    out[k, I_KIND] = kind
    out[k, I_STYLE] = style
    out[k, I_ID] = oid
    out[k, I_ORIG] = orig
    out[k, I_STRATEGY] = strategy
    out[k, I_TS] = ts
    out[k, I_ORIGIN] = ORIGIN_STRATEGY


def strategy_batch(n, pred, f, fk, ps, ss, sg, pf, pi, out):
    """Intents for feature rows ``r < n`` into ``out`` (int64 [>= n, NI]: one intent per row at
    most, so a table as long as the feature batch never overflows); returns the count."""
    k = 0
    quote_th = pf[PF_QUOTE_TH]
    cancel_th = pf[PF_CANCEL_TH]
    take_edge = pf[PF_TAKE_EDGE]
    qsize = pi[PI_QUOTE_SIZE]
    tsize = pi[PI_TAKE_SIZE]
    max_pos = pi[PI_MAX_POS]
    strat = pi[PI_STRATEGY]
    rows = ss.shape[0]
    for r in range(n):
        sg[SG_ROWS] += 1
        loc = fk[r, K_LOCATE]
        ts = fk[r, K_TS]
        s = pred[r]
        if loc <= 0 or loc >= rows or s != s:  # no symbol, or a NaN prediction
            continue
        bq = f[r, F_BID_QTY]
        aq = f[r, F_ASK_QTY]
        bid = int(f[r, F_BID_PX])
        ask = int(f[r, F_ASK_PX])
        spread = ask - bid
        if bq <= 0.0 or aq <= 0.0 or spread <= 0 or spread > pi[PI_MAX_SPREAD]:
            sg[SG_SKIP_BOOK] += 1
            continue
        last = ss[loc, SS_LAST_TS]
        if last != 0 and ts - last < pi[PI_MIN_INTERVAL]:
            sg[SG_SKIP_INTERVAL] += 1
            continue
        pos = ps[loc, pi[PI_PS_POS]]
        open_buy = ps[loc, pi[PI_PS_OPEN_BUY]]
        open_sell = ps[loc, pi[PI_PS_OPEN_SELL]]
        # an accepted quote that accounting shows nothing open for (filled, cancelled) is gone
        if ss[loc, SS_BID_ACK] != 0 and open_buy == 0 and ss[loc, SS_PEND_BUY] == 0:
            ss[loc, SS_BID_ID] = 0
            ss[loc, SS_BID_ACK] = 0
        if ss[loc, SS_ASK_ACK] != 0 and open_sell == 0 and ss[loc, SS_PEND_SELL] == 0:
            ss[loc, SS_ASK_ID] = 0
            ss[loc, SS_ASK_ACK] = 0
        worst_long = pos + open_buy + ss[loc, SS_PEND_BUY]
        worst_short = -(pos - open_sell - ss[loc, SS_PEND_SELL])
        # our lowest resting sell and highest resting buy: accounting's, and quotes still in flight
        our_ask = ps[loc, pi[PI_PS_OUR_ASK]]
        if ss[loc, SS_ASK_ID] != 0 and (our_ask == 0 or ss[loc, SS_ASK_PX] < our_ask):
            our_ask = ss[loc, SS_ASK_PX]
        our_bid = ps[loc, pi[PI_PS_OUR_BID]]
        if ss[loc, SS_BID_ID] != 0 and ss[loc, SS_BID_PX] > our_bid:
            our_bid = ss[loc, SS_BID_PX]
        half = 0.5 * spread
        oid = sg[SG_NEXT_ID]
        made = False
        if ss[loc, SS_BID_ACK] != 0 and s <= -cancel_th:
            emit(out, k, loc, SIDE_BUY, ss[loc, SS_BID_PX], 0, TIF_DAY, KIND_CANCEL, STYLE_QUOTE, oid,
                 ss[loc, SS_BID_ID], strat, ts)
            ss[loc, SS_BID_ID] = 0
            ss[loc, SS_BID_ACK] = 0
            sg[SG_CANCELS] += 1
            made = True
        elif ss[loc, SS_ASK_ACK] != 0 and s >= cancel_th:
            emit(out, k, loc, SIDE_SELL, ss[loc, SS_ASK_PX], 0, TIF_DAY, KIND_CANCEL, STYLE_QUOTE, oid,
                 ss[loc, SS_ASK_ID], strat, ts)
            ss[loc, SS_ASK_ID] = 0
            ss[loc, SS_ASK_ACK] = 0
            sg[SG_CANCELS] += 1
            made = True
        elif s - half >= take_edge or -s - half >= take_edge:
            buy = s > 0
            q = tsize
            shown = int(aq if buy else bq)
            if shown < q:
                q = shown
            if (worst_long + q if buy else worst_short + q) > max_pos:
                sg[SG_SKIP_POSITION] += 1
            elif (buy and our_ask != 0 and ask >= our_ask) or (not buy and bid <= our_bid):
                sg[SG_SKIP_SELF] += 1
            else:
                emit(out, k, loc, SIDE_BUY if buy else SIDE_SELL, ask if buy else bid, q, TIF_IOC, KIND_NEW,
                     STYLE_TAKE, oid, 0, strat, ts)
                if buy:
                    ss[loc, SS_PEND_BUY] += q
                else:
                    ss[loc, SS_PEND_SELL] += q
                sg[SG_TAKES] += 1
                made = True
        elif s >= quote_th and ss[loc, SS_BID_ID] == 0:
            if worst_long + qsize > max_pos:
                sg[SG_SKIP_POSITION] += 1
            elif our_ask != 0 and bid >= our_ask:
                sg[SG_SKIP_SELF] += 1
            else:
                emit(out, k, loc, SIDE_BUY, bid, qsize, TIF_DAY, KIND_NEW, STYLE_QUOTE, oid, 0, strat, ts)
                ss[loc, SS_BID_ID] = oid
                ss[loc, SS_BID_PX] = bid
                ss[loc, SS_PEND_BUY] += qsize
                sg[SG_QUOTES] += 1
                made = True
        elif s <= -quote_th and ss[loc, SS_ASK_ID] == 0:
            if worst_short + qsize > max_pos:
                sg[SG_SKIP_POSITION] += 1
            elif ask <= our_bid:
                sg[SG_SKIP_SELF] += 1
            else:
                emit(out, k, loc, SIDE_SELL, ask, qsize, TIF_DAY, KIND_NEW, STYLE_QUOTE, oid, 0, strat, ts)
                ss[loc, SS_ASK_ID] = oid
                ss[loc, SS_ASK_PX] = ask
                ss[loc, SS_PEND_SELL] += qsize
                sg[SG_QUOTES] += 1
                made = True
        if made:
            sg[SG_NEXT_ID] = oid + 1
            ss[loc, SS_LAST_TS] = ts
            ss[loc, SS_INTENTS] += 1
            k += 1
    return k


def strategy_ack(n, intents, decisions, ss, sg):
    """Risk has decided intents ``k < n`` (``decisions[k, D_ACCEPT]``): accepted new orders now
    count in accounting's open quantities, rejected ones are gone; either way they leave the
    in-flight count. A rejected quote frees its side. Returns the rejections seen."""
    rej = 0
    rows = ss.shape[0]
    for k in range(n):
        loc = intents[k, I_LOCATE]
        if loc <= 0 or loc >= rows or intents[k, I_KIND] != KIND_NEW:
            if decisions[k, D_ACCEPT] == 0:
                rej += 1
            continue
        q = intents[k, I_QTY]
        col = SS_PEND_BUY if intents[k, I_SIDE] == SIDE_BUY else SS_PEND_SELL
        ss[loc, col] = ss[loc, col] - q if ss[loc, col] > q else 0
        oid = intents[k, I_ID]
        if decisions[k, D_ACCEPT] == 0:
            rej += 1
            if ss[loc, SS_BID_ID] == oid:
                ss[loc, SS_BID_ID] = 0
            if ss[loc, SS_ASK_ID] == oid:
                ss[loc, SS_ASK_ID] = 0
        else:
            if ss[loc, SS_BID_ID] == oid:
                ss[loc, SS_BID_ACK] = 1
            if ss[loc, SS_ASK_ID] == oid:
                ss[loc, SS_ASK_ACK] = 1
    sg[SG_REJECTED] += rej
    return rej
