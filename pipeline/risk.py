"""The risk stage: pre-trade checks, kill switch, stale-data guard, accounting, auto-hedge.

``RiskStage`` owns the preallocated risk state (``RiskState``), builds the limits arrays from its
config sub-tree (``risk``, schema ``pipeline.config.RiskConf``), and calls the kernels of the
chosen backend (``kernels/risk.py`` through ``kernels.cpu`` / ``kernels.gpu``). It reads market
state from the book stage's arrays (``BookState.bk``/``li``/``sym``) and keeps the feed status
from the event table (``on_events``, after the book applied the batch).

Flow per batch (the run loop calls these; the strategy that makes intents is a later stage)::

    books(events); risk.on_events(events)       # gaps, silence, symbols seen
    risk.poll()                                  # kill file / signal: cancels for every order
    d = risk.check(intents)                      # decisions + orders to send
    orders = risk.on_exec(execution_events)     # fills, acks -> positions, PnL, hedges

Kill switch: ``kill()`` (method), SIGUSR1 (``install_signal_handler``), a kill file
(``risk.kill.file``, checked by ``poll()`` between batches; in a run, ``pipeline/control.py``
also watches it and the signal from a thread and calls ``request_kill`` mid-batch), and
automatically the loss and
drawdown limits. It is latched: it stops every new order at once and emits a cancel for every
working order; only ``reset_kill()`` (a person) re-arms trading.

Money in the config is whole dollars; in the kernels it is Price(4) x shares (x 10,000).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from kernels import intents as IN
from kernels import risk as R
from kernels.events import EventTable, pack_ascii, unpack_ascii
from kernels.state import BookRefs, RiskArrays, RiskTables

DOLLAR = 10_000  # Price(4) x shares per dollar


class RiskCapacityError(RuntimeError):
    """A preallocated risk table ran out (never a silent drop)."""


def _pow2_at_least(n: int) -> int:
    return 1 << max(4, int(n - 1).bit_length())


def pack_stock(name: str) -> int:
    """A symbol as the int64 the book stores in ``sym[locate, S_STOCK]``."""
    return int(np.array([pack_ascii(name, 8)], np.uint64).view(np.int64)[0])


def _conf(conf: Any) -> DictConfig:
    return conf if isinstance(conf, DictConfig) else OmegaConf.structured(conf)


def build_limits(conf: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lim, ovk, ovl)`` from the ``risk`` config sub-tree: global limits and settings, the
    packed symbols with their own limits (overrides and the restricted list), and their rows of
    per-symbol limits with the defaults as the last row. Validates first."""
    from pipeline.config import validate_risk

    c = _conf(conf)
    validate_risk(c)
    lm, th, stl, hd = c.limits, c.throttle, c.stale, c.hedge
    lim = np.zeros(R.NL, np.int64)
    lim[R.L_MAX_GROSS] = lm.max_gross * DOLLAR
    lim[R.L_MAX_NET] = lm.max_net * DOLLAR
    lim[R.L_MAX_CREDIT] = lm.max_credit * DOLLAR
    lim[R.L_MAX_LOSS] = lm.max_loss * DOLLAR
    lim[R.L_MAX_DRAWDOWN] = lm.max_drawdown * DOLLAR
    lim[R.L_REF_MODE] = R.REF_LAST if c.reference == "last" else R.REF_MID
    lim[R.L_SILENCE_NS] = stl.silence_ns
    lim[R.L_BLOCK_LOCKED] = int(bool(stl.block_locked))
    lim[R.L_GAP_RESYNC_NS] = stl.gap_resync_ns
    lim[R.L_DUP_WINDOW_NS] = c.duplicate_window_ns
    lim[R.L_COD] = int(bool(c.kill.cancel_on_disconnect))
    for kind, limit, interval in ((R.TH_SUBMIT, th.max_submits, th.interval_ns),
                                  (R.TH_MODIFY, th.max_modifies, th.interval_ns),
                                  (R.TH_CANCEL, th.max_cancels, th.interval_ns),
                                  (R.TH_EXEC, th.max_executions, th.exec_interval_ns)):
        lim[R.L_THR_LIMIT + kind] = limit
        lim[R.L_THR_INTERVAL + kind] = interval
    lim[R.L_HEDGE_ON] = int(bool(hd.enabled))
    lim[R.L_HEDGE_STOCK] = pack_stock(hd.symbol) if hd.symbol else 0
    lim[R.L_HEDGE_BETA_BP] = hd.beta_bps
    lim[R.L_HEDGE_THRESHOLD] = hd.threshold * DOLLAR
    lim[R.L_HEDGE_TARGET] = hd.target * DOLLAR
    lim[R.L_HEDGE_STRATEGY] = hd.strategy_id

    default = np.zeros(R.NLS, np.int64)
    default[R.LS_MAX_QTY] = lm.max_order_qty
    default[R.LS_MAX_NOTIONAL] = lm.max_order_notional * DOLLAR
    default[R.LS_MAX_POS] = lm.max_position
    default[R.LS_COLLAR_BPS] = lm.collar_bps
    rows: dict[str, np.ndarray] = {}
    for o in c.symbols:
        row = rows.setdefault(str(o.symbol), default.copy())
        for key, col, scale in (("max_order_qty", R.LS_MAX_QTY, 1),
                                ("max_order_notional", R.LS_MAX_NOTIONAL, DOLLAR),
                                ("max_position", R.LS_MAX_POS, 1), ("collar_bps", R.LS_COLLAR_BPS, 1)):
            if o.get(key) is not None:
                row[col] = o[key] * scale
    for name in c.restricted:
        rows.setdefault(str(name), default.copy())[R.LS_RESTRICTED] = 1
    names = sorted(rows)
    # at least one entry (-1 matches no stock) so no table is empty on any backend
    ovk = np.array([pack_stock(n) for n in names] or [-1], np.int64)
    ovl = np.zeros((len(ovk) + 1, R.NLS), np.int64)
    for i, n in enumerate(names):
        ovl[i] = rows[n]
    ovl[len(names):] = default
    return lim, ovk, ovl


