"""Risk: every pre-trade check (rejects with its reason, accepts just inside the limit),
accounting, kill switch, cancel-on-disconnect, throttles, stale data, halts, LULD, auto-hedge,
both backends. Property tests are in ``tests/test_risk_props.py``; both use the helpers here.

The market: four symbols from the stock directory: AAPL (locate 1, bid 100.0000 / ask 100.1000, mid
1_000_500), MSFT (2, 200.00 / 200.20, mid 2_001_000), SPY (3, 400.00 / 400.10, mid 4_000_500)
and IBM (4, no orders, no trades: no reference price). Books run on the CPU backend; the risk
kernels on the backend under test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from omegaconf import OmegaConf

from kernels import intents as IN
from kernels.events import EventTable, pack_ascii
from pipeline.book import BookStage, BookState
from pipeline.config import RiskConf
from pipeline.risk import RiskStage

T0 = 34_200_000_000_000  # 09:30:00
AAPL, MSFT, SPY, IBM = 1, 2, 3, 4
MID = {AAPL: 1_000_500, MSFT: 2_001_000, SPY: 4_000_500}
BID = {AAPL: 1_000_000, MSFT: 2_000_000, SPY: 4_000_000}
ASK = {AAPL: 1_001_000, MSFT: 2_002_000, SPY: 4_001_000}
BUY, SELL = IN.SIDE_BUY, IN.SIDE_SELL


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


BASE: dict[str, Any] = dict(
    max_open_orders=64, max_strategies=4, batch_rows=64, reference="mid", duplicate_window_ns=0,
    limits=dict(max_order_qty=1000, max_order_notional=150_000, max_position=2000, max_gross=10**8,
                max_net=10**8, max_credit=10**8, collar_bps=100, max_loss=10**8, max_drawdown=10**8),
    throttle=dict(interval_ns=10**9, max_submits=1000, max_modifies=1000, max_cancels=1000,
                  exec_interval_ns=10**9, max_executions=1000),
    stale=dict(silence_ns=0, block_locked=True, gap_resync_ns=0),
    kill=dict(file="", signal=False, cancel_on_disconnect=True),
    hedge=dict(enabled=False, symbol="", beta_bps=10_000, threshold=0, target=0, strategy_id=3),
)


def risk_conf(**over: Any):
    """The test limits, with nested overrides: ``risk_conf(limits=dict(max_position=5))``."""
    return OmegaConf.merge(OmegaConf.structured(RiskConf), _merge(BASE, over))


def events(rows: list[dict]) -> EventTable:
    t = EventTable(max(len(rows), 1))
    c = t.cols
    for i, r in enumerate(rows):
        c["kind"][i] = ord(r["kind"])
        c["locate"][i] = r.get("locate", AAPL)
        c["sess"][i] = r.get("sess", 0)
        c["ts"][i] = r["ts"]
        c["seq"][i] = r["seq"]
        c["ref"][i] = r.get("ref", 0)
        c["side"][i] = ord(r.get("side", "\0"))
        c["shares"][i] = r.get("shares", 0)
        c["price"][i] = r.get("price", 0)
        c["stock"][i] = pack_ascii(r.get("stock", ""), 8)
        for j in range(2):
            if f"alpha{j}" in r:
                c["alpha"][i, j] = ord(r[f"alpha{j}"])
            if f"aux{j}" in r:
                c["aux"][i, j] = r[f"aux{j}"]
    t.n = len(rows)
    return t


class Env:
    """Books + risk stage; ``feed`` market events, ``new``/``cancel``/``replace`` intents,
    ``fill``/``ack``/... execution events. Clocks and sequence numbers advance by themselves."""

    def __init__(self, k, conf=None, sessions: dict[int, int] | None = None, **over: Any):
        from kernels import cpu

        self.k = k
        self.book = BookState(2000, 1000, 16)
        self.books = BookStage(cpu, self.book, 4096, symbols=[])
        self.risk = RiskStage(k, conf if conf is not None else risk_conf(**over), self.book, max_sessions=4)
        self.now = T0
        self.seq: dict[int, int] = {}
        self.ref = 1
        self.id = 1
        self.sessions = sessions or {}
        self.quotes: dict[tuple[int, str], int] = {}
        rows = [dict(kind="R", locate=loc, stock=name) for loc, name in
                ((AAPL, "AAPL"), (MSFT, "MSFT"), (SPY, "SPY"), (IBM, "IBM"))]
        for loc in (AAPL, MSFT, SPY):
            rows.append(self.add(loc, "B", BID[loc], 500))
            rows.append(self.add(loc, "S", ASK[loc], 500))
        self.feed(rows)

    def add(self, loc: int, side: str, price: int, shares: int) -> dict:
        self.ref += 1
        self.quotes[(loc, side)] = self.ref
        return dict(kind="A", locate=loc, ref=self.ref, side=side, price=price, shares=shares, stock="")

    def quote(self, loc: int, bid: int, ask: int) -> None:
        """Move a symbol's market: replace its best bid and ask (mid = (bid + ask) // 2)."""
        rows = [dict(kind="D", locate=loc, ref=self.quotes[(loc, s)]) for s in "BS"]
        self.feed(rows + [self.add(loc, "B", bid, 500), self.add(loc, "S", ask, 500)])

    def feed(self, rows: list[dict]) -> int:
        """Market events through the book and the risk feed status; returns gaps found."""
        for r in rows:
            s = r.setdefault("sess", self.sessions.get(r.get("locate", AAPL), 0))
            self.now += 1
            r.setdefault("ts", self.now)
            self.seq[s] = self.seq.get(s, 0) + 1 + r.pop("skip", 0)
            r.setdefault("seq", self.seq[s])
        t = events(rows)
        self.books(t)
        return self.risk.on_events(t)

    def next_id(self) -> int:
        self.id += 1
        return self.id

    def new(self, loc: int = AAPL, side: int = BUY, price: int | None = None, qty: int = 100, *,
            strategy: int = 0, tif: int = IN.TIF_DAY, style: int = IN.STYLE_QUOTE, id: int | None = None,
            dt: int = 1) -> np.ndarray:
        return IN.intent(IN.KIND_NEW, locate=loc, side=side, price=MID.get(loc, 1_000_000) if price is None else price,
                         qty=qty, tif=tif, style=style, id=self.next_id() if id is None else id, strategy=strategy,
                         ts=self.now + dt)

    def cancel(self, orig: int, *, loc: int = AAPL, strategy: int = 0, dt: int = 1) -> np.ndarray:
        return IN.intent(IN.KIND_CANCEL, locate=loc, id=self.next_id(), orig=orig, strategy=strategy,
                         ts=self.now + dt)

    def replace(self, orig: int, loc: int, side: int, price: int, qty: int, *, strategy: int = 0,
                dt: int = 1) -> np.ndarray:
        return IN.intent(IN.KIND_REPLACE, locate=loc, side=side, price=price, qty=qty, id=self.next_id(),
                         orig=orig, strategy=strategy, ts=self.now + dt)

    def check(self, *rows: np.ndarray):
        return self.risk.check(np.array(rows, np.int64).reshape(-1, IN.NI))

    def reason(self, row: np.ndarray) -> str:
        """Check one intent; the reason name ('ok' when accepted)."""
        d = self.check(row)
        return IN.REASON_NAMES[int(d.decisions[0, IN.D_REASON])]

    def accept(self, row: np.ndarray) -> int:
        """Check one intent that must pass; returns its client order id."""
        r = self.reason(row)
        assert r == "ok", r
        return int(row[IN.I_ID])

    def exec(self, *rows: np.ndarray) -> np.ndarray:
        return self.risk.on_exec(np.array(rows, np.int64).reshape(-1, IN.NE))

    def fill(self, oid: int, qty: int, price: int, *, loc: int = AAPL, side: int = BUY, dt: int = 1) -> np.ndarray:
        return self.exec(IN.exec_event(IN.EX_FILL, id=oid, qty=qty, price=price, locate=loc, side=side,
                                       ts=self.now + dt))

    def ev(self, kind: int, oid: int = 0, orig: int = 0, dt: int = 1) -> np.ndarray:
        return self.exec(IN.exec_event(kind, id=oid, orig=orig, ts=self.now + dt))


