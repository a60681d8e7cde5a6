"""The whole system: the FIX bridge against the venue simulator (a real QuickFIX acceptor in its own
process), over loopback only."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("quickfix")

from bridges.fix import codec as C  # noqa: E402
from bridges.fix.bridge import FixBridge  # noqa: E402
from kernels import cpu  # noqa: E402
from kernels import intents as IN  # noqa: E402
from pipeline.book import BookStage, BookState  # noqa: E402
from replay.venue.process import free_port  # noqa: E402
from pipeline.stages import DecodeStage  # noqa: E402
from replay.capture import CaptureReader  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """A small generated day, its final books (symbols, best prices) and a risk stage that saw
    it (per-order maximum 150 shares)."""
    from hydra import compose, initialize_config_dir

    from pipeline.app import CONF_DIR
    from pipeline.config import register
    from pipeline.risk import RiskStage
    from replay.generator import generate

    path = tmp_path_factory.mktemp("day") / "day.pcap"
    generate(path, fmt="pcap", n_messages=20_000, n_symbols=4, seed=5)
    reader = CaptureReader(path)
    decode = DecodeStage(cpu, capacity=reader.batch_rows, stats=reader.stats)
    state = BookState(200_000, 100_000, 64)
    books = BookStage(cpu, state, capacity=reader.batch_rows, symbols=[], tau_flow_ns=1e9, tau_rv_ns=6e10, top_n=5)
    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("smoke", overrides=["risk.limits.max_order_qty=150"])
    risk = RiskStage.from_config(cpu, cfg, state)
    ts = []
    for batch in reader:
        ev = decode(batch)
        books(ev)
        risk.on_events(ev)
        ts.append(ev.cols["ts"][: ev.n].copy())
    ts = np.concatenate(ts)
    return path, state, ts, risk


def _marketable(state, ts: int, first_id: int, n: int) -> np.ndarray:
    """``n`` small orders that cross the final book (buys above the ask, sells below the bid)."""
    locs = [int(x) for x in np.flatnonzero(state.sym[:, 0] != 0)]
    rows = []
    for i in range(n):
        loc = locs[i % len(locs)]
        d = state.depth(cpu, loc, 1)
        side = IN.SIDE_BUY if i % 2 == 0 else IN.SIDE_SELL
        if side == IN.SIDE_BUY:
            px = d["asks"][0]["price"] + 500 if d["asks"] else 10_000
        else:
            px = max(d["bids"][0]["price"] - 500, 100) if d["bids"] else 10_000
        rows.append(IN.intent(locate=loc, side=side, price=px, qty=100, id=first_id + i, tif=IN.TIF_IOC, ts=ts))
    return np.vstack(rows)


@contextlib.contextmanager
def _session(day, tmp: Path, bridge_kw: dict | None = None, **venue_kw):
    """The venue process on the day's capture, the sim clock and a bridge (not yet logged on);
    all stopped on exit."""
    from replay.simclock import SimClock
    from replay.venue.process import VenueProcess

    path, state, _, _ = day
    port = free_port()
    clock = SimClock(tmp / "clock", create=True)
    venue = VenueProcess(path, port, tmp / "venue", tmp / "clock", session_date="20190130", **venue_kw)
    bridge = FixBridge(host="127.0.0.1", port=port, sender="HFTBOT", target="VENUE", state_dir=tmp / "bridge",
                       sym=state.sym, date="20190130", max_orders=4096, reconnect_s=1, **(bridge_kw or {}))
    try:
        venue.start()
        yield venue, clock, bridge
    finally:
        bridge.stop()
        venue.stop()
        clock.close()


def _drain(bridge: FixBridge, clock, t_clock: int, timeout: float = 60.0) -> list[np.ndarray]:
    clock.publish(t_clock, bridge.n_msgs)
    clock.finish()
    evs = []
    t_end = time.monotonic() + timeout
    while not clock.venue_done and time.monotonic() < t_end:
        e = bridge.poll(0.01)
        if e.shape[0]:
            evs.append(e)
    quiet = time.monotonic() + 0.5
    while time.monotonic() < quiet:
        e = bridge.poll(0.01)
        if e.shape[0]:
            evs.append(e)
            quiet = time.monotonic() + 0.5
    assert clock.venue_done, f"venue did not drain: {clock.snapshot()}"
    return evs


def _bridge_positions(bridge: FixBridge) -> dict[str, int]:
    pos: dict[str, int] = {}
    for msg, qty, _px, _ts in bridge.fill_table():
        r = int(msg) - 1
        sym = bridge.symbol(int(bridge.ot[r, C.O_LOCATE]))
        sgn = 1 if int(bridge.ot[r, C.O_SIDE]) == IN.SIDE_BUY else -1
        pos[sym] = pos.get(sym, 0) + sgn * int(qty)
    return {k: v for k, v in pos.items() if v}


def test_orders_fill_against_the_replay_and_positions_match_the_venue(day, tmp_path):
    path, state, ts, _ = day
    with _session(day, tmp_path) as (venue, clock, bridge):
        bridge.start()
        t = int(ts[-1])
        assert bridge.send(_marketable(state, t, 1, 12)) == 12
        _drain(bridge, clock, t)
        c = bridge.counters()
        summ = venue.summary()
    assert c["orders_filled"] + c["orders_partially_filled"] + c["orders_cancelled"] == 12
    assert c["illegal_transitions"] == 0 and c["session_rejects"] == 0 and c["callback_errors"] == 0
    assert bridge.fill_table().shape[0] > 0
    venue_pos = {k: v for k, v in summ["positions"].items() if v}
    assert _bridge_positions(bridge) == venue_pos
    assert sorted(summ["acks"].values()) == [1] * 12


def test_venue_killed_mid_run_recovers_with_each_clordid_acknowledged_once(day, tmp_path):
    path, state, ts, _ = day
    with _session(day, tmp_path) as (venue, clock, bridge):
        bridge.start()
        t1 = int(ts[len(ts) // 2])
        bridge.send(_marketable(state, t1, 1, 10))
        clock.publish(t1, bridge.n_msgs)
        t_end = time.monotonic() + 30
        while bridge.cnt[C.C_REPORTS] < 10 and time.monotonic() < t_end:
            bridge.poll(0.01)
        # a second wave, then the venue dies before it can answer all of it
        t2 = int(ts[-1])
        bridge.send(_marketable(state, t2, 100, 10))
        venue.kill()
        events = []
        t_end = time.monotonic() + 10
        while bridge.logged_on and time.monotonic() < t_end:
            events.append(bridge.poll(0.01))
        assert not bridge.logged_on
        # orders made while the session is down wait for the next logon
        bridge.send(_marketable(state, t2, 200, 4))
        assert bridge.counters()["backlog_rows"] == 4
        venue.start()
        t_end = time.monotonic() + 30
        while not bridge.logged_on and time.monotonic() < t_end:
            events.append(bridge.poll(0.05))
        assert bridge.logged_on, "the initiator did not reconnect"
        events += _drain(bridge, clock, t2)
        c = bridge.counters()
        summ = venue.summary()
    kinds = np.concatenate([e[:, IN.E_KIND] for e in events if e.shape[0]])
    assert IN.EX_DISCONNECT in kinds and IN.EX_CONNECT in kinds
    assert c["messages_sent"] == 24 and c["backlog_rows"] == 0
    # every ClOrdID acknowledged exactly once, by the venue and as seen by the bridge
    assert sorted(summ["acks"]) == sorted(f"{bridge.prefix_str}-{i}" for i in range(1, 25))
    assert set(summ["acks"].values()) == {1}
    assert (bridge.ot[:24, C.O_ACKED] <= 1).all()
    assert c["illegal_transitions"] == 0 and c["callback_errors"] == 0
    venue_pos = {k: v for k, v in summ["positions"].items() if v}
    assert _bridge_positions(bridge) == venue_pos


def test_the_reconnect_interval_reaches_quickfix(tmp_path):
    """QuickFIX's SocketInitiator reads ReconnectInterval from the [DEFAULT] section only (its
    onConfigure reads ``settings.get()``); written under [SESSION] it was ignored and a restarted
    venue waited 30 s for the bridge to reconnect. Read back as QuickFIX reads it."""
    import quickfix as fix

    from bridges.fix.bridge import session_settings

    path = tmp_path / "i.cfg"
    path.write_text(session_settings(role="initiator", host="127.0.0.1", port=9, sender="S", target="T",
                                     heartbeat_s=5, state_dir=tmp_path, reconnect_s=2))
    settings = fix.SessionSettings(str(path))
    defaults = settings.get()         # a reference into ``settings``: keep that alive
    assert defaults.has("ReconnectInterval") and defaults.getInt("ReconnectInterval") == 2


def _venue_fills(venue) -> list[tuple[int, int, int]]:
    """(message number, qty, price) of every fill in the venue's journal, sorted."""
    return sorted((int(clid.rsplit("-", 1)[1]), f["qty"], f["price"])
                  for clid, fs in venue.fills().items() for f in fs)


