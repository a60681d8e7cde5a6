"""The free-running venue (``python -m replay.venue --clock wall``): the replayed market follows
wall time, so any FIX 4.4 client can trade against it. Here a plain scripted client (a TCP socket
and FIX 4.4 written out below: no QuickFIX, not our bridge) logs on, gets its TestRequest
answered, trades, cancels, sends garbled messages and logs out; and the QuickFIX acceptance
definitions run against the venue in that mode."""

from __future__ import annotations

import datetime as dt
import re
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("quickfix")

from replay.venue import acceptance as A  # noqa: E402
from replay.venue import journal as J  # noqa: E402
from replay.venue.matching import (Action, MatchingEngine, capture_batches, format_price,  # noqa: E402
                                   parse_price)
from replay.venue.process import VenueProcess  # noqa: E402
from tests.conftest import DATA  # noqa: E402

pytestmark = pytest.mark.timeout(300)

SOH = "\x01"
START = "09:30:00.002"            # the generated flow's book is built by 09:30:00.000
START_NS = 34_200_002_000_000
SPEED = 0.005                     # the capture's 20 ms of market take ~4 s of wall time
VENUE_BOOK = dict(max_orders=100_000, max_levels=20_000, max_symbols=64)
DEFS_DIR = DATA / "quickfix" / "at-definitions" / "server" / "fix44"


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    from replay.generator import generate

    path = tmp_path_factory.mktemp("wall") / "feed.pcap"
    generate(path, fmt="pcap", n_messages=20_000, n_symbols=4, seed=3)
    return path


def wall_venue(capture, state_dir: Path, **kw) -> VenueProcess:
    return VenueProcess(capture, 0, state_dir, "wall", speed=SPEED, start=START, **{**VENUE_BOOK, **kw})


#: the acceptance-test profile's CompIDs and session settings (ResetOnLogon, a memory store)
AT_SESSION = dict(sender="ISLD", target="TW44", store="memory", reset_on_logon=True)


def _defs() -> list[Path]:
    if not DEFS_DIR.is_dir():
        return []
    return sorted(DEFS_DIR.glob("*.def"))


class _Slow(threading.Thread):
    """A definition that waits on heartbeat intervals (13 s, 36 s of wall time), run on a venue of
    its own in the background from the start of the module, so it overlaps the other tests."""

    def __init__(self, d: Path, capture, state_dir: Path):
        super().__init__(daemon=True, name=f"at-{d.stem}")
        self.d, self.capture, self.state_dir = d, capture, state_dir
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        v = wall_venue(self.capture, self.state_dir, **AT_SESSION)
        try:
            v.start()
            A.run_definition(self.d, "127.0.0.1", v.port, A.load_patterns(DEFS_DIR.parents[1] / "fields.fmt"),
                             profile="venue")
            if "error in " in v.stderr_tail(100_000):
                raise AssertionError(f"a callback failed:\n{v.stderr_tail()}")
        except BaseException as exc:  # noqa: BLE001 - reported by the test that joins it
            self.error = exc
        finally:
            v.stop()


@pytest.fixture(scope="module", autouse=True)
def slow_definitions(capture, tmp_path_factory):
    root = tmp_path_factory.mktemp("wall-at-slow")
    return [_Slow(d, capture, root / d.stem) for d in _defs() if d.stem in A.SLOW]


# --- a plain FIX 4.4 client ------------------------------------------------------------------------

