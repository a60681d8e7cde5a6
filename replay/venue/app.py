"""The venue's FIX side: a QuickFIX acceptor in front of the matching engine.

Two applications share the session layer:

- ``VenueApplication`` (``app="venue"``): the exchange of a replay. NewOrderSingle ``D``,
  OrderCancelRequest ``F`` and OrderCancelReplaceRequest ``G`` become matching-engine actions;
  reports go back as ExecutionReport ``8`` / OrderCancelReject ``9``; any other application
  message gets a BusinessMessageReject ``j`` (380=3, unsupported message type). The replay
  advances on the shared sim clock (``replay/simclock.py``), or with wall time (``--clock
  wall``, ``WallClock``: a request then takes effect at the market time of its arrival), reports
  are released after the response latency, and everything is journaled
  (``replay/venue/journal.py``) so a ``kill -9`` and restart resumes exactly (a FileStore keeps
  the FIX sequence numbers; a report counts as sent once QuickFIX can resend it:
  ``store_report_keys``).
- ``AcceptanceApplication`` (``app="acceptance"``): the behaviour QuickFIX's acceptance
  definitions expect of the engine under test (upstream ``at_application``): echo every
  NewOrderSingle and SecurityDefinition, answer any other application message with a
  BusinessMessageReject "Unsupported Message Type".

With the ``quickfix-ssl`` wheel an exception leaving a Python callback aborts the whole process,
so every callback body catches everything, counts it and logs it to stderr; the engine is
stopped in ``finally``.
"""

from __future__ import annotations

import datetime as dt
import heapq
import os
import re
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import quickfix as fix

SOH = "\x01"
#: ``--clock wall``: the free-running venue
WALL = "wall"
#: ``--crash-at`` points: SIGKILL right before the N-th fill is handed to QuickFIX, or right
#: after (sent and stored, not yet journaled). Fault injection for the recovery tests.
#: ``stored-fill``: the N-th fill written to QuickFIX's FileStore as ``FileStore::set`` does, then
#: SIGKILL before its sequence number is incremented: the window between QuickFIX's own two
#: writes (``Session::persist``), which a kill from outside hits only by chance.
CRASH_POINTS = ("before-fill", "after-fill", "stored-fill")


def parse_crash_at(text: str | None) -> tuple[str, int] | None:
    """``"after-fill:2"`` -> ``("after-fill", 2)``; a clear ValueError otherwise."""
    if not text:
        return None
    point, _, n = text.partition(":")
    if point not in CRASH_POINTS or not n.isdigit() or int(n) < 1:
        raise ValueError(f"--crash-at must be POINT:N with POINT one of {', '.join(CRASH_POINTS)} "
                         f"and N >= 1, got {text!r}")
    return point, int(n)


def default_data_dictionary() -> Path:
    """The FIX 4.4 dictionary of the installed quickfix wheel."""
    p = Path(sys.prefix) / "share" / "quickfix" / "FIX44.xml"
    if p.is_file():
        return p
    alt = Path(__file__).resolve().parents[3] / "shared" / "data" / "quickfix" / "spec" / "FIX44.xml"
    if alt.is_file():
        return alt
    raise FileNotFoundError(f"FIX44.xml not found at {p}: is quickfix-ssl installed in this environment?")