@pytest.mark.parametrize("point", ["before-fill", "after-fill", "stored-fill"])
def test_venue_killed_at_a_fill_recovers_and_our_fills_equal_the_venues(day, tmp_path, point):
    """The venue kills itself (``--crash-at``) at its third fill: right before handing it to
    QuickFIX; right after (sent and in QuickFIX's store, not yet in the venue's journal); or
    between QuickFIX's own two writes of it (stored, its sequence number not yet incremented:
    the state behind the lost fill of issue 15, which a restart counted as sent though QuickFIX
    gives its sequence number to the next message). After the restart every fill the venue
    journaled reached us exactly once: fill tables and positions equal, each ClOrdID
    acknowledged once."""
    path, state, ts, _ = day
    with _session(day, tmp_path, crash_at=f"{point}:3") as (venue, clock, bridge):
        bridge.start()
        t = int(ts[-1])
        assert bridge.send(_marketable(state, t, 1, 12)) == 12
        clock.publish(t, bridge.n_msgs)
        t_end = time.monotonic() + 60
        while venue.alive() and time.monotonic() < t_end:
            bridge.poll(0.01)
        assert venue.proc.returncode == -9, venue.stderr_tail()
        assert f"--crash-at {point}:3" in venue.stderr_tail()
        t_end = time.monotonic() + 10
        while bridge.logged_on and time.monotonic() < t_end:
            bridge.poll(0.01)
        del venue.cfg["crash_at"]
        venue.start()
        t_end = time.monotonic() + 30
        while not bridge.logged_on and time.monotonic() < t_end:
            bridge.poll(0.05)
        assert bridge.logged_on, "the initiator did not reconnect"
        _drain(bridge, clock, t)
        c = bridge.counters()
        summ = venue.summary()
        venue_fills = _venue_fills(venue)
    ours = sorted((int(m), int(q), int(px)) for m, q, px, _ in bridge.fill_table())
    assert len(venue_fills) >= 3 and ours == venue_fills
    assert _bridge_positions(bridge) == {k: v for k, v in summ["positions"].items() if v}
    assert sorted(summ["acks"]) == sorted(f"{bridge.prefix_str}-{i}" for i in range(1, 13))
    assert set(summ["acks"].values()) == {1} and (bridge.ot[:12, C.O_ACKED] == 1).all()
    assert c["illegal_transitions"] == 0 and c["callback_errors"] == 0 and summ["starts"] == 2


