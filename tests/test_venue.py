"""The venue simulator: matching engine (hand-made event sequences), sim clock, journal, and the
process (a QuickFIX initiator from the test, malformed input, kill -9 and restart)."""

from __future__ import annotations

import datetime as dt

import pytest

from replay.simclock import SimClock
from replay.venue import journal as J
from replay.venue.app import action_from_fix, format_transact_time, msg_no_of, parse_transact_time
from replay.venue.matching import (BUY, SELL, TIF_DAY, TIF_IOC, Action, MatchingEngine, event_table, format_price,
                                   parse_price)

P = 1_000_000          # $100.0000
TICK = 100             # one cent in Price(4)


def setup_events(*more: dict) -> list[dict]:
    """AAPL (locate 1) trading, MSFT (locate 2) halted; bids 10 (100) and 11 (200) at P, ask 12
    (300) at P + 1 tick and 14 (200) at P + 2 ticks."""
    return [
        dict(kind="R", locate=1, stock="AAPL", ts=1),
        dict(kind="H", locate=1, stock="AAPL", ts=2, alpha=[ord("T")] + [0] * 11),
        dict(kind="R", locate=2, stock="MSFT", ts=3),
        dict(kind="H", locate=2, stock="MSFT", ts=4, alpha=[ord("H")] + [0] * 11),
        dict(kind="A", locate=1, stock="AAPL", side="B", ref=10, shares=100, price=P, ts=10),
        dict(kind="A", locate=1, stock="AAPL", side="B", ref=11, shares=200, price=P, ts=11),
        dict(kind="A", locate=1, stock="AAPL", side="S", ref=12, shares=300, price=P + TICK, ts=12),
        dict(kind="A", locate=1, stock="AAPL", side="S", ref=14, shares=200, price=P + 2 * TICK, ts=13),
        *more,
    ]


def engine(*more: dict, latency: int = 0) -> MatchingEngine:
    return MatchingEngine([event_table(setup_events(*more))], max_orders=1024, max_levels=256, max_symbols=16,
                          entry_latency_ns=latency)


def new(clid, side=BUY, qty=100, price=P, tif=TIF_DAY, ts=20, symbol="AAPL", n=-1):
    return Action("new", clid, symbol, side, qty, price, tif, ts=ts, msg_no=n)


def fills(reports, clid=None):
    return [(r.last_qty, r.last_px) for r in reports if r.exec_type == "F" and (clid is None or r.clid == clid)]


def kinds(reports):
    return [(r.clid, r.exec_type or "cxlrej") for r in reports]


# --- queue position ------------------------------------------------------------------------------

def test_resting_order_fills_only_after_executions_ahead_clear():
    e = engine(dict(kind="E", locate=1, ref=10, shares=100, ts=30),
               dict(kind="E", locate=1, ref=11, shares=150, ts=40),
               dict(kind="A", locate=1, side="B", stock="AAPL", ref=13, shares=500, price=P, ts=45),
               dict(kind="E", locate=1, ref=11, shares=50, ts=50),
               dict(kind="E", locate=1, ref=13, shares=60, ts=60),
               dict(kind="E", locate=1, ref=13, shares=60, ts=70))
    e.receive(new("a-1"))
    e.advance(20)
    assert kinds(e.take_reports()) == [("a-1", "0")]
    o = e.order("a-1")
    assert o.queue_ahead == 300 and o.ahead == {10: 100, 11: 200}
    e.advance(50)
    assert fills(e.take_reports()) == []      # 300 shares ahead executed: nothing for us yet
    assert o.queue_ahead == 0
    e.advance(70)
    r = e.take_reports()
    assert fills(r) == [(60, P), (40, P)]     # the order behind us traded: we were first
    assert r[-1].ord_status == "2" and r[-1].leaves == 0 and r[-1].cum == 100 and r[-1].avg_px == "100"
    assert e.resting() == []


