"""The engine: one interface over the per-batch step, three drivers.

The step is described once, in ``kernels/step.py``::

    step_range = market -> model -> decide
    market     = decode -> books + features -> feed status to risk
    decide     = strategy -> risk (chunks; orders to the driver's sink) -> strategy acknowledgement

and every driver is built from that description: it binds the step's template bodies to its
backend's stage functions and its own order sink, and compiles them at its edge. Execution
reports are applied between batches. What differs is where the step runs:

=========================  ==============================================================
``BatchEngine``            ``market`` and ``decide`` compiled (``njit``) once per batch,
                           the model stage (any backend) between them; over the cuda
                           backend's per-stage kernels (live runs) the bound bodies run as
                           Python
``PacketEngine``           ``step_range`` per MoldUDP64 packet in one compiled loop, the
                           sink encoding FIX and writing it (``pipeline/tick.py``)
``GpuEngine``              the one-kernel GPU-resident pipeline (``pipeline/gpu.py``):
                           parallel decode/book/model phases, ``decide`` on thread 0, the
                           sink publishing to the mapped orders ring
=========================  ==============================================================

The run loop (``pipeline/run.py``) sees only this interface (``Engine``): ``warm`` compiles
every kernel before anything connects, ``attach`` plugs in the order gateway (the FIX bridge
and venue, ``pipeline/execution.py``), ``step`` takes one batch, ``request_kill`` is the
thread-safe kill request (a flag write the compiled risk check reads before every intent),
``service_kill`` sends the kill's cancels, ``cancel_all`` cancels every working order for a
clean stop, ``finish`` collects device state, and ``snapshot`` gives the report's sections.

Latency figures (``lat``, HdrHistograms in ns): a driver records per message or per packet
where it can (the per-packet driver's tick-to-trade), and otherwise records *one value per
batch* with a name that says so (``market_batch_avg_per_msg``: the batch's time divided by its
messages, counted once per batch), never a batch average repeated once per message.
"""

from __future__ import annotations

import time
from types import ModuleType, SimpleNamespace
from typing import Any, Callable, NamedTuple, Protocol

import numpy as np
from omegaconf import DictConfig

from kernels import intents as IN
from kernels import risk as R
from kernels.state import Work
from kernels.step import STEP_RISK_FULL, MarketWork, batch_decider, batch_market, order_sink
from kernels.memory import prefault
from pipeline.book import BookStage, BookState
from pipeline.latency import Latencies
from pipeline.risk import RiskStage
from pipeline.stages import DecodeStage
from pipeline.strategy import IntentBatch, model_and_strategy
from replay.capture import MessageBatch
from replay.report import FeatureSummary, IntentSummary, book_summary

#: the kill reasons the run control can request (kernels/risk.py KILL_*)
KILL_CODES = {"file": R.KILL_FILE, "signal": R.KILL_SIGNAL, "manual": R.KILL_MANUAL}


class Stages(NamedTuple):
    """The stage objects of one run (``model`` / ``strategy`` are None where disabled)."""

    decode: DecodeStage
    books: BookStage
    risk: RiskStage
    model: Any
    strategy: Any


class Engine(Protocol):
    name: str
    lat: Latencies
    risk: RiskStage                   # the risk stage whose state the report and the kill switch read
    book: BookState                   # the market state (symbol table for the FIX bridge, report)
    exec_sink: Callable[[np.ndarray], np.ndarray] | None  # where execution reports go (None: risk.on_exec)

    def warm(self, first_batch: Any, log: Callable[[str], None]) -> dict[str, float]: ...
    def prepare(self, gateway: Any, log: Callable[[str], None]) -> dict[str, float]: ...
    def attach(self, gateway: Any) -> None: ...
    def step(self, batch: Any) -> int: ...
    def request_kill(self, code: int) -> None: ...
    def service_kill(self) -> int: ...
    def cancel_all(self) -> int: ...
    def open_orders(self) -> int: ...
    def finish(self) -> None: ...
    def snapshot(self, top_depth: int) -> dict[str, Any]: ...
    def model_info(self) -> dict[str, Any] | None: ...


