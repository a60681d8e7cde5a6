"""Risk property tests (Hypothesis, CPU backend): no sequence of intents, fills, cancels and
replaces takes a position or an exposure past a limit; after the kill switch nothing is accepted
and every working order has a cancel; PnL stays exact; the incremental aggregates always equal
a recomputation from scratch."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels import intents as IN
from kernels import risk as R
from tests.test_risk import AAPL, MID, MSFT, SPY, Env, risk_conf

PROP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LIMITS = dict(max_order_qty=400, max_order_notional=10**6, max_position=600, max_gross=150_000, max_net=90_000,
              max_credit=200_000, collar_bps=100, max_loss=10**8, max_drawdown=10**8)
SYMBOL_MAX_POS = {MSFT: 150}


def conf(hedge: bool):
    return risk_conf(limits=LIMITS, symbols=[dict(symbol="MSFT", max_position=150)], max_open_orders=24,
                     hedge=dict(enabled=hedge, symbol="SPY" if hedge else "", beta_bps=9_000, threshold=30_000,
                                target=5_000))


def step(e: Env, data) -> str:
    """Draw and apply one step: an intent (new / cancel / replace) or an execution event for a
    live order that a venue could send (fills never exceed the leaves quantity)."""
    live = e.risk.state.live_orders()
    e.now += data.draw(st.integers(1, 1000))
    what = data.draw(st.sampled_from(["new", "new", "new", "cancel", "replace", "exec", "exec", "exec"]))
    if what == "new" or len(live) == 0:
        loc = data.draw(st.sampled_from([AAPL, MSFT, SPY]))
        side = data.draw(st.integers(0, 1))
        price = MID[loc] + data.draw(st.integers(-60, 60)) * MID[loc] // 5000
        e.check(e.new(loc, side, price, data.draw(st.integers(1, 450)), strategy=data.draw(st.integers(0, 1))))
        return "new"
    x = live[data.draw(st.integers(0, len(live) - 1))]
    oid, loc, side, price, state = (int(v) for v in x[[R.RO_ID, R.RO_LOC, R.RO_SIDE, R.RO_PRICE, R.RO_STATE]])
    if what == "cancel":
        e.check(e.cancel(oid, strategy=int(x[R.RO_STRAT])))
        return "cancel"
    if what == "replace":
        e.check(e.replace(oid, loc, side, price + data.draw(st.integers(-5, 5)) * 100, data.draw(st.integers(1, 450)),
                          strategy=int(x[R.RO_STRAT])))
        return "replace"
    if state == R.OS_PENDING_REPLACE:
        kind = data.draw(st.sampled_from([IN.EX_REPLACED, IN.EX_REPLACE_REJECT]))
        orig = int(e.risk.state.ro[int(x[R.RO_LINK]), R.RO_ID])
        e.exec(IN.exec_event(kind, id=oid, orig=orig, ts=e.now))
        return "replace ack"
    choices = [IN.EX_FILL, IN.EX_FILL, IN.EX_CANCELED]
    choices += [IN.EX_ACK, IN.EX_REJECT] if state == R.OS_PENDING_NEW else []
    choices += [IN.EX_CANCEL_REJECT] if state == R.OS_PENDING_CANCEL else []
    kind = data.draw(st.sampled_from(choices))
    q = data.draw(st.integers(1, int(x[R.RO_LEAVES]))) if x[R.RO_LEAVES] > 0 else 1
    e.exec(IN.exec_event(kind, id=oid, locate=loc, side=side, qty=q, price=price, ts=e.now))
    return "exec"


def assert_within_limits(e: Env) -> None:
    s = e.risk.state
    ps, g, ro = s.ps, s.g, s.ro
    d = 10_000
    gross = net_long = net_short = credit = 0
    for loc in (AAPL, MSFT, SPY):
        pos, ob, osl, m = (int(v) for v in ps[loc, [R.PS_POS, R.PS_OPEN_BUY, R.PS_OPEN_SELL, R.PS_MARK]])
        cap = SYMBOL_MAX_POS.get(loc, LIMITS["max_position"])
        assert pos + ob <= cap and osl - pos <= cap and abs(pos) <= cap, (loc, pos, ob, osl)
        gross += max(pos + ob, osl - pos) * m
        net_long += (pos + ob) * m
        net_short += (pos - osl) * m
        credit += (abs(pos) + ob + osl) * m
        # open quantities are exactly the live orders' leaves
        mine = ro[(ro[:, R.RO_STATE] != 0) & (ro[:, R.RO_LOC] == loc)]
        assert ob == mine[mine[:, R.RO_SIDE] == 0, R.RO_LEAVES].sum()
        assert osl == mine[mine[:, R.RO_SIDE] == 1, R.RO_LEAVES].sum()
        bids = mine[mine[:, R.RO_SIDE] == 0, R.RO_PRICE]
        asks = mine[mine[:, R.RO_SIDE] == 1, R.RO_PRICE]
        assert ps[loc, R.PS_OUR_BID] == (bids.max() if len(bids) else 0)
        assert ps[loc, R.PS_OUR_ASK] == (asks.min() if len(asks) else 0)
        if len(bids) and len(asks):
            assert bids.max() < asks.min()   # we never cross ourselves
    assert gross <= LIMITS["max_gross"] * d and credit <= LIMITS["max_credit"] * d
    assert net_long <= LIMITS["max_net"] * d and net_short >= -LIMITS["max_net"] * d
    assert (g[R.G_GROSS], g[R.G_NETLONG], g[R.G_NETSHORT], g[R.G_CREDIT]) == (gross, net_long, net_short, credit)
    live = ro[ro[:, R.RO_STATE] != 0]
    assert g[R.G_OPEN] == len(live) and g[R.G_FREE] + len(live) == ro.shape[0]
    for r in live:
        assert e.risk.order(int(r[R.RO_ID])) is not None


@PROP
@given(st.data(), st.booleans())
def test_no_sequence_takes_a_position_or_exposure_past_a_limit(data, hedge):
    from kernels import cpu

    e = Env(cpu, conf(hedge))
    for _ in range(data.draw(st.integers(5, 80))):
        step(e, data)
        assert_within_limits(e)


@PROP
@given(st.data())
def test_after_the_kill_switch_nothing_is_accepted_and_every_working_order_has_a_cancel(data):
    from kernels import cpu

    e = Env(cpu, conf(hedge=data.draw(st.booleans())))
    for _ in range(data.draw(st.integers(0, 40))):
        step(e, data)
    ro = e.risk.state.ro
    need = set(ro[np.isin(ro[:, R.RO_STATE], [R.OS_PENDING_NEW, R.OS_WORKING, R.OS_REPLACING]), R.RO_ID].tolist())
    accepted_before = e.risk.summary()["accepted"]
    cancels = e.risk.kill()
    assert set(cancels[:, IN.I_ORIG].tolist()) == need and len(cancels) == len(need)
    assert (cancels[:, IN.I_KIND] == IN.KIND_CANCEL).all()
    for _ in range(data.draw(st.integers(0, 40))):
        step(e, data)
        assert e.risk.summary()["accepted"] == accepted_before   # no order accepted after the kill
        ro = e.risk.state.ro
        for r in ro[ro[:, R.RO_STATE] != 0]:
            if r[R.RO_STATE] == R.OS_PENDING_REPLACE:   # covered by the cancel of its original
                assert ro[r[R.RO_LINK], R.RO_STATE] == R.OS_PENDING_CANCEL
            else:
                assert r[R.RO_STATE] == R.OS_PENDING_CANCEL
        assert_within_limits(e)


@PROP
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(1, 700), st.integers(-300, 300)), min_size=1, max_size=40))
def test_pnl_is_exact_realised_plus_unrealised_equals_cash_plus_position_value(fills):
    from kernels import cpu

    e = Env(cpu)
    cash = pos = 0
    for side, q, dpx in fills:
        px = 1_000_500 + dpx * 100
        e.fill(10**9, q, px, side=side)   # an unknown order id: positions still move
        cash += -q * px if side == 0 else q * px
        pos += q if side == 0 else -q
        p = e.risk.position(AAPL)
        assert p["position"] == pos and p["mark"] == MID[AAPL]
        assert p["realised"] + p["unrealised"] == cash + pos * MID[AAPL]
        if pos == 0:
            assert p["realised"] == cash and p["cost"] == 0
        assert pos == 0 or (p["cost"] > 0) == (pos > 0)   # the cost carries the sign of the position
        sm = e.risk.summary()["pnl"]
        assert sm["total"] == cash + pos * MID[AAPL]
