"""The venue's matching engine: our orders against the replayed L3 book, with FIFO queue position.

No FIX here: actions in (:class:`Action`), reports out (:class:`Report`); ``replay/venue/app.py``
turns them into FIX. Everything is deterministic in (market events, actions with their effective
times), which is what makes a restart exact: the venue re-runs the journaled actions against the
capture (``replay/venue/journal.py``).

Model (a simulator, and its assumptions):

- **No market impact.** Our orders never change the replayed book: the book is exactly the
  feed's. Liquidity we take at arrival stays displayed in the replay, and two of our orders at
  the same price are simulated independently (each may be filled by the same replayed
  execution).
- **Arrival.** An order takes effect at ``TransactTime + entry latency`` (never before the venue
  clock), after every market event with ``ts <=`` that time. A limit order that crosses the
  opposite side fills against the displayed levels at their prices, best first, up to its limit
  (one fill per level); the remainder rests (DAY) or is cancelled (IOC).
- **Queue position.** A resting order joins behind the displayed queue at its price: the L3
  references of that level and their shares are snapshotted at arrival (``queue_ahead`` = their
  sum; orders added later are behind us). Replayed executions, cancels and deletes of those
  references (and the whole order for a ``U`` replace, which loses priority) shrink the queue
  ahead. A replayed execution at our price of an order *not* ahead of ours, once nothing is left
  ahead, fills us (up to the executed shares); one while orders are still ahead is counted as
  ``out_of_fifo`` and ignored.
- **Trade-through and crossing.** A replayed execution on our side at a price worse than our
  limit (a sell executed against bids below our bid) fills us at our limit; so does a replayed
  add (A/F/U) on the opposite side at a price that crosses our limit, up to its shares.
- **Cancel / replace** act at their effective time. A replace keeps queue priority only when the
  price is unchanged and the quantity is not increased; otherwise the order goes to the back
  (a new snapshot at the new price, and a crossing check as at arrival).
- **Rejects** carry a FIX reason: unknown symbol (OrdRejReason 1), halted or paused symbol (2),
  bad quantity (13), bad price (99), unsupported order type or time in force (11), duplicate
  ClOrdID (6); cancel/replace of an unknown order (CxlRejReason 1) or of a finished one (0,
  too late to cancel).

Work per market event is vectorised: a batch slice is applied to the book by a compiled kernel
that also records, for every execution/cancel/delete/replace, the book and price of the order
it touched; numpy then selects the few events that can matter to our resting orders (their
references ahead, executions at or through their limits, opposite adds crossing them), and only
those are looked at in Python. With no resting orders the book kernel runs on its own.
"""

from __future__ import annotations

import datetime as dt
import heapq
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Iterable, Iterator

import numpy as np
from numba import njit

from kernels import book as B
from kernels import cpu as K
from kernels.events import EventTable, pack_ascii
from kernels.intents import MAX_PRICE, MAX_QTY
from kernels.state import FeatureConf
from pipeline.book import book_events

BUY, SELL = 0, 1
TIF_DAY, TIF_IOC = 0, 1
INF = 1 << 62

_A, _F, _U, _D, _X, _E, _C = (ord(c) for c in "AFUDXEC")

# FIX reason codes (FIX 4.4 OrdRejReason / CxlRejReason)
REJ_BROKER = 0
REJ_UNKNOWN_SYMBOL = 1
REJ_EXCHANGE_CLOSED = 2
REJ_DUPLICATE = 6
REJ_UNSUPPORTED = 11
REJ_BAD_QTY = 13
REJ_OTHER = 99
CXL_TOO_LATE = 0
CXL_UNKNOWN = 1
CXL_BROKER = 2
CXL_DUPLICATE = 6
CXL_OTHER = 99


def format_price(p: int) -> str:
    """Price(4) integer -> decimal dollars, four decimals (``1234500`` -> ``"123.4500"``)."""
    sign = "-" if p < 0 else ""
    p = abs(int(p))
    return f"{sign}{p // 10000}.{p % 10000:04d}"


def parse_price(text: str) -> int:
    """Decimal dollars -> Price(4) integer, exactly (never through a float).

    Raises ``ValueError`` with the reason for a malformed value or more than 4 decimals."""
    s = text.strip()
    if not s or s[0] in "+-" and len(s) == 1:
        raise ValueError(f"price {text!r} is empty")
    neg = s.startswith("-")
    if s[0] in "+-":
        s = s[1:]
    whole, dot, frac = s.partition(".")
    if not (whole or frac) or (whole and not whole.isdigit()) or (frac and not frac.isdigit()) \
            or (dot and not frac and not whole):
        raise ValueError(f"price {text!r} is not a decimal number")
    frac = frac.rstrip("0")
    if len(frac) > 4:
        raise ValueError(f"price {text!r} has more than 4 decimals")
    v = int(whole or "0") * 10000 + int(frac.ljust(4, "0") or "0")
    return -v if neg else v