def build_stages(cfg: DictConfig, backend: ModuleType, capacity: int, stats, state: BookState | None = None,
                 log: Callable[[str], None] = print) -> Stages:
    """The stage objects from the run config (each gets its own sub-tree)."""
    b, ft = cfg.book, cfg.features
    if state is None:
        # prefetching is a CPU technique: over the CUDA edge the speculative reads would only cost
        state = BookState(b.max_orders, b.max_levels, b.max_symbols,
                          prefetch_live=b.prefetch_live if getattr(backend, "PREFETCH", False) else 0)
    decode = DecodeStage(backend, capacity=capacity, stats=stats)
    books = BookStage(backend, state, capacity=capacity, symbols=list(ft.symbols), tau_flow_ns=ft.tau_flow_ns,
                      tau_rv_ns=ft.tau_rv_ns, top_n=ft.top_n)
    risk = RiskStage.from_config(backend, cfg, state)
    model, strategy = model_and_strategy(cfg, backend, state, capacity, positions=risk.state.ps, log=log)
    return Stages(decode, books, risk, model, strategy)


def _timed(label: str, fn: Callable[[], Any], times: dict[str, float], log: Callable[[str], None]) -> Any:
    t = time.perf_counter()
    log(f"compile    {label} ...")
    out = fn()
    times[label] = time.perf_counter() - t
    return out


class _Gateway:
    """What every driver does with the order gateway (``pipeline/execution.py``)."""

    gw: Any = None

    def prepare(self, gateway: Any, log: Callable[[str], None] = print) -> dict[str, float]:
        """The gateway is built but not connected: compile what needs it (nothing by default)."""
        return {}

    def attach(self, gateway: Any) -> None:
        self.gw = gateway