class RiskState:
    """Every risk array, preallocated: ``rows`` symbol rows (the book's ``sym`` rows),
    ``max_sessions`` feed sessions, ``max_open_orders`` live orders, ``max_strategies``
    strategies, rate rings of ``ring`` slots."""

    def __init__(self, rows: int, max_sessions: int, max_open_orders: int, max_strategies: int, ring: int,
                 id_base: int = 1 << 62):
        if min(rows, max_sessions, max_open_orders, max_strategies, ring) <= 0:
            raise ValueError("risk state sizes must be positive")
        self.max_open_orders = int(max_open_orders)
        self.g = np.zeros(R.NG, np.int64)
        self.g[R.G_FREE] = max_open_orders
        self.g[R.G_NEXT_ID] = id_base
        self.g[R.G_HEDGE_LOC] = -1
        self.ls = np.zeros((rows, R.NLS), np.int64)
        self.ps = np.zeros((rows, R.NPS), np.int64)
        self.ps[:, R.PS_HEAD] = -1
        self.ps[:, R.PS_SESS] = -1
        self.ps[:, R.PS_DUP_STRAT] = -1
        self.hs = np.zeros((max_sessions, R.NHS), np.int64)
        self.ro = np.zeros((max_open_orders, R.NRO), np.int64)
        self.ro[:, R.RO_LINK] = -1
        self.oh = np.zeros((_pow2_at_least(2 * max_open_orders), 2), np.int64)  # (client order id, slot)
        self.oh[:, 1] = -1
        self.ofree = np.arange(max_open_orders - 1, -1, -1, dtype=np.int32)
        self.st = np.zeros((max_strategies, R.NST), np.int64)
        self.rt = np.full((max_strategies, R.N_TH, ring), R.NEVER, np.int64)
        self.rc = np.zeros(IN.N_REASONS, np.int64)

    def live_orders(self) -> np.ndarray:
        """Rows of the live orders (a copy), ``ro`` columns."""
        return self.ro[self.ro[:, R.RO_STATE] != 0].copy()