@pytest.mark.parametrize("keepalive", [True, False], ids=["keepalive", "without-keepalive"])
def test_a_long_step_keeps_the_fix_session_only_with_the_keepalive(day, tmp_path, keepalive):
    """The run loop busy for six heartbeat intervals (a long batch, a compile): with the keepalive
    thread the session stays up; without it the venue's TestRequest goes unanswered and it logs
    us out (what a cold first run hit before the keepalive existed)."""
    with _session(day, tmp_path, bridge_kw={"heartbeat_s": 1}) as (venue, clock, bridge):
        bridge.start()
        if keepalive:
            bridge.start_keepalive()
        time.sleep(6.0)            # nobody calls poll() meanwhile
        for _ in range(20):        # then the loop takes the session's events for a second
            bridge.poll(0.05)
        if keepalive:
            assert bridge.logged_on and bridge.logouts == 0 and bridge.logons == 1
            assert bridge.keepalive_polls > 0
        else:
            assert bridge.logouts >= 1


def test_risk_rejections_never_reach_the_wire(day, tmp_path):
    path, state, ts, risk = day
    with _session(day, tmp_path) as (venue, clock, bridge):
        bridge.start()
        t = int(ts[-1])
        rows = _marketable(state, t, 1, 6)
        rows[::2, IN.I_QTY] = 10_000          # over the per-order maximum: rejected by risk
        dec = risk.check(rows)
        assert dec.decisions[::2, IN.D_ACCEPT].tolist() == [0, 0, 0]
        assert dec.decisions[::2, IN.D_REASON].tolist() == [IN.R_MAX_QTY] * 3
        assert dec.orders.shape[0] >= 1
        bridge.send(dec.orders)
        _drain(bridge, clock, t)
        summ = venue.summary()
    assert bridge.n_msgs == dec.orders.shape[0] <= 3
    assert (dec.orders[:, IN.I_QTY] <= 150).all()
    assert len(summ["acks"]) == bridge.n_msgs


def _fix(body: str, seq: int) -> bytes:
    b = f"35={body.split('|', 1)[0]}|34={seq}|49=VENUE|52={time.strftime('%Y%m%d-%H:%M:%S', time.gmtime())}|56=HFTBOT|"
    b += body.split("|", 1)[1]
    b = b.replace("|", "\x01")
    head = f"8=FIX.4.4\x019={len(b)}\x01"
    cs = sum((head + b).encode()) % 256
    return (head + b + f"10={cs:03d}\x01").encode()