class BatchEngine(_Gateway):
    """Per batch: the step's market half and trading half (``kernels/step.py``), each one compiled
    call, with the model stage (any backend) between them; the stage objects hold the state."""

    name = "batch"

    exec_sink = None

    def __init__(self, stages: Stages, cfg: DictConfig, live_sync: Callable[[], None] | None = None):
        self.s = stages
        self.risk = stages.risk
        self.book = stages.books.state
        self.cfg = cfg
        self.gw = None
        self.live_sync = live_sync
        self.lat = Latencies()
        self.fsum = FeatureSummary()
        self.isum = IntentSummary()
        self.last_ts = 0
        #: the step's market and trading halves bound to this backend (``kernels/step.py``)
        self._marketer = batch_market(stages.decode.k)
        self._decider = batch_decider(stages.risk.k)
        self._mwork = MarketWork(stages.books.fo, stages.books.fk)
        self._mout = np.zeros(3, np.int64)
        self._res = np.zeros((0, IN.ND), np.int64)
        self._sink = order_sink(0)

    # -- lifecycle ----------------------------------------------------------------------------------
    def warm(self, first_batch: Any, log: Callable[[str], None] = print) -> dict[str, float]:
        """Compile (or load from numba's cache) every kernel the step calls, on empty inputs:
        nothing changes in any state. Returns seconds per stage."""
        s = self.s
        times: dict[str, float] = {}
        # no batch yet (live): an empty one with the readers' column types (replay/capture.py)
        # (built field by field: a BinaryFILE ``RecordBatch`` is framed here, its index read)
        b = first_batch
        empty = MessageBatch(b.buf, b.off, b.length, b.seq, b.sess, b.rx, 0) if b is not None else MessageBatch(
            np.zeros(1, np.uint8), np.zeros(1, np.int64), np.zeros(1, np.int32), np.zeros(1, np.uint64),
            np.zeros(1, np.uint16), np.zeros(1, np.int64), 0)
        _timed("risk", s.risk.warm, times, log)
        _timed("decode + books + feed status (market)", lambda: self._market(empty), times, log)
        if s.model is not None:
            _timed("model", lambda: s.model.warm(s.books.fo), times, log)
        if s.strategy is not None:
            _timed("strategy + risk (decide)", lambda: self._decide(SimpleNamespace(values=s.books.fo, keys=s.books.fk),
                                                                   SimpleNamespace(values=s.model.out, n=0)),
                   times, log)
        # the order path's tables, faulted in now rather than by the first orders (kernels/memory.py)
        rs = s.risk.state
        prefault(rs.g, rs.ls, rs.ps, rs.hs, rs.ro, rs.oh, rs.ofree, rs.st, rs.rt, s.risk.out, s.risk.res,
                 *((s.strategy.ss, s.strategy.out) if s.strategy is not None else ()))
        return times

    # -- the step -----------------------------------------------------------------------------------
    def step(self, batch: Any) -> int:
        s, gw, lat = self.s, self.gw, self.lat
        ta = time.perf_counter_ns()
        events, fb = self._market(batch)
        tc = time.perf_counter_ns()
        self.fsum.add(fb)
        if self.live_sync is not None:
            self.live_sync()
        self.service_kill(ta)
        td = tf = time.perf_counter_ns()
        if s.model is not None:
            preds = s.model(fb)
            tf = time.perf_counter_ns()
            intents = None
            if s.strategy is not None:
                intents, orders = self._decide(fb, preds)
                tg = time.perf_counter_ns()
                # the whole decide step, once per batch: its time goes mostly to the strategy's pass
                # over the batch's predictions, so divided by the few intents it made (63 us "per
                # intent" on make run's sample) it read as a per-intent latency it is not
                lat.record("decide_batch", tg - tf, 1,
                           "strategy over the batch's predictions + risk + ack (kernels/step.py decide), per batch")
                if gw is not None and orders.shape[0]:
                    gw.send(orders, ta)
            self.isum.add(intents, preds.n)
        if events.n:
            self.last_ts = int(events.cols["ts"][events.n - 1])
        if gw is not None:
            gw.pump()
            if events.n:
                gw.publish(self.last_ts)
        n = max(events.n, 1)
        lat.record("market_batch_avg_per_msg", (tc - ta) // n, 1,
                   "decode + books + features + feed status (kernels/step.py market): batch time / messages, "
                   "one value per batch")
        if s.model is not None:
            lat.record("model_batch", tf - td, 1, "model, per batch")
        lat.record("batch_total", time.perf_counter_ns() - ta, 1, f"whole step, per batch of <= {events.capacity:,} msgs")
        return self.last_ts

    def _market(self, batch: Any) -> tuple[Any, Any]:
        """The market half of the step (``kernels/step.py: market``: decode -> books + features
        -> feed status) on one batch. Returns the event table and the feature batch."""
        s = self.s
        d, b = s.decode, s.books
        code = self._marketer(d.frames(batch), batch.n, d.events(), d.stats, b.state.arrays(), b.feature_conf(),
                              s.risk.arrays(), self._mwork, self._mout)
        d.table.n = int(self._mout[0])
        fb = b.applied(d.table, int(self._mout[2]), int(self._mout[1]))  # raises on a book capacity error
        if code != 0:
            raise RuntimeError(f"market step stopped with code {code}")
        return d.table, fb

    def _decide(self, fb: Any, preds: Any) -> tuple[IntentBatch, np.ndarray]:
        """The trading half of the step (``kernels/step.py: decide``: strategy -> risk -> ack) on
        the batch's feature rows and predictions. Returns the intents and the orders to send."""
        s = self.s
        nf = int(preds.n)
        st = s.strategy
        st.reserve(nf)
        if self._res.shape[0] < nf:
            self._res = np.zeros((nf, IN.ND), np.int64)
        need = 2 * nf + s.risk.out.shape[0]
        if self._sink.rows.shape[0] < need:
            self._sink = order_sink(need)
        self._sink.n[0] = 0
        work = Work(fb.values, fb.keys, preds.values, st.out, self._res, s.risk.out)
        risk, book = s.risk.tables()
        ni, no, code = self._decider(nf, work, st.arrays(), risk, book, s.risk.batch_rows, self._sink)
        if code == STEP_RISK_FULL:
            s.risk.raise_if_error("check")
        if code != 0:
            raise RuntimeError(f"the batch's orders did not fit the order sink ({self._sink.rows.shape[0]:,} rows)")
        return IntentBatch(st.out, int(ni)), self._sink.rows[:int(no)].copy()

    # -- kill switch and stop -----------------------------------------------------------------------
    def request_kill(self, code: int) -> None:
        self.s.risk.request_kill(code)

    def service_kill(self, t_arrival: int | None = None) -> int:
        kills = self.s.risk.poll()
        if kills.shape[0] and self.gw is not None:
            return self.gw.send(kills, t_arrival)
        return 0

    def cancel_all(self) -> int:
        orders = self.s.risk.cancel_all()
        if orders.shape[0] and self.gw is not None:
            return self.gw.send(orders)
        return 0

    def open_orders(self) -> int:
        return int(self.risk.state.g[R.G_OPEN])

    def finish(self) -> None:
        pass

    def model_info(self) -> dict[str, Any] | None:
        m = self.s.model
        return None if m is None else {"backend": m.name, "path": str(m.model.path), "horizon_rows": m.model.horizon}

    # -- report -------------------------------------------------------------------------------------
    def snapshot(self, top_depth: int) -> dict[str, Any]:
        s = self.s
        st = s.strategy
        return {
            "book": book_summary(s.books.state, s.books.k, list(self.cfg.features.symbols), top_depth),
            "features": self.fsum.result(s.books.state),
            "intents": self.isum.result(s.books.state, st.counters() if st is not None else None),
            "risk": s.risk.summary(),
        }