@dataclass
class RiskDecisions:
    """One ``check`` call: a decision row per intent and the orders to send (accepted intents,
    plus any cancels the kill switch emitted); ``decisions[k, D_OUT]`` indexes ``orders``."""

    decisions: np.ndarray  # int64 [n, ND]
    orders: np.ndarray     # int64 [m, NI]

    @property
    def accepted(self) -> np.ndarray:
        return self.decisions[:, IN.D_ACCEPT] == 1

    @property
    def reasons(self) -> np.ndarray:
        return self.decisions[:, IN.D_REASON]


class RiskStage:
    """Order intents -> decisions and orders out; execution events -> positions, PnL, hedges."""

    accepts = ("intents int64[n, NI]", "execution events int64[n, NE]", EventTable)
    produces = RiskDecisions
    backends = ("cpu", "cuda")

    def __init__(self, backend: ModuleType, conf: Any, book, *, max_sessions: int = 64):
        c = _conf(conf)
        self.k = backend
        self.conf = c
        self.book = book
        self.lim, self.ovk, self.ovl = build_limits(c)
        th = c.throttle
        ring = max(1, th.max_submits, th.max_modifies, th.max_cancels, th.max_executions)
        self.batch_rows = int(c.batch_rows)
        self.state = RiskState(book.sym.shape[0], max_sessions, c.max_open_orders, c.max_strategies, ring)
        self.out = np.zeros((c.max_open_orders + 2 * self.batch_rows + 16, IN.NI), np.int64)
        self.res = np.zeros((self.batch_rows, IN.ND), np.int64)
        # the same absolute path the run's watcher and `hftbot kill` use (relative: from the
        # repository root, never from the working directory)
        from pipeline.control import resolve_kill_file

        kf = resolve_kill_file(c.kill.file)
        self.kill_file = str(kf) if kf is not None else ""
        self._signalled = False
        self._old_handler: Any = None
        self._signum: int | None = None
        #: risk.kill.signal: the run loop calls install_signal_handler() (a library does not take
        #: signals by itself: tests and tools build stages too)
        self.wants_signal = bool(c.kill.signal)

    @classmethod
    def from_config(cls, backend: ModuleType, cfg: DictConfig, book) -> "RiskStage":
        """From the whole run config: the ``risk`` sub-tree, sized by ``feed.max_sessions``."""
        return cls(backend, cfg.risk, book, max_sessions=int(cfg.feed.max_sessions))

    # -- kernels ------------------------------------------------------------------------------------
    def tables(self) -> tuple[RiskTables, BookRefs]:
        """What ``check_intents`` and ``apply_exec`` take: the smaller bundles (RiskTables, BookRefs
        rather than RiskArrays, BookArrays), as ``tick_batch`` passes them: a compiled call passes
        every array of a bundle field by field."""
        s, b = self.state, self.book
        return (RiskTables(s.g, self.lim, s.ls, s.ps, s.hs, s.ro, s.oh, s.ofree, s.st, s.rt, s.rc),
                BookRefs(b.bk, b.li, b.sym))

    def _book(self) -> tuple[np.ndarray, ...]:
        return (self.book.bk, self.book.li, self.book.sym)

    def _check_error(self, what: str) -> None:
        g = self.state.g
        if g[R.G_ERROR]:
            g[R.G_ERROR] = 0
            raise RiskCapacityError(f"risk: the orders-out table ({self.out.shape[0]:,} rows) filled during "
                                    f"{what}; raise risk.batch_rows or risk.max_open_orders")

    def _orders(self) -> np.ndarray:
        return self.out[: int(self.state.g[R.G_OUT_N])].copy()

    def on_events(self, table: EventTable) -> int:
        """Feed status from a batch of the event table (after the book applied it). Returns the
        MoldUDP64 gaps found."""
        c = table.cols
        s = self.state
        return int(self.k.feed_health(table.n, c["sess"], c["seq"], c["locate"], c["ts"], s.g, self.lim, s.ls,
                                      s.ps, s.hs, self.ovk, self.ovl, self.book.sym))

    def check(self, intents: np.ndarray, n: int | None = None) -> RiskDecisions:
        """Check ``n`` intents (int64 ``[n, NI]``, ``kernels/intents.py``) in order."""
        intents = np.ascontiguousarray(intents, dtype=np.int64).reshape(-1, IN.NI)
        n = intents.shape[0] if n is None else int(n)
        decisions = np.zeros((n, IN.ND), np.int64)
        orders = []
        base = 0
        risk, book = self.tables()
        for lo in range(0, max(n, 1), self.batch_rows):
            m = min(self.batch_rows, n - lo)
            if m <= 0:
                break
            self.state.g[R.G_OUT_N] = 0
            done = self.k.check_intents(m, intents[lo:lo + m], self.res, self.out, risk, book)
            self._check_error("check")
            d = self.res[:done].copy()
            d[:, IN.D_OUT] = np.where(d[:, IN.D_OUT] >= 0, d[:, IN.D_OUT] + base, -1)
            decisions[lo:lo + done] = d
            o = self._orders()
            orders.append(o)
            base += len(o)
        return RiskDecisions(decisions, np.concatenate(orders) if orders else np.zeros((0, IN.NI), np.int64))

    def on_exec(self, events: np.ndarray, n: int | None = None) -> np.ndarray:
        """Apply execution events (int64 ``[n, NE]``); returns the orders risk made (hedges,
        cancels) to send."""
        events = np.ascontiguousarray(events, dtype=np.int64).reshape(-1, IN.NE)
        n = events.shape[0] if n is None else int(n)
        orders = []
        risk, book = self.tables()
        for lo in range(0, n, self.batch_rows):
            m = min(self.batch_rows, n - lo)
            self.state.g[R.G_OUT_N] = 0
            self.k.apply_exec(m, events[lo:lo + m], self.out, risk, book)
            self._check_error("execution events")
            orders.append(self._orders())
        return np.concatenate(orders) if orders else np.zeros((0, IN.NI), np.int64)

    def mark_to_market(self, now: int | None = None) -> np.ndarray:
        """Re-mark every symbol with a position or open orders; returns kill cancels if the loss
        or drawdown limit engaged the kill switch."""
        s = self.state
        s.g[R.G_OUT_N] = 0
        self.k.mark_to_market(self._now(now), self.out, s.g, self.lim, s.ps, s.ro, *self._book())
        self._check_error("mark to market")
        return self._orders()

    def warm(self) -> None:
        """Compile (or load from numba's cache) every risk kernel on empty inputs, before anything
        connects: the first order, the first fill or the kill switch must never wait for the
        compiler. Nothing in the state changes (the kill switch and mark-to-market run on scratch
        copies)."""
        s = self.state
        none_i = np.zeros((0, IN.NI), np.int64)
        none_e = np.zeros((0, IN.NE), np.int64)
        risk, book = self.tables()
        self.k.check_intents(0, none_i, self.res, self.out, risk, book)
        self.k.apply_exec(0, none_e, self.out, risk, book)
        z = np.zeros(0, np.int64)
        self.k.feed_health(0, z.astype(np.uint16), z.astype(np.uint64), z.astype(np.uint16), z, s.g.copy(), self.lim,
                           s.ls, s.ps, s.hs, self.ovk, self.ovl, self.book.sym)
        g, ps, ro = s.g.copy(), np.zeros((1, R.NPS), np.int64), np.zeros((1, R.NRO), np.int64)
        self.k.mark_to_market(0, self.out.copy(), g, self.lim, ps, ro, *self._book())
        self.k.kill_switch(int(R.KILL_MANUAL), 0, self.out.copy(), s.g.copy(), ro)

    # -- kill switch --------------------------------------------------------------------------------
    def request_kill(self, reason: int) -> None:
        """Engage the kill switch from any thread or a signal handler: one write to the state the
        compiled check reads before every intent (new orders stop at once, also in the middle of
        a batch). The cancels for working orders go out at the next ``poll()``."""
        if self.state.g[R.G_KILL] == 0:
            self.state.g[R.G_KILL] = int(reason)

    def cancel_all(self, now: int | None = None) -> np.ndarray:
        """A clean stop: cancel every working order (the kill switch's cancels, reason manual,
        unless it is already engaged). Returns the cancels to send."""
        if self.state.g[R.G_KILL] != 0 and self.state.g[R.G_KILL_DONE] != 0:
            return np.zeros((0, IN.NI), np.int64)
        return self.kill(int(self.state.g[R.G_KILL]) or R.KILL_MANUAL, now)

    def _now(self, now: int | None) -> int:
        return int(self.state.hs[:, R.HS_LAST_TS].max()) if now is None else int(now)

    def kill(self, reason: int = R.KILL_MANUAL, now: int | None = None) -> np.ndarray:
        """Engage the kill switch: no new order is accepted from now on, and a cancel is emitted
        for every working order (returned: send them)."""
        s = self.state
        s.g[R.G_OUT_N] = 0
        self.k.kill_switch(int(reason), self._now(now), self.out, s.g, s.ro)
        self._check_error("kill switch")
        return self._orders()

    @property
    def killed(self) -> bool:
        return bool(self.state.g[R.G_KILL])

    @property
    def kill_reason(self) -> str:
        return R.KILL_NAMES.get(int(self.state.g[R.G_KILL]), str(int(self.state.g[R.G_KILL])))

    def reset_kill(self) -> None:
        """Re-arm trading after a kill (a person's decision; the loss and drawdown references
        restart from the current PnL)."""
        g = self.state.g
        g[R.G_KILL] = 0
        g[R.G_KILL_DONE] = 0
        g[R.G_PEAK] = g[R.G_RPNL] + g[R.G_UPNL]
        self._signalled = False

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        # takes effect at once: the next kernel call sees it, rejects everything, emits cancels
        if self.state.g[R.G_KILL] == 0:
            self.state.g[R.G_KILL] = R.KILL_SIGNAL
        self._signalled = True

    def install_signal_handler(self, signum: int = signal.SIGUSR1) -> None:
        """Kill on ``signum`` (SIGUSR1: ``hftbot kill --pid PID``). Main thread only."""
        self._old_handler = signal.signal(signum, self._on_signal)
        self._signum = signum

    def remove_signal_handler(self) -> None:
        if self._signum is not None:
            old = self._old_handler if self._old_handler is not None else signal.SIG_DFL
            signal.signal(self._signum, old)
            self._signum = None

    def poll(self, now: int | None = None) -> np.ndarray:
        """Between batches: the kill file and a pending signal. Returns the kill cancels to send
        (empty when nothing happened or they were already emitted)."""
        g = self.state.g
        if self.kill_file and g[R.G_KILL] == 0 and os.path.exists(self.kill_file):
            return self.kill(R.KILL_FILE, now)
        if g[R.G_KILL] != 0 and g[R.G_KILL_DONE] == 0:
            return self.kill(int(g[R.G_KILL]), now)
        return np.zeros((0, IN.NI), np.int64)

    # -- other controls -----------------------------------------------------------------------------
    def reenable(self, strategy: int) -> None:
        """Re-enable a strategy the repeated-execution throttle disabled (a person's decision)."""
        self.state.st[strategy, R.ST_DISABLED] = 0
        self.state.rt[strategy, R.TH_EXEC, :] = R.NEVER

    def disabled_strategies(self) -> list[int]:
        return [int(s) for s in np.nonzero(self.state.st[:, R.ST_DISABLED])[0]]

    def recover(self, session: int | None = None) -> None:
        """A gap was recovered (retransmission or snapshot): the session's symbols are sound
        again. ``None``: every session."""
        if session is None:
            self.state.hs[:, R.HS_GAP_OPEN] = 0
        else:
            self.state.hs[session, R.HS_GAP_OPEN] = 0

    # -- inspection (Python side) -------------------------------------------------------------------
    def position(self, locate: int) -> dict[str, int]:
        p = self.state.ps[locate]
        return {"position": int(p[R.PS_POS]), "cost": int(p[R.PS_COST]), "open_buy": int(p[R.PS_OPEN_BUY]),
                "open_sell": int(p[R.PS_OPEN_SELL]), "mark": int(p[R.PS_MARK]), "realised": int(p[R.PS_RPNL]),
                "unrealised": int(p[R.PS_C_UPNL]), "bought": int(p[R.PS_BOUGHT]), "sold": int(p[R.PS_SOLD]),
                "fills": int(p[R.PS_FILLS])}

    def order(self, client_id: int) -> dict[str, int] | None:
        x = R.id_find(self.state.oh, np.int64(client_id))
        if x < 0:
            return None
        r = self.state.ro[x]
        cols = (("id", R.RO_ID), ("locate", R.RO_LOC), ("side", R.RO_SIDE), ("price", R.RO_PRICE),
                ("qty", R.RO_QTY), ("leaves", R.RO_LEAVES), ("cum", R.RO_CUM), ("state", R.RO_STATE),
                ("strategy", R.RO_STRAT), ("origin", R.RO_ORIGIN), ("link", R.RO_LINK))
        return {name: int(r[c]) for name, c in cols}

    def rejections(self) -> dict[str, int]:
        """Rejections by reason name (every intent and hedge checked so far)."""
        rc = self.state.rc
        return {IN.REASON_NAMES[c]: int(rc[c]) for c in IN.REASON_NAMES if c and rc[c]}

    def summary(self) -> dict[str, Any]:
        """Counters, rejections by reason, kill switch, PnL and positions (money in Price(4) x
        shares: divide by 10,000 for dollars); ``replay.report.format_risk`` prints it."""
        g, ps, hs = self.state.g, self.state.ps, self.state.hs
        positions = {}
        for loc in np.nonzero((ps[:, R.PS_POS] != 0) | (ps[:, R.PS_FILLS] != 0))[0]:
            v = int(self.book.sym[loc, 0])
            packed = int(np.array([v], np.int64).view(np.uint64)[0])
            name = unpack_ascii(packed, 8).rstrip() if v else str(loc)
            positions[name] = {"locate": int(loc), **self.position(int(loc))}
        return {
            "intents": int(g[R.G_INTENTS]), "accepted": int(g[R.G_ACCEPTED]),
            "rejected": int(g[R.G_REJECTED]),
            "rejections": self.rejections(),
            "kill_switch": self.kill_reason, "disconnected": bool(g[R.G_DISCONNECTED]),
            "open_orders": int(g[R.G_OPEN]), "exec_events": int(g[R.G_EXEC]), "fills": int(g[R.G_FILLS]),
            "filled_qty": int(g[R.G_FILLED_QTY]), "unknown_exec": int(g[R.G_UNKNOWN_EXEC]),
            "overfills": int(g[R.G_OVERFILLS]), "bad_exec": int(g[R.G_BAD_EXEC]),
            "risk_cancels": {"kill": int(g[R.G_KILL_CANCELS]), "disconnect": int(g[R.G_COD_CANCELS]),
                             "throttle": int(g[R.G_THROTTLE_CANCELS])},
            "hedges": {"sent": int(g[R.G_HEDGES]), "rejected": int(g[R.G_HEDGES_REJECTED]),
                       "unpriced": int(g[R.G_HEDGE_UNPRICED])},
            "strategies_disabled": self.disabled_strategies(),
            "pnl": {"realised": int(g[R.G_RPNL]), "unrealised": int(g[R.G_UPNL]),
                    "total": int(g[R.G_RPNL] + g[R.G_UPNL]), "peak": int(g[R.G_PEAK])},
            "exposure": {"gross": int(g[R.G_GROSS]), "net_long": int(g[R.G_NETLONG]),
                         "net_short": int(g[R.G_NETSHORT]), "credit": int(g[R.G_CREDIT])},
            "feed": {"gaps": int(g[R.G_GAPS]),
                     "sessions_with_open_gap": [int(s) for s in np.nonzero(hs[:, R.HS_GAP_OPEN])[0]]},
            "positions": positions,
        }

    # -- bundles and errors for fused kernels (pipeline/tick.py, pipeline/gpu.py) ------------------
    def arrays(self) -> RiskArrays:
        """State, limits and the override table as a ``kernels.state.RiskArrays`` bundle (the
        fused kernels' ``risk``)."""
        s = self.state
        return RiskArrays(s.g, self.lim, s.ls, s.ps, s.hs, s.ro, s.oh, s.ofree, s.st, s.rt, s.rc, self.ovk, self.ovl)

    def raise_if_error(self, what: str) -> None:
        """``RiskCapacityError`` (and the flag cleared) if a kernel run outside this stage filled
        the orders-out table during ``what``; nothing otherwise."""
        self._check_error(what)