# --- compiled helpers ------------------------------------------------------------------------

def _apply_annotated(i0, i1, ev, book, feat, fo, fk, one, pre_book, pre_price):
    """Apply events ``i0 .. i1-1`` of ``ev`` one at a time through ``apply_events`` (each copied
    to ``one``, a one-row scratch; ``ev`` and ``one`` are ``BookEvents``, ``book`` BookArrays,
    ``feat`` FeatureConf: ``kernels/state.py``), first recording for each D/X/E/C/U the book
    (``locate*2+side``) and price of the order it references (``pre_book = -1`` when the
    reference is unknown or the event is of another kind). Returns the index after the last
    event applied (less than ``i1`` on a capacity error)."""
    kind, side, locate, ts, seq, ref, new_ref, shares, price, stock, aux, alpha = ev
    s_kind, s_side, s_locate, s_ts, s_seq, s_ref, s_new_ref, s_shares, s_price, s_stock, s_aux, s_alpha = one
    oi = book.oi
    oj = book.oj
    ok = book.ok
    ov = book.ov
    ctr = book.ctr
    omask = ok.shape[0] - 1
    for i in range(i0, i1):
        t = kind[i]
        pre_book[i] = -1
        pre_price[i] = 0
        if t == 68 or t == 88 or t == 69 or t == 67 or t == 85:
            s = B.hash_find(ok, ov, omask, ref[i], False)
            if s != -1:
                pre_book[i] = oj[s, B.J_BOOK]
                pre_price[i] = oi[s, B.O_PRICE]
        s_kind[0] = kind[i]
        s_side[0] = side[i]
        s_locate[0] = locate[i]
        s_ts[0] = ts[i]
        s_seq[0] = seq[i]
        s_ref[0] = ref[i]
        s_new_ref[0] = new_ref[i]
        s_shares[0] = shares[i]
        s_price[0] = price[i]
        s_stock[0] = stock[i]
        for a in range(aux.shape[1]):
            s_aux[0, a] = aux[i, a]
        for a in range(alpha.shape[1]):
            s_alpha[0, a] = alpha[i, a]
        K.apply_events(1, one, book, feat, fo, fk)
        if ctr[B.C_ERROR] != 0:
            ctr[B.C_ERROR_EVENT] = i
            return i
    return i1


def _level_queue(book, price, lk, lv, li, lj, oi, oj, out_ref, out_sh):
    """The FIFO queue of the level ``(book, price)``: references and shares, oldest first, into
    ``out_ref``/``out_sh``. Returns the number of orders (``-n`` when ``out`` is too small)."""
    lmask = lk.shape[0] - 1
    x = B.hash_find(lk, lv, lmask, B.level_key(book, price), True)
    if x == -1:
        return 0
    s = lj[x, B.K_HEAD]
    n = 0
    while s != -1:
        if n >= out_ref.shape[0]:
            return -n
        out_ref[n] = oi[s, B.O_REF]
        out_sh[n] = oi[s, B.O_SHARES]
        n += 1
        s = oj[s, B.J_NEXT]
    return n


def _crossing_levels(book, side, limit, bk, li, lj, out):
    """Levels of ``book`` (``side`` 0 bids, 1 asks) whose price crosses ``limit`` (asks at or
    below it, bids at or above it), best first, as ``out[k] = (price, shares)``. Returns k
    (``-k`` when ``out`` is too small)."""
    x = bk[book, B.B_BEST]
    k = 0
    while x != -1:
        px = li[x, B.L_PRICE]
        if (side == 1 and px > limit) or (side == 0 and px < limit):
            break
        if k >= out.shape[0]:
            return -k
        out[k, 0] = px
        out[k, 1] = li[x, B.L_SHARES]
        k += 1
        x = lj[x, B.K_WORSE]
    return k


_jit = njit(cache=True, nogil=True, _nrt=False)
apply_annotated = _jit(_apply_annotated)
level_queue = _jit(_level_queue)
crossing_levels = _jit(_crossing_levels)


# --- actions, orders, reports ------------------------------------------------------------------

@dataclass
class Action:
    """A client request, as the venue received it.

    ``kind``: ``"new"``, ``"cancel"`` or ``"replace"``. ``ts``: TransactTime, ns since midnight.
    ``error``: ``(reason code, text)`` when the request is refused before it reaches the book
    (malformed field, unsupported type, duplicate ClOrdID): it is answered at its effective time
    like any other. ``eff``: the effective time (set on submit; journaled)."""

    kind: str
    clid: str
    symbol: str = ""
    side: int = BUY
    qty: int = 0
    price: int = 0
    tif: int = TIF_DAY
    orig: str = ""
    ts: int = 0
    msg_no: int = -1
    error: tuple[int, str] | None = None
    eff: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["error"] = list(self.error) if self.error else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Action":
        d = dict(d)
        d["error"] = tuple(d["error"]) if d.get("error") else None
        return cls(**d)