class PacketEngine(BatchEngine):
    """Latency mode: each packet through every stage and the FIX write in one compiled loop
    (``pipeline/tick.py``). Tick-to-trade is recorded per packet (TSC)."""

    name = "per_packet"

    def __init__(self, stages: Stages, cfg: DictConfig):
        super().__init__(stages, cfg)
        self.tick = None
        self._first = None

    def warm(self, first_batch: Any, log: Callable[[str], None] = print) -> dict[str, float]:
        self._first = first_batch
        return super().warm(first_batch, log)

    def prepare(self, gateway: Any, log: Callable[[str], None] = print) -> dict[str, float]:
        """With the gateway's bridge built (not connected): the compiled per-packet loop, which
        holds the FIX encoder, is compiled now too."""
        from pipeline.tick import TickPath

        s = self.s
        self.tick = TickPath(s.decode, s.books, s.risk, s.model, s.strategy, gateway.bridge)
        times: dict[str, float] = {}
        if self._first is not None:
            _timed("per-packet loop", lambda: self.tick.warm(self._first), times, log)
        return times

    def step(self, batch: Any) -> int:
        from pipeline.tick import T_END, T_ORDERS, T_START

        self.service_kill()
        recs = self.tick(batch)
        ns = ((recs[:, T_END] - recs[:, T_START]) / self.tick.tpn).astype(np.int64)
        has = recs[:, T_ORDERS] > 0
        for v in ns[has]:
            self.lat.record("tick_to_trade", int(v), 1, "per packet: packet in buffer -> FIX bytes written")
        for v, c in zip(*np.unique(ns[~has] // 10 * 10, return_counts=True)):
            self.lat.record("tick_no_order", int(v), int(c), "per packet: packet in buffer -> risk done, no order")
        self.gw.pump()
        self.last_ts = self.tick.last_ts or self.last_ts
        if self.last_ts:
            self.gw.publish(self.last_ts)
        return self.last_ts


class GpuEngine(_Gateway):
    """The GPU-resident pipeline (``pipeline/gpu.py``): one submit and one launch per batch;
    orders come back through the mapped orders ring, execution reports go in through the exec
    ring, the kill switch is a request in the mapped control block."""

    name = "gpu"

    def __init__(self, gpu: Any, host_risk: RiskStage, cfg: DictConfig, feed_stats: np.ndarray):
        self.gpu = gpu
        self.feed_stats = feed_stats  # the reader's counters: the device's decode counters join them
        self.cfg = cfg
        self.host_risk = host_risk   # feed status when the device has no risk stage
        self.risk = gpu.risk if gpu.risk is not None else host_risk
        self.book = gpu.book
        #: execution reports go into the device's exec ring when risk runs there
        self.exec_sink = gpu.on_exec if gpu.risk is not None else None
        self.gw = None
        self.lat = Latencies()
        self.isum = IntentSummary()
        self.last_ts = 0
        self._kill_code = 0

    def warm(self, first_batch: Any, log: Callable[[str], None] = print) -> dict[str, float]:
        times: dict[str, float] = {}
        if hasattr(self.gpu, "warm"):
            _timed("gpu pipeline kernel", self.gpu.warm, times, log)
        return times

    def step(self, batch: Any) -> int:
        g, gw = self.gpu, self.gw
        ta = time.perf_counter_ns()
        if self._kill_code and g.risk is not None:
            g.kill(self._kill_code)
        g.submit(batch)
        g.launch()
        tb = time.perf_counter_ns()
        self.lat.record("gpu_batch", tb - ta, 1, "submit + launch, per batch")
        if g.risk is None:
            self.host_risk.on_events(g.last_events())
        else:
            intents, _ = g.poll_intents()
            self.isum.add(SimpleNamespace(rows=intents, n=intents.shape[0]))
        orders = g.poll_orders()
        last = g.last_events() if batch.n else None
        if last is not None and last.n:
            self.last_ts = int(last.cols["ts"][last.n - 1])
        if gw is not None:
            if orders.shape[0]:
                g.sync_symbols()
                gw.send(orders, ta)
            gw.pump()
            if self.last_ts:
                gw.publish(self.last_ts)
        return self.last_ts

    def request_kill(self, code: int) -> None:
        self._kill_code = int(code)
        if self.gpu.risk is None:
            self.host_risk.request_kill(code)
        else:
            self.gpu.kill(int(code))

    def service_kill(self) -> int:
        if self.gpu.risk is None:
            kills = self.host_risk.poll()
            return self.gw.send(kills) if kills.shape[0] and self.gw is not None else 0
        return 0   # the kernel emits the cancels into the orders ring; step() sends them

    def cancel_all(self) -> int:
        # the kill request makes the kernel cancel every working order at its next launch
        if self.gpu.risk is not None:
            self.gpu.kill(R.KILL_MANUAL)
            self.gpu.launch()
            orders = self.gpu.poll_orders()
            if orders.shape[0] and self.gw is not None:
                self.gpu.sync_symbols()
                return self.gw.send(orders)
        return 0

    def open_orders(self) -> int:
        return int(self.risk.state.g[R.G_OPEN])

    def finish(self) -> None:
        self.gpu.fetch()   # the device state back: books, risk, strategy, decode counters
        self.feed_stats += self.gpu.stats

    def snapshot(self, top_depth: int) -> dict[str, Any]:
        g = self.gpu
        st = g.strategy
        if st is not None:
            self.isum.predictions = st.counters()["rows"]
        from pipeline import backends

        return {
            "book": book_summary(g.book, backends.load("cpu"), list(self.cfg.features.symbols), top_depth),
            "features": {},
            "intents": self.isum.result(g.book, st.counters() if st is not None else None),
            "risk": self.risk.summary(),
        }

    def model_info(self) -> dict[str, Any] | None:
        c = self.cfg.model
        return {"backend": "numba (gpu kernel)", "path": str(c.path), "horizon_rows": 0} if c.enabled else None


def make_engine(cfg: DictConfig, backend: ModuleType, reader: Any, live_sync_factory=None,
                log: Callable[[str], None] = print) -> Engine:
    """The driver the config asks for: ``backend=cuda`` replay in batches -> GpuEngine;
    ``feed.per_packet`` -> PacketEngine; otherwise BatchEngine."""
    live = cfg.feed.source == "live"
    if cfg.backend.name == "cuda" and not live and not cfg.feed.per_packet:
        from pipeline.gpu import GpuPipeline

        n = int(reader.batch_rows)
        gc = cfg.gpu
        gpu = GpuPipeline.from_config(cfg, log=log, batch=n, ring_batches=int(gc.ring_batches),
                                      frame_bytes=max(int(gc.frame_bytes), 4 * int(cfg.feed.chunk_bytes)),
                                      shards=int(gc.shards), shard_capacity=float(gc.shard_capacity),
                                      threads=int(gc.threads) or None, exec_rows=int(gc.exec_rows),
                                      intents_rows=2 * n,
                                      orders_rows=n + int(cfg.risk.max_open_orders) + 2 * int(cfg.risk.batch_rows) + 16)
        host_risk = gpu.risk if gpu.risk is not None else RiskStage.from_config(backend, cfg, gpu.book)
        return GpuEngine(gpu, host_risk, cfg, reader.stats)
    stages = build_stages(cfg, backend, reader.batch_rows, reader.stats, log=log)
    if cfg.feed.per_packet:
        return PacketEngine(stages, cfg)
    sync = live_sync_factory(stages.risk) if live_sync_factory is not None else None
    return BatchEngine(stages, cfg, live_sync=sync)