# ==================================================================================================
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

from kernels import risk as R  # noqa: E402
from pipeline.config import ConfigError  # noqa: E402
from tests.ptx import compile_in_subprocess  # noqa: E402
from tests.conftest import REPO  # noqa: E402


def test_a_plain_order_is_accepted_and_goes_out_unchanged(backend):
    e = Env(backend)
    row = e.new(AAPL, BUY, 1_000_400, 100)
    d = e.check(row)
    assert d.decisions.tolist() == [[1, 0, 0]]
    assert np.array_equal(d.orders[0], row)
    assert e.risk.order(int(row[IN.I_ID]))["state"] == R.OS_PENDING_NEW
    assert e.risk.position(AAPL)["open_buy"] == 100 and e.risk.position(AAPL)["mark"] == MID[AAPL]
    assert IN.records(d.orders)["price"][0] == 1_000_400  # the structured view of the same rows


# --- each check rejects with its reason and accepts just inside ----------------------------------

def test_price_collar_against_the_mid(backend):
    e = Env(backend)  # 100 bps around mid 1_000_500: buys up to 1_010_505, sells down to 990_495
    assert e.reason(e.new(AAPL, BUY, 1_010_506)) == "price_collar"
    assert e.reason(e.new(AAPL, BUY, 1_010_505)) == "ok"
    assert e.reason(e.new(AAPL, SELL, 990_494)) == "price_collar"
    assert e.reason(e.new(AAPL, SELL, 1_010_506)) == "ok"  # passive sells above are not collared
    e2 = Env(backend, symbols=[dict(symbol="AAPL", collar_bps=10)])  # per-symbol collar
    assert e2.reason(e2.new(AAPL, BUY, 1_001_501)) == "price_collar"
    assert e2.reason(e2.new(AAPL, BUY, 1_001_500)) == "ok"


def test_price_collar_against_the_last_trade(backend):
    for ref, want in (("last", "ok"), ("mid", "price_collar")):
        e = Env(backend, reference=ref)
        e.feed([dict(kind="P", locate=AAPL, shares=100, price=1_100_000)])  # last trade 110.00
        assert e.reason(e.new(AAPL, BUY, 1_111_000)) == want
        assert e.reason(e.new(AAPL, BUY, 1_111_001)) == "price_collar"
    e = Env(backend)  # no book at all: the last trade is the reference
    e.feed([dict(kind="D", locate=AAPL, ref=e.quotes[(AAPL, s)]) for s in "BS"])
    assert e.reason(e.new(AAPL, BUY, 1_000_000)) == "no_reference"
    e.feed([dict(kind="P", locate=AAPL, shares=100, price=1_000_000)])
    assert e.reason(e.new(AAPL, BUY, 1_010_000)) == "ok"
    assert e.reason(e.new(AAPL, BUY, 1_010_001)) == "price_collar"


def test_no_reference_price(backend):
    e = Env(backend)
    assert e.reason(e.new(IBM, BUY, 1_000_000)) == "no_reference"


def test_luld_band_from_the_feed(backend):
    e = Env(backend)
    e.feed([dict(kind="J", locate=AAPL, price=1_000_000, aux0=1_005_000, aux1=995_000)])
    assert e.reason(e.new(AAPL, BUY, 1_005_001)) == "luld_band"
    assert e.reason(e.new(AAPL, BUY, 1_005_000)) == "ok"
    assert e.reason(e.new(AAPL, SELL, 994_999)) == "luld_band"
    assert e.reason(e.new(AAPL, SELL, 995_000)) == "self_cross"  # our own bid at 1_005_000
    assert e.reason(e.new(MSFT, SELL, 1_990_000)) == "ok"          # other symbols unaffected


def test_max_quantity_and_max_notional_per_order(backend):
    e = Env(backend)
    assert e.reason(e.new(AAPL, BUY, qty=1001)) == "max_qty"
    assert e.reason(e.new(AAPL, BUY, qty=1000)) == "ok"
    # MSFT at 2_001_000: $150,000 allows 749 shares (1_498_749_000), not 750 (1_500_750_000)
    assert e.reason(e.new(MSFT, BUY, qty=750)) == "max_notional"
    assert e.reason(e.new(MSFT, BUY, qty=749)) == "ok"
    e2 = Env(backend, symbols=[dict(symbol="MSFT", max_order_qty=10, max_order_notional=1_000)])
    assert e2.reason(e2.new(MSFT, BUY, qty=11)) == "max_qty"
    assert e2.reason(e2.new(MSFT, BUY, qty=5)) == "max_notional"  # 5 x 200.10 > $1,000
    assert e2.reason(e2.new(MSFT, BUY, qty=4)) == "ok"


