"""The book stage: preallocated L3/L2 state for the whole market, sized from config."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from kernels import book as B
from kernels import features as FT
from kernels.events import EventTable, pack_ascii, unpack_ascii
from kernels.state import BookArrays, BookEvents, FeatureConf


def book_events(cols: dict[str, np.ndarray], lo: int = 0, hi: int | None = None) -> BookEvents:
    """Rows ``lo:hi`` of the event table's columns ``cols`` as the ``BookEvents`` bundle
    ``apply_events`` reads (``ref``, ``new_ref``, ``stock`` viewed as int64)."""
    if lo == 0 and hi is None:  # the whole columns: no slicing (a view each)
        c = cols
    else:
        c = {name: a[lo:hi] for name, a in cols.items() if name in BookEvents._fields}
    return BookEvents(c["kind"], c["side"], c["locate"], c["ts"], c["seq"], c["ref"].view(np.int64),
                      c["new_ref"].view(np.int64), c["shares"], c["price"], c["stock"].view(np.int64), c["aux"],
                      c["alpha"])


class BookCapacityError(RuntimeError):
    """The configured book size was exceeded (never a silent drop)."""


def _pow2_at_least(n: int) -> int:
    return 1 << max(4, int(n - 1).bit_length())


def hash_slots(entries: int) -> int:
    """Slots of the book's two maps (``kernels/book.py``) for ``entries`` live keys: the
    order-reference map (``ok``/``ov``: hash fallback in one half, page directory and pages in
    the other) and the level map (``lk``/``lv``: level hash in one half, book ladders in the
    other). Each hash half stays at load factor <= 0.5 even when every key lands in it."""
    return _pow2_at_least(4 * entries)


#: level-map slots from which the map keeps room for at least LADDERS_RESERVED book ladders
#: (``level_slots``)
LADDERS_FROM_SLOTS = 1 << 20
LADDERS_RESERVED = 1024


def level_slots(max_levels: int) -> int:
    """Slots of the level map (``lk``/``lv``) for ``max_levels`` live levels: ``hash_slots``, and
    for a real-sized book (``hash_slots`` >= LADDERS_FROM_SLOTS, i.e. 131,072 levels and up) at
    least room for LADDERS_RESERVED ladders (8 KiB each; the map's ladder half holds
    ``slots / 2 / 2,048``). A book sized tightly to a day's levels otherwise had too few for its
    deep books: on the 30M deep day (1,000 books, 320k levels), 1.25x the peak levels gave 512
    ladders and 13.3 s of decode + book; 1,024 ladders, 9.3 s (measured 2026-12-06). The level
    hash's half grows with it (load factor lower still); ``lk`` is untouched zeros until used,
    ``lv`` is written at start (-1): 16 MiB for the reserve."""
    h = hash_slots(max_levels)
    if h >= LADDERS_FROM_SLOTS:
        h = max(h, _pow2_at_least(2 * (LADDERS_RESERVED << B.LADDER_BITS)))
    return h


def _rows64(n: int, width: int) -> np.ndarray:
    """int64 [n, 8] zeros whose rows are 64-byte cache lines (the buffer aligned to 64 bytes)."""
    raw = np.zeros(n * 8 + 8, np.int64)
    skip = (-raw.ctypes.data % 64) // 8
    return raw[skip:skip + n * 8].reshape(n, 8)


#: live orders from which the book prefetches the lines of the events ahead (``kernels/book.py``,
#: ``prefetch_ahead``): below it the book fits the caches and the speculative reads only cost
#: instructions (``book.prefetch_live``; 0 = never)
PREFETCH_LIVE = 65_536


class BookState:
    """All book arrays for ``max_symbols`` locates, ``max_orders`` live orders and
    ``max_levels`` live price levels (across all books).

    ``packed=True``: each order's ``oi`` and ``oj`` rows share one 64-byte cache line, and so do
    each level's ``li`` and ``lj`` rows (``oi``/``oj``/``li``/``lj`` are strided views of one
    aligned buffer each: same shapes, dtypes and indexing). For the CPU backend only: CUDA
    copies need contiguous arrays.

    ``prefetch_live``: from this many live orders on, the CPU book prefetches the lines of the
    events ahead (``kernels/book.py``: ``prefetch_ahead``; config ``book.prefetch_live``); 0 never
    (what the CUDA edge gets)."""

    def __init__(self, max_orders: int, max_levels: int, max_symbols: int, packed: bool = False,
                 prefetch_live: int = PREFETCH_LIVE):
        if min(max_orders, max_levels, max_symbols) <= 0:
            raise ValueError("book sizes must be positive")
        if prefetch_live < 0:
            raise ValueError("prefetch_live must be >= 0 (0 = never prefetch)")
        self.max_orders, self.max_levels, self.max_symbols = int(max_orders), int(max_levels), int(max_symbols)
        ho = hash_slots(max_orders)  # the order-reference map: pages + hash (kernels/book.py)
        hl = level_slots(max_levels)  # the level map: level hash + price ladders
        self.packed = bool(packed)
        if packed:
            self._orows = _rows64(max_orders, 8)
            self.oi = self._orows[:, 0:4]
            self.oj = self._orows[:, 4:6].view(np.int32)
        else:
            self.oi = np.zeros((max_orders, 4), np.int64)
            self.oj = np.zeros((max_orders, 4), np.int32)
        self.ofree = np.arange(max_orders - 1, -1, -1, dtype=np.int32)  # pop from the end: slot 0 first
        # ok: zeros stay unmapped until written (the page directory costs memory only where
        # references live); ov all -1 like the GPU's sharded book, whose arrays must be identical
        self.ok = np.zeros(ho, np.int64)
        self.ov = np.full(ho, -1, np.int32)
        if packed:
            self._lrows = _rows64(max_levels, 8)
            self.li = self._lrows[:, 0:2]
            self.lj = self._lrows[:, 2:5].view(np.int32)
        else:
            self.li = np.zeros((max_levels, 2), np.int64)
            self.lj = np.zeros((max_levels, 6), np.int32)
        self.lfree = np.arange(max_levels - 1, -1, -1, dtype=np.int32)
        self.lk = np.zeros(hl, np.int64)
        self.lv = np.full(hl, -1, np.int32)
        self.bk = np.full((2 * (max_symbols + 1), 2), -1, np.int32)
        self.bk[:, B.B_NLEVELS] = 0
        self.sym = np.zeros((max_symbols + 1, B.N_SYM_I), np.int64)
        self.fs = np.zeros((max_symbols + 1, FT.N_FS), np.float64)
        self.ctr = np.zeros(B.N_CTR, np.int64)
        self.ctr[B.C_FREE_ORDERS] = max_orders
        self.ctr[B.C_FREE_LEVELS] = max_levels
        self.ctr[B.C_PREFETCH_LIVE] = prefetch_live

    def arrays(self) -> BookArrays:
        """State in kernel argument order (after the event columns), as a named bundle (a tuple)."""
        return BookArrays(self.oi, self.oj, self.ofree, self.ok, self.ov, self.li, self.lj, self.lfree, self.lk,
                          self.lv, self.bk, self.sym, self.fs, self.ctr)

    # -- inspection (Python side, not the hot path) -------------------------------------------------
    def locate_of(self, stock: str) -> int | None:
        packed = np.array([pack_ascii(stock, 8)], np.uint64).view(np.int64)[0]
        hits = np.nonzero(self.sym[:, B.S_STOCK] == packed)[0]
        return int(hits[0]) if len(hits) else None

    def stock_of(self, locate: int) -> str:
        v = int(np.array([self.sym[locate, B.S_STOCK]], np.int64).view(np.uint64)[0])
        return unpack_ascii(v, 8).rstrip() if v else ""

    def depth(self, k: ModuleType, locate: int, levels: int) -> dict[str, list[dict[str, int]]]:
        out = np.zeros((max(levels, 1), 3), np.int64)
        res = {}
        for sd, name in ((0, "bids"), (1, "asks")):
            n = k.top_levels(locate * 2 + sd, levels, self.bk, self.li, self.lj, out)
            res[name] = [{"price": int(out[j, 0]), "shares": int(out[j, 1]), "orders": int(out[j, 2])}
                         for j in range(n)]
        return res

    def crossed_now(self) -> int:
        """Books whose best bid is at or above their best ask now."""
        crossed_now = 0
        for loc in np.nonzero(self.bk[0::2, B.B_BEST] >= 0)[0]:
            b, a = self.bk[2 * loc, B.B_BEST], self.bk[2 * loc + 1, B.B_BEST]
            if a >= 0 and self.li[b, B.L_PRICE] >= self.li[a, B.L_PRICE]:
                crossed_now += 1
        return crossed_now

    def live_levels(self) -> int:
        return self.max_levels - int(self.ctr[B.C_FREE_LEVELS])

    def counters(self) -> dict[str, int]:
        return counters_of(self.ctr, self.crossed_now(), self.live_levels())

    def drops(self, keys: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Events the books dropped, by reason, each with what it means; a drop that the
        configuration causes names the key to raise (``config_key``). ``keys`` renames the
        config keys (``{"book.max_symbols": "--max-symbols"}`` for ``hftbot book``)."""
        return drops_of(self.ctr, self.max_symbols, keys)