@dataclass
class Order:
    order_id: str
    clid: str
    symbol: str
    locate: int
    side: int
    price: int
    qty: int
    tif: int
    arrival_ts: int
    cum: int = 0
    notional: int = 0          # sum of fill price x qty (Price(4) x shares)
    status: str = "0"          # FIX OrdStatus: 0 new, 1 partial, 2 filled, 4 canceled
    ahead: dict[int, int] = field(default_factory=dict)   # L3 ref -> shares still ahead of us
    queue_ahead: int = 0
    clids: list[str] = field(default_factory=list)

    @property
    def leaves(self) -> int:
        return 0 if self.status in ("2", "4") else self.qty - self.cum

    @property
    def live(self) -> bool:
        return self.status in ("0", "1")


@dataclass
class Report:
    """One message to the client: an ExecutionReport (``msg="8"``) or an OrderCancelReject
    (``msg="9"``). Prices Price(4) integers; ``ts`` the event time (ns since midnight)."""

    seq: int
    ts: int
    msg: str
    exec_type: str          # 0 new, F trade, 4 canceled, 5 replaced, 8 rejected ('' for msg 9)
    ord_status: str
    order_id: str
    clid: str
    orig_clid: str = ""
    symbol: str = ""
    side: int = BUY
    qty: int = 0
    price: int = 0
    tif: int = TIF_DAY
    last_qty: int = 0
    last_px: int = 0
    leaves: int = 0
    cum: int = 0
    notional: int = 0
    text: str = ""
    reason: int = -1        # OrdRejReason (ER 8) / CxlRejReason (msg 9)
    response_to: str = ""   # msg 9: 1 cancel, 2 replace

    @property
    def exec_id(self) -> str:
        return f"E{self.seq}"

    @property
    def key(self) -> str:
        """Unique per report: the ExecID, or ``C:<ClOrdID>`` for a cancel reject (which has no
        ExecID; each cancel/replace request gets at most one)."""
        return self.exec_id if self.msg == "8" else f"C:{self.clid}"

    @property
    def avg_px(self) -> str:
        """AvgPx in decimal dollars (exact to 8 decimals)."""
        if self.cum <= 0:
            return "0"
        v = (Decimal(self.notional) / Decimal(self.cum) / Decimal(10000)).quantize(Decimal("1e-8"))
        return format(v.normalize(), "f")

    def to_dict(self) -> dict:
        return asdict(self)


# --- market sources --------------------------------------------------------------------------

def capture_batches(path, *, backend=None, batch_rows: int = 1 << 16) -> Iterator[EventTable]:
    """Decoded event batches of a capture: ``CaptureReader -> DecodeStage`` (backend kernels.cpu).

    The table is reused between batches: consume each before asking for the next."""
    from pipeline.stages import DecodeStage
    from replay.capture import CaptureReader

    backend = backend or K
    reader = CaptureReader(path, batch_rows=batch_rows, backend=backend)
    decode = DecodeStage(backend, capacity=reader.batch_rows, stats=reader.stats)
    for batch in reader:
        yield decode(batch)


def capture_date(path) -> dt.date | None:
    """The trading date of a capture: the first packet's capture time minus its ITCH time is the
    feed's midnight; a few hours after it is safely inside that day in UTC. ``None`` for a file
    without capture times (BinaryFILE)."""
    for t in capture_batches(path):
        rx, ts = t.cols["rx"][: t.n], t.cols["ts"][: t.n]
        ok = rx > 0
        if ok.any():
            i = int(ok.argmax())
            midnight_ns = int(rx[i]) - int(ts[i])
            return dt.datetime.fromtimestamp(midnight_ns / 1e9 + 6 * 3600, dt.timezone.utc).date()
        break
    return None


def event_table(rows: list[dict]) -> EventTable:
    """An event table from hand-written rows (tests): keys are event columns; ``kind``/``side``
    may be letters and ``stock`` a name."""
    t = EventTable(max(len(rows), 1))
    for i, r in enumerate(rows):
        for key, v in r.items():
            if key in ("kind", "side") and isinstance(v, str):
                v = ord(v)
            elif key == "stock" and isinstance(v, str):
                v = pack_ascii(v, 8)
            t.cols[key][i] = v
    t.n = len(rows)
    return t


# --- the engine ----------------------------------------------------------------------------------