class Client:
    """FIX 4.4 over a TCP socket, by hand: framing, BodyLength, CheckSum, sequence numbers."""

    def __init__(self, port: int, sender: str = "HFTBOT", target: str = "VENUE"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sender, self.target = sender, target
        self.seq = 1                 # our next MsgSeqNum
        self.buf = b""
        self.app: list[dict[int, str]] = []     # application messages read while waiting for others
        #: answer a ResendRequest with a SequenceReset-GapFill up to this MsgSeqNum (None: fail on it)
        self.gap_fill_to: int | None = None

    @staticmethod
    def frame(body: str) -> bytes:
        head = f"8=FIX.4.4{SOH}9={len(body.encode('latin-1'))}{SOH}"
        cs = sum((head + body).encode("latin-1")) % 256
        return (head + body + f"10={cs:03d}{SOH}").encode("latin-1")

    def body(self, msg_type: str, fields: str, seq: int | None = None) -> str:
        if seq is None:
            seq, self.seq = self.seq, self.seq + 1
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]
        return (f"35={msg_type}{SOH}34={seq}{SOH}49={self.sender}{SOH}52={now}{SOH}56={self.target}{SOH}"
                + fields)

    def send(self, msg_type: str, fields: str = "") -> None:
        self.sock.sendall(self.frame(self.body(msg_type, fields)))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> dict[int, str]:
        """The next message (its CheckSum verified)."""
        while True:
            m = re.match(rb"8=FIX\.4\.4\x019=(\d+)\x01", self.buf)
            if m is not None:
                end = m.end() + int(m.group(1))
                if len(self.buf) >= end + 7:
                    raw, self.buf = self.buf[:end + 7], self.buf[end + 7:]
                    assert raw[end:end + 3] == b"10=", raw
                    assert int(raw[end + 3:end + 6]) == sum(raw[:end]) % 256, raw
                    out: dict[int, str] = {}
                    for part in raw.decode("latin-1").split(SOH)[:-1]:
                        t, _, v = part.partition("=")
                        out.setdefault(int(t), v)
                    return out
            data = self.sock.recv(65536)     # the socket timeout is the hang guard
            if not data:
                raise ConnectionError(f"the venue closed the connection; unread: {self.buf!r}")
            self.buf += data

    def admin(self) -> dict[int, str]:
        """The next session-level message; application messages read meanwhile go to ``app``."""
        while True:
            m = self.read()
            if m[35] in ("8", "9", "j"):
                self.app.append(m)
                continue
            return m

    def reports(self, clid: str) -> list[dict[int, str]]:
        return [m for m in self.app if m.get(11) == clid]

    def wait_report(self, clid: str, pred, what: str) -> dict[int, str]:
        """Read until a report for ``clid`` satisfies ``pred`` (admin messages here fail the test)."""
        while True:
            for m in self.reports(clid):
                if pred(m):
                    return m
            m = self.read()
            if m[35] == "2" and self.gap_fill_to is not None:
                gap_fill = f"43=Y{SOH}122=20261102-09:30:00{SOH}123=Y{SOH}36={self.gap_fill_to}{SOH}"
                self.send_raw(self.frame(self.body("4", gap_fill, seq=int(m[7]))))
                continue
            assert m[35] in ("8", "9", "j", "0"), f"waiting for {what}, got {m}"
            if m[35] != "0":
                self.app.append(m)

    def close(self) -> None:
        self.sock.close()


def order(clid: str, symbol: str, side: str, qty: int, price: int, tif: str = "0") -> str:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]
    return (f"11={clid}{SOH}21=1{SOH}55={symbol}{SOH}54={side}{SOH}60={now}{SOH}38={qty}{SOH}40=2{SOH}"
            f"44={format_price(price)}{SOH}59={tif}{SOH}")


def best_at(capture, t: int, symbol: str) -> tuple[int, int]:
    from kernels import cpu

    e = MatchingEngine(capture_batches(capture), **VENUE_BOOK)
    e.advance(t)
    d = e.state.depth(cpu, e.locate_of(symbol), 1)
    return d["bids"][0]["price"], d["asks"][0]["price"]