def counters_of(c: np.ndarray, crossed_now: int, live_levels: int) -> dict[str, int]:
    """The book counters ``ctr`` by name (``BookState.counters``)."""
    return {
        "live_orders": int(c[B.C_LIVE_ORDERS]), "adds": int(c[B.C_ADDS]),
        "executions": int(c[B.C_EXECUTIONS]), "cancels": int(c[B.C_CANCELS]),
        "deletes": int(c[B.C_DELETES]), "replaces": int(c[B.C_REPLACES]), "trades": int(c[B.C_TRADES]),
        "missing_refs": int(c[B.C_MISSING_REF]), "duplicate_refs": int(c[B.C_DUPLICATE_REF]),
        "over_executed": int(c[B.C_OVER_EXECUTED]), "crossed_updates": int(c[B.C_CROSSED]),
        "locked_updates": int(c[B.C_LOCKED]), "crossed_or_locked_books_now": crossed_now,
        "bad_locate": int(c[B.C_BAD_LOCATE]), "bad_side": int(c[B.C_BAD_SIDE]),
        "broken_trades": int(c[B.C_BROKEN_TRADES]), "live_levels": int(live_levels),
        "max_levels_in_a_book": int(c[B.C_MAX_LEVELS_SEEN]), "feature_rows": int(c[B.C_FEATURES]),
        "events": int(c[B.C_EVENTS]),
    }