def test_position_limit_counts_open_orders_and_fills(backend):
    e = Env(backend)  # max_position 2000 shares
    a = e.accept(e.new(AAPL, BUY, qty=1000))
    e.accept(e.new(AAPL, BUY, qty=1000))
    assert e.reason(e.new(AAPL, BUY, qty=1)) == "position_limit"
    e.fill(a, 1000, 1_000_500)  # fills move open to position: still 2000 worst case
    assert e.reason(e.new(AAPL, BUY, qty=1)) == "position_limit"
    assert e.reason(e.new(AAPL, SELL, 1_000_600, qty=1000)) == "ok"  # worst case short: 1000 - 1000 = 0
    s = Env(backend)
    s.accept(s.new(AAPL, SELL, qty=1000))
    s.accept(s.new(AAPL, SELL, qty=1000))
    assert s.reason(s.new(AAPL, SELL, qty=1)) == "position_limit"
    o = Env(backend, symbols=[dict(symbol="MSFT", max_position=10)])
    assert o.reason(o.new(MSFT, BUY, qty=11)) == "position_limit"
    assert o.reason(o.new(MSFT, BUY, qty=10)) == "ok"
    assert o.reason(o.new(AAPL, BUY, qty=11)) == "ok"


def test_gross_limit_worst_case_across_symbols(backend):
    e = Env(backend, limits=dict(max_gross=150_000))  # AAPL mark 1_000_500: 1499 shares fit, 1500 not
    e.accept(e.new(AAPL, BUY, qty=1000))
    assert e.reason(e.new(AAPL, BUY, qty=500)) == "gross_limit"
    e.accept(e.new(AAPL, BUY, qty=499))
    assert e.reason(e.new(AAPL, SELL, 1_000_600, qty=1000)) == "ok"  # max(W+, -W-) does not grow
    assert e.reason(e.new(MSFT, BUY, qty=1)) == "gross_limit"


def test_net_limit_long_and_short(backend):
    e = Env(backend, limits=dict(max_net=150_000))
    e.accept(e.new(AAPL, BUY, qty=1000))           # $100,050 long
    assert e.reason(e.new(MSFT, BUY, qty=250)) == "net_limit"  # + $50,025
    e.accept(e.new(MSFT, BUY, qty=249))
    s = Env(backend, limits=dict(max_net=150_000))
    s.accept(s.new(AAPL, SELL, qty=1000))
    assert s.reason(s.new(MSFT, SELL, qty=250)) == "net_limit"
    assert s.reason(s.new(MSFT, SELL, qty=249)) == "ok"
    assert s.reason(s.new(AAPL, BUY, 1_000_400, qty=1000)) == "ok"  # the other way is free


def test_credit_limit_counts_open_orders_on_both_sides_and_positions(backend):
    e = Env(backend, limits=dict(max_credit=150_000))
    b = e.accept(e.new(AAPL, BUY, qty=1000))
    e.accept(e.new(AAPL, SELL, 1_000_600, qty=499))
    assert e.reason(e.new(AAPL, SELL, 1_000_600, qty=1)) == "credit_limit"
    e.fill(b, 1000, 1_000_500)   # a fill does not change the credit used
    assert e.reason(e.new(AAPL, SELL, 1_000_700, qty=1)) == "credit_limit"
    e.ev(IN.EX_CANCELED, b)       # nothing: b is already done
    assert e.risk.summary()["unknown_exec"] == 1


def test_restricted_list(backend):
    e = Env(backend, restricted=["MSFT"])
    assert e.reason(e.new(MSFT, BUY)) == "restricted"
    assert e.reason(e.new(AAPL, BUY)) == "ok"


def test_trading_halts_pauses_and_operational_halts(backend):
    e = Env(backend)
    for state, want in (("H", "halted"), ("P", "halted"), ("Q", "halted"), ("T", "ok")):
        e.feed([dict(kind="H", locate=AAPL, stock="AAPL", alpha0=state)])
        assert e.reason(e.new(AAPL, BUY, qty=1)) == want, state
    e.feed([dict(kind="h", locate=MSFT, alpha0="Q", alpha1="H")])
    assert e.reason(e.new(MSFT, BUY, qty=1)) == "halted"
    e.feed([dict(kind="h", locate=MSFT, alpha0="Q", alpha1="T")])
    assert e.reason(e.new(MSFT, BUY, qty=1)) == "ok"


def test_malformed_intents(backend):
    e = Env(backend)
    assert e.reason(e.new(0)) == "bad_symbol"
    assert e.reason(e.new(17)) == "bad_symbol"
    assert e.reason(e.new(5)) == "unknown_symbol"   # in range, never seen on the feed
    assert e.reason(e.new(AAPL, side=2)) == "bad_side"
    assert e.reason(e.new(AAPL, price=0)) == "bad_price"
    assert e.reason(e.new(AAPL, price=IN.MAX_PRICE + 1)) == "bad_price"
    assert e.reason(e.new(AAPL, qty=0)) == "bad_qty"
    assert e.reason(e.new(AAPL, qty=-5)) == "bad_qty"
    assert e.reason(e.new(AAPL, tif=7)) == "bad_field"
    assert e.reason(e.new(AAPL, style=7)) == "bad_field"
    assert e.reason(e.new(AAPL, strategy=4)) == "bad_field"   # max_strategies 4
    assert e.reason(e.new(AAPL, id=0)) == "bad_field"
    bad = e.new(AAPL)
    bad[IN.I_KIND] = 9
    assert e.reason(bad) == "bad_field"
    assert e.reason(e.new(AAPL, tif=IN.TIF_IOC, style=IN.STYLE_TAKE)) == "ok"


def test_duplicate_client_order_id_and_duplicate_order(backend):
    e = Env(backend, duplicate_window_ns=1000)
    a = e.accept(e.new(AAPL, BUY, 1_000_100, 10))
    assert e.reason(e.new(AAPL, BUY, 1_000_200, 20, id=a)) == "duplicate_id"
    assert e.reason(e.new(AAPL, BUY, 1_000_100, 10, dt=1000)) == "duplicate_order"   # 999 ns later
    assert e.reason(e.new(AAPL, BUY, 1_000_100, 10, dt=1000, strategy=1)) == "ok"    # another strategy
    assert e.reason(e.new(AAPL, BUY, 1_000_100, 11, dt=1000)) == "ok"                # another size
    e2 = Env(backend, duplicate_window_ns=1000)
    e2.accept(e2.new(AAPL, BUY, 1_000_100, 10))
    assert e2.reason(e2.new(AAPL, BUY, 1_000_100, 10, dt=1001)) == "ok"              # window over


def test_no_crossing_our_own_resting_orders(backend):
    e = Env(backend)
    s = e.accept(e.new(AAPL, SELL, 1_000_800, 10))
    assert e.reason(e.new(AAPL, BUY, 1_000_800, 10)) == "self_cross"
    b = e.accept(e.new(AAPL, BUY, 1_000_700, 10))
    assert e.reason(e.new(AAPL, SELL, 1_000_700, 10)) == "self_cross"
    e.ev(IN.EX_CANCELED, s)  # our ask is gone: the buy may cross now
    assert e.reason(e.new(AAPL, BUY, 1_000_900, 10)) == "ok"
    e.ev(IN.EX_CANCELED, b)
    assert e.risk.state.ps[AAPL, R.PS_OUR_BID] == 1_000_900