def test_a_plain_fix_client_trades_against_the_free_running_venue(capture, tmp_path):
    bid, ask = best_at(capture, START_NS, "AAPL")
    v = wall_venue(capture, tmp_path / "venue")
    v.start()
    c = Client(v.port)
    try:
        # logon
        c.send("A", f"98=0{SOH}108=30{SOH}")
        r = c.admin()
        assert (r[35], r[34], r[49], r[56], r[108]) == ("A", "1", "VENUE", "HFTBOT", "30")
        # TestRequest -> Heartbeat carrying its TestReqID
        c.send("1", f"112=TR-1{SOH}")
        r = c.admin()
        assert (r[35], r[112]) == ("0", "TR-1")
        # a resting order far from the market, a marketable IOC, one joining the bid's queue
        c.send("D", order("w-1", "AAPL", "1", 100, bid - 50_000))
        c.send("D", order("w-2", "AAPL", "1", 100, ask + 10_000, tif="3"))
        c.send("D", order("w-3", "AAPL", "1", 100, bid))
        ack1 = c.wait_report("w-1", lambda m: m[35] == "8", "w-1's ack")
        assert (ack1[150], ack1[39], ack1[151], ack1[14]) == ("0", "0", "100", "0")
        fill2 = c.wait_report("w-2", lambda m: m.get(150) == "F", "w-2's fill")
        assert int(fill2[32]) > 0 and parse_price(fill2[31]) <= ask + 10_000
        c.wait_report("w-3", lambda m: m.get(150) == "0", "w-3's ack")
        # cancel the resting order: answered with ExecType 4, naming it
        c.send("F", f"11=w-4{SOH}41=w-1{SOH}55=AAPL{SOH}54=1{SOH}60=20261102-09:30:00{SOH}38=100{SOH}")
        done = c.wait_report("w-4", lambda m: m[35] in ("8", "9"), "the cancel's answer")
        assert (done[35], done[150], done[39], done[41]) == ("8", "4", "4", "w-1")
        # a cancel of an unknown order: an OrderCancelReject
        c.send("F", f"11=w-5{SOH}41=nope{SOH}55=AAPL{SOH}54=1{SOH}60=20261102-09:30:00{SOH}38=100{SOH}")
        rej = c.wait_report("w-5", lambda m: m[35] == "9", "the cancel reject")
        assert (rej[434], rej[102]) == ("1", "1")
        # garbled messages are ignored (QuickFIX drops a frame whose CheckSum or BodyLength is
        # wrong, without a Reject); the next message then has a MsgSeqNum above the expected
        # one, and the venue asks for the gap with a ResendRequest
        for garble in ("checksum", "bodylength"):
            k = c.seq
            good = c.frame(c.body("0", ""))
            if garble == "checksum":
                bad = good[:-4] + (b"%03d" % ((int(good[-4:-1]) + 1) % 256)) + b"\x01"
            else:
                n = int(re.match(rb"8=FIX\.4\.4\x019=(\d+)", good).group(1))
                bad = good.replace(b"\x019=%d\x01" % n, b"\x019=%d\x01" % (n - 3), 1)   # too short
            c.send_raw(bad)
            c.send("1", f"112=TR-{garble}{SOH}")          # MsgSeqNum k + 1
            r = c.admin()
            assert (r[35], r[7], r[16]) == ("2", str(k), "0"), (garble, r)
            # fill the gap: SequenceReset-GapFill for k (PossDupFlag), then the TestRequest is
            # processed and answered
            gap_fill = f"43=Y{SOH}122=20261102-09:30:00{SOH}123=Y{SOH}36={k + 1}{SOH}"
            c.send_raw(c.frame(c.body("4", gap_fill, seq=k)))
            r = c.admin()
            assert (r[35], r.get(112)) == ("0", f"TR-{garble}"), r
        # logout: answered, then the venue closes the connection
        c.send("5")
        r = c.admin()
        assert r[35] == "5"
        with pytest.raises(ConnectionError):
            c.read()
    finally:
        c.close()
    # the market runs on to the capture's end (the book stands still after it); then every report
    # equals a lock-step replay of the requests the venue journaled at their arrival (market)
    # times: the same queue positions and fills (reports for a logged-out client are stored)
    deadline = time.monotonic() + 120
    while "the capture is over" not in v.stderr_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "the capture is over" in v.stderr_tail(), v.stderr_tail()
    v.stop()
    recs, bad = J.read_records(v.state_dir)
    acts = [Action.from_dict(r["a"]) for r in recs if r.get("t") == "act"]
    assert bad == 0 and [a.clid for a in acts] == ["w-1", "w-2", "w-3", "w-4", "w-5"]
    assert all(a.eff >= START_NS for a in acts)
    ref = MatchingEngine(capture_batches(capture), **VENUE_BOOK)
    for a in acts:
        ref.receive(a)                                     # at its journaled arrival (market) time
    ref.advance(10 ** 15)
    want = [(r.clid, r.exec_type or r.msg, r.last_qty, r.last_px, r.exec_id if r.msg == "8" else "")
            for r in ref.take_reports()]
    sent = [(r["clid"], r["exec_type"] or r["msg"], r["last_qty"], r["last_px"],
             f"E{r['seq']}" if r["msg"] == "8" else "") for r in (x["r"] for x in recs if x.get("t") == "rep")]
    assert sorted(sent, key=str) == sorted(want, key=str)
    got = [(m[11], m.get(150, "9"), int(m.get(32, 0)), parse_price(m[31]) if 31 in m else 0, m.get(17, ""))
           for m in c.app]
    assert got == sent[:len(got)] and len(got) >= 6
    acks = [m[11] for m in c.app
            if m.get(150) in ("0", "8") or m[35] == "9" or (m.get(150) == "4" and 41 in m)]
    assert sorted(acks) == ["w-1", "w-2", "w-3", "w-4", "w-5"]       # each request answered exactly once
    assert "error in" not in v.stderr_tail(100_000)


