"""The book stage: preallocated L3/L2 state for the whole market, sized from config."""

from __future__ import annotations

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

    def counters(self) -> dict[str, int]:
        c = self.ctr
        crossed_now = 0
        for loc in np.nonzero(self.bk[0::2, B.B_BEST] >= 0)[0]:
            b, a = self.bk[2 * loc, B.B_BEST], self.bk[2 * loc + 1, B.B_BEST]
            if a >= 0 and self.li[b, B.L_PRICE] >= self.li[a, B.L_PRICE]:
                crossed_now += 1
        return {
            "live_orders": int(c[B.C_LIVE_ORDERS]), "adds": int(c[B.C_ADDS]),
            "executions": int(c[B.C_EXECUTIONS]), "cancels": int(c[B.C_CANCELS]),
            "deletes": int(c[B.C_DELETES]), "replaces": int(c[B.C_REPLACES]), "trades": int(c[B.C_TRADES]),
            "missing_refs": int(c[B.C_MISSING_REF]), "duplicate_refs": int(c[B.C_DUPLICATE_REF]),
            "over_executed": int(c[B.C_OVER_EXECUTED]), "crossed_updates": int(c[B.C_CROSSED]),
            "locked_updates": int(c[B.C_LOCKED]), "crossed_or_locked_books_now": crossed_now,
            "bad_locate": int(c[B.C_BAD_LOCATE]), "bad_side": int(c[B.C_BAD_SIDE]),
            "broken_trades": int(c[B.C_BROKEN_TRADES]), "live_levels": self.max_levels - int(c[B.C_FREE_LEVELS]),
            "max_levels_in_a_book": int(c[B.C_MAX_LEVELS_SEEN]), "feature_rows": int(c[B.C_FEATURES]),
            "events": int(c[B.C_EVENTS]),
        }

    def drops(self, keys: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Events the books dropped, by reason, each with what it means; a drop that the
        configuration causes names the key to raise (``config_key``). ``keys`` renames the
        config keys (``{"book.max_symbols": "--max-symbols"}`` for ``hftbot book``)."""
        keys = keys or {}
        c = self.ctr
        size_key = keys.get("book.max_symbols", "book.max_symbols")
        rows = [
            ("bad_locate", B.C_BAD_LOCATE, f"stock locate above {size_key} = {self.max_symbols:,}", size_key),
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
        err = int(self.state.ctr[B.C_ERROR])
        if err:
            at = int(self.state.ctr[B.C_ERROR_EVENT])
            key = {B.ERR_ORDERS_FULL: f"book.max_orders ({self.state.max_orders:,})",
                   B.ERR_LEVELS_FULL: f"book.max_levels ({self.state.max_levels:,})",
                   B.ERR_FEATURES_FULL: "feature rows per batch"}.get(err, f"error {err}")
            raise BookCapacityError(f"{key} exceeded at event seq {int(c['seq'][at])} (ts {int(c['ts'][at])}); "
                                    f"raise it in the config")
        if done < t.n:
            self.stopped = True  # reached stop_ts
        return FeatureBatch(self.fo, self.fk, int(nf))

    def feature_conf(self) -> FeatureConf:
        """The feature settings the book kernel takes (``params``, ``subs``, ``stop_ts``)."""
        return FeatureConf(self.params, self.subs, self.stop_ts)
