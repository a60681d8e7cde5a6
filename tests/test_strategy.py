"""Strategy kernel: signal + book -> order intents, on every backend; limits and in-flight
accounting; intents that risk accepts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels import features as FT
from kernels import intents as IN
from kernels import risk as R
from kernels import strategy as KS
from pipeline.book import FeatureBatch
from pipeline.config import StrategyConf
from pipeline.model import PredictionBatch
from pipeline.strategy import ID_SHIFT, StrategyStage

BID, ASK = 1_000_000, 1_000_100  # $100.00 / $100.01


def rows(specs):
    """Feature rows from (locate, ts, bid, bid_qty, ask, ask_qty) tuples."""
    f = np.zeros((len(specs), FT.N_FEATURES))
    k = np.zeros((len(specs), FT.N_KEYS), np.int64)
    for i, (loc, ts, bid, bq, ask, aq) in enumerate(specs):
        f[i, [FT.F_BID_PX, FT.F_BID_QTY, FT.F_ASK_PX, FT.F_ASK_QTY]] = (bid, bq, ask, aq)
        f[i, FT.F_MID] = 0.5 * (bid + ask) if bq > 0 and aq > 0 else 0.0
        k[i, FT.K_LOCATE], k[i, FT.K_TS] = loc, ts
    return f, k


def run(stage, preds, specs):
    f, k = rows(specs)
    pred = PredictionBatch(np.asarray(preds, np.float64), FeatureBatch(f, k, len(specs)), len(specs))
    b = stage(pred)
    return b, IN.records(b.intents)


def stage(k, positions=None, **kw):
    conf = StrategyConf(**{"min_interval_ns": 0, **kw})
    return StrategyStage(k, conf, rows=16, capacity=64, positions=positions)


def test_quotes_join_the_best_price_on_the_favoured_side(backend):
    s = stage(backend, quote_threshold=4.0)
    _, r = run(s, [5.0, -5.0, 3.9], [(1, 100, BID, 300, ASK, 200), (2, 200, BID, 300, ASK, 200),
                                     (3, 300, BID, 300, ASK, 200)])
    assert len(r) == 2
    assert (r[0]["locate"], r[0]["side"], r[0]["price"], r[0]["qty"]) == (1, IN.SIDE_BUY, BID, 100)
    assert (r[1]["locate"], r[1]["side"], r[1]["price"]) == (2, IN.SIDE_SELL, ASK)
    assert set(r["kind"]) == {IN.KIND_NEW} and set(r["style"]) == {IN.STYLE_QUOTE} and set(r["tif"]) == {IN.TIF_DAY}
    assert list(r["ts"]) == [100, 200] and list(r["id"]) == [1 << ID_SHIFT, (1 << ID_SHIFT) + 1]
    assert set(r["origin"]) == {IN.ORIGIN_STRATEGY} and set(r["strategy"]) == {0}


def test_a_strong_signal_takes_at_the_opposite_price_capped_at_the_shares_shown(backend):
    s = stage(backend, take_edge=25.0, take_size=500)
    # spread 100: buy when pred - 50 >= 25
    _, r = run(s, [80.0, -74.0, -75.0], [(1, 1, BID, 300, ASK, 200), (2, 2, BID, 300, ASK, 200),
                                         (3, 3, BID, 300, ASK, 900)])
    assert (r[0]["side"], r[0]["price"], r[0]["qty"], r[0]["tif"], r[0]["style"]) == (
        IN.SIDE_BUY, ASK, 200, IN.TIF_IOC, IN.STYLE_TAKE)
    assert r[1]["style"] == IN.STYLE_QUOTE  # -74 does not clear the edge: a sell quote instead
    assert (r[2]["side"], r[2]["price"], r[2]["qty"], r[2]["style"]) == (IN.SIDE_SELL, BID, 300, IN.STYLE_TAKE)


def accept_all(s, b):
    dec = np.zeros((b.n, IN.ND), np.int64)
    dec[:, IN.D_ACCEPT] = 1
    return s.on_decisions(b, dec)


def test_a_working_quote_is_not_repeated_and_is_cancelled_when_the_signal_turns(backend):
    ps = np.zeros((16, R.NPS), np.int64)
    s = stage(backend, positions=ps, quote_threshold=4.0, cancel_threshold=2.0)
    b, r = run(s, [5.0, 6.0, -3.0], [(1, t, BID, 300, ASK, 200) for t in (1, 2, 3)])
    assert len(r) == 1  # no second bid; no cancel before risk has accepted the first
    first_id = int(r[0]["id"])  # (the stage reuses its intent table: copy what is kept)
    assert accept_all(s, b) == 0
    ps[1, R.PS_OPEN_BUY] = 100  # accounting: the quote is working
    ps[1, R.PS_OUR_BID] = BID
    _, r = run(s, [6.0, -1.0, -2.5, 5.0], [(1, t, BID, 300, ASK, 200) for t in (4, 5, 6, 7)])
    assert [(x["kind"], x["side"]) for x in r] == [(IN.KIND_CANCEL, IN.SIDE_BUY), (IN.KIND_NEW, IN.SIDE_BUY)]
    assert r[0]["orig"] == first_id and r[0]["id"] > first_id and r[0]["price"] == BID
    assert s.counters()["cancels"] == 1


def test_a_quote_accounting_shows_gone_frees_its_side(backend):
    ps = np.zeros((16, R.NPS), np.int64)
    s = stage(backend, positions=ps)
    b, _ = run(s, [5.0], [(1, 1, BID, 1, ASK, 1)])
    accept_all(s, b)
    ps[1, R.PS_POS] = 100  # filled: nothing open any more
    _, r = run(s, [5.0], [(1, 2, BID, 1, ASK, 1)])
    assert len(r) == 1 and r[0]["side"] == IN.SIDE_BUY


def test_no_order_that_would_cross_our_own_resting_order(backend):
    ps = np.zeros((16, R.NPS), np.int64)
    ps[1, R.PS_OUR_ASK] = ASK      # our sell rests at the ask: buying there would cross it
    ps[1, R.PS_OPEN_SELL] = 100
    ps[2, R.PS_OUR_BID] = BID + 50  # an old bid above today's bid
    ps[2, R.PS_OPEN_BUY] = 100
    s = stage(backend, positions=ps, take_edge=10.0)
    _, r = run(s, [100.0, 5.0, -5.0, -100.0], [(1, 1, BID, 100, ASK, 100), (1, 2, ASK, 100, ASK + 100, 100),
                                               (2, 1, BID - 100, 100, BID, 100), (2, 2, BID, 100, ASK, 100)])
    assert len(r) == 0 and s.counters()["held_self_cross"] == 4


def test_books_that_are_one_sided_crossed_or_wide_are_skipped(backend):
    s = stage(backend, max_spread=500)
    _, r = run(s, [9.0] * 5, [(1, 1, BID, 0, ASK, 200), (2, 1, BID, 300, ASK, 0), (3, 1, ASK, 300, BID, 200),
                              (4, 1, BID, 300, BID, 200), (5, 1, BID, 300, BID + 600, 200)])
    assert len(r) == 0 and s.counters()["skipped_book"] == 5


def test_min_interval_between_intents_of_a_symbol(backend):
    s = stage(backend, min_interval_ns=1000, quote_threshold=1.0, cancel_threshold=1.0)
    _, r = run(s, [5.0, -5.0, -5.0, -5.0], [(1, 1000, BID, 1, ASK, 1), (1, 1500, BID, 1, ASK, 1),
                                            (2, 1600, BID, 1, ASK, 1), (1, 2000, BID, 1, ASK, 1)])
    assert [(x["locate"], x["ts"], x["side"]) for x in r] == [(1, 1000, IN.SIDE_BUY), (2, 1600, IN.SIDE_SELL),
                                                              (1, 2000, IN.SIDE_SELL)]


def test_position_and_open_orders_from_accounting_hold_new_orders_back(backend):
    ps = np.zeros((16, R.NPS), np.int64)
    ps[1, R.PS_POS] = 900
    ps[2, R.PS_POS] = -850
    ps[2, R.PS_OPEN_SELL] = 100
    ps[3, R.PS_OPEN_BUY] = 1000
    s = stage(backend, positions=ps, max_position=1000, quote_size=100)
    _, r = run(s, [5.0, -5.0, 5.0, -5.0], [(1, 1, BID, 1, ASK, 1), (2, 1, BID, 1, ASK, 1), (3, 1, BID, 1, ASK, 1),
                                           (1, 2, BID, 1, ASK, 1)])
    # 1: 900 + 100 = 1000 buys ok; 2: -850 - 100 open - 100 = -1050 held; 3: 1000 open held; 1: sell ok
    assert [(x["locate"], x["side"]) for x in r] == [(1, IN.SIDE_BUY), (1, IN.SIDE_SELL)]
    assert s.counters()["held_by_position"] == 2


def test_in_flight_shares_count_until_risk_decides(backend):
    s = stage(backend, max_position=200, quote_size=100, take_size=100, take_edge=0.0, quote_threshold=1e9,
              cancel_threshold=1e9)
    b, r = run(s, [100.0] * 3, [(1, t, BID, 500, ASK, 500) for t in (1, 2, 3)])
    assert len(r) == 2  # the third would make 300 in flight
    dec = np.zeros((b.n, IN.ND), np.int64)
    dec[:, IN.D_ACCEPT] = (1, 0)
    assert s.on_decisions(b, dec) == 1
    assert s.ss[1, KS.SS_PEND_BUY] == 0 and s.counters()["rejected_by_risk"] == 1
    _, r = run(s, [100.0], [(1, 4, BID, 500, ASK, 500)])
    assert len(r) == 1


def test_a_quote_risk_rejects_frees_its_side(backend):
    s = stage(backend)
    b, r = run(s, [5.0], [(1, 1, BID, 1, ASK, 1)])
    assert s.ss[1, KS.SS_BID_ID] == r[0]["id"]
    s.on_decisions(b, np.zeros((1, IN.ND), np.int64))
    assert s.ss[1, KS.SS_BID_ID] == 0
    _, r = run(s, [5.0], [(1, 2, BID, 1, ASK, 1)])
    assert len(r) == 1 and r[0]["kind"] == IN.KIND_NEW


def test_cpu_and_cuda_make_the_same_intents():
    from kernels import cpu
    from pipeline.backends import BackendError, load

    try:
        gpu = load("cuda")
    except BackendError as exc:
        pytest.skip(str(exc))
    rng = np.random.default_rng(4)
    n = 60
    specs = [(int(rng.integers(1, 6)), 1000 * (i + 1), BID, int(rng.integers(0, 3)) * 100, ASK + 100 * int(
        rng.integers(0, 7)), 100) for i in range(n)]
    preds = rng.normal(0, 30, n)
    outs = []
    for k in (cpu, gpu):
        s = stage(k, min_interval_ns=1500, max_position=300)
        b, _ = run(s, preds, specs)
        outs.append((b.intents.copy(), s.ss.copy(), s.sg.copy()))
    assert len(outs[0][0]) > 5
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(1, 3), st.floats(-200, 200), st.integers(0, 3), st.integers(1, 8),
                          st.integers(0, 2)), min_size=1, max_size=40),
       st.integers(-300, 300), st.integers(0, 300))
def test_worst_case_position_never_passes_the_limit(events, pos, open_qty):
    """Whatever the signal, accounting's position + open orders + the strategy's in-flight new
    orders stay within max_position on both sides (starting inside it)."""
    from kernels import cpu

    ps = np.zeros((16, R.NPS), np.int64)
    ps[1:4, R.PS_POS] = pos
    ps[1:4, R.PS_OPEN_BUY] = open_qty
    ps[1:4, R.PS_OPEN_SELL] = open_qty
    limit = 400
    s = stage(cpu, positions=ps, max_position=limit, quote_size=100, take_size=150, take_edge=20.0,
              quote_threshold=3.0, cancel_threshold=3.0)
    specs, preds = [], []
    for t, (loc, p, bq, spread_ticks, _) in enumerate(events):
        specs.append((loc, t + 1, BID, bq * 100, BID + spread_ticks * 100, 100))
        preds.append(p)
    _, r = run(s, preds, specs)
    for loc in (1, 2, 3):
        long_ = pos + open_qty + s.ss[loc, KS.SS_PEND_BUY]
        short = -(pos - open_qty - s.ss[loc, KS.SS_PEND_SELL])
        new = r[(r["locate"] == loc) & (r["kind"] == IN.KIND_NEW)]
        if len(new):
            assert max(long_, short) <= max(limit, pos + open_qty, -(pos - open_qty))
            assert s.ss[loc, KS.SS_PEND_BUY] == new[new["side"] == IN.SIDE_BUY]["qty"].sum()
            assert s.ss[loc, KS.SS_PEND_SELL] == new[new["side"] == IN.SIDE_SELL]["qty"].sum()
    assert len(set(r["id"])) == len(r)


def test_intents_from_a_replay_are_well_formed_for_risk(tmp_path):
    """Generated feed -> books -> model -> strategy -> risk: risk finds nothing malformed in the
    intents, and its decisions release the strategy's in-flight shares."""
    from hydra import compose, initialize_config_dir

    from kernels import cpu
    from pipeline.app import CONF_DIR
    from pipeline.book import BookStage, BookState
    from pipeline.config import register
    from pipeline.model import ModelStage, load_model
    from pipeline.risk import RiskStage
    from pipeline.stages import DecodeStage
    from replay.capture import CaptureReader
    from replay.generator import generate

    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="replay")
    path = tmp_path / "f.itch"
    generate(path, fmt="itch", n_messages=20_000, n_symbols=4, seed=9)
    reader = CaptureReader(path)
    state = BookState(100_000, 50_000, 64)
    decode = DecodeStage(cpu, reader.batch_rows, reader.stats)
    books = BookStage(cpu, state, reader.batch_rows, symbols=["*"])
    risk = RiskStage(cpu, cfg.risk, state)
    model = ModelStage(load_model(), "numba", cpu, reader.batch_rows)
    strat = StrategyStage(cpu, cfg.strategy, rows=state.sym.shape[0], capacity=reader.batch_rows,
                          positions=risk.state.ps)
    total = 0
    bad = {R_ for R_ in (IN.R_BAD_FIELD, IN.R_BAD_PRICE, IN.R_BAD_QTY, IN.R_BAD_SIDE, IN.R_BAD_SYMBOL,
                         IN.R_DUPLICATE_ID, IN.R_UNKNOWN_ORDER)}
    for batch in reader:
        events = decode(batch)
        fb = books(events)
        risk.on_events(events)
        ib = strat(model(fb))
        d = risk.check(ib.rows, ib.n)
        strat.on_decisions(ib, d.decisions)
        assert not set(d.reasons[~d.accepted].tolist()) & bad, risk.rejections()
        total += ib.n
    assert total > 0
    assert risk.summary()["intents"] == total and risk.summary()["accepted"] > 0
    assert (strat.ss[:, KS.SS_PEND_BUY] == 0).all() and (strat.ss[:, KS.SS_PEND_SELL] == 0).all()