def test_cancels_ahead_advance_the_queue():
    e = engine(dict(kind="X", locate=1, ref=10, shares=40, ts=30),
               dict(kind="D", locate=1, ref=10, ts=31),
               dict(kind="U", locate=1, ref=11, new_ref=15, shares=200, price=P, ts=32),
               dict(kind="E", locate=1, ref=15, shares=70, ts=40))
    e.receive(new("a-1"))
    e.advance(31)
    assert e.order("a-1").queue_ahead == 200
    e.advance(32)
    assert e.order("a-1").queue_ahead == 0    # U: the replaced order lost its priority, now behind us
    e.advance(40)
    assert fills(e.take_reports()) == [(70, P)]


def test_orders_behind_do_not_advance_the_queue():
    e = engine(dict(kind="A", locate=1, side="B", stock="AAPL", ref=13, shares=500, price=P, ts=25),
               dict(kind="X", locate=1, ref=13, shares=100, ts=30),
               dict(kind="E", locate=1, ref=13, shares=100, ts=35),
               dict(kind="D", locate=1, ref=13, ts=40))
    e.receive(new("a-1"))
    e.advance(100)
    assert fills(e.take_reports()) == []
    assert e.order("a-1").queue_ahead == 300
    assert e.counters["out_of_fifo"] == 1     # an execution behind us while 300 were still ahead


def test_crossing_order_fills_at_displayed_levels_and_rests():
    e = engine()
    e.receive(new("a-1", BUY, qty=700, price=P + 2 * TICK))
    e.advance(20)
    r = e.take_reports()
    assert kinds(r) == [("a-1", "0"), ("a-1", "F"), ("a-1", "F")]
    assert fills(r) == [(300, P + TICK), (200, P + 2 * TICK)]    # one fill per level, at its price
    o = e.order("a-1")
    assert o.leaves == 200 and o.status == "1" and o.queue_ahead == 0
    assert r[-1].avg_px == format(Decimal_avg(300 * (P + TICK) + 200 * (P + 2 * TICK), 500), "f")


def Decimal_avg(notional: int, qty: int):
    from decimal import Decimal

    return (Decimal(notional) / qty / 10000).quantize(Decimal("1e-8")).normalize()


def test_ioc_remainder_is_canceled():
    e = engine()
    e.receive(new("a-1", BUY, qty=500, price=P + TICK, tif=TIF_IOC))
    e.advance(20)
    r = e.take_reports()
    assert kinds(r) == [("a-1", "0"), ("a-1", "F"), ("a-1", "4")]
    assert fills(r) == [(300, P + TICK)]
    assert r[-1].leaves == 0 and r[-1].cum == 300 and "IOC" in r[-1].text
    assert e.resting() == []