def warm_kernels(backend=None) -> None:
    """Compile (or load from numba's cache) every kernel the matching engine calls, on a tiny
    hand-made market: a resting order, then an execution ahead of it and one against it. The
    free-running venue calls this before its market clock starts, so a first order does not wait
    behind a compile while the market runs on."""
    p, tick = 1_000_000, 100
    rows = [dict(kind="R", locate=1, stock="WARM", ts=1),
            dict(kind="H", locate=1, stock="WARM", ts=2, alpha=[ord("T")] + [0] * 11),
            dict(kind="A", locate=1, stock="WARM", side="B", ref=10, shares=100, price=p, ts=10),
            dict(kind="A", locate=1, stock="WARM", side="S", ref=12, shares=300, price=p + tick, ts=12),
            dict(kind="E", locate=1, ref=10, shares=100, ts=30),
            dict(kind="A", locate=1, stock="WARM", side="S", ref=13, shares=100, price=p, ts=40),
            dict(kind="C", locate=1, ref=13, shares=100, price=p, ts=41),
            dict(kind="X", locate=1, ref=12, shares=100, ts=42),
            dict(kind="D", locate=1, ref=12, ts=43)]
    e = MatchingEngine([event_table(rows)], max_orders=64, max_levels=64, max_symbols=4, backend=backend)
    e.receive(Action("new", "warm-1", "WARM", BUY, 100, p, TIF_DAY, ts=20))
    e.receive(Action("new", "warm-2", "WARM", SELL, 50, p, TIF_IOC, ts=25))
    e.advance(100)
    e.take_reports()