def test_open_order_table_full_rejects_instead_of_failing(backend):
    e = Env(backend, max_open_orders=3)
    for p in (1_000_100, 1_000_200, 1_000_300):
        e.accept(e.new(AAPL, BUY, p, 1))
    assert e.reason(e.new(AAPL, BUY, 1_000_400, 1)) == "open_orders_full"


def test_message_rate_throttles_are_exact_sliding_windows(backend):
    e = Env(backend, throttle=dict(interval_ns=1000, max_submits=3, max_modifies=2, max_cancels=2))
    ids = [e.accept(e.new(AAPL, BUY, 1_000_000 + 10 * i, 1, dt=i)) for i in (1, 2, 3)]
    assert e.reason(e.new(AAPL, BUY, 1_000_050, 1, dt=4)) == "throttle_submit"
    assert e.reason(e.new(AAPL, BUY, 1_000_050, 1, dt=1000)) == "throttle_submit"  # t+1 is 999 ns old
    assert e.reason(e.new(AAPL, BUY, 1_000_050, 1, dt=1001)) == "ok"
    assert e.reason(e.new(MSFT, BUY, qty=1, dt=1001, strategy=1)) == "ok"         # per strategy
    r1 = e.replace(ids[0], AAPL, BUY, 1_000_001, 1, dt=1002)
    r2 = e.replace(ids[1], AAPL, BUY, 1_000_011, 1, dt=1003)
    assert e.check(r1, r2).accepted.all()
    assert e.reason(e.replace(ids[2], AAPL, BUY, 1_000_021, 1, dt=1004)) == "throttle_modify"
    e.ev(IN.EX_REPLACED, int(r1[IN.I_ID]), ids[0])
    e.ev(IN.EX_REPLACED, int(r2[IN.I_ID]), ids[1])
    assert e.check(e.cancel(int(r1[IN.I_ID]), dt=1005), e.cancel(int(r2[IN.I_ID]), dt=1006)).accepted.all()
    assert e.reason(e.cancel(ids[2], dt=1007)) == "throttle_cancel"
    assert e.reason(e.cancel(ids[2], dt=2005)) == "ok"


def test_cancel_and_replace_of_unknown_or_busy_orders(backend):
    e = Env(backend)
    assert e.reason(e.cancel(999)) == "unknown_order"
    a = e.accept(e.new(AAPL, BUY, 1_000_000, 10))
    assert e.reason(e.cancel(a, strategy=1)) == "unknown_order"  # not this strategy's order
    assert e.reason(e.cancel(a)) == "ok"
    assert e.reason(e.cancel(a)) == "order_pending"
    assert e.reason(e.replace(a, AAPL, BUY, 1_000_100, 10)) == "order_pending"
    e.ev(IN.EX_CANCEL_REJECT, a)   # too late to cancel? the order works again
    assert e.reason(e.replace(a, MSFT, BUY, 2_000_000, 10)) == "bad_field"  # another symbol
    assert e.reason(e.replace(a, AAPL, BUY, 1_000_100, 10)) == "ok"


# --- accounting --------------------------------------------------------------------------------

def test_positions_open_orders_and_pnl_are_exact_integers(backend):
    e = Env(backend)
    b = e.accept(e.new(AAPL, BUY, 1_001_000, 300))
    e.ev(IN.EX_ACK, b)
    assert e.risk.order(b)["state"] == R.OS_WORKING
    e.fill(b, 100, 1_000_000)
    assert e.risk.position(AAPL)["open_buy"] == 200 and e.risk.order(b)["leaves"] == 200
    e.fill(b, 200, 1_001_000)
    p = e.risk.position(AAPL)
    assert (p["position"], p["cost"], p["open_buy"], p["realised"]) == (300, 300_200_000, 0, 0)
    assert p["unrealised"] == 300 * 1_000_500 - 300_200_000 == -50_000
    assert e.risk.order(b) is None and e.risk.summary()["open_orders"] == 0
    s = e.accept(e.new(AAPL, SELL, 1_000_000, 150))
    e.fill(s, 100, 1_002_000)   # partial: closes 100 of 300 at average cost 1_000_666.67
    p = e.risk.position(AAPL)
    assert p["realised"] == 100 * 1_002_000 - (300_200_000 * 100) // 300 == 133_334
    assert (p["position"], p["cost"], p["open_sell"]) == (200, 200_133_334, 50)
    e.ev(IN.EX_CANCELED, s)      # the rest is cancelled
    assert e.risk.position(AAPL)["open_sell"] == 0 and e.risk.order(s) is None
    cash = -300_200_000 + 100 * 1_002_000
    total = e.risk.summary()["pnl"]["total"]
    assert total == cash + 200 * 1_000_500 == 100_000
    f = e.accept(e.new(AAPL, SELL, 999_000, 300))
    e.fill(f, 300, 999_000, side=SELL)  # flips to short 100
    p = e.risk.position(AAPL)
    assert (p["position"], p["cost"], p["realised"]) == (-100, -99_900_000, 133_334 + 199_800_000 - 200_133_334)
    c = e.accept(e.new(AAPL, BUY, 1_001_000, 100))
    e.fill(c, 100, 1_000_000)           # flat: realised PnL is exactly the cash
    p = e.risk.position(AAPL)
    cash += 300 * 999_000 - 100 * 1_000_000
    assert (p["position"], p["cost"], p["unrealised"]) == (0, 0, 0)
    assert p["realised"] == cash == -300_000
    sm = e.risk.summary()
    assert sm["pnl"] == {"realised": -300_000, "unrealised": 0, "total": -300_000, "peak": 100_000}
    assert sm["fills"] == 5 and sm["filled_qty"] == 800


def test_venue_reject_releases_the_open_quantity(backend):
    e = Env(backend)
    a = e.accept(e.new(AAPL, BUY, qty=100))
    e.ev(IN.EX_REJECT, a)
    assert e.risk.position(AAPL)["open_buy"] == 0 and e.risk.summary()["open_orders"] == 0


def test_fill_of_an_unknown_order_still_moves_the_position(backend):
    e = Env(backend)
    e.fill(12345, 10, 1_000_000, loc=MSFT, side=SELL)
    assert e.risk.position(MSFT)["position"] == -10 and e.risk.summary()["unknown_exec"] == 1