def test_the_free_running_venue_resumes_after_kill_9(capture, tmp_path):
    """kill -9 and restart in ``--clock wall`` mode: the venue restores its orders from the journal
    and the market resumes from its journaled clock; the client logs on again with its next
    MsgSeqNum and cancels the order it placed before the crash."""
    bid, _ = best_at(capture, START_NS, "MSFT")
    v = wall_venue(capture, tmp_path / "venue")
    v.start()
    c = Client(v.port)
    try:
        c.send("A", f"98=0{SOH}108=30{SOH}")
        assert c.admin()[35] == "A"
        c.send("D", order("k-1", "MSFT", "1", 300, bid - 10_000))
        ack = c.wait_report("k-1", lambda m: m[35] == "8", "k-1's ack")
        assert (ack[150], ack[151]) == ("0", "300")
        v.kill()
        c.close()
        v.start()
        c2 = Client(v.port)
        c2.seq = c.seq                                     # the session goes on: FileStore sequence numbers
        c = c2
        c.send("A", f"98=0{SOH}108=30{SOH}")
        assert c.admin()[35] == "A"
        c.send("F", f"11=k-2{SOH}41=k-1{SOH}55=MSFT{SOH}54=1{SOH}60=20261102-09:30:00{SOH}38=300{SOH}")
        # a kill between QuickFIX taking our order and saving its next incoming MsgSeqNum makes
        # the restarted venue ask for it again (ResendRequest): the order was processed (its ack
        # came), so a client gap-fills up to the cancel, which the venue then processes
        c.gap_fill_to = c.seq - 1
        done = c.wait_report("k-2", lambda m: m[35] in ("8", "9"), "the cancel's answer")
        assert (done[35], done[150], done[39], done[41], done[37]) == ("8", "4", "4", "k-1", ack[37])
        c.send("5")
        assert c.admin()[35] == "5"
    finally:
        c.close()
        v.stop()
    s = v.summary()
    assert s["starts"] == 2 and s["acks"] == {"k-1": 1, "k-2": 1} and s["outcomes"].get("canceled") == 1
    assert "restored 1 actions" in v.stderr_tail() and "error in" not in v.stderr_tail(100_000)


# --- the QuickFIX acceptance definitions, free-running -------------------------------------------------