def test_malformed_fix_from_the_counterparty_gets_a_session_reject_not_a_crash(tmp_path):
    """A hand-written counterparty: logs on, then sends an ExecutionReport missing required
    fields and a garbled message. QuickFIX answers with a session-level Reject (35=3); the
    bridge's callbacks never raise (with the ssl wheel that would abort the process)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = bytearray()
    done = threading.Event()

    def venue():
        conn, _ = srv.accept()
        conn.settimeout(5)
        try:
            data = conn.recv(4096)               # the bridge's Logon
            assert b"\x0135=A\x01" in data
            conn.sendall(_fix("A|98=0|108=30|", 1))
            conn.sendall(_fix("8|37=1|11=HB1-1|", 2))          # no ExecID, ExecType, ...: invalid
            conn.sendall(b"8=FIX.4.4\x019=5\x0135=8\x01garbage\x0110=000\x01")  # garbled: ignored
            conn.sendall(_fix("0|", 3))                          # a heartbeat after it
            t_end = time.monotonic() + 5
            while time.monotonic() < t_end and b"\x0135=3\x01" not in got:
                try:
                    chunk = conn.recv(4096)
                except socket.timeout:
                    break
                if not chunk:
                    break
                got.extend(chunk)
        finally:
            done.set()
            conn.close()

    th = threading.Thread(target=venue, daemon=True)
    th.start()
    sym = np.zeros((4, 16), np.int64)
    bridge = FixBridge(host="127.0.0.1", port=port, sender="HFTBOT", target="VENUE", state_dir=tmp_path / "b",
                       sym=sym, date="20190130")
    try:
        bridge.start()
        t_end = time.monotonic() + 10
        while not done.is_set() and time.monotonic() < t_end:
            bridge.poll(0.01)
    finally:
        bridge.stop()
        srv.close()
    assert b"\x0135=3\x01" in got, bytes(got)
    assert b"\x0145=2\x01" in got           # RefSeqNum: the invalid ExecutionReport
    assert bridge.callback_errors == 0


@pytest.mark.parametrize("per_packet", [False, True], ids=["batches", "per-packet"])
def test_the_whole_replay_trades_and_our_positions_equal_the_venues(tmp_path, per_packet):
    """`make run CONF=smoke` in-process: decode -> books -> model -> strategy -> risk -> FIX ->
    venue -> fills -> risk; the report's positions equal the venue simulator's."""
    from hydra import compose, initialize_config_dir

    from pipeline.app import CONF_DIR
    from pipeline.config import register
    from pipeline.run import run

    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("smoke", overrides=[f"feed.sample.dir={tmp_path / 'samples'}", "feed.sample.messages=60000",
                                          "strategy.min_interval_ns=0", f"feed.per_packet={per_packet}"])
    lines: list[str] = []
    rep = run(cfg, out_dir=tmp_path / "run", log=lines.append)
    ex = rep["execution"]
    assert ex["messages_sent"] > 0 and ex["reports"] > 0
    assert ex["illegal_transitions"] == 0 and ex["callback_errors"] == 0 and ex["session_rejects"] == 0
    ours = {k: p["position"] for k, p in rep["risk"]["positions"].items() if p["position"]}
    venue = {k: v for k, v in ex["venue"]["positions"].items() if v}
    assert ours == venue
    assert set(ex["venue"]["acks"].values()) <= {1}
    # per packet: tick-to-trade per packet; in batches only per-batch figures, named as such
    assert ("tick_to_trade" if per_packet else "batch_to_trade") in rep["latency"]
    assert ("tick_no_order" if per_packet else "market_batch_avg_per_msg") in rep["latency"]
    if not per_packet:  # the decide step per batch (not divided by its few intents)
        assert rep["latency"]["decide_batch"]["count"] == rep["latency"]["batch_total"]["count"]
    assert rep["run"]["status"] == "completed" and rep["run"]["engine"] == ("per_packet" if per_packet else "batch")
    assert any(line.startswith("fix ") for line in lines)
    assert (tmp_path / "run" / "report.json").is_file()
    # the summary's intent count is the one risk checked, in either mode (per packet from the
    # strategy's counters: the per-packet driver collects no intent summary)
    text = "\n".join(lines)
    summary = next(x for x in text.splitlines() if x.startswith("intents "))
    checked = next(x for x in text.splitlines() if x.startswith("risk ") and " intents:" in x)
    assert int(summary.split()[1].rstrip(":").replace(",", "")) == int(checked.split()[1].replace(",", "")) > 0
    assert ("predictions not counted per packet" in text) == per_packet