def test_replace_reserves_the_worst_case_until_confirmed(backend):
    e = Env(backend, limits=dict(max_position=250))
    a = e.accept(e.new(AAPL, BUY, 1_000_000, 100))
    e.ev(IN.EX_ACK, a)
    assert e.reason(e.replace(a, AAPL, BUY, 1_000_100, 300)) == "position_limit"
    r = e.replace(a, AAPL, BUY, 1_000_100, 250)
    assert e.reason(r) == "ok"
    rid = int(r[IN.I_ID])
    assert e.risk.position(AAPL)["open_buy"] == 250 and e.risk.order(a)["state"] == R.OS_REPLACING
    e.fill(a, 50, 1_000_000)                     # a fill on the original while the replace is in flight
    assert e.risk.position(AAPL)["open_buy"] == 200
    e.ev(IN.EX_REPLACED, rid, a)
    assert e.risk.order(a) is None
    assert e.risk.order(rid)["leaves"] == 200 and e.risk.order(rid)["cum"] == 50
    assert e.risk.position(AAPL)["open_buy"] == 200
    assert e.reason(e.replace(rid, AAPL, BUY, 1_000_100, 50)) == "bad_qty"  # not above the filled 50
    r2 = e.replace(rid, AAPL, BUY, 1_000_200, 100)
    assert e.reason(r2) == "ok"
    e.ev(IN.EX_REPLACE_REJECT, int(r2[IN.I_ID]))
    assert e.risk.order(rid)["state"] == R.OS_WORKING and e.risk.position(AAPL)["open_buy"] == 200
    r3 = e.replace(rid, AAPL, BUY, 1_000_200, 100)
    e.accept(r3)
    e.ev(IN.EX_REPLACED, int(r3[IN.I_ID]), rid)
    assert e.risk.position(AAPL)["open_buy"] == 50 and e.risk.order(int(r3[IN.I_ID]))["leaves"] == 50
    assert e.risk.state.ps[AAPL, R.PS_OUR_BID] == 1_000_200


# --- kill switch -------------------------------------------------------------------------------

def _working(e: Env) -> list[int]:
    """Three working orders in three states; returns their ids (the last has a replace in flight)."""
    a = e.accept(e.new(AAPL, BUY, 1_000_000, 10))
    b = e.accept(e.new(MSFT, SELL, 2_001_000, 10))
    c = e.accept(e.new(AAPL, BUY, 1_000_100, 10))
    e.ev(IN.EX_ACK, b)
    e.ev(IN.EX_ACK, c)
    e.accept(e.replace(c, AAPL, BUY, 1_000_200, 20))
    return [a, b, c]


def _assert_every_working_order_has_a_cancel(e: Env, cancels: np.ndarray, ids: list[int], origin: int) -> None:
    assert (cancels[:, IN.I_KIND] == IN.KIND_CANCEL).all() and (cancels[:, IN.I_ORIGIN] == origin).all()
    assert sorted(cancels[:, IN.I_ORIG].tolist()) == sorted(ids)
    assert len(set(cancels[:, IN.I_ID].tolist())) == len(ids)
    ro = e.risk.state.live_orders()
    for r in ro:
        assert r[R.RO_STATE] == R.OS_PENDING_CANCEL or (
            r[R.RO_STATE] == R.OS_PENDING_REPLACE and e.risk.order(int(ro[ro[:, R.RO_ID] != r[R.RO_ID]][0, 0]))
            is not None)


def test_kill_switch_method_stops_new_orders_and_cancels_every_working_order(backend):
    e = Env(backend)
    ids = _working(e)
    cancels = e.risk.kill()
    _assert_every_working_order_has_a_cancel(e, cancels, ids, IN.ORIGIN_KILL)
    assert e.risk.killed and e.risk.kill_reason == "manual"
    d = e.check(e.new(AAPL, BUY, qty=1), e.cancel(ids[0]), e.new(MSFT, SELL, qty=1))
    assert d.reasons.tolist() == [IN.R_KILL_SWITCH] * 3 and len(d.orders) == 0
    assert e.risk.kill().shape[0] == 0   # once: the cancels are already out
    # the replace in flight is confirmed after the kill: its new id gets a cancel too
    rid = int(e.risk.state.ro[e.risk.state.ro[:, R.RO_STATE] == R.OS_PENDING_REPLACE][0, R.RO_ID])
    more = e.ev(IN.EX_REPLACED, rid, ids[2])
    assert more[:, IN.I_ORIG].tolist() == [rid] and more[0, IN.I_ORIGIN] == IN.ORIGIN_KILL
    # a rejected cancel is asked again while killed
    again = e.ev(IN.EX_CANCEL_REJECT, ids[0])
    assert again[:, IN.I_ORIG].tolist() == [ids[0]]
    assert e.risk.summary()["rejections"]["kill_switch"] == 3
    e.risk.reset_kill()
    assert e.reason(e.new(AAPL, BUY, 1_000_300, 1)) == "ok"


def test_kill_file_is_polled_between_batches(backend, tmp_path):
    kf = tmp_path / "KILL"
    e = Env(backend, kill=dict(file=str(kf)))
    ids = _working(e)
    assert len(e.risk.poll()) == 0 and not e.risk.killed
    kf.touch()
    cancels = e.risk.poll()
    _assert_every_working_order_has_a_cancel(e, cancels, ids, IN.ORIGIN_KILL)
    assert e.risk.kill_reason == "kill file" and e.reason(e.new(AAPL, qty=1)) == "kill_switch"
    assert len(e.risk.poll()) == 0


def test_sigusr1_engages_the_kill_switch_at_once(backend):
    e = Env(backend)
    ids = _working(e)
    e.risk.install_signal_handler()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.01)  # the handler runs in the main thread at the next bytecode
        d = e.check(e.new(AAPL, BUY, qty=1))   # the very next call: rejected, and the cancels go out
        assert d.reasons.tolist() == [IN.R_KILL_SWITCH]
        _assert_every_working_order_has_a_cancel(e, d.orders, ids, IN.ORIGIN_KILL)
        assert e.risk.kill_reason == "signal"
    finally:
        e.risk.remove_signal_handler()


def test_loss_limit_engages_the_kill_switch(backend):
    e = Env(backend, limits=dict(max_loss=10))  # $10
    b = e.accept(e.new(AAPL, BUY, 1_001_000, 100))
    e.fill(b, 100, 1_000_500)
    w = e.accept(e.new(MSFT, BUY, 2_000_000, 10))
    e.quote(AAPL, 999_000, 1_000_000)   # mid 999_500: -$10.00 exactly is not past the limit
    assert len(e.risk.mark_to_market()) == 0 and not e.risk.killed
    e.quote(AAPL, 998_990, 1_000_000)   # mid 999_495: -$10.05
    cancels = e.risk.mark_to_market()
    assert e.risk.kill_reason == "loss limit" and cancels[:, IN.I_ORIG].tolist() == [w]
    assert e.reason(e.new(MSFT, BUY, qty=1)) == "kill_switch"