def drops_of(c: np.ndarray, max_symbols: int, keys: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The drops counted in ``ctr`` (``BookState.drops``)."""
    keys = keys or {}
    size_key = keys.get("book.max_symbols", "book.max_symbols")
    rows = [
        ("bad_locate", B.C_BAD_LOCATE, f"stock locate above {size_key} = {max_symbols:,}", size_key),
        ("bad_side", B.C_BAD_SIDE, "add with a side other than B or S", None),
        ("missing_refs", B.C_MISSING_REF, "update of an order not in the book (the capture starts "
         "mid-session, or its add was lost)", None),
        ("duplicate_refs", B.C_DUPLICATE_REF, "add of an order reference already live", None),
    ]
    out = []
    for reason, slot, what, key in rows:
        if c[slot]:
            d: dict[str, Any] = {"reason": reason, "count": int(c[slot]), "what": what}
            if key:
                d["config_key"] = key
            out.append(d)
    return out


def capacity_error(state: BookState, cols: dict[str, np.ndarray], at: int) -> BookCapacityError:
    """The error for ``state.ctr[C_ERROR]``, at row ``at`` of the event table ``cols``."""
    err = int(state.ctr[B.C_ERROR])
    key = {B.ERR_ORDERS_FULL: f"book.max_orders ({state.max_orders:,})",
           B.ERR_LEVELS_FULL: f"book.max_levels ({state.max_levels:,})",
           B.ERR_FEATURES_FULL: "feature rows per batch"}.get(err, f"error {err}")
    return BookCapacityError(f"{key} exceeded at event seq {int(cols['seq'][at])} (ts {int(cols['ts'][at])}); "
                             f"raise it in the config")


@dataclass
class FeatureBatch:
    values: np.ndarray  # float64 [n, N_FEATURES]
    keys: np.ndarray    # int64 [n, N_KEYS]
    n: int


class BookStage:
    """Event table -> books (all symbols) and feature rows (subscribed symbols). Backends: cpu, cuda."""

    accepts = EventTable
    produces = FeatureBatch
    backends = ("cpu", "cuda")

    def __init__(self, backend: ModuleType, state: BookState, capacity: int, symbols=(), *,
                 tau_flow_ns: float = 1e9, tau_rv_ns: float = 60e9, top_n: int = 5, stop_ts: int = 2**62):
        self.k = backend
        self.state = state
        self.fo = np.zeros((capacity, FT.N_FEATURES), np.float64)
        self.fk = np.zeros((capacity, FT.N_KEYS), np.int64)
        self._table: EventTable | None = None  # the table of the last call and its BookEvents
        self._ev: BookEvents | None = None
        self.params = np.zeros(FT.N_PARAMS, np.float64)
        self.params[FT.P_TAU_FLOW] = tau_flow_ns
        self.params[FT.P_TAU_RV] = tau_rv_ns
        self.params[FT.P_TOP_N] = top_n
        self.stop_ts = int(stop_ts)
        self.stopped = False
        if symbols == "*" or list(symbols) == ["*"]:
            self.subs = np.array([-1], np.int64)
        else:
            self.subs = np.array([pack_ascii(s, 8) for s in symbols] or [0], np.uint64).view(np.int64)
            if not list(symbols):
                self.subs = np.zeros(0, np.int64)

    def __call__(self, t: EventTable) -> FeatureBatch:
        c = t.cols
        n = t.n
        if t is not self._table:  # an event table's columns never change: one bundle per table
            self._table, self._ev = t, book_events(c)
        done, nf = self.k.apply_events(n, self._ev, self.state.arrays(), self.feature_conf(), self.fo, self.fk)
        return self.applied(t, done, nf)

    def applied(self, t: EventTable, done: int, nf: int) -> FeatureBatch:
        """After ``apply_events`` ran on ``t`` (here, or in a fused step): ``BookCapacityError``
        naming the key to raise if the books filled; the feature rows written."""
        c = t.cols
        if self.state.ctr[B.C_ERROR]:
            raise capacity_error(self.state, c, int(self.state.ctr[B.C_ERROR_EVENT]))
        if done < t.n:
            self.stopped = True  # reached stop_ts
        return FeatureBatch(self.fo, self.fk, int(nf))

    def feature_conf(self) -> FeatureConf:
        """The feature settings the book kernel takes (``params``, ``subs``, ``stop_ts``)."""
        return FeatureConf(self.params, self.subs, self.stop_ts)


# --- the books split across threads ---------------------------------------------------------------
#: counters that are a maximum over books (the others add up over shards)
_MAX_COUNTERS = (B.C_MAX_LEVELS_SEEN, B.C_PREFETCH_LIVE)


class BookShards:
    """The books split by symbol across ``shards`` CPU threads: shard ``p`` keeps the books of
    the locates with ``locate % shards == p`` in a ``BookState`` of its own (``kernels/book.py``:
    ``shard_rows``), so the threads share no slot and no line. The same questions as a
    ``BookState`` (``depth``, ``counters``, ``drops``, ``locate_of``), answered from the shard
    that holds the symbol or summed over shards.

    Each shard is sized like the whole (``max_orders`` / ``max_levels``): one busy symbol may
    hold most of a day's orders, and a shard sized to a share of it would fail where one book
    state would not. The zero-filled arrays cost memory only where written; the free stacks
    and the ``-1``-filled maps (``ov``, ``lv``: ~30 bytes an order slot) are written at start,
    once per shard, the shards in parallel (numpy fills without the GIL: two 2.1M-order
    shards took 0.46 s one after the other on the 2-vCPU VM)."""

    def __init__(self, shards: int, max_orders: int, max_levels: int, max_symbols: int, packed: bool = False,
                 prefetch_live: int = PREFETCH_LIVE):
        if int(shards) < 1:
            raise ValueError("shards must be >= 1")
        self.n = int(shards)
        self.max_orders, self.max_levels, self.max_symbols = int(max_orders), int(max_levels), int(max_symbols)
        with ThreadPoolExecutor(max_workers=self.n) as pool:
            self.shards = list(pool.map(lambda _: BookState(max_orders, max_levels, max_symbols, packed=packed,
                                                            prefetch_live=prefetch_live), range(self.n)))
        #: the shard of each locate (``shard_rows``)
        self.owner = (np.arange(1 << 16) % self.n).astype(np.int32)  # (int8 would wrap past 127 shards)

    def of(self, locate: int) -> BookState:
        """The shard holding ``locate``'s books."""
        return self.shards[int(self.owner[int(locate)])]

    def locate_of(self, stock: str) -> int | None:
        for st in self.shards:
            loc = st.locate_of(stock)
            if loc is not None:
                return loc
        return None

    def stock_of(self, locate: int) -> str:
        return self.of(locate).stock_of(locate)

    def depth(self, k: ModuleType, locate: int, levels: int) -> dict[str, list[dict[str, int]]]:
        return self.of(locate).depth(k, locate, levels)

    @property
    def ctr(self) -> np.ndarray:
        """The shards' counters combined (a copy): sums, and maxima for ``_MAX_COUNTERS``."""
        c = np.sum([st.ctr for st in self.shards], axis=0)
        for slot in _MAX_COUNTERS:
            c[slot] = max(int(st.ctr[slot]) for st in self.shards)
        return c

    def counters(self) -> dict[str, int]:
        return counters_of(self.ctr, sum(st.crossed_now() for st in self.shards),
                           sum(st.live_levels() for st in self.shards))

    def drops(self, keys: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return drops_of(self.ctr, self.max_symbols, keys)


class _Ticket:
    """One event table handed to every shard thread: done when each has applied its events."""

    def __init__(self, t: EventTable, n: int, shards: int):
        self.t, self.n = t, n
        self.left = shards
        self.error: BookCapacityError | None = None
        self.crash: BaseException | None = None
        self.cv = threading.Condition()

    def finished(self, error: BookCapacityError | None = None, crash: BaseException | None = None) -> None:
        with self.cv:
            self.error = self.error or error
            self.crash = self.crash or crash
            self.left -= 1
            if self.left == 0:
                self.cv.notify_all()

    def wait(self) -> None:
        with self.cv:
            while self.left:
                self.cv.wait()


class ShardedBookStage:
    """Event table -> ``BookShards``, one thread a shard: each picks its shard's rows of a
    table (``shard_rows``) and applies them in place (``apply_events(..., sel=rows)``); both
    release the GIL, so the shards run in parallel. ``submit`` hands a table to every shard and returns at once,
    ``result`` waits for the oldest one submitted; a call does both. ``replay`` decodes batches
    into a ring of event tables while the shards apply the earlier ones, each shard at its own
    pace (a table is decoded into again once every shard has applied it). ``close`` stops the
    threads.

    A stop time (``stop_ts``) cuts each table at its first event after it, before the shards see
    it, so the shards stop exactly where one book state stops.

    Measured (2026-12-07, 2-vCPU EPYC VM, deep 10M day, ~1M live orders at the close, the
    books alone, per-thread clocks): one state 2.5-3.1 s, two shards 1.6-2.1 s, of which 0.19-0.22
    s went to copying each shard's events into a table of its own (the first version: now the
    books read them in place); on the 30M day, with every batch waited for by both shards (the
    first version), the faster shard idled ~10% of the time at the batch ends: hence the ring. The bench has the whole-process figures (``bench/book.py``). Book only: feature
    rows are written in event order by the one-state ``BookStage`` (subscribing symbols here is
    refused)."""

    accepts = EventTable
    produces = FeatureBatch
    backends = ("cpu",)

    def __init__(self, backend: ModuleType, books: BookShards, capacity: int, symbols=(), *, stop_ts: int = 2**62):
        if symbols == "*" or list(symbols):
            raise ValueError("feature rows need the books in one state (one shard): subscribe symbols with "
                             "BookStage, or shard with no symbols subscribed")
        import queue

        self.k = backend
        self.books = books
        self.stop_ts = int(stop_ts)
        self.stopped = False
        self._fo = np.zeros((1, FT.N_FEATURES), np.float64)  # no feature rows: one unused row each
        self._fk = np.zeros((1, FT.N_KEYS), np.int64)
        self._conf = FeatureConf(np.zeros(FT.N_PARAMS, np.float64), np.zeros(0, np.int64), self.stop_ts)
        # each shard's rows of a table (one spare: shard_rows)
        self._rows = [np.zeros(capacity + 1, np.int64) for _ in range(books.n)]
        self._pending: list[_Ticket] = []
        self._queues = [queue.SimpleQueue() for _ in range(books.n)]
        self._threads = [threading.Thread(target=self._serve, args=(p,), name=f"hftbot-book-{p}", daemon=True)
                         for p in range(books.n)]
        for th in self._threads:
            th.start()
        self._open = True

    def _serve(self, p: int) -> None:
        """Shard ``p``'s thread: apply each table handed to it, in order, until ``None``."""
        k, rows, st, owner = self.k, self._rows[p], self.books.shards[p], self.books.owner
        arrays = st.arrays()
        while True:
            job = self._queues[p].get()
            if job is None:
                return
            ticket, ev = job
            try:
                if st.ctr[B.C_ERROR]:  # full since an earlier table: nothing more is applied
                    ticket.finished()
                    continue
                m = k.shard_rows(ticket.n, ev.locate, p, owner, rows)
                k.apply_events(m, ev, arrays, self._conf, self._fo, self._fk, rows)
                err = None
                if st.ctr[B.C_ERROR]:
                    err = capacity_error(st, ticket.t.cols, int(st.ctr[B.C_ERROR_EVENT]))
                ticket.finished(error=err)
            except BaseException as exc:  # noqa: BLE001 (handed to the caller by result())
                ticket.finished(crash=exc)

    def submit(self, t: EventTable) -> None:
        """Hand ``t`` to every shard; ``t`` must not change until its ``result`` was taken.
        Nothing after the stop time goes to the shards (``stopped`` says so)."""
        if not self._open:
            raise RuntimeError("the stage is closed")
        n = t.n
        if self.stop_ts < 2**62 and n:
            past = np.flatnonzero(t.cols["ts"][:n] > self.stop_ts)
            if past.size:
                n = int(past[0])
                self.stopped = True
        ticket = _Ticket(t, n, self.books.n)
        ev = book_events(t.cols)
        self._pending.append(ticket)
        for q in self._queues:
            q.put((ticket, ev))

    def result(self) -> FeatureBatch:
        """Wait for the oldest table submitted; ``BookCapacityError`` if a shard filled (at the
        event that filled it)."""
        if not self._pending:
            raise RuntimeError("no table was submitted")
        ticket = self._pending.pop(0)
        ticket.wait()
        if ticket.crash is not None:
            raise ticket.crash
        if ticket.error is not None:
            raise ticket.error
        return FeatureBatch(self._fo, self._fk, 0)

    def __call__(self, t: EventTable) -> FeatureBatch:
        if self._pending:
            raise RuntimeError("the previous table's result was not taken")
        self.submit(t)
        return self.result()

    def replay(self, batches, decoders) -> None:
        """Decode and apply every message batch of ``batches``. ``decoders`` (two or more
        ``DecodeStage`` objects: a ring of event tables): batch ``i`` is decoded into
        ``decoders[i % len(decoders)]`` here while the shards apply the batches before it, so
        a shard may run up to ``len(decoders) - 1`` tables ahead of another. Stops after the
        batch that reaches the stop time."""
        ring = len(decoders)
        if ring < 2:
            raise ValueError("replay needs at least two decoders (event tables)")
        try:
            for i, batch in enumerate(batches):
                if len(self._pending) == ring:
                    self.result()          # the table decoded next (batch i - ring's) is free again
                t = decoders[i % ring](batch)
                self.submit(t)
                if self.stopped:
                    break
            while self._pending:
                self.result()
        finally:
            for tk in self._pending:  # an error: let the shards finish what they hold
                tk.wait()
            self._pending.clear()

    def close(self) -> None:
        if self._open:
            self._open = False
            for q in self._queues:
                q.put(None)
            for th in self._threads:
                th.join()

    def __enter__(self) -> "ShardedBookStage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