# --- hftbot kill ---------------------------------------------------------------------------------
def _pid(text: str) -> int:
    """A process id for ``hftbot kill --pid``: one process. 0 and negative numbers would signal
    a process group or every process (``kill(2)``), 1 is init."""
    import argparse

    try:
        pid = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a process id, got {text!r}") from None
    if pid < 2:
        raise argparse.ArgumentTypeError(f"expected the process id of one pipeline (2 or more), got {pid}")
    return pid


def add_kill_arguments(p) -> None:
    p.add_argument("--run", metavar="DIR", help="the run directory (runs/DATE/TIME) of the run to kill: its "
                   "kill file and pid are read from DIR/control.json")
    p.add_argument("--file", help="the kill file to touch (default: risk.kill.file of --config-name, resolved "
                   "from the repository root as the run does)")
    p.add_argument("--pid", type=_pid, help="also send SIGUSR1 to this pipeline process")
    p.add_argument("--config-name", default="replay", help="config whose risk.kill.file to use (default replay)")


def cmd_kill(args) -> int:
    """Engage the kill switch of a running pipeline: touch its kill file (watched every
    ``risk.kill.poll_ms`` by the run) and/or signal it (SIGUSR1). The file's path is absolute,
    resolved the way the run resolves it, so this works from any directory."""
    import sys
    from pathlib import Path

    from pipeline.control import read_control_file, resolve_kill_file

    path: Path | None = resolve_kill_file(args.file) if args.file else None
    pid = args.pid
    if args.run:
        try:
            ctl = read_control_file(Path(args.run))
        except (FileNotFoundError, ValueError) as exc:
            print(f"hftbot kill: error: {exc}", file=sys.stderr)
            return 2
        path = path or (Path(ctl["kill_file"]) if ctl.get("kill_file") else None)
        if pid is None and path is None:  # the run has no kill file: its signal, if it still runs
            pid = ctl.get("pid")
            if not _is_hftbot(pid):
                print(f"hftbot kill: error: the run in {args.run} (pid {pid}) is not running", file=sys.stderr)
                return 3
    if path is None and pid is None:
        from hydra import compose, initialize_config_dir
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        from pipeline.config import register

        register()
        conf_dir = str(Path(__file__).resolve().parents[1] / "conf")
        try:
            with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
                path = resolve_kill_file(compose(config_name=args.config_name).risk.kill.file)
        except (HydraException, OmegaConfBaseException, ValueError) as exc:
            print(f"hftbot kill: error: --config-name {args.config_name}: {exc}".splitlines()[0], file=sys.stderr)
            return 2
        if path is None:
            print("hftbot kill: error: risk.kill.file is empty in the config; give --file, --run or --pid",
                  file=sys.stderr)
            return 2
    if pid is not None:
        try:
            os.kill(int(pid), 0)  # exists, and ours to signal: checked before the kill file is touched
        except ProcessLookupError:
            print(f"hftbot kill: error: --pid {pid}: no such process", file=sys.stderr)
            return 3
        except OSError as exc:
            print(f"hftbot kill: error: cannot signal pid {pid}: {exc}", file=sys.stderr)
            return 3
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        except OSError as exc:
            print(f"hftbot kill: error: cannot create the kill file {path}: {exc}", file=sys.stderr)
            return 2
        print(f"hftbot kill: touched {path} (remove it before the next run: rm {path})", file=sys.stderr)
    if pid is not None:
        try:
            os.kill(int(pid), signal.SIGUSR1)
        except OSError as exc:
            print(f"hftbot kill: error: cannot signal pid {pid}: {exc}", file=sys.stderr)
            return 3
        print(f"hftbot kill: sent SIGUSR1 to {pid}", file=sys.stderr)
    return 0


def _is_hftbot(pid) -> bool:
    """``pid`` is a live process running hftbot (a pid from a finished run may have been reused)."""
    try:
        cmd = open(f"/proc/{int(pid)}/cmdline", "rb").read().replace(b"\0", b" ")
    except (OSError, TypeError, ValueError):
        return False
    return b"hftbot" in cmd or b"pipeline" in cmd