def test_drawdown_limit_engages_the_kill_switch(backend):
    e = Env(backend, limits=dict(max_drawdown=5))
    b = e.accept(e.new(AAPL, BUY, 1_001_000, 100))
    e.fill(b, 100, 1_000_500)
    e.quote(AAPL, 1_010_000, 1_011_000)   # +$100 peak
    e.risk.mark_to_market()
    e.quote(AAPL, 1_009_500, 1_010_500)   # -$5: at the limit
    e.risk.mark_to_market()
    assert not e.risk.killed
    # the check of an intent re-marks its symbol: the drawdown is found there too
    e.quote(AAPL, 1_009_400, 1_010_500)
    assert e.reason(e.new(AAPL, SELL, 1_010_000, 1)) == "kill_switch"
    assert e.risk.kill_reason == "drawdown limit"


def test_cancel_on_disconnect(backend):
    e = Env(backend)
    ids = _working(e)
    cancels = e.ev(IN.EX_DISCONNECT)
    _assert_every_working_order_has_a_cancel(e, cancels, ids, IN.ORIGIN_DISCONNECT)
    assert e.reason(e.new(AAPL, BUY, qty=1)) == "disconnected"
    e.ev(IN.EX_CONNECT)
    assert e.reason(e.new(AAPL, BUY, 1_000_300, 1)) == "ok"
    off = Env(backend, kill=dict(cancel_on_disconnect=False))
    _working(off)
    assert len(off.ev(IN.EX_DISCONNECT)) == 0 and off.reason(off.new(AAPL, qty=1)) == "disconnected"


# --- repeated-execution throttle -----------------------------------------------------------------

def test_repeated_execution_throttle_latches_until_reenabled(backend):
    e = Env(backend, throttle=dict(exec_interval_ns=1000, max_executions=2))
    a = e.accept(e.new(AAPL, BUY, 1_001_000, 500, strategy=1))
    other = e.accept(e.new(MSFT, BUY, 2_001_000, 10, strategy=1))
    mine = e.accept(e.new(SPY, BUY, 4_000_000, 10, strategy=0))
    e.fill(a, 10, 1_000_500, dt=1)
    e.fill(a, 10, 1_000_500, dt=2)
    assert e.risk.disabled_strategies() == []
    cancels = e.fill(a, 10, 1_000_500, dt=3)   # the third within 1000 ns
    assert e.risk.disabled_strategies() == [1]
    assert sorted(cancels[:, IN.I_ORIG].tolist()) == sorted([a, other])
    assert (cancels[:, IN.I_ORIGIN] == IN.ORIGIN_THROTTLE).all()
    assert e.risk.order(mine)["state"] == R.OS_PENDING_NEW      # other strategies untouched
    assert e.reason(e.new(AAPL, BUY, qty=1, strategy=1)) == "strategy_disabled"
    assert e.reason(e.new(AAPL, BUY, qty=1, strategy=1, dt=10**9)) == "strategy_disabled"  # latched
    assert e.reason(e.new(MSFT, BUY, 2_000_000, 1, strategy=0)) == "ok"
    e.risk.reenable(1)
    assert e.reason(e.new(AAPL, BUY, 1_000_000, 1, strategy=1)) == "ok"
    assert e.risk.summary()["strategies_disabled"] == []


# --- stale market data ---------------------------------------------------------------------------

def test_sequence_gap_blocks_the_session_until_recovered(backend):
    e = Env(backend, sessions={SPY: 1})
    assert e.feed([dict(kind="S", locate=0, skip=3)]) == 1    # 3 messages lost on session 0
    assert e.reason(e.new(AAPL, qty=1)) == "stale_gap"
    assert e.reason(e.new(MSFT, qty=1)) == "stale_gap"
    assert e.reason(e.new(SPY, qty=1)) == "ok"                 # another session
    assert e.risk.summary()["feed"] == {"gaps": 1, "sessions_with_open_gap": [0]}
    e.risk.recover(0)
    assert e.reason(e.new(AAPL, qty=1)) == "ok"
    r = Env(backend, stale=dict(gap_resync_ns=10))
    r.feed([dict(kind="S", locate=0, skip=1)])
    assert r.reason(r.new(AAPL, qty=1)) == "stale_gap"
    r.now += 9
    r.feed([dict(kind="S", locate=0)])
    assert r.reason(r.new(AAPL, qty=1)) == "ok"                # 10 ns of clean feed: resynced


def test_a_silent_feed_blocks_until_data_flows_again(backend):
    e = Env(backend, stale=dict(silence_ns=1000))
    assert e.reason(e.new(AAPL, BUY, 1_000_100, 1, dt=1000)) == "ok"
    assert e.reason(e.new(AAPL, BUY, 1_000_200, 1, dt=1001)) == "stale_silent"
    e.feed([dict(kind="S", locate=0)])
    assert e.reason(e.new(AAPL, BUY, 1_000_200, 1, dt=1)) == "ok"


def test_crossed_or_locked_book_blocks_until_sound(backend):
    e = Env(backend)
    e.feed([e.add(AAPL, "B", 1_002_000, 10)])           # bid above the ask
    assert e.reason(e.new(AAPL, qty=1)) == "book_crossed"
    assert e.reason(e.new(MSFT, qty=1)) == "ok"
    e.feed([dict(kind="D", locate=AAPL, ref=e.quotes[(AAPL, "B")])])
    assert e.reason(e.new(AAPL, BUY, 1_000_100, 1)) == "ok"
    e.feed([e.add(AAPL, "B", 1_001_000, 10)])           # locked
    assert e.reason(e.new(AAPL, BUY, 1_000_200, 1)) == "book_crossed"
    lk = Env(backend, stale=dict(block_locked=False))
    lk.feed([lk.add(AAPL, "B", 1_001_000, 10)])
    assert lk.reason(lk.new(AAPL, BUY, 1_000_200, 1)) == "ok"


# --- auto-hedge --------------------------------------------------------------------------------

def test_auto_hedge_in_the_same_symbol(backend):
    e = Env(backend, hedge=dict(enabled=True, threshold=50_000, target=0))
    b = e.accept(e.new(AAPL, BUY, 1_001_000, 400))
    assert len(e.fill(b, 400, 1_001_000)) == 0             # $40,020 < $50,000
    b2 = e.accept(e.new(AAPL, BUY, 1_001_000, 600))
    out = e.fill(b2, 600, 1_001_000)                       # $100,050 net long: sell it all back
    assert out.shape[0] == 1
    h = IN.records(out)[0]
    assert (h["locate"], h["side"], h["price"], h["qty"]) == (AAPL, SELL, BID[AAPL], 1000)
    assert (h["tif"], h["style"], h["kind"], h["origin"], h["strategy"]) == (
        IN.TIF_IOC, IN.STYLE_TAKE, IN.KIND_NEW, IN.ORIGIN_HEDGE, 3)
    assert e.risk.order(int(h["id"]))["origin"] == IN.ORIGIN_HEDGE
    b3 = e.accept(e.new(MSFT, BUY, 2_001_000, 1))
    assert len(e.fill(b3, 1, 2_001_000, loc=MSFT)) == 0    # the open hedge counts: no second hedge
    half = Env(backend, hedge=dict(enabled=True, threshold=50_000, target=50_000))
    b = half.accept(half.new(AAPL, BUY, 1_001_000, 1000))
    assert IN.records(half.fill(b, 1000, 1_001_000))["qty"].tolist() == [500]  # back down to $50,000