def test_the_free_running_venue_passes_the_acceptance_definitions(capture, tmp_path, slow_definitions):
    """Every FIX 4.4 server definition against the venue in ``--clock wall`` mode, compared in the
    ``venue`` profile (``acceptance.venue_compare``: an exchange answers a NewOrderSingle with an
    ExecutionReport where upstream's test engine echoes it; the session layer is compared
    exactly). One venue for the suite, as upstream runs it (ResetOnLogon, a memory store); it
    remembers ClOrdIDs across sessions, as an exchange does for a trading day, so 19b (a
    PossResend of a ClOrdID not seen yet) runs before 19a, which uses the same ClOrdID
    (``acceptance.venue_order``). The two
    definitions that wait on heartbeat intervals run on venues of their own, in the background
    since the start of the module."""
    from tests.conftest import shared_data

    shared_data("quickfix", "at-definitions", "server", "fix44")
    defs = _defs()
    assert len(defs) == 59
    patterns = A.load_patterns(DEFS_DIR.parents[1] / "fields.fmt")
    errors: dict[str, BaseException] = {}
    fast = A.venue_order([d for d in defs if d.stem not in A.SLOW])
    v = wall_venue(capture, tmp_path / "venue", **AT_SESSION)
    v.start()
    try:
        for d in fast:
            try:
                A.run_definition(d, "127.0.0.1", v.port, patterns, profile="venue")
                A.wait_sessions_closed(v)     # the next Logon meets a closed session
            except A.DefinitionError as exc:
                errors[d.stem] = exc
        assert v.alive(), v.stderr_tail()
    finally:
        v.stop()
    assert {th.d.stem for th in slow_definitions} == A.SLOW
    for th in slow_definitions:
        th.join(120)
        assert not th.is_alive(), f"{th.name} still running"
        if th.error is not None:
            errors[th.d.stem] = th.error
    assert not errors, "\n".join(f"{k}: {e}" for k, e in sorted(errors.items()))
    assert "error in" not in v.stderr_tail(100_000)


@pytest.mark.parametrize("args, message", [
    (["--clock", "wall"], "--capture is required"),
    (["--clock", "wall", "--capture", "CAP", "--speed", "0"], "--speed must be > 0"),
    (["--clock", "wall", "--capture", "CAP", "--speed", "-2"], "--speed must be > 0"),
    (["--clock", "sim.clock", "--capture", "CAP", "--speed", "2"], "--speed and --start need --clock wall"),
    (["--clock", "wall", "--capture", "CAP", "--start", "25:00"], "--start: bad time of day"),
    (["--clock", "wall", "--capture", "CAP", "--crash-at", "later:1"], "--crash-at must be POINT:N"),
    (["--clock", "wall", "--capture", "CAP", "--crash-at", "after-fill:0"], "--crash-at must be POINT:N"),
    (["--clock", "wall", "--capture", "no/such.pcap"], "--capture no/such.pcap: no such file"),
    (["--capture", "CAP"], "--clock is required"),
], ids=["no-capture", "speed-0", "speed-negative", "speed-lockstep", "start", "crash-point", "crash-n",
        "capture-missing", "no-clock"])
def test_venue_arguments_are_checked_with_one_line(capture, tmp_path, capsys, args, message):
    from replay.venue.__main__ import parse_args

    argv = ["--port", "1", "--state-dir", str(tmp_path)] + [str(capture) if a == "CAP" else a for a in args]
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and err.count("\n") == 1, err


def test_venue_wall_arguments_parse(capture, tmp_path):
    from replay.venue.__main__ import parse_args

    cfg = parse_args(["--port", "1", "--state-dir", str(tmp_path), "--clock", "wall", "--capture", str(capture),
                      "--speed", "2.5", "--start", "09:30:00.5"])
    assert cfg.wall and cfg.speed == 2.5 and cfg.start == "09:30:00.5" and cfg.poll_us == 1000
    lock = parse_args(["--port", "1", "--state-dir", str(tmp_path), "--clock", "x.clock", "--capture", str(capture)])
    assert not lock.wall and lock.poll_us == 100