class MatchingEngine:
    """Replayed L3 book + our orders. Single-threaded: the caller serialises access.

    ``source``: an iterable of event tables in feed order (:func:`capture_batches`, or tables
    from :func:`event_table` in tests). Call :meth:`receive` for each client request as it
    arrives, :meth:`advance` to move the venue clock, and :meth:`take_reports` to collect what
    to send (each report carries its event time; the response latency is the caller's).
    """

    def __init__(self, source: Iterable[EventTable], *, max_orders: int = 500_000, max_levels: int = 200_000,
                 max_symbols: int = 4096, entry_latency_ns: int = 0, backend=None):
        from pipeline.book import BookState

        self.k = backend or K
        self.state = BookState(max_orders, max_levels, max_symbols)
        self.entry_latency_ns = int(entry_latency_ns)
        self._src = iter(source)
        self._table: EventTable | None = None
        self._cur = 0
        self._cummax = np.zeros(0, np.int64)
        self._exhausted = False
        self.clock_ns = -1
        from kernels import features as FT

        self._subs = np.zeros(0, np.int64)  # no feature subscriptions: fo/fk stay unused
        self._params = np.zeros(FT.N_PARAMS, np.float64)
        self._params[FT.P_TAU_FLOW] = 1e9
        self._params[FT.P_TAU_RV] = 60e9
        self._params[FT.P_TOP_N] = 5
        self._fo = np.zeros((1, FT.N_FEATURES), np.float64)
        self._fk = np.zeros((1, FT.N_KEYS), np.int64)
        self._scratch = EventTable(1)
        self._pre_book = np.zeros(0, np.int64)
        self._pre_price = np.zeros(0, np.int64)
        self._qref = np.zeros(4096, np.int64)
        self._qsh = np.zeros(4096, np.int64)
        self._lvls = np.zeros((256, 2), np.int64)
        # actions
        self._heap: list[tuple[int, int, Action]] = []
        self._n_submitted = 0
        self.seen_clids: set[str] = set()
        self.max_msg_no = -1
        # orders
        self.orders: dict[str, Order] = {}      # order id -> order
        self.by_clid: dict[str, Order] = {}     # every ClOrdID of an order's chain -> order
        self._n_orders = 0
        self._resting: dict[str, Order] = {}
        self._by_ref: dict[int, set[str]] = {}
        self._by_loc: dict[int, set[str]] = {}
        nsym = self.state.max_symbols + 1
        self._buy_max = np.full(nsym, -1, np.int64)
        self._sell_min = np.full(nsym, INF, np.int64)
        self._watched = np.zeros(0, np.int64)
        self._watched_dirty = False
        self._locates: dict[str, int] = {}
        # out
        self._reports: list[Report] = []
        self._n_reports = 0
        self.counters = {"events": 0, "relevant_events": 0, "actions": 0, "fills": 0, "filled_shares": 0,
                         "out_of_fifo": 0, "rejects": 0, "cancel_rejects": 0, "duplicates_ignored": 0}

    # -- requests -------------------------------------------------------------------------------
    def receive(self, action: Action, poss_resend: bool = False) -> bool:
        """A client request arrived. A resend (PossDupFlag/PossResend) of a ClOrdID already
        processed is ignored (returns False); a new request reusing a ClOrdID is refused
        (duplicate). Otherwise the action is scheduled at ``max(TransactTime + entry latency,
        venue clock)`` (or its journaled ``eff``). Returns True when the action was scheduled."""
        if action.msg_no > self.max_msg_no:
            self.max_msg_no = action.msg_no
        if action.clid in self.seen_clids:
            if poss_resend:
                self.counters["duplicates_ignored"] += 1
                return False
            if action.error is None:
                action.error = (REJ_DUPLICATE if action.kind == "new" else CXL_DUPLICATE,
                                f"duplicate ClOrdID {action.clid}")
        else:
            self.seen_clids.add(action.clid)
        if action.eff is None:
            action.eff = max(action.ts + self.entry_latency_ns, self.clock_ns)
        else:
            action.eff = max(action.eff, self.clock_ns)
        heapq.heappush(self._heap, (action.eff, self._n_submitted, action))
        self._n_submitted += 1
        return True

    def pending_actions(self) -> int:
        return len(self._heap)

    # -- time -----------------------------------------------------------------------------------
    def advance(self, t: int) -> None:
        """Apply market events with ``ts <= t`` and actions effective at or before ``t``, in time
        order (events at an action's time come first). The venue clock becomes ``t``."""
        while True:
            a_eff = self._heap[0][0] if self._heap else INF
            self._market_until(min(t, a_eff))
            if a_eff <= t:
                _, _, act = heapq.heappop(self._heap)
                self.clock_ns = max(self.clock_ns, act.eff)
                self._apply_action(act)
                continue
            break
        self.clock_ns = max(self.clock_ns, t)

    def step_target(self, t: int, max_events: int) -> int:
        """A time ``<= t`` that bounds one step of :meth:`advance`: advancing to it applies at
        most about ``max_events`` market events (more only when many events share the last
        timestamp, or the next capture batch starts at that same time) and at least one, if
        any is due by ``t``; never past the end of the current capture batch. The venue's
        loop advances step by step and publishes its clock after each, so the bot sees a
        catch-up move. ``advance(step_target(t, n))`` repeated until the clock reaches ``t``
        applies exactly what ``advance(t)`` does, in the same order."""
        if self.next_event_ts() is None:     # (loads the next capture batch when this one is done)
            return t
        tab, cur = self._table, self._cur
        if int(self._cummax[cur]) > t:
            return t                          # nothing due by t: the clock just moves
        j = min(cur + max(int(max_events), 1), tab.n) - 1
        return min(t, int(self._cummax[j]))

    def flush_actions(self) -> None:
        """Apply every pending action at its effective time without further market events (the
        end of a replay)."""
        while self._heap:
            _, _, act = heapq.heappop(self._heap)
            self.clock_ns = max(self.clock_ns, act.eff)
            self._apply_action(act)

    def take_reports(self) -> list[Report]:
        out, self._reports = self._reports, []
        return out

    @property
    def market_exhausted(self) -> bool:
        return self._exhausted and (self._table is None or self._cur >= self._table.n)

    def next_event_ts(self) -> int | None:
        """The time of the next market event not yet applied (None once the capture is over)."""
        t = self._table
        if t is None or self._cur >= t.n:
            if not self._next_table():
                return None
            t = self._table
        return int(t.cols["ts"][self._cur])

    # -- market ---------------------------------------------------------------------------------
    def _next_table(self) -> bool:
        if self._exhausted:
            return False
        for t in self._src:
            if t.n:
                self._table = t
                self._cur = 0
                self._cummax = np.maximum.accumulate(t.cols["ts"][: t.n])
                if len(self._pre_book) < t.capacity:
                    self._pre_book = np.zeros(t.capacity, np.int64)
                    self._pre_price = np.zeros(t.capacity, np.int64)
                return True
        self._exhausted = True
        self._table = None
        return False

    def _market_until(self, limit: int) -> None:
        while True:
            t = self._table
            if t is None or self._cur >= t.n:
                if not self._next_table():
                    return
                t = self._table
            j = int(np.searchsorted(self._cummax, limit, side="right"))
            if j <= self._cur:
                return
            self._apply_range(t, self._cur, j)
            self._cur = j
            if j < t.n:
                return

    def _raise_capacity(self, c) -> None:
        from pipeline.book import BookCapacityError

        err = int(self.state.ctr[B.C_ERROR])
        at = int(self.state.ctr[B.C_ERROR_EVENT])
        key = {B.ERR_ORDERS_FULL: f"venue max_orders ({self.state.max_orders:,})",
               B.ERR_LEVELS_FULL: f"venue max_levels ({self.state.max_levels:,})"}.get(err, f"error {err}")
        raise BookCapacityError(f"{key} exceeded at event seq {int(c['seq'][at])}: raise it in the venue config")

    def _apply_range(self, t: EventTable, i0: int, i1: int) -> None:
        c = t.cols
        st = self.state
        self.counters["events"] += i1 - i0
        feat = FeatureConf(self._params, self._subs, np.int64(INF))
        if not self._resting:
            done, _ = self.k.apply_events(i1 - i0, book_events(c, i0, i1), st.arrays(), feat, self._fo, self._fk)
            if st.ctr[B.C_ERROR]:
                st.ctr[B.C_ERROR_EVENT] += i0
                self._raise_capacity(c)
            return
        done = apply_annotated(i0, i1, book_events(c), st.arrays(), feat, self._fo, self._fk,
                               book_events(self._scratch.cols), self._pre_book, self._pre_price)
        if st.ctr[B.C_ERROR]:
            self._raise_capacity(c)
        self._match_range(c, i0, done)

    def _refresh_watch(self) -> None:
        if self._watched_dirty:
            self._watched = np.fromiter(self._by_ref.keys(), np.int64, len(self._by_ref))
            self._watched_dirty = False

    def _match_range(self, c, i0: int, i1: int) -> None:
        """Select the events of ``[i0, i1)`` that can touch a resting order (numpy), then handle
        those in order (Python)."""
        self._refresh_watch()
        kind = c["kind"][i0:i1]
        loc = c["locate"][i0:i1].astype(np.int64)
        pb = self._pre_book[i0:i1]
        pp = self._pre_price[i0:i1]
        px = c["price"][i0:i1]
        nsym = len(self._buy_max)
        removes = (kind == _D) | (kind == _X) | (kind == _E) | (kind == _C) | (kind == _U)
        m = removes & np.isin(c["ref"][i0:i1].view(np.int64), self._watched)
        execs = ((kind == _E) | (kind == _C)) & (pb >= 0)
        if execs.any():
            pl = np.where(execs, pb >> 1, 0)
            pl = np.minimum(pl, nsym - 1)
            bid = (pb & 1) == 0
            m |= execs & np.where(bid, pp <= self._buy_max[pl], pp >= self._sell_min[pl])
        adds = (kind == _A) | (kind == _F) | ((kind == _U) & (pb >= 0))
        if adds.any():
            lc = np.minimum(loc, nsym - 1)
            ask_side = np.where(kind == _U, (pb & 1) == 1, c["side"][i0:i1] == ord("S"))
            m |= adds & np.where(ask_side, px <= self._buy_max[lc], px >= self._sell_min[lc])
        idx = np.flatnonzero(m)
        if not len(idx):
            return
        self.counters["relevant_events"] += len(idx)
        ref_col = c["ref"].view(np.int64)
        for j in idx:
            i = i0 + int(j)
            self._on_event(int(c["kind"][i]), int(c["locate"][i]), int(c["side"][i]), int(ref_col[i]),
                           int(c["shares"][i]), int(c["price"][i]), int(c["ts"][i]), int(self._pre_book[i]),
                           int(self._pre_price[i]))
            if not self._resting:
                return

    def _on_event(self, t: int, loc: int, side_b: int, ref: int, shares: int, price: int, ts: int,
                  pre_book: int, pre_price: int) -> None:
        touched: set[str] = set()
        oids = self._by_ref.get(ref)
        if oids and t in (_D, _X, _E, _C, _U):
            for oid in list(oids):
                o = self._resting[oid]
                left = o.ahead.get(ref, 0)
                gone = left if t in (_D, _U) else min(shares, left)
                o.queue_ahead -= gone
                if left - gone <= 0:
                    o.ahead.pop(ref, None)
                    oids.discard(oid)
                else:
                    o.ahead[ref] = left - gone
                touched.add(oid)
            if not oids:
                del self._by_ref[ref]
                self._watched_dirty = True
        if t in (_E, _C) and pre_book >= 0:
            bl, bs = pre_book >> 1, pre_book & 1
            for oid in sorted(self._by_loc.get(bl, ())):
                o = self._resting[oid]
                if o.side != bs or oid in touched:
                    continue
                through = pre_price < o.price if bs == BUY else pre_price > o.price
                if through or (pre_price == o.price and o.queue_ahead <= 0):
                    self._fill(o, min(shares, o.leaves), o.price, ts)
                elif pre_price == o.price:
                    self.counters["out_of_fifo"] += 1
        elif t in (_A, _F, _U):
            if t == _U:
                if pre_book < 0:
                    return
                add_side = pre_book & 1
                loc = pre_book >> 1
            else:
                add_side = BUY if side_b == ord("B") else SELL
            for oid in sorted(self._by_loc.get(loc, ())):
                o = self._resting.get(oid)
                if o is None or o.side == add_side:
                    continue
                if (o.side == BUY and price <= o.price) or (o.side == SELL and price >= o.price):
                    self._fill(o, min(shares, o.leaves), o.price, ts)

    # -- our orders -----------------------------------------------------------------------------
    def locate_of(self, symbol: str) -> int | None:
        loc = self._locates.get(symbol)
        if loc is None:
            try:
                loc = self.state.locate_of(symbol)
            except ValueError:
                return None
            if loc is None or loc == 0 and not symbol:
                return None
            self._locates[symbol] = loc
        return loc

    def _halted(self, loc: int) -> str:
        sym = self.state.sym
        st = int(sym[loc, B.S_TRADING_STATE])
        if st in (ord("H"), ord("P")):
            return "halted" if st == ord("H") else "paused"
        if int(sym[loc, B.S_HALT_OP]) == ord("H"):
            return "operational halt"
        return ""

    def _report(self, o: Order | None, a: Action | None, ts: int, exec_type: str, *, msg: str = "8",
                last_qty: int = 0, last_px: int = 0, text: str = "", reason: int = -1, orig: str = "",
                response_to: str = "", clid: str | None = None, ord_status: str | None = None) -> Report:
        self._n_reports += 1
        if o is not None:
            r = Report(self._n_reports, ts, msg, exec_type, ord_status or o.status, o.order_id,
                       clid if clid is not None else o.clid, orig, o.symbol, o.side, o.qty, o.price, o.tif,
                       last_qty, last_px, o.leaves, o.cum, o.notional, text, reason, response_to)
        else:
            assert a is not None
            r = Report(self._n_reports, ts, msg, exec_type, ord_status or "8", "NONE", a.clid, orig, a.symbol,
                       a.side, a.qty, a.price, a.tif, 0, 0, 0, 0, 0, text, reason, response_to)
        self._reports.append(r)
        return r

    def _fill(self, o: Order, qty: int, px: int, ts: int) -> None:
        if qty <= 0:
            return
        o.cum += qty
        o.notional += qty * px
        o.status = "2" if o.cum >= o.qty else "1"
        self.counters["fills"] += 1
        self.counters["filled_shares"] += qty
        self._report(o, None, ts, "F", last_qty=qty, last_px=px)
        if o.status == "2":
            self._unrest(o)

    def _rest(self, o: Order) -> None:
        book = o.locate * 2 + o.side
        n = level_queue(book, o.price, self.state.lk, self.state.lv, self.state.li, self.state.lj,
                        self.state.oi, self.state.oj, self._qref, self._qsh)
        while n < 0:
            self._qref = np.zeros(len(self._qref) * 4, np.int64)
            self._qsh = np.zeros(len(self._qsh) * 4, np.int64)
            n = level_queue(book, o.price, self.state.lk, self.state.lv, self.state.li, self.state.lj,
                            self.state.oi, self.state.oj, self._qref, self._qsh)
        o.ahead = {int(r): int(s) for r, s in zip(self._qref[:n], self._qsh[:n]) if s > 0}
        o.queue_ahead = sum(o.ahead.values())
        self._resting[o.order_id] = o
        for r in o.ahead:
            self._by_ref.setdefault(r, set()).add(o.order_id)
        self._watched_dirty = True
        self._by_loc.setdefault(o.locate, set()).add(o.order_id)
        self._limits(o.locate)

    def _unrest(self, o: Order) -> None:
        if self._resting.pop(o.order_id, None) is None:
            return
        for r in o.ahead:
            s = self._by_ref.get(r)
            if s is not None:
                s.discard(o.order_id)
                if not s:
                    del self._by_ref[r]
        o.ahead = {}
        o.queue_ahead = 0
        self._watched_dirty = True
        ids = self._by_loc.get(o.locate)
        if ids is not None:
            ids.discard(o.order_id)
            if not ids:
                del self._by_loc[o.locate]
        self._limits(o.locate)

    def _limits(self, loc: int) -> None:
        buys = [self._resting[i].price for i in self._by_loc.get(loc, ()) if self._resting[i].side == BUY]
        sells = [self._resting[i].price for i in self._by_loc.get(loc, ()) if self._resting[i].side == SELL]
        self._buy_max[loc] = max(buys) if buys else -1
        self._sell_min[loc] = min(sells) if sells else INF

    def _enter(self, o: Order, ts: int) -> None:
        """Arrival (or a replace that loses priority): cross, then rest or cancel the rest."""
        opp = 1 - o.side
        book = o.locate * 2 + opp
        n = crossing_levels(book, opp, o.price, self.state.bk, self.state.li, self.state.lj, self._lvls)
        while n < 0:
            self._lvls = np.zeros((len(self._lvls) * 4, 2), np.int64)
            n = crossing_levels(book, opp, o.price, self.state.bk, self.state.li, self.state.lj, self._lvls)
        for k in range(n):
            if o.leaves <= 0:
                break
            self._fill(o, min(o.leaves, int(self._lvls[k, 1])), int(self._lvls[k, 0]), ts)
        if o.leaves <= 0:
            return
        if o.tif == TIF_IOC:
            o.status = "4"
            self._report(o, None, ts, "4", text="IOC: unfilled quantity canceled")
            return
        self._rest(o)

    def _apply_action(self, a: Action) -> None:
        self.counters["actions"] += 1
        ts = int(a.eff if a.eff is not None else self.clock_ns)
        if a.kind == "new":
            self._new(a, ts)
        elif a.kind in ("cancel", "replace"):
            self._cancel_replace(a, ts)
        else:
            raise ValueError(f"unknown action kind {a.kind!r}")

    def _reject(self, a: Action, ts: int, reason: int, text: str) -> None:
        self.counters["rejects"] += 1
        self._report(None, a, ts, "8", text=text, reason=reason)

    def _new(self, a: Action, ts: int) -> None:
        if a.error is not None:
            return self._reject(a, ts, *a.error)
        loc = self.locate_of(a.symbol)
        if loc is None:
            return self._reject(a, ts, REJ_UNKNOWN_SYMBOL, f"unknown symbol {a.symbol!r}")
        h = self._halted(loc)
        if h:
            return self._reject(a, ts, REJ_EXCHANGE_CLOSED, f"{a.symbol} is {h}")
        if not 0 < a.qty <= MAX_QTY:
            return self._reject(a, ts, REJ_BAD_QTY, f"bad quantity {a.qty}")
        if not 0 < a.price <= MAX_PRICE:
            return self._reject(a, ts, REJ_OTHER, f"bad price {format_price(a.price)}")
        if a.side not in (BUY, SELL):
            return self._reject(a, ts, REJ_OTHER, f"bad side {a.side}")
        self._n_orders += 1
        o = Order(f"O{self._n_orders}", a.clid, a.symbol, loc, a.side, a.price, a.qty, a.tif, ts, clids=[a.clid])
        self.orders[o.order_id] = o
        self.by_clid[a.clid] = o
        self._report(o, None, ts, "0")
        self._enter(o, ts)

    def _cxl_reject(self, a: Action, o: Order | None, ts: int, reason: int, text: str) -> None:
        self.counters["cancel_rejects"] += 1
        self._n_reports += 1
        r = Report(self._n_reports, ts, "9", "", o.status if o is not None else "8",
                   o.order_id if o is not None else "NONE", a.clid, a.orig, a.symbol, a.side, a.qty, a.price, a.tif,
                   text=text, reason=reason, response_to="1" if a.kind == "cancel" else "2")
        if o is not None:
            r.leaves, r.cum, r.notional = o.leaves, o.cum, o.notional
        self._reports.append(r)

    def _cancel_replace(self, a: Action, ts: int) -> None:
        o = self.by_clid.get(a.orig)
        if a.error is not None:
            return self._cxl_reject(a, o, ts, *a.error)
        if o is None:
            return self._cxl_reject(a, None, ts, CXL_UNKNOWN, f"unknown order {a.orig!r}")
        if not o.live:
            return self._cxl_reject(a, o, ts, CXL_TOO_LATE,
                                    "too late to cancel: order " + ("filled" if o.status == "2" else "canceled"))
        if (a.symbol and a.symbol != o.symbol) or a.side != o.side:
            return self._cxl_reject(a, o, ts, CXL_OTHER, "symbol or side differs from the order's")
        self.by_clid[a.clid] = o
        if a.kind == "cancel":
            prev = o.clid
            self._unrest(o)
            o.status = "4"
            o.clid = a.clid
            o.clids.append(a.clid)
            self._report(o, None, ts, "4", orig=prev)
            return
        # replace
        if not 0 < a.price <= MAX_PRICE:
            return self._cxl_reject(a, o, ts, CXL_OTHER, f"bad price {format_price(a.price)}")
        if not 0 < a.qty <= MAX_QTY or a.qty <= o.cum:
            return self._cxl_reject(a, o, ts, CXL_OTHER,
                                    f"bad quantity {a.qty} (must exceed the filled quantity {o.cum})")
        h = self._halted(o.locate)
        if h:
            return self._cxl_reject(a, o, ts, CXL_BROKER, f"{o.symbol} is {h}")
        keep = a.price == o.price and a.qty <= o.qty
        prev = o.clid
        o.clid = a.clid
        o.clids.append(a.clid)
        o.qty = a.qty
        o.tif = a.tif
        if keep:
            self._report(o, None, ts, "5", orig=prev)
            return
        self._unrest(o)
        o.price = a.price
        self._report(o, None, ts, "5", orig=prev)
        self._enter(o, ts)

    # -- inspection -----------------------------------------------------------------------------
    def resting(self) -> list[Order]:
        return list(self._resting.values())

    def order(self, clid: str) -> Order | None:
        return self.by_clid.get(clid)