def test_auto_hedge_in_a_hedge_instrument_with_beta(backend):
    e = Env(backend, hedge=dict(enabled=True, symbol="SPY", beta_bps=12_000, threshold=50_000))
    b = e.accept(e.new(AAPL, BUY, 1_001_000, 1000))
    out = e.fill(b, 1000, 1_001_000)   # 1.2 x $100,050 = $120,060 of SPY at 400.05: 300 shares
    h = IN.records(out)
    assert h[["locate", "side", "price", "qty"]].tolist() == [(SPY, SELL, BID[SPY], 300)]
    assert e.risk.summary()["hedges"] == {"sent": 1, "rejected": 0, "unpriced": 0}


def test_hedges_pass_the_same_checks_and_are_rejected_when_they_would_breach(backend):
    e = Env(backend, hedge=dict(enabled=True, symbol="SPY", beta_bps=12_000, threshold=50_000),
            symbols=[dict(symbol="SPY", max_position=100)])
    b = e.accept(e.new(AAPL, BUY, 1_001_000, 1000))
    assert len(e.fill(b, 1000, 1_001_000)) == 0
    sm = e.risk.summary()
    assert sm["hedges"]["rejected"] == 1 and sm["rejections"] == {"position_limit": 1}
    k = Env(backend, hedge=dict(enabled=True, threshold=50_000), restricted=["AAPL"])
    k.fill(777, 1000, 1_000_500)  # an unknown order's fill still moves the position and triggers it
    assert k.risk.summary()["rejections"] == {"restricted": 1}


# --- backends agree --------------------------------------------------------------------------------

def random_ops(e: Env, rng: np.random.Generator, n: int) -> list[tuple[str, np.ndarray]]:
    """Apply ``n`` random steps to ``e`` and return them: intents (new/cancel/replace, some
    malformed or beyond limits) and execution events for live orders, market moves."""
    ops = []
    for _ in range(n):
        live = e.risk.state.live_orders()
        r = rng.random()
        e.now += int(rng.integers(1, 50))
        if r < 0.45 or len(live) == 0:
            loc = int(rng.choice([AAPL, MSFT, SPY, IBM]))
            side = int(rng.integers(0, 2))
            mid = MID.get(loc, 1_000_000)
            row = e.new(loc, side, int(mid + rng.integers(-30, 30) * 100), int(rng.integers(1, 1200)),
                        strategy=int(rng.integers(0, 2)))
            ops.append(("check", row[None]))
            e.check(row)
            continue
        x = live[rng.integers(0, len(live))]
        oid, loc, side, price = (int(v) for v in x[[R.RO_ID, R.RO_LOC, R.RO_SIDE, R.RO_PRICE]])
        if r < 0.55:
            row = e.cancel(oid, strategy=int(x[R.RO_STRAT]))
        elif r < 0.62:
            row = e.replace(oid, loc, side, price + int(rng.integers(-3, 3)) * 100, int(rng.integers(1, 1200)),
                            strategy=int(x[R.RO_STRAT]))
        else:
            row = None
        if row is not None:
            ops.append(("check", row[None]))
            e.check(row)
            continue
        state = int(x[R.RO_STATE])
        if state == R.OS_PENDING_NEW:
            kind = int(rng.choice([IN.EX_ACK, IN.EX_ACK, IN.EX_REJECT, IN.EX_FILL]))
        elif state == R.OS_PENDING_CANCEL:
            kind = int(rng.choice([IN.EX_CANCELED, IN.EX_CANCEL_REJECT, IN.EX_FILL]))
        elif state == R.OS_PENDING_REPLACE:
            kind = int(rng.choice([IN.EX_REPLACED, IN.EX_REPLACE_REJECT]))
        else:
            kind = int(rng.choice([IN.EX_FILL, IN.EX_FILL, IN.EX_CANCELED]))
        q = int(rng.integers(1, max(2, int(x[R.RO_LEAVES]) + 1)))
        orig = int(x[R.RO_LINK]) if state == R.OS_PENDING_REPLACE else 0
        ev = IN.exec_event(kind, id=oid, orig=int(e.risk.state.ro[orig, R.RO_ID]) if orig else 0, locate=loc,
                           side=side, qty=q, price=price, ts=e.now)
        ops.append(("exec", ev[None]))
        e.risk.on_exec(ev[None])
    return ops


def test_cpu_and_cuda_backends_make_identical_decisions(backend):
    from kernels import cpu

    conf = risk_conf(limits=dict(max_gross=300_000, max_credit=400_000), duplicate_window_ns=100,
                     hedge=dict(enabled=True, threshold=100_000, target=20_000),
                     throttle=dict(interval_ns=200, max_submits=5, max_executions=6, exec_interval_ns=300))
    ref = Env(cpu, conf)
    ops = random_ops(ref, np.random.default_rng(7), 120)
    e = Env(backend, conf)
    for kind, rows in ops:
        e.now = int(rows[0, IN.I_TS if kind == "check" else IN.E_TS])
        got = e.risk.check(rows).decisions if kind == "check" else e.risk.on_exec(rows)
        assert got is not None
    for name in ("g", "ls", "ps", "hs", "ro", "oh", "ofree", "st", "rt", "rc"):
        assert np.array_equal(getattr(ref.risk.state, name), getattr(e.risk.state, name)), name
    sm = ref.risk.summary()
    assert sm["accepted"] > 10 and sm["rejected"] > 10 and sm["fills"] > 5, sm


def test_cpu_and_cuda_outputs_match_step_by_step():
    """Every decision row and every emitted order, step by step, on the CPU and the simulator."""
    from kernels import cpu
    from pipeline.backends import BackendError, load

    try:
        gpu = load("cuda")
    except BackendError as exc:
        pytest.skip(str(exc))
    conf = risk_conf(hedge=dict(enabled=True, threshold=50_000), throttle=dict(max_executions=4,
                                                                                 exec_interval_ns=100))
    ref = Env(cpu, conf)
    ops = random_ops(ref, np.random.default_rng(3), 60)
    a, b = Env(cpu, conf), Env(gpu, conf)
    for kind, rows in ops:
        if kind == "check":
            da, db = a.risk.check(rows), b.risk.check(rows)
            assert np.array_equal(da.decisions, db.decisions) and np.array_equal(da.orders, db.orders)
        else:
            assert np.array_equal(a.risk.on_exec(rows), b.risk.on_exec(rows))
    assert np.array_equal(a.risk.kill(), b.risk.kill())