@dataclass
class VenueConfig:
    """Everything a venue process needs (the CLI flags and ``conf/venue/sim.yaml`` map onto it)."""

    port: int
    state_dir: str
    capture: str | None = None
    clock: str | None = None           # the sim clock file (lock-step with the bot), or "wall"
    app: str = "venue"                 # "venue" | "acceptance"
    sender: str = "VENUE"
    target: str = "HFTBOT"
    entry_latency_ns: int = 0
    response_latency_ns: int = 0
    session_date: str | None = None    # YYYYMMDD; default: from the capture's packet times, else today (UTC)
    heartbeat: int = 30                # HeartBtInt written to the settings (the initiator's logon decides)
    data_dictionary: str | None = None
    store: str = "file"                # "file" (restart resumes sequence numbers) | "memory"
    reset_on_logon: bool = False
    fix_log: bool = False              # QuickFIX FileLog of every message in state_dir/log
    max_orders: int = 500_000          # the venue's own replayed book
    max_levels: int = 200_000
    max_symbols: int = 4096
    poll_us: int = 100                 # idle sleep between sim-clock polls (each step with --clock wall)
    clock_journal_ms: int = 200        # how often the venue clock is journaled
    speed: float = 1.0                 # --clock wall: market ns per wall ns
    start: str | None = None           # --clock wall: market time of day to start at (default: first event)
    crash_at: str | None = None        # tests: "before-fill:N" (after-fill, stored-fill): SIGKILL there
    step_events: int = 1 << 16         # market events per step at most: the clock is published after each
    step_delay_ms: float = 0.0         # tests: wait this long after each market step (a slow venue)

    @property
    def wall(self) -> bool:
        """Free-running: the market follows wall time (``--clock wall``), not the bot's sim clock."""
        return self.clock == WALL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_settings(cfg: VenueConfig) -> Path:
    """The QuickFIX settings file for this venue, in its state dir."""
    state = Path(cfg.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    dd = cfg.data_dictionary or str(default_data_dictionary())
    lines = [
        "[DEFAULT]",
        "ConnectionType=acceptor",
        f"SocketAcceptPort={int(cfg.port)}",
        "SocketReuseAddress=Y",
        "SocketNodelay=Y",
        f"FileStorePath={state / 'store'}",
        f"FileLogPath={state / 'log'}",
        "StartTime=00:00:00",
        "EndTime=00:00:00",
        "UseDataDictionary=Y",
        f"DataDictionary={dd}",
        f"ResetOnLogon={'Y' if cfg.reset_on_logon else 'N'}",
        f"HeartBtInt={int(cfg.heartbeat)}",
        "",
        "[SESSION]",
        "BeginString=FIX.4.4",
        f"SenderCompID={cfg.sender}",
        f"TargetCompID={cfg.target}",
        "",
    ]
    path = state / "venue.cfg"
    path.write_text("\n".join(lines))
    return path


def log(msg: str) -> None:
    sys.stderr.write(f"venue[{os.getpid()}] {time.strftime('%H:%M:%S')} {msg}\n")
    sys.stderr.flush()


# --- raw message helpers -----------------------------------------------------------------------

def fields_of(message: fix.Message) -> list[tuple[int, str]]:
    """(tag, value) pairs of a message, in wire order."""
    out = []
    for part in message.toString().split(SOH):
        if not part:
            continue
        tag, _, val = part.partition("=")
        try:
            out.append((int(tag), val))
        except ValueError:
            continue
    return out


def business_reject(ref_seq: str, ref_msg_type: str, reason: int = 3, text: str = "Unsupported Message Type"
                    ) -> fix.Message:
    m = fix.Message()
    m.getHeader().setField(35, "j")
    if ref_seq:
        m.setField(45, ref_seq)
    m.setField(58, text)
    m.setField(372, ref_msg_type)
    m.setField(380, str(reason))
    return m


class _Callbacks(fix.Application):
    """Every callback guarded: an exception is counted and logged, never propagated."""

    def __init__(self):
        super().__init__()
        self.errors = 0
        self.sessions: set[str] = set()
        self.logged_on = threading.Event()

    def _guard(self, what: str, fn, *args) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - nothing may leave a callback with this wheel
            self.errors += 1
            log(f"error in {what}: {exc!r}\n{traceback.format_exc()}")

    def onCreate(self, sessionID):
        self._guard("onCreate", self.on_create, sessionID)

    def onLogon(self, sessionID):
        self._guard("onLogon", self.on_logon, sessionID)

    def onLogout(self, sessionID):
        self._guard("onLogout", self.on_logout, sessionID)

    def toAdmin(self, message, sessionID):
        return

    def fromAdmin(self, message, sessionID):
        return

    def toApp(self, message, sessionID):
        return

    def fromApp(self, message, sessionID):
        self._guard("fromApp", self.on_app, message, sessionID)

    # overridden
    def on_create(self, sid) -> None:
        self.sessions.add(sid.toString())

    def on_logon(self, sid) -> None:
        self.logged_on.set()
        log(f"logon {sid.toString()}")

    def on_logout(self, sid) -> None:
        self.logged_on.clear()
        log(f"logout {sid.toString()}")

    def on_app(self, message, sid) -> None:
        raise NotImplementedError


class AcceptanceApplication(_Callbacks):
    """The acceptance-test profile (upstream ``at_application``), without raising."""

    def __init__(self):
        super().__init__()
        self.order_ids: set[str] = set()

    def on_create(self, sid) -> None:
        super().on_create(sid)
        self.order_ids.clear()

    def on_app(self, message, sid) -> None:
        header = message.getHeader()
        msg_type = header.getField(35)
        if msg_type == "D":
            clid = message.getField(11) if message.isSetField(11) else ""
            poss_resend = header.isSetField(97) and header.getField(97) == "Y"
            if poss_resend and clid in self.order_ids:
                return
            self.order_ids.add(clid)
            fix.Session.sendToTarget(fix.Message(message), sid)
        elif msg_type == "d":
            fix.Session.sendToTarget(fix.Message(message), sid)
        else:
            seq = header.getField(34) if header.isSetField(34) else ""
            fix.Session.sendToTarget(business_reject(seq, msg_type), sid)


# --- the exchange --------------------------------------------------------------------------------

def parse_transact_time(text: str, session_date: dt.date | None) -> int:
    """``YYYYMMDD-HH:MM:SS[.f{1,9}]`` -> ns since the session date's midnight."""
    date_s, _, tod = text.partition("-")
    hms, _, frac = tod.partition(".")
    h, m, s = (int(x) for x in hms.split(":"))
    if not (len(date_s) == 8 and date_s.isdigit() and 0 <= h < 24 and 0 <= m < 60 and 0 <= s <= 60):
        raise ValueError(f"bad TransactTime {text!r}")
    if frac and (not frac.isdigit() or len(frac) > 9):
        raise ValueError(f"bad TransactTime fraction {text!r}")
    ns = ((h * 60 + m) * 60 + s) * 1_000_000_000 + int(frac.ljust(9, "0") or "0")
    if session_date is not None:
        d = dt.date(int(date_s[:4]), int(date_s[4:6]), int(date_s[6:8]))
        ns += (d - session_date).days * 86_400_000_000_000
    return ns


def parse_time_of_day(text: str) -> int:
    """``HH:MM[:SS[.f{1,9}]]`` -> ns since midnight (``--start``); a clear ValueError otherwise."""
    parts = text.split(":")
    if len(parts) == 2:
        text += ":00"
    try:
        return parse_transact_time("19700101-" + text, None)
    except ValueError:
        raise ValueError(f"bad time of day {text!r}: HH:MM[:SS[.fffffffff]]") from None


def format_transact_time(ns: int, session_date: dt.date) -> str:
    """ns since the session date's midnight -> ``YYYYMMDD-HH:MM:SS.nnnnnnnnn``."""
    days, rem = divmod(max(int(ns), 0), 86_400_000_000_000)
    d = session_date + dt.timedelta(days=days)
    sec, frac = divmod(rem, 1_000_000_000)
    h, r = divmod(sec, 3600)
    m, s = divmod(r, 60)
    return f"{d:%Y%m%d}-{h:02d}:{m:02d}:{s:02d}.{frac:09d}"


def msg_no_of(clid: str) -> int:
    """The bot's message number ``n`` of a ClOrdID ``<prefix>-<n>`` (-1 when it has none)."""
    _, _, tail = clid.rpartition("-")
    return int(tail) if tail.isdigit() else -1


def action_from_fix(fields: dict[int, str], msg_type: str, session_date: dt.date | None, clock_ns: int):
    """Build a matching-engine Action from a D/F/G message's fields. Malformed business content
    becomes an action with ``error`` set (answered with a reject at its effective time)."""
    from replay.venue import matching as M

    kind = {"D": "new", "F": "cancel", "G": "replace"}[msg_type]
    clid = fields.get(11, "")
    a = M.Action(kind, clid, symbol=fields.get(55, "").rstrip(), orig=fields.get(41, ""), msg_no=msg_no_of(clid))
    errors: list[tuple[int, str]] = []
    code_bad = M.REJ_OTHER if kind == "new" else M.CXL_OTHER
    code_unsup = M.REJ_UNSUPPORTED if kind == "new" else M.CXL_OTHER
    side = fields.get(54, "")
    if side in ("1", "2"):
        a.side = M.BUY if side == "1" else M.SELL
    else:
        errors.append((code_unsup, f"unsupported Side {side!r} (1 buy, 2 sell)"))
    try:
        a.ts = parse_transact_time(fields[60], session_date)
    except (KeyError, ValueError) as exc:
        a.ts = clock_ns
        errors.append((code_bad, f"bad TransactTime: {exc}"))
    q = fields.get(38, "")
    try:
        qd = float(q)
        if not q or qd != int(qd):
            raise ValueError
        a.qty = int(qd)
    except ValueError:
        errors.append((M.REJ_BAD_QTY if kind == "new" else M.CXL_OTHER,
                       f"OrderQty {q!r} is not a whole number of shares"))
    if kind in ("new", "replace"):
        if fields.get(40) != "2":
            errors.append((code_unsup, f"unsupported OrdType {fields.get(40)!r}: limit orders (40=2) only"))
        tif = fields.get(59, "0")
        if tif in ("0", "3"):
            a.tif = M.TIF_DAY if tif == "0" else M.TIF_IOC
        else:
            errors.append((code_unsup, f"unsupported TimeInForce {tif!r}: 0 DAY or 3 IOC"))
        try:
            a.price = M.parse_price(fields[44])
        except KeyError:
            errors.append((code_bad, "limit order without Price (44)"))
        except ValueError as exc:
            errors.append((code_bad, str(exc)))
    if errors:
        a.error = errors[0]
    return a


class VenueApplication(_Callbacks):
    """The exchange: FIX <-> matching engine, on the shared sim clock."""

    def __init__(self, cfg: VenueConfig, engine, journal, clock, session_date: dt.date, sent: set[str],
                 stored: set[str] | None = None):
        super().__init__()
        self.cfg = cfg
        self.engine = engine
        self.journal = journal
        self.clock = clock
        self.session_date = session_date
        self.lock = threading.Lock()
        self.sent = sent                  # report keys already sent (journaled)
        self.stored = stored or set()     # report keys in the FIX store (sent, maybe not journaled)
        self.pending: list[tuple[int, int, Any]] = []  # (release ns, seq, report)
        self.sid: fix.SessionID | None = None
        self.counts = {"received": 0, "ignored_resends": 0, "business_rejects": 0, "sent": 0, "send_failed": 0}
        self.crash = parse_crash_at(cfg.crash_at)
        self.fills_handed = 0             # fills handed to QuickFIX by this process

    def on_create(self, sid) -> None:
        super().on_create(sid)
        self.sid = sid

    def on_app(self, message, sid) -> None:
        header = message.getHeader()
        msg_type = header.getField(35)
        if msg_type not in ("D", "F", "G"):
            self.counts["business_rejects"] += 1
            seq = header.getField(34) if header.isSetField(34) else ""
            fix.Session.sendToTarget(business_reject(seq, msg_type), sid)
            return
        fields = dict(reversed(fields_of(message)))  # first occurrence wins
        poss = fields.get(43) == "Y" or fields.get(97) == "Y"
        with self.lock:
            self.counts["received"] += 1
            if self.cfg.wall:
                # free-running: the request arrives at the market's time now, whatever the client's
                # TransactTime (its own wall clock; still checked for form)
                now = max(self.engine.clock_ns, self.clock.now_ns())
                a = action_from_fix(fields, msg_type, None, now)
                a.ts = now
            else:
                a = action_from_fix(fields, msg_type, self.session_date, self.engine.clock_ns)
            if self.engine.receive(a, poss_resend=poss):
                self.journal.write({"t": "act", "a": a.to_dict(), "poss": poss})
            else:
                self.counts["ignored_resends"] += 1
            self.clock.venue_msg_no = max(self.engine.max_msg_no, 0)

    # -- reports --------------------------------------------------------------------------------
    def to_fix(self, r) -> fix.Message:
        from replay.venue.matching import format_price

        m = fix.Message()
        m.getHeader().setField(35, r.msg)
        m.setField(37, r.order_id)
        m.setField(11, r.clid or "NONE")
        if r.orig_clid:
            m.setField(41, r.orig_clid)
        m.setField(39, r.ord_status)
        m.setField(60, format_transact_time(r.ts, self.session_date))
        if r.text:
            m.setField(58, r.text)
        if r.msg == "9":
            m.setField(434, r.response_to)
            m.setField(102, str(r.reason))
            return m
        m.setField(17, r.exec_id)
        m.setField(150, r.exec_type)
        m.setField(55, r.symbol or "[N/A]")
        m.setField(54, "1" if r.side == 0 else "2")
        m.setField(38, str(r.qty))
        m.setField(40, "2")
        if r.price > 0:
            m.setField(44, format_price(r.price))
        m.setField(59, "0" if r.tif == 0 else "3")
        if r.exec_type == "F":
            m.setField(32, str(r.last_qty))
            m.setField(31, format_price(r.last_px))
        m.setField(151, str(r.leaves))
        m.setField(14, str(r.cum))
        m.setField(6, r.avg_px)
        if r.exec_type == "8" and r.reason >= 0:
            m.setField(103, str(r.reason))
        return m

    def collect(self) -> None:
        """Move new engine reports to the release queue (caller holds the lock)."""
        for r in self.engine.take_reports():
            k = r.key
            if k in self.sent:
                continue
            if k in self.stored:  # stored (so sent or resendable) but the journal missed it
                self.sent.add(k)
                self.journal.write({"t": "rep", "r": r.to_dict()})
                continue
            heapq.heappush(self.pending, (r.ts + self.cfg.response_latency_ns, r.seq, r))

    def due(self, now_ns: int, everything: bool = False) -> list:
        out = []
        while self.pending and (everything or self.pending[0][0] <= now_ns):
            out.append(heapq.heappop(self.pending)[2])
        return out

    def send(self, reports: list) -> bool:
        """Send released reports (outside the engine lock) and journal each once QuickFIX has
        taken it: stored (FileStore) and, when logged on, written; while the counterparty is
        logged out QuickFIX stores it and its ResendRequest after the next logon delivers it.
        A report QuickFIX does not take (``sendToTarget`` False: the session would be reset at
        the next logon; or an exception) is not journaled: it goes back to the queue, with
        everything after it, and is offered again on the next round. Returns False then."""
        for i, r in enumerate(reports):
            fill = r.msg == "8" and r.exec_type == "F"
            if fill:
                self.fills_handed += 1
                self._crash_point("before-fill", r)
                self._crash_point("stored-fill", r)
            ok = False
            if self.sid is not None:
                try:
                    ok = bool(fix.Session.sendToTarget(self.to_fix(r), self.sid))
                except Exception as exc:  # noqa: BLE001 - SessionNotFound and friends
                    log(f"send failed for {r.exec_id}: {exc!r}")
            if not ok:
                self.counts["send_failed"] += 1
                if fill:
                    self.fills_handed -= 1
                with self.lock:
                    for x in reports[i:]:
                        heapq.heappush(self.pending, (x.ts + self.cfg.response_latency_ns, x.seq, x))
                return False
            if fill:
                self._crash_point("after-fill", r)
            self.counts["sent"] += 1
            self.sent.add(r.key)
            self.journal.write({"t": "rep", "r": r.to_dict()})
        return True

    def _crash_point(self, point: str, r) -> None:
        """``--crash-at``: SIGKILL this process at ``point`` of the N-th fill (fault injection)."""
        if self.crash != (point, self.fills_handed):
            return
        if point == "stored-fill":
            # what QuickFIX's Session::persist has done when a kill lands between its two writes:
            # the message is in the store (header index + body), the sequence number not yet
            # incremented, nothing written to the socket
            # (QuickFIX's own FileStore code on the session's files: Session.getStore() has no
            # Python proxy in this wheel; set() appends at the end of both files)
            store = fix.FileStore(str(Path(self.cfg.state_dir) / "store"), self.sid)
            seq = store.getNextSenderMsgSeqNum()
            m = self.to_fix(r)
            h = m.getHeader()
            h.setField(8, "FIX.4.4")
            h.setField(49, self.cfg.sender)
            h.setField(56, self.cfg.target)
            h.setField(34, str(seq))
            h.setField(52, dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H:%M:%S.%f")[:-3])
            store.set(seq, m.toString())
        log(f"--crash-at {point}:{self.crash[1]}: SIGKILL at {r.exec_id}")
        os.kill(os.getpid(), signal.SIGKILL)


# --- process main ----------------------------------------------------------------------------------

def session_date_of(cfg: VenueConfig) -> dt.date:
    if cfg.session_date:
        return dt.datetime.strptime(str(cfg.session_date), "%Y%m%d").date()
    if cfg.capture:
        from replay.venue.matching import capture_date

        day = capture_date(cfg.capture)
        if day is not None:
            return day
    return dt.datetime.now(dt.timezone.utc).date()


class _Stop:
    def __init__(self):
        self.flag = threading.Event()

    def __call__(self, signum, frame):
        self.flag.set()


def _start_acceptor(cfg: VenueConfig, app: fix.Application):
    settings = fix.SessionSettings(str(write_settings(cfg)))
    if cfg.store == "memory":
        store = fix.MemoryStoreFactory()
    else:
        store = fix.FileStoreFactory(settings)
    if cfg.fix_log:
        acceptor = fix.SocketAcceptor(app, store, settings, fix.FileLogFactory(settings))
    else:
        acceptor = fix.SocketAcceptor(app, store, settings)
    acceptor.start()
    return acceptor, store


def _ready(cfg: VenueConfig) -> None:
    p = Path(cfg.state_dir) / "venue.ready"
    tmp = p.with_suffix(".tmp")
    tmp.write_text(f"{os.getpid()} {cfg.port}\n")
    tmp.replace(p)


def run_acceptance(cfg: VenueConfig) -> int:
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    app = AcceptanceApplication()
    acceptor = None
    try:
        acceptor, _store = _start_acceptor(cfg, app)
        _ready(cfg)
        while not stop.flag.wait(0.05):
            pass
    finally:
        if acceptor is not None:
            acceptor.stop(True)  # force: no logout round trip (a test harness profile)
    return 1 if app.errors else 0


def _store_index(header: Path) -> dict[int, tuple[int, int]]:
    """A FileStore ``.header`` file: ``seq,offset,size `` entries, the last one per sequence
    number winning (as QuickFIX's ``FileStore::populateCache``)."""
    out: dict[int, tuple[int, int]] = {}
    for m in re.finditer(rb"(\d+),(\d+),(\d+) ", header.read_bytes()):
        out[int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
    return out


def _next_sender_seq(seqnums: Path) -> int:
    """The next sender MsgSeqNum a FileStore ``.seqnums`` file holds (``SSSSSSSSSS : TTTTTTTTTT``;
    1, as QuickFIX, when the file is missing or unreadable)."""
    try:
        m = re.match(rb"\s*(\d+)\s*:\s*(\d+)", seqnums.read_bytes())
    except FileNotFoundError:
        return 1
    return int(m.group(1)) if m else 1


def store_report_keys(state_dir: str | Path) -> set[str]:
    """Report keys (ExecID, or ``C:<ClOrdID>`` for a cancel reject) of the application messages
    QuickFIX can resend from the venue's FileStore: those its ``.header`` index points at (last
    entry per MsgSeqNum) and numbered below its persisted next sender MsgSeqNum.

    QuickFIX persists a message before writing it to the socket, in three steps: header index
    and body (``FileStore::set``), then the incremented sequence number (``.seqnums``). A
    ``kill -9`` between them leaves a complete message in the body that QuickFIX will never
    send: its MsgSeqNum is handed to the next message (the Logon answer after the restart),
    which replaces it in the index. Such a report is not sent; counting it as sent would lose
    it (the fill the venue journaled and the bot never got, issue 15). It is generated and sent
    again instead. A message in the index below the next sequence number is resent on the
    counterparty's ResendRequest (PossDupFlag=Y), so it counts as sent even when the venue died
    before journaling it."""
    keys: set[str] = set()
    for body in (Path(state_dir) / "store").glob("*.body"):
        stem = body.name[:-len(".body")]         # FIX.4.4-VENUE-HFTBOT (dots inside: not a suffix)
        header = body.with_name(stem + ".header")
        if not header.is_file():
            continue
        nxt = _next_sender_seq(body.with_name(stem + ".seqnums"))
        data = body.read_bytes()
        for seq, (off, size) in _store_index(header).items():
            if seq >= nxt or off + size > len(data):
                continue
            f = dict(p.split(b"=", 1) for p in data[off:off + size].split(b"\x01") if b"=" in p)
            if f.get(b"34") != str(seq).encode() or not f.get(b"10"):
                continue  # not the message the index names (a torn write)
            if f.get(b"35") == b"8" and b"17" in f:
                keys.add(f[b"17"].decode("latin-1"))
            elif f.get(b"35") == b"9" and b"11" in f:
                keys.add("C:" + f[b"11"].decode("latin-1"))
    return keys


def restore(cfg: VenueConfig, engine, clock) -> tuple[set[str], set[str], int, dict[str, int]]:
    """Re-run the journaled actions against the capture up to the venue clock of the previous
    run. Returns (report keys journaled as sent, report keys in the FIX store, the clock
    restored to, counts)."""
    from replay.venue.journal import read_records
    from replay.venue.matching import Action

    recs, bad = read_records(cfg.state_dir)
    acts = [r for r in recs if r.get("t") == "act"]
    sent = set()
    for r in recs:
        if r.get("t") == "rep":
            x = r["r"]
            sent.add(f"E{x['seq']}" if x["msg"] == "8" else f"C:{x['clid']}")
    stored = store_report_keys(cfg.state_dir) if acts else set()
    clocks = [r["ns"] for r in recs if r.get("t") == "clock"]
    target = max(clock.venue_clock_ns, max(clocks, default=-1))
    for r in acts:
        engine.receive(Action.from_dict(r["a"]), poss_resend=False)
    if target >= 0:
        engine.advance(target)
    return sent, stored, target, {"actions": len(acts), "reports_sent": len(sent), "bad_lines": bad}


def run_venue(cfg: VenueConfig) -> int:
    from replay.simclock import SimClock, WallClock
    from replay.venue.journal import Journal
    from replay.venue.matching import MatchingEngine, capture_batches

    if not cfg.capture or not cfg.clock:
        raise SystemExit("the venue needs --capture and --clock (a sim clock file, or 'wall'; "
                         "or --app acceptance)")
    start_ns = parse_time_of_day(cfg.start) if cfg.start else None
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    clock = WallClock(cfg.speed) if cfg.wall else SimClock(cfg.clock)
    clock.venue_pid = os.getpid()
    sdate = session_date_of(cfg)
    engine = MatchingEngine(capture_batches(cfg.capture), max_orders=cfg.max_orders, max_levels=cfg.max_levels,
                            max_symbols=cfg.max_symbols, entry_latency_ns=cfg.entry_latency_ns)
    engine.max_msg_no = 0
    t0 = time.perf_counter()
    sent, stored, restored_to, rc = restore(cfg, engine, clock)
    journal = Journal(cfg.state_dir)
    journal.write({"t": "start", "pid": os.getpid(), "cfg": cfg.to_dict(), "restored_to": restored_to, **rc})
    if rc["actions"]:
        log(f"restored {rc['actions']} actions to venue clock {restored_to} in {time.perf_counter() - t0:.2f}s")
    # compile (or load) the matching kernels before the acceptor listens (and so before the
    # venue says it is ready): a first order, or the cancels of a stopping run, never wait behind
    # a compile (a cold cache took longer than bridge.cancel_timeout_s under load)
    from replay.venue.matching import warm_kernels

    t0 = time.perf_counter()
    warm_kernels()
    log(f"matching kernels ready in {time.perf_counter() - t0:.1f}s")
    if cfg.wall:
        # the market runs from the restored clock, or --start, or its first event
        first = engine.next_event_ts()
        if start_ns is None:
            start_ns = first if first is not None else 0
        origin = max(engine.clock_ns, start_ns)
        # replay up to the start before the market clock runs
        t0 = time.perf_counter()
        engine.advance(origin)
        log(f"market replayed to the start in {time.perf_counter() - t0:.1f}s")
        clock.start(origin)
        log(f"free-running market from {format_transact_time(origin, sdate)} at {cfg.speed:g}x wall time")
    app = VenueApplication(cfg, engine, journal, clock, sdate, sent, stored)
    clock.venue_clock_ns = max(engine.clock_ns, clock.venue_clock_ns)
    clock.venue_msg_no = max(engine.max_msg_no, 0)
    with app.lock:
        app.collect()
    clock.venue_events = engine.counters["events"]
    acceptor = None
    idle = cfg.poll_us / 1e6
    step_delay = max(float(cfg.step_delay_ms), 0.0) / 1e3
    last_journal = 0.0
    said_over = False
    # the furthest market time the venue may advance to: a target (T, N) read from the clock is
    # safe once message N is processed, and stays safe when the bot publishes a later one whose
    # last order is still on its way
    safe_t = -1
    try:
        acceptor, _store = _start_acceptor(cfg, app)
        _ready(cfg)
        if cfg.wall:
            log(f"FIX 4.4 acceptor on port {cfg.port}: log on with SenderCompID {cfg.target}, TargetCompID "
                f"{cfg.sender}")
        while not stop.flag.is_set():
            t, n, end = clock.market_target()
            moved = False
            with app.lock:
                ready = engine.max_msg_no >= n
                if ready:
                    safe_t = max(safe_t, t)
                if safe_t > engine.clock_ns:
                    # one bounded step (at most cfg.step_events market events), then the clock
                    # and the reports are published: a catch-up shows as progress, and requests
                    # wait for the lock one step at most
                    engine.advance(engine.step_target(safe_t, cfg.step_events))
                    moved = True
                behind = engine.clock_ns < safe_t
                finishing = end and ready and not behind and not clock.venue_done
                if finishing:
                    engine.flush_actions()
                app.collect()
                out = app.due(engine.clock_ns, everything=finishing)
                clock.venue_clock_ns = engine.clock_ns
                clock.venue_events = engine.counters["events"]
            taken = app.send(out) if out else True
            if finishing and taken:   # (a report QuickFIX did not take is offered again first)
                journal.write({"t": "clock", "ns": engine.clock_ns})
                clock.mark_done()
                log(f"replay over at {engine.clock_ns}: {engine.counters}")
            now = time.monotonic()
            if moved and now - last_journal > cfg.clock_journal_ms / 1000:
                journal.write({"t": "clock", "ns": engine.clock_ns})
                last_journal = now
            if cfg.wall and not said_over and engine.market_exhausted:
                said_over = True
                log(f"the capture is over at {format_transact_time(engine.clock_ns, sdate)}: the book stands "
                    f"still from here; orders still trade against it")
            if moved and step_delay:
                stop.flag.wait(step_delay)   # (a stop signal ends the wait)
            if not taken or (not out and not behind and (cfg.wall or not moved)):
                time.sleep(idle)
    finally:
        if acceptor is not None:
            acceptor.stop()
        journal.write({"t": "stop", "pid": os.getpid(), "counters": engine.counters, "fix": app.counts,
                       "callback_errors": app.errors})
        journal.close()
        clock.close()
    return 0