def test_trade_through_fills_at_our_limit():
    # our bid one tick above the displayed bids: a sell that executes the bids at P went through us
    e = engine(dict(kind="E", locate=1, ref=10, shares=80, ts=30))
    e.receive(new("a-1", BUY, qty=100, price=P + TICK // 2))
    e.advance(30)
    assert fills(e.take_reports()) == [(80, P + TICK // 2)]


def test_opposite_add_crossing_our_limit_fills_at_our_limit():
    e = engine(dict(kind="A", locate=1, side="B", stock="AAPL", ref=16, shares=50, price=P + 2 * TICK, ts=30))
    e.receive(new("a-1", SELL, qty=100, price=P + 2 * TICK))    # joins behind ask 14
    e.advance(30)
    r = e.take_reports()
    assert fills(r) == [(50, P + 2 * TICK)]
    assert e.order("a-1").leaves == 50


def test_entry_latency_delays_arrival():
    # the execution at ts 25 happens before our order arrives (20 + 10): it does not clear our queue
    e = engine(dict(kind="E", locate=1, ref=10, shares=100, ts=25), latency=10)
    e.receive(new("a-1"))
    e.advance(29)
    assert e.order("a-1") is None
    e.advance(30)
    r = e.take_reports()
    assert r[0].ts == 30 and e.order("a-1").queue_ahead == 200


# --- cancel and replace ---------------------------------------------------------------------------

def test_cancel_then_too_late_and_unknown():
    e = engine()
    e.receive(new("a-1"))
    e.receive(Action("cancel", "a-2", "AAPL", BUY, 100, orig="a-1", ts=21))
    e.receive(Action("cancel", "a-3", "AAPL", BUY, 100, orig="a-1", ts=22))
    e.receive(Action("cancel", "a-4", "AAPL", BUY, 100, orig="nope", ts=22))
    e.advance(30)
    r = e.take_reports()
    assert kinds(r) == [("a-1", "0"), ("a-2", "4"), ("a-3", "cxlrej"), ("a-4", "cxlrej")]
    assert r[1].orig_clid == "a-1" and r[1].ord_status == "4"
    assert (r[2].reason, r[2].response_to) == (0, "1") and "too late" in r[2].text
    assert (r[3].reason, r[3].order_id) == (1, "NONE")
    assert e.resting() == []


def test_replace_keeps_priority_when_quantity_reduced():
    e = engine(dict(kind="E", locate=1, ref=10, shares=100, ts=30))
    e.receive(new("a-1", qty=300))
    e.advance(20)
    e.receive(Action("replace", "a-2", "AAPL", BUY, 200, P, TIF_DAY, orig="a-1", ts=25))
    e.advance(30)
    r = e.take_reports()
    assert kinds(r) == [("a-1", "0"), ("a-2", "5")]
    assert r[1].qty == 200 and r[1].leaves == 200 and r[1].orig_clid == "a-1"
    assert e.order("a-2").queue_ahead == 200   # kept its place: 10 executed, 11 still ahead


def test_replace_moves_order_to_back_of_queue():
    e = engine(dict(kind="A", locate=1, side="B", stock="AAPL", ref=13, shares=500, price=P, ts=22))
    e.receive(new("a-1", qty=100))
    e.advance(22)
    e.receive(Action("replace", "a-2", "AAPL", BUY, 150, P, TIF_DAY, orig="a-1", ts=25))   # more shares
    e.advance(25)
    assert e.order("a-2").queue_ahead == 800 and set(e.order("a-2").ahead) == {10, 11, 13}
    e.receive(Action("replace", "a-3", "AAPL", BUY, 150, P + 2 * TICK, TIF_DAY, orig="a-2", ts=26))  # crosses
    e.advance(26)
    r = e.take_reports()
    assert kinds(r)[-2:] == [("a-3", "5"), ("a-3", "F")]
    assert fills(r, "a-3") == [(150, P + TICK)]
    assert e.order("a-3").status == "2"


def test_rejects_carry_reasons():
    e = engine()
    e.receive(new("a-1", symbol="ZZZZ"))
    e.receive(new("a-2", symbol="MSFT"))
    e.receive(new("a-3", qty=0))
    e.receive(new("a-4", price=0))
    e.receive(new("a-1"))                                  # reuses a ClOrdID
    e.advance(30)
    r = e.take_reports()
    assert [(x.clid, x.exec_type, x.reason) for x in r] == [
        ("a-1", "8", 1), ("a-2", "8", 2), ("a-3", "8", 13), ("a-4", "8", 99), ("a-1", "8", 6)]
    assert "halted" in r[1].text and "duplicate" in r[4].text


def test_resent_duplicate_is_ignored():
    e = engine()
    assert e.receive(new("p-7", n=7))
    assert not e.receive(new("p-7", n=7), poss_resend=True)
    e.advance(30)
    assert kinds(e.take_reports()) == [("p-7", "0")]
    assert e.max_msg_no == 7 and e.counters["duplicates_ignored"] == 1


def test_engine_is_deterministic_whatever_the_clock_steps():
    """The restart guarantee: the same actions give the same reports, stepped or in one go."""
    more = [dict(kind="E", locate=1, ref=10, shares=100, ts=30), dict(kind="E", locate=1, ref=11, shares=200, ts=40),
            dict(kind="A", locate=1, side="B", stock="AAPL", ref=13, shares=500, price=P, ts=45),
            dict(kind="E", locate=1, ref=13, shares=300, ts=50)]
    acts = [new("a-1", qty=250, ts=20), new("a-2", SELL, qty=100, price=P + 2 * TICK, ts=21),
            Action("replace", "a-3", "AAPL", BUY, 200, P, TIF_DAY, orig="a-1", ts=35),
            Action("cancel", "a-4", "AAPL", SELL, 100, orig="a-2", ts=48)]
    a, b = engine(*more), engine(*more)
    for x in acts:
        a.receive(Action.from_dict(x.to_dict()))
        a.advance(x.ts)
    a.advance(60)
    for x in acts:
        b.receive(Action.from_dict(x.to_dict()))
    b.advance(60)
    ra, rb = a.take_reports(), b.take_reports()
    assert [x.to_dict() for x in ra] == [x.to_dict() for x in rb]
    assert fills(ra, "a-3") == [(200, P)]


# --- parsing -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [("100", 1_000_000), ("100.1", 1_001_000), ("0.0001", 1),
                                        ("12.34560", 123_456), (".5", 5000), ("3.", 30_000)])
def test_parse_price_is_exact(text, value):
    assert parse_price(text) == value
    assert parse_price(format_price(value)) == value


@pytest.mark.parametrize("text", ["", "1.00001", "abc", "1e3", "1.2.3", "."])
def test_parse_price_rejects(text):
    with pytest.raises(ValueError):
        parse_price(text)


def test_transact_time_round_trip():
    d = dt.date(2026, 11, 2)
    ns = 34_200_123_456_789
    s = format_transact_time(ns, d)
    assert s == "20261102-09:30:00.123456789"
    assert parse_transact_time(s, d) == ns
    assert parse_transact_time("20261102-09:30:00.5", d) == 34_200_500_000_000
    assert msg_no_of("run7-42") == 42 and msg_no_of("x") == -1


def test_unsupported_order_fields_become_rejects():
    base = {11: "r-1", 55: "AAPL", 54: "1", 60: "20261102-09:30:00.000000001", 38: "100", 40: "2", 44: "10.5",
            59: "0"}
    d = dt.date(2026, 11, 2)
    assert action_from_fix(base, "D", d, 0).error is None
    assert action_from_fix({**base, 40: "1"}, "D", d, 0).error[0] == 11
    assert action_from_fix({**base, 59: "6"}, "D", d, 0).error[0] == 11
    assert action_from_fix({**base, 44: "10.12345"}, "D", d, 0).error[0] == 99
    assert action_from_fix({**base, 38: "10.5"}, "D", d, 0).error[0] == 13
    a = action_from_fix(base, "D", d, 0)
    assert (a.price, a.qty, a.ts, a.msg_no) == (105_000, 100, 34_200_000_000_001, 1)


def test_sim_clock_slots(tmp_path):
    with SimClock(tmp_path / "c", create=True) as bot, SimClock(tmp_path / "c") as venue:
        assert venue.market_target() == (-1, 0, False)
        bot.publish(123, 4)
        venue.venue_clock_ns, venue.venue_msg_no = 100, 4
        assert venue.market_target() == (123, 4, False)
        assert (bot.venue_clock_ns, bot.venue_msg_no) == (100, 4)
        bot.finish()
        venue.mark_done()
        assert bot.snapshot()["end"] == 1 and bot.venue_done


def test_journal_summary_and_torn_line(tmp_path):
    j = J.Journal(tmp_path)
    e = engine()
    e.receive(new("a-1", BUY, qty=400, price=P + TICK, tif=TIF_IOC))
    e.advance(20)
    for r in e.take_reports():
        j.write({"t": "rep", "r": r.to_dict()})
    j.close()
    with open(tmp_path / J.JOURNAL_NAME, "a") as f:
        f.write('{"t":"rep","r":{"trunc')     # a torn record, as after a crash mid-write
    j2 = J.Journal(tmp_path)
    j2.write({"t": "clock", "ns": 5})
    j2.close()
    s = J.summary(tmp_path)
    assert s["positions"] == {"AAPL": 300} and s["fills"] == 1 and s["bad_lines"] == 1
    assert s["outcomes"]["ioc_canceled"] == 1 and s["acks"] == {"a-1": 1} and s["last_clock_ns"] == 5
    assert J.fills(tmp_path)["a-1"][0]["qty"] == 300


def _report_message(seq: int, exec_id: str) -> str:
    import quickfix as fix

    m = fix.Message()
    h = m.getHeader()
    for tag, val in ((8, "FIX.4.4"), (35, "8"), (49, "VENUE"), (56, "HFTBOT"), (34, str(seq)),
                     (52, "20261102-09:30:00.000")):
        h.setField(tag, val)
    for tag, val in ((37, "O1"), (11, "c-1"), (17, exec_id), (150, "F"), (39, "2"), (55, "AAPL"), (54, "1"),
                     (38, "100"), (32, "100"), (31, "100"), (151, "0"), (14, "100"), (6, "100")):
        m.setField(tag, val)
    return m.toString()


def test_store_report_keys_counts_only_what_quickfix_can_resend(tmp_path):
    """QuickFIX persists an outgoing message in two writes (FileStore::set: index + body; then the
    incremented sequence number). A report whose second write a kill -9 cut off is in the body
    but will never be sent (its MsgSeqNum goes to the next message): it must not count as sent,
    or its fill is lost (issue 15). Built with QuickFIX's own FileStore."""
    import quickfix as fix

    from replay.venue.app import store_report_keys

    store = fix.FileStore(str(tmp_path / "store"), fix.SessionID("FIX.4.4", "VENUE", "HFTBOT"))
    store.set(1, _report_message(1, "E1"))
    store.incrNextSenderMsgSeqNum()
    assert store_report_keys(tmp_path) == {"E1"}
    store.set(2, _report_message(2, "E2"))        # killed here: stored, sequence number not incremented
    assert store_report_keys(tmp_path) == {"E1"}
    store.set(2, _report_message(2, "E9"))        # after the restart the number goes to another message
    store.incrNextSenderMsgSeqNum()
    assert store_report_keys(tmp_path) == {"E1", "E9"}
    with open(tmp_path / "store" / "FIX.4.4-VENUE-HFTBOT.body", "ab") as f:
        f.write(_report_message(3, "E3").encode()[:-10])   # a torn body write, not in the index
    assert store_report_keys(tmp_path) == {"E1", "E9"}


# --- the venue process ------------------------------------------------------------------------------

from replay.venue.process import free_port  # noqa: E402
from tests.venue_helpers import (DATE, Initiator, RawClient, cancel, new_order,  # noqa: E402
                                 replace, wait_for)

T0 = 34_200_002_000_000     # 09:30:00.002: the generated flow starts at 09:30:00
VENUE_BOOK = dict(max_orders=100_000, max_levels=20_000, max_symbols=64)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    from replay.generator import generate

    path = tmp_path_factory.mktemp("venue") / "feed.pcap"
    generate(path, fmt="pcap", n_messages=20_000, n_symbols=4, seed=3)
    return path


@pytest.fixture
def venue(capture, tmp_path):
    """A venue process on a fresh port, state dir and sim clock; stopped in teardown."""
    from replay.venue import VenueProcess

    clock = SimClock(tmp_path / "sim.clock", create=True)
    v = VenueProcess(capture, free_port(), tmp_path / "venue", tmp_path / "sim.clock",
                     session_date=DATE.strftime("%Y%m%d"), **VENUE_BOOK)
    try:
        v.start()
        yield v, clock
    finally:
        v.stop()
        clock.close()


@pytest.fixture
def initiator(venue, tmp_path):
    v, _ = venue
    ini = Initiator(v.port, tmp_path / "initiator")
    try:
        ini.start()
        ini.wait_logon()
        yield ini
    finally:
        ini.stop()


def reference(capture, latency: int = 0) -> MatchingEngine:
    from replay.venue.matching import capture_batches

    return MatchingEngine(capture_batches(capture), entry_latency_ns=latency, **VENUE_BOOK)


def best(e: MatchingEngine, symbol: str) -> tuple[int, int]:
    from kernels import cpu

    d = e.state.depth(cpu, e.locate_of(symbol), 1)
    return d["bids"][0]["price"], d["asks"][0]["price"]


def test_venue_process_answers_orders(capture, venue, initiator):
    v, clock = venue
    ref = reference(capture)
    ref.advance(T0)
    bid, ask = best(ref, "AAPL")
    initiator.send(new_order("t-1", "AAPL", 0, 100, bid, T0))
    initiator.send(new_order("t-2", "AAPL", 1, 1000, bid, T0, tif="3"))       # crosses the bid, IOC
    initiator.send(new_order("t-3", "ZZZZ", 0, 100, bid, T0))
    initiator.send(new_order("t-4", "AAPL", 0, 100, bid, T0, ord_type="1"))   # market: unsupported
    initiator.send(replace("t-5", "t-1", "AAPL", 0, 100, bid - 100, T0 + 1000))
    initiator.send(cancel("t-6", "t-1", "AAPL", 0, 100, T0 + 2000))
    initiator.send(cancel("t-7", "t-1", "AAPL", 0, 100, T0 + 3000))
    clock.publish(T0 + 3000, 7)
    wait_for(lambda: clock.venue_msg_no >= 7 and clock.venue_clock_ns >= T0 + 3000, what="the venue clock")
    clock.finish()
    wait_for(lambda: clock.venue_done, what="VENUE_DONE")
    wait_for(lambda: len(initiator.drain()) >= 9, what="9 reports")
    msgs = initiator.drain()
    got = [(m[11], m.get(150, "cxlrej"), m[39]) for m in msgs]
    assert got == [("t-1", "0", "0"), ("t-2", "0", "0"), ("t-2", "F", "1"), ("t-2", "4", "4"), ("t-3", "8", "8"),
                   ("t-4", "8", "8"), ("t-5", "5", "0"), ("t-6", "4", "4"), ("t-7", "cxlrej", "4")]
    ioc_fill = msgs[2]
    assert int(ioc_fill[32]) > 0 and parse_price(ioc_fill[31]) == bid and ioc_fill[60].startswith("20261102-09:30:00.002")
    assert msgs[4][103] == "1" and msgs[5][103] == "11" and "OrdType" in msgs[5][58]
    assert msgs[6][41] == "t-1" and parse_price(msgs[6][44]) == bid - 100
    assert (msgs[8][434], msgs[8][102], msgs[8][41]) == ("1", "0", "t-1")
    assert len({m[17] for m in msgs if 17 in m}) == 8    # ExecIDs unique (the cancel reject has none)
    s = v.summary()
    assert s["positions"] == {"AAPL": -int(ioc_fill[32])}
    assert s["acks"] == {f"t-{i}": 1 for i in range(1, 8)}


def test_malformed_fix_gets_session_reject_and_the_venue_keeps_running(venue):
    v, clock = venue
    c = RawClient(v.port)
    try:
        assert c.logon()[35] == "A"
        S = "\x01"
        good = f"11=m-1{S}21=1{S}55=AAPL{S}54=1{S}60=20261102-09:30:00.002000000{S}38=100{S}40=2{S}44=10{S}59=0{S}"
        c.send_body("D", good.replace(f"11=m-1{S}", ""))                 # required ClOrdID missing
        r = c.read()
        assert (r[35], r[373]) == ("3", "1") and r[371] == "11"
        c.send_body("D", good.replace("m-1", "m-2") + f"9999=x{S}")      # a tag not in the dictionary
        r = c.read()
        assert r[35] == "3" and r[373] in ("0", "2")
        c.send_body("D", good.replace("m-1", "m-3").replace("38=100", "38=abc"))   # garbled value
        r = c.read()
        assert (r[35], r[373]) == ("3", "6") and r[371] == "38"
        c.send_raw(b"8=FIX.4.4\x019=12\x0135=D\x01garbage\x0110=000\x01")    # garbled frame: dropped
        c.send_body("D", good.replace("m-1", "m-4"))
        clock.publish(T0, 4)
        r = c.read()
        assert (r[35], r[11], r[150]) == ("8", "m-4", "0")
        assert v.alive()
    finally:
        c.close()
    assert "error in" not in v.stderr_tail(100_000)


def test_kill_and_restart_resends_and_fills_match(capture, venue, tmp_path):
    """kill -9 mid-run: the initiator reconnects, resend / gap fill completes, every ClOrdID is
    acknowledged exactly once, and the fills equal an uninterrupted reference run."""
    v, clock = venue
    ref = reference(capture)
    ini = Initiator(v.port, tmp_path / "initiator")
    n = 0
    live: list[tuple[str, str, int, int]] = []   # (clid, symbol, side, qty)
    syms = ("AAPL", "MSFT", "NVDA", "AMZN")
    try:
        ini.start()
        ini.wait_logon()
        for k in range(16):
            t = T0 + k * 1_000_000
            ref.advance(t)
            out = []
            for j, sym in enumerate(syms):
                bid, ask = best(ref, sym)
                n += 1
                out.append(Action("new", f"k-{n}", sym, BUY, 100 + 100 * j, bid, TIF_DAY, ts=t, msg_no=n))
                n += 1
                out.append(Action("new", f"k-{n}", sym, SELL, 200, bid if k % 3 == 0 else ask,
                                  TIF_IOC if k % 3 == 0 else TIF_DAY, ts=t, msg_no=n))
            if k % 4 == 3 and live:
                clid, sym, side, qty = live.pop(0)
                n += 1
                out.append(Action("cancel", f"k-{n}", sym, side, qty, orig=clid, ts=t, msg_no=n))
                clid, sym, side, qty = live.pop(0)
                n += 1
                out.append(Action("replace", f"k-{n}", sym, side, qty + 100, best(ref, sym)[side], TIF_DAY,
                                  orig=clid, ts=t, msg_no=n))
            for a in out:
                ref.receive(a)
                if a.kind == "new":
                    ini.send(new_order(a.clid, a.symbol, a.side, a.qty, a.price, t, "3" if a.tif else "0"))
                    if a.tif == TIF_DAY:
                        live.append((a.clid, a.symbol, a.side, a.qty))
                elif a.kind == "cancel":
                    ini.send(cancel(a.clid, a.orig, a.symbol, a.side, a.qty, t))
                else:
                    ini.send(replace(a.clid, a.orig, a.symbol, a.side, a.qty, a.price, t))
            clock.publish(t, n)
            if k == 7:
                wait_for(lambda: clock.venue_clock_ns >= t, what="the venue to reach the kill point")
                v.kill()                           # orders of steps 8.. are sent while it is down
            if k == 11:
                v.start()                          # restores from its journal, listens again
        ref.advance(t)                             # END: the venue advances to the last market clock
        ref.flush_actions()
        expected = ref.take_reports()
        clock.finish()
        wait_for(lambda: clock.venue_done, 60, "VENUE_DONE after restart")
        wait_for(lambda: len({m.get(17, m[11]) for m in ini.drain()}) >= len(expected), 60,
                 f"{len(expected)} reports at the initiator")
    finally:
        ini.stop()
    msgs = ini.drain()
    assert v.starts == 2 and ini.app.logons >= 2 and not ini.app.errors
    # every ClOrdID acknowledged exactly once (new: 0/8; cancel: 4 or 9; replace: 5 or 9)
    acks: dict[str, int] = {}
    for m in msgs:
        if m[35] == "9" or m.get(150) in ("0", "8", "5") or (m.get(150) == "4" and 41 in m):
            acks[m[11]] = acks.get(m[11], 0) + 1
    dups = {c: [(m.get(34), m.get(43), m.get(17), m.get(150), m.get(97)) for m in msgs if m.get(11) == c]
            for c, k in acks.items() if k != 1}
    assert acks == {f"k-{i}": 1 for i in range(1, n + 1)}, (dups, v.stderr_tail())
    # the fills equal the uninterrupted reference run, and the venue's journal agrees
    got = sorted((m[11], int(m[32]), parse_price(m[31])) for m in msgs if m.get(150) == "F")
    want = sorted((r.clid, r.last_qty, r.last_px) for r in expected if r.exec_type == "F")
    assert got == want and len(got) > 0
    pos: dict[str, int] = {}
    for m in msgs:
        if m.get(150) == "F":
            pos[m[55]] = pos.get(m[55], 0) + (1 if m[54] == "1" else -1) * int(m[32])
    assert v.summary()["positions"] == {k: q for k, q in pos.items()}
    assert any(m.get(43) == "Y" for m in msgs) or ini.app.logons >= 2   # resent or delivered after logon