# --- configuration, CLI, report --------------------------------------------------------------------

@pytest.mark.parametrize("override, key", [
    ("risk.limits.max_position=-1", "risk.limits.max_position"),
    ("risk.limits.max_loss=-5", "risk.limits.max_loss"),
    ("risk.limits.max_order_qty=???", "risk.limits.max_order_qty"),
    ("risk.duplicate_window_ns=???", "risk.duplicate_window_ns"),
    ("risk.throttle.max_executions=0", "risk.throttle.max_executions"),
    ("risk.throttle.interval_ns=0", "risk.throttle.interval_ns"),
    ("risk.stale.silence_ns=-1", "risk.stale.silence_ns"),
    ("risk.hedge.target=2000000", "risk.hedge.target"),
    ("risk.hedge.strategy_id=16", "risk.hedge.strategy_id"),
    ("risk.reference=vwap", "risk.reference"),
    ("risk.restricted=[TOOLONGNAME]", "risk.restricted[0]"),
    ("risk.symbols=[{symbol:AAPL,max_position:-3}]", "risk.symbols[0].max_position"),
])
def test_invalid_or_missing_limits_fail_at_start_naming_the_key(override, key):
    from tests.test_cli_config import cfg_of
    from pipeline.config import validate

    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[").replace("]", r"\]")):
        validate(cfg_of("replay", [override]))


def test_a_risk_config_without_limits_is_refused_by_the_stage():
    from kernels import cpu
    from omegaconf import OmegaConf as OC

    conf = OC.structured(RiskConf)   # every limit MISSING
    with pytest.raises(ConfigError, match=r"risk\.duplicate_window_ns: missing|risk\.limits\.max_order_qty: missing"):
        RiskStage(cpu, conf, BookState(10, 10, 4))
    conf = OC.create(OC.to_container(risk_conf()))
    del conf.limits["max_net"]   # a hand-made tree without the key (not through the schema)
    with pytest.raises(ConfigError, match=r"risk\.limits\.max_net: missing"):
        RiskStage(cpu, conf, BookState(10, 10, 4))


def test_default_config_builds_a_stage_with_its_limits():
    from kernels import cpu
    from tests.test_cli_config import cfg_of

    cfg = cfg_of("replay")
    stage = RiskStage.from_config(cpu, cfg, BookState(10, 10, 4))
    assert stage.lim[R.L_MAX_GROSS] == cfg.risk.limits.max_gross * 10_000
    assert stage.state.ro.shape[0] == cfg.risk.max_open_orders and stage.wants_signal


def test_rejections_are_counted_by_reason_and_printed_in_the_summary(backend):
    from replay.report import format_risk

    e = Env(backend, restricted=["MSFT"])
    e.check(e.new(MSFT), e.new(MSFT), e.new(AAPL, BUY, 2_000_000), e.new(AAPL))
    sm = e.risk.summary()
    assert sm["rejections"] == {"restricted": 2, "price_collar": 1} and sm["accepted"] == 1
    text = "\n".join(format_risk(sm))
    assert "restricted 2, price_collar 1" in text and "kill switch off" in text
    e.risk.kill()
    assert "kill switch engaged (manual)" in "\n".join(format_risk(e.risk.summary()))


def test_hftbot_kill_touches_the_kill_file_and_signals_the_pid(tmp_path):
    kf = tmp_path / "sub" / "KILL"
    res = subprocess.run([sys.executable, "-m", "pipeline", "kill", "--file", str(kf)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert kf.exists()
    child = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys, time\n"
        "got = []\n"
        "signal.signal(signal.SIGUSR1, lambda *a: got.append(1))\n"
        "print('ready', flush=True)\n"
        "t = time.time()\n"
        "while not got and time.time() - t < 60: time.sleep(0.01)\n"
        "print('killed' if got else 'timeout', flush=True)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        res = subprocess.run([sys.executable, "-m", "pipeline", "kill", "--pid", str(child.pid)], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert child.stdout.readline().strip() == "killed"
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


PTX_SCRIPT = r'''
from kernels import cpu, gpu
from kernels import intents as IN
from kernels.state import BookRefs, RiskTables
from tests.test_risk import Env

e = Env(cpu)
r, bs = e.risk.arrays(), e.risk.book
tables = RiskTables(r.g, r.lim, r.ls, r.ps, r.hs, r.ro, r.oh, r.ofree, r.st, r.rt, r.rc)
refs = BookRefs(bs.bk, bs.li, bs.sym)
ret = np.zeros(3, np.int64)
one = np.zeros((1, IN.NI), np.int64)
ev = np.zeros((1, IN.NE), np.int64)
c = {k: np.zeros(1, v.dtype) for k, v in __import__("kernels.events", fromlist=["x"]).EventTable(1).cols.items()}
g, lim, ls, ps, hs, ro = r.g, r.lim, r.ls, r.ps, r.hs, r.ro
cases = {
    "check_intents": (gpu._check_intents_kernel, (1, one, e.risk.res, e.risk.out, tables, refs, ret)),
    "apply_exec": (gpu._apply_exec_kernel, (1, ev, e.risk.out, tables, refs, ret)),
    "feed_health": (gpu._feed_health_kernel, (1, c["sess"], c["seq"], c["locate"], c["ts"], g, lim, ls, ps, hs,
                                              e.risk.ovk, e.risk.ovl, bs.sym, ret)),
    "mark_to_market": (gpu._mark_to_market_kernel, (0, e.risk.out, g, lim, ps, ro, bs.bk, bs.li, bs.sym, ret)),
    "kill_switch": (gpu._kill_switch_kernel, (1, 0, e.risk.out, g, ro, ret)),
}
for name, (k, args) in cases.items():
    sig = tuple(typeof(a) if isinstance(a, tuple) else  # a bundle (kernels/state.py)
                types.Array(typeof(a).dtype, a.ndim, "C") if isinstance(a, np.ndarray) else types.int64 for a in args)
    ptx(k.py_func, sig)
    print(name, "ok", flush=True)
'''


def test_risk_kernels_compile_to_ptx_for_a_real_gpu(tmp_path):
    """The simulator runs the bodies as Python; this types and compiles them for sm_90 (NVVM),
    where numba-cuda's NVRTC/NVVM libraries are installed (``numba-cuda[cu13]``)."""
    compile_in_subprocess(PTX_SCRIPT, expect_ok=5)
