"""The GPU-resident pipeline: decode -> books -> features -> model -> strategy -> risk in one
numba-cuda kernel on device-resident state, fed and drained through rings in mapped host memory.

Layout (``kernels/ring.py`` has the ring protocol, ``kernels/gpu.py`` the kernel):

- **state** lives on the device, copied there once: the book (``pipeline.book.BookState``
  arrays, split into ``shards`` slices, see below), the feature state, the model's weights, the
  strategy's and risk's tables and limits. ``fetch()`` copies it back for reports and tests.
- **frames in**: message bytes sit in a mapped byte ring (replay: copied from the capture
  reader's chunk, one memcpy per batch; live: the AF_XDP UMEM registered as mapped memory would
  take its place and the copy goes away). Per message a descriptor (offset, length, sequence
  number, session, arrival time) goes to a mapped descriptor ring, per batch one row (first
  message, count) to the mapped batch ring, then the host publishes the batch by storing the
  head counter ``ctl[CTL_HEAD]``. Framing (pcap/pcapng records, MoldUDP64 headers) stays on the
  host: it is a sequential walk of a few ns per packet (``replay.capture.CaptureReader``).
- **one stream, no launch per tick**: ``start()`` launches the persistent kernel (``wait=1``);
  its thread 0 polls the control block, processes each published batch with the whole block,
  and exits when the host sets the stop flag and every published batch is done. The
  batched-launch mode (``launch()``, ``wait=0``) processes what is published and returns: one
  launch per group of batches, for throughput runs where latency does not matter.
- **order intents out**: accepted orders (risk's orders-out rows: what the FIX bridge sends) go
  to a mapped orders ring, every intent with its risk decision to a mapped intents ring; the
  host bridge polls them (``poll_orders``, ``poll_intents``). ``ctl[CTL_TAIL]`` is the done
  counter: when it passes a batch, that batch's outputs are published.

Book shards: shard ``p`` (device thread ``p``) owns the symbols with ``locate % shards == p``
and a private slice of the order and level slots, hashes and free stacks (``shard_capacity`` x
``book.max_orders`` / ``max_levels`` each), so books update in parallel with no atomics. Slots
are shard-local, so the arrays differ from the CPU's when ``shards > 1``; the books they hold
are the same (tests compare every level of every book). ``shards=1`` keeps the CPU's layout
bit for bit.

Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) a kernel launch blocks until the kernel
returns, so a persistent kernel cannot be fed while it runs: ``run_prefilled`` publishes every
batch and sets the stop flag *before* the launch, and the kernel drains the rings and exits.
That is how the tests run it; feeding a running kernel needs a GPU (``tests/test_gpu_only.py``).
"""

from __future__ import annotations

import math
from collections import namedtuple
from typing import Any, Iterable

import numpy as np

from kernels import book as B
from kernels import intents as IN
from kernels import ring as RG
from kernels import stats as S
from kernels.events import EVENT_COLUMNS, EventTable
from kernels.state import (EventViews, Events, Frames, Journal, ModelArrays, PipelineFlags, RiskArrays, Rings, Shards,
                           StrategyArrays, Work)
from pipeline.book import BookCapacityError, BookStage, BookState, hash_slots, level_slots
from pipeline.risk import RiskCapacityError, RiskStage
from pipeline.strategy import StrategyStage


#: the control block (``kernels/ring.py``) read by name: ``ControlBlock.head`` is ``ctl[CTL_HEAD]``
ControlBlock = namedtuple("ControlBlock", "head tail stop kill error error_at int_head int_tail ord_head ord_tail "
                                          "journal state polls book_error book_event ex_head ex_tail")
_CTL_SLOTS = tuple(getattr(RG, "CTL_" + f.upper()) for f in ControlBlock._fields)


class GpuPipelineError(RuntimeError):
    """The GPU pipeline cannot run here, or stopped on an error its message names."""


def load_cuda():
    """``(numba.cuda, kernels.gpu)``, or ``GpuPipelineError`` saying what to install or set."""
    from pipeline.backends import BackendError, load

    try:
        k = load("cuda")
    except BackendError as exc:
        raise GpuPipelineError(f"the GPU-resident pipeline: {exc}") from None
    from numba import cuda

    return cuda, k


def simulated() -> bool:
    import os

    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def _to_device(cuda, bundle):
    """A copy of a bundle (``kernels/state.py``) on the device: every array copied, scalars kept."""
    return type(bundle)(*(cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in bundle))


def _mapped(cuda, shape, dtype) -> np.ndarray:
    """Mapped host memory: one array that the host and the device both read and write. On a GPU
    ``cuda.mapped_array`` (a numpy array subclass the device addresses directly); under the
    simulator, where a kernel is Python on the host, a plain numpy array that the simulated kernel
    reads and writes in place (the simulator's own ``mapped_array`` is a device stand-in)."""
    if simulated():
        return np.zeros(shape, dtype)
    return cuda.mapped_array(shape, dtype)


class ShardedBook:
    """``BookState`` laid out in ``shards`` slices: ``So`` order slots, ``Ho`` hash slots, ``Sl``
    level slots and ``Hl`` level-hash slots per shard; ``sctr[p]`` each shard's counters."""

    def __init__(self, max_orders: int, max_levels: int, max_symbols: int, shards: int = 1,
                 shard_capacity: float = 1.0):
        if shards < 1:
            raise ValueError("gpu.shards must be at least 1")
        p = int(shards)
        so = max(16, math.ceil(max_orders * shard_capacity)) if p > 1 else int(max_orders)
        sl = max(16, math.ceil(max_levels * shard_capacity)) if p > 1 else int(max_levels)
        ho, hl = hash_slots(so), level_slots(sl)
        st = BookState(p * so, p * sl, max_symbols, prefetch_live=0)
        st.ok = np.zeros(p * ho, np.int64)
        st.ov = np.full(p * ho, -1, np.int32)
        st.lk = np.zeros(p * hl, np.int64)
        st.lv = np.full(p * hl, -1, np.int32)
        st.ofree = np.concatenate([np.arange((q + 1) * so - 1, q * so - 1, -1, dtype=np.int32) for q in range(p)])
        st.lfree = np.concatenate([np.arange((q + 1) * sl - 1, q * sl - 1, -1, dtype=np.int32) for q in range(p)])
        self.sctr = np.zeros((p, B.N_CTR), np.int64)
        self.sctr[:, B.C_FREE_ORDERS] = so
        self.sctr[:, B.C_FREE_LEVELS] = sl
        self.dims = np.array([p, so, ho, sl, hl], np.int64)
        self.state = st
        self.shards, self.so, self.sl = p, so, sl


class GpuPipeline:
    """Decode to risk on the device. Build with ``from_config`` (the run config) or directly.

    ``batch``: messages per device batch (the per-tick unit: a submitted ``MessageBatch`` is cut
    into batches of at most this many; small for latency, large for throughput);
    ``ring_batches``: batches in flight; ``frame_bytes``: the mapped byte ring;
    ``threads``: the block size (at least ``shards``); ``journal_rows``: keep every feature
    row and prediction on the device (tests, research; 0 = off); ``full=False``: decode, books
    and features only (the throughput benchmark; no model needed).
    """

    def __init__(self, *, max_orders: int, max_levels: int, max_symbols: int, symbols: Iterable[str] = (),
                 tau_flow_ns: float = 1e9, tau_rv_ns: float = 60e9, top_n: int = 5, stop_ts: int = 2**62,
                 model=None, strategy_conf: Any = None, risk_conf: Any = None, max_sessions: int = 64,
                 batch: int = 4096, shards: int = 1, shard_capacity: float = 1.0, threads: int | None = None,
                 ring_batches: int = 64, frame_bytes: int = 16 << 20, orders_rows: int | None = None,
                 intents_rows: int | None = None, exec_rows: int = 4096, journal_rows: int = 0, full: bool = True):
        self.cuda, self.k = load_cuda()
        from kernels import cpu

        cuda = self.cuda
        self.full = bool(full)
        if self.full and (model is None or strategy_conf is None or risk_conf is None):
            raise GpuPipelineError("the GPU pipeline needs a model, a strategy and risk (full=False: books only)")
        self.B = int(batch)
        if self.B < 1:
            raise GpuPipelineError("gpu.batch must be at least 1 message")
        self.sb = ShardedBook(max_orders, max_levels, max_symbols, shards, shard_capacity)
        book = self.sb.state
        self.book = book
        self.threads = int(threads or max(32, 32 * math.ceil(self.sb.shards / 32)))
        if self.threads < self.sb.shards:
            raise GpuPipelineError(f"gpu.threads ({self.threads}) must be at least gpu.shards ({self.sb.shards})")
        bs = BookStage(cpu, book, 1, symbols=list(symbols), tau_flow_ns=tau_flow_ns, tau_rv_ns=tau_rv_ns,
                       top_n=top_n, stop_ts=stop_ts)
        self.stop_ts = int(stop_ts)
        rows = book.sym.shape[0]
        # host-side builders of the CPU stages make the initial state and the parameters
        self.risk = RiskStage(cpu, risk_conf, book, max_sessions=max_sessions) if risk_conf is not None else None
        self.strategy = (StrategyStage(cpu, strategy_conf, rows=rows, capacity=self.B,
                                       positions=self.risk.state.ps) if self.risk is not None else None)
        self.model = model
        self.stats = S.new_stats()  # decode counters (framing counts stay in the reader's)
        to = cuda.to_device
        n = self.B
        # -- device-resident state, as the kernel's bundles (kernels/state.py) --------------------
        self.d_cols = {name: to(np.zeros((n, *shape), dt)) for name, dt, shape in EVENT_COLUMNS}
        self.d_ev = Events(*(self.d_cols[name] for name, _, _ in EVENT_COLUMNS))
        self.d_evi = EventViews(self.d_ev.ref.view(np.int64), self.d_ev.new_ref.view(np.int64),
                                self.d_ev.stock.view(np.int64))
        self.d_stats = to(self.stats)
        self.d_book = _to_device(cuda, book.arrays())
        self.d_feat = _to_device(cuda, bs.feature_conf())
        from kernels import features as FT

        self.d_shards = Shards(status=cuda.device_array(n, np.int64), frow=cuda.device_array(n, np.int64),
                               fo_s=cuda.device_array((n, FT.N_FEATURES), np.float64),
                               fk_s=cuda.device_array((n, FT.N_KEYS), np.int64), sctr=to(self.sb.sctr),
                               dims=to(self.sb.dims))
        if model is not None:
            self.d_model = _to_device(cuda, model.arrays())
        else:
            z = np.zeros(1, np.int64)
            self.d_model = ModelArrays(to(z), to(z), to(np.ones(1)), to(np.zeros(1)), 0, to(np.ones(2, np.int64)),
                                       to(np.zeros(1)), to(z), to(np.zeros(1)), to(z), to(z))
        if self.strategy is not None:
            s = self.strategy
            self.d_strat = _to_device(cuda, s.arrays())
            d_intents = to(s.out)
        else:
            self.d_strat = StrategyArrays(to(np.zeros((rows, 12), np.int64)), to(np.zeros(16, np.int64)),
                                          to(np.zeros(4)), to(np.zeros(12, np.int64)))
            d_intents = to(IN.new_intents(n))
        if self.risk is not None:
            r = self.risk
            self.risk_rows = r.batch_rows
            self.d_risk = _to_device(cuda, r.arrays())
            d_out = to(r.out)
            out_rows = r.out.shape[0]
        else:
            from kernels import risk as R

            self.risk_rows = 1
            z = np.zeros((1, 1), np.int64)
            self.d_risk = RiskArrays(to(np.zeros(R.NG, np.int64)), to(np.zeros(R.NL, np.int64)), to(z), to(z), to(z),
                                     to(z), to(z), to(np.zeros(1, np.int32)), to(z), to(np.zeros((1, 1, 1), np.int64)),
                                     to(np.zeros(IN.N_REASONS, np.int64)), to(np.zeros(1, np.int64)), to(z))
            d_out = to(np.zeros((1, IN.NI), np.int64))
            out_rows = 1
        self.d_work = Work(fo=cuda.device_array((n, FT.N_FEATURES), np.float64),
                           fk=cuda.device_array((n, FT.N_KEYS), np.int64), pred=cuda.device_array(n, np.float64),
                           intents=d_intents, res=cuda.device_array((n, IN.ND), np.int64), out=d_out)
        jr = int(journal_rows)
        self.d_journal = Journal(cuda.device_array((max(jr, 1), FT.N_FEATURES), np.float64),
                                 cuda.device_array((max(jr, 1), FT.N_KEYS), np.int64),
                                 cuda.device_array(max(jr, 0), np.float64))
        # -- mapped host memory: control block, frames in, orders and intents out ----------------
        self.ring_batches = int(ring_batches)
        mcap = self.ring_batches * n

        def mapped(shape, dtype):
            a = _mapped(cuda, shape, dtype)
            a[...] = 0
            return a

        self.frames = Frames(mapped(int(frame_bytes), np.uint8), mapped(mcap, np.int64), mapped(mcap, np.int32),
                             mapped(mcap, np.uint64), mapped(mcap, np.uint16), mapped(mcap, np.int64))
        self.rings = Rings(ctl=mapped(RG.N_CTL, np.int64), bq=mapped((self.ring_batches, 2), np.int64),
                           iring=mapped((int(intents_rows or 4 * n), IN.NI + IN.ND), np.int64),
                           oring=mapped((int(orders_rows or max(out_rows, 4 * n)), IN.NI), np.int64),
                           ering=mapped((max(int(exec_rows), 1), IN.NE), np.int64))  # execution events in
        self.h_ctl = self.rings.ctl
        self.stream = cuda.stream()
        self._bytes_w = 0                # frame-ring write position (monotone)
        self._bytes_r = 0                # ... and how far the device has released it
        self._batch_ends: list[tuple[int, int]] = []  # (batch, byte end) not yet released
        self._launched = False           # a kernel may be running (GPU only)
        self._n_batches = 0
        self._batch_sizes: list[int] = []
        self._args = self._kernel_args()

    @classmethod
    def from_config(cls, cfg, *, log=print, **opts) -> "GpuPipeline":
        """From the run config (the same sub-trees as ``pipeline.run``)."""
        from pipeline.model import load_model

        b, ft = cfg.book, cfg.features
        model = load_model(cfg.model.path) if cfg.model.enabled else None
        if model is not None and cfg.model.backend != "numba":
            log(f"note       backend=cuda runs the model's weights in the fused kernel (model.backend="
                f"{cfg.model.backend} applies to the cpu backend)")
        full = model is not None and bool(cfg.strategy.enabled)
        return cls(max_orders=b.max_orders, max_levels=b.max_levels, max_symbols=b.max_symbols,
                   symbols=list(ft.symbols), tau_flow_ns=ft.tau_flow_ns, tau_rv_ns=ft.tau_rv_ns, top_n=ft.top_n,
                   model=model, strategy_conf=cfg.strategy if full else None, risk_conf=cfg.risk if full else None,
                   max_sessions=int(cfg.feed.max_sessions), full=full, **opts)

    # -- kernel arguments (kernels.gpu.pipeline_kernel after ``wait``) --------------------------------
    def kernel_args(self) -> tuple:
        """The persistent kernel's arguments after ``wait``: its flags and the state bundles."""
        return self._args

    def _kernel_args(self) -> tuple:
        flags = PipelineFlags(full=int(self.full), risk_rows=int(self.risk_rows))
        return (flags, self.frames, self.rings, self.d_ev, self.d_evi, self.d_stats, self.d_book, self.d_feat,
                self.d_shards, self.d_model, self.d_strat, self.d_risk, self.d_work, self.d_journal)

    def _launch(self, wait: int) -> None:
        self.k.pipeline_kernel[1, self.threads, self.stream](wait, *self._args)

    # -- frames in ------------------------------------------------------------------------------
    def _release(self) -> None:
        done = int(self.h_ctl[RG.CTL_TAIL])
        while self._batch_ends and self._batch_ends[0][0] < done:
            self._bytes_r = self._batch_ends.pop(0)[1]

    def _wait_for(self, ready, what: str) -> None:
        """Spin until ``ready()``; with no kernel running (prefill mode, the simulator) a full
        ring cannot drain: an error naming the size to raise."""
        while True:
            self._release()
            if ready():
                return
            self._raise_if_failed()
            if not self._launched:
                raise GpuPipelineError(f"the {what} is full with no kernel running: raise gpu.{what.replace(' ', '_')}"
                                       f" to prefill this much")

    def submit(self, batch) -> int:
        """Publish a ``replay.capture.MessageBatch`` (cut into device batches of at most
        ``batch`` messages); returns the device batches published."""
        h = self.h_ctl
        buf = batch.buf
        fr = self.frames
        fb = fr.buf
        cap = fb.shape[0]
        count = 0
        for lo in range(0, int(batch.n), self.B):
            hi = min(int(batch.n), lo + self.B)
            off = batch.off[lo:hi].astype(np.int64)
            ln = batch.length[lo:hi].astype(np.int64)
            a, z = int(off.min()), int((off + ln).max())
            size = z - a
            if size > cap:
                raise GpuPipelineError(f"a batch of {size:,} bytes exceeds gpu.frame_bytes ({cap:,})")
            w = self._bytes_w
            if w % cap + size > cap:  # keep a batch contiguous: skip the ring's tail
                w += cap - w % cap
            b = self._n_batches
            self._wait_for(lambda: b - int(h[RG.CTL_TAIL]) < self.ring_batches, "ring batches")
            self._wait_for(lambda: w + size - self._bytes_r <= cap, "frame bytes")
            p = w % cap
            fb[p:p + size] = buf[a:z]
            m = hi - lo
            m0 = (b % self.ring_batches) * self.B
            fr.off[m0:m0 + m] = off - a + p
            fr.length[m0:m0 + m] = ln
            fr.seq[m0:m0 + m] = batch.seq[lo:hi]
            fr.sess[m0:m0 + m] = batch.sess[lo:hi]
            fr.rx[m0:m0 + m] = batch.rx[lo:hi]
            bq = self.rings.bq
            bq[b % self.ring_batches, 0] = m0
            bq[b % self.ring_batches, 1] = m
            self._bytes_w = w + size
            self._batch_ends.append((b, self._bytes_w))
            self._batch_sizes.append(m)
            self._n_batches = b + 1
            h[RG.CTL_HEAD] = b + 1  # publish: descriptors first, then the head (x86 keeps store order)
            count += 1
        return count

    # -- execution events in --------------------------------------------------------------------
    def on_exec(self, events: np.ndarray, n: int | None = None) -> np.ndarray:
        """Execution events (int64 ``[n, NE]``, ``kernels/intents.py``) to risk, as
        ``RiskStage.on_exec``: written to the mapped exec ring, then the head counter; the kernel's
        thread 0 applies them in order (risk's ``apply_exec``) before its next batch.

        Batched mode (no kernel running): a launch applies them now and the orders risk made
        (hedges, cancels) are returned, as on the CPU; it returns every row of the orders ring not
        yet polled, so poll the batch's orders first (the run loop does). Persistent mode: returns
        an empty table; risk's orders come out of ``poll_orders`` with the others."""
        if self.risk is None:
            raise GpuPipelineError("execution events need risk (the full pipeline: a model and a strategy)")
        events = np.ascontiguousarray(events, dtype=np.int64).reshape(-1, IN.NE)
        n = events.shape[0] if n is None else int(n)
        if n <= 0:
            return np.zeros((0, IN.NI), np.int64)
        h = self.h_ctl
        ring = self.rings.ering
        cap = ring.shape[0]
        orders = []
        lo = 0
        while lo < n:
            if not self._launched and int(h[RG.CTL_EX_HEAD]) - int(h[RG.CTL_EX_TAIL]) == cap:
                self.launch()  # the ring is full: apply what it holds first
                orders.append(self.poll_orders())
            while int(h[RG.CTL_EX_HEAD]) - int(h[RG.CTL_EX_TAIL]) == cap:  # a running kernel drains it
                self._raise_if_failed()
            head = int(h[RG.CTL_EX_HEAD])
            m = min(n - lo, cap - (head - int(h[RG.CTL_EX_TAIL])))
            idx = np.arange(head, head + m) % cap
            ring[idx] = events[lo:lo + m]
            h[RG.CTL_EX_HEAD] = head + m  # publish: rows first, then the head (x86 keeps store order)
            lo += m
        if not self._launched:
            if self.exec_pending:
                self.launch()
            orders.append(self.poll_orders())
        return np.concatenate(orders) if orders else np.zeros((0, IN.NI), np.int64)

    @property
    def exec_pending(self) -> int:
        """Execution events published and not yet applied."""
        return int(self.h_ctl[RG.CTL_EX_HEAD]) - int(self.h_ctl[RG.CTL_EX_TAIL])

    # -- running ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Launch the persistent kernel (returns at once on a GPU). Not under the simulator:
        there a launch blocks until the kernel exits; use ``run_prefilled``."""
        if simulated():
            raise GpuPipelineError("the simulator runs a kernel to completion at launch: use run_prefilled()")
        self._launched = True
        self._launch(1)

    def stop(self) -> None:
        """Set the stop flag, wait for the kernel to finish the published batches and exit."""
        self.h_ctl[RG.CTL_STOP] = 1
        self._synchronize()

    def kill(self, reason: int) -> None:
        """Kill-switch request (``kernels.risk.KILL_*``): risk latches it before its next check."""
        self.h_ctl[RG.CTL_KILL] = int(reason)

    def run_prefilled(self, batches: Iterable) -> int:
        """Publish every batch, set the stop flag, then run the persistent kernel until it has
        drained the ring (the simulator's way to test it; on a GPU it is a single launch over
        a prefilled ring). Returns the device batches processed."""
        for b in batches:
            self.submit(b)
        self.h_ctl[RG.CTL_STOP] = 1
        self._launch(1)
        self._synchronize()
        return self.done

    def launch(self, sync: bool = True) -> None:
        """Batched-launch mode: one launch processes every batch published so far."""
        self._launched = True
        self._launch(0)
        if sync:
            self._synchronize()

    def _synchronize(self) -> None:
        self.stream.synchronize()
        self._launched = False
        self._release()
        self._raise_if_failed()

    def warm(self) -> None:
        """Compile the kernel before the run needs it: one batched launch with nothing published
        returns at once (execution events already published are applied, as by any launch)."""
        if self._launched:
            return
        self._launched = True
        self._launch(0)
        self._synchronize()

    def control(self) -> ControlBlock:
        """A snapshot of the control block, by name (counters, error, state)."""
        h = self.h_ctl
        return ControlBlock(*(int(h[k]) for k in _CTL_SLOTS))

    @property
    def published(self) -> int:
        """Device batches published so far (``submit``)."""
        return self._n_batches

    @property
    def done(self) -> int:
        """Device batches completed (the done counter)."""
        return int(self.h_ctl[RG.CTL_TAIL])

    # -- outputs ----------------------------------------------------------------------------------
    def _poll(self, ring, head_slot: int, tail_slot: int) -> np.ndarray:
        h = self.h_ctl
        r = ring
        head, tail = int(h[head_slot]), int(h[tail_slot])
        idx = np.arange(tail, head) % r.shape[0]
        rows = r[idx].copy()
        h[tail_slot] = head
        return rows

    def poll_orders(self) -> np.ndarray:
        """Orders published since the last poll (int64 [m, NI]: what the FIX bridge sends)."""
        return self._poll(self.rings.oring, RG.CTL_ORD_HEAD, RG.CTL_ORD_TAIL)

    def poll_intents(self) -> tuple[np.ndarray, np.ndarray]:
        """Intents published since the last poll and their risk decisions ([m, NI], [m, ND])."""
        rows = self._poll(self.rings.iring, RG.CTL_INT_HEAD, RG.CTL_INT_TAIL)
        return rows[:, :IN.NI], rows[:, IN.NI:]

    def journal(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every feature row (values, keys) and prediction so far (``journal_rows > 0``)."""
        n = int(self.h_ctl[RG.CTL_JOURNAL])
        j = self.d_journal
        return (j.jf.copy_to_host()[:n], j.jk.copy_to_host()[:n], j.jp.copy_to_host()[:n])

    def last_events(self) -> EventTable:
        """The event table of the last device batch, compacted to the decoded rows as the CPU
        ``DecodeStage`` writes it (a host copy, for tests and debugging)."""
        n = self._batch_sizes[-1] if self._batch_sizes else 0
        ok = self.d_shards.status.copy_to_host()[:n] == 0
        t = EventTable(max(int(ok.sum()), 1))
        t.n = int(ok.sum())
        for name, _, _ in EVENT_COLUMNS:
            t.cols[name][: t.n] = self.d_cols[name].copy_to_host()[:n][ok]
        return t

    def sync_symbols(self) -> None:
        """Copy the device's symbol table into ``book.sym`` in place (the FIX bridge names
        orders from it; the stock directory messages fill it on the device)."""
        self.d_book.sym.copy_to_host(self.book.sym)

    def fetch(self) -> None:
        """Copy the device state back into the host objects (``book``, ``risk.state``,
        ``strategy``, ``stats``, ``sb.sctr``) for reports and comparisons. Execution events still
        pending in the exec ring are applied first (batched mode: one launch)."""
        if self.risk is not None and self.exec_pending and not self._launched:
            self.launch()
        for host, dev in zip(self.book.arrays(), self.d_book):
            dev.copy_to_host(host)
        self.d_shards.sctr.copy_to_host(self.sb.sctr)
        self.d_stats.copy_to_host(self.stats)
        if self.strategy is not None:
            self.d_strat.ss.copy_to_host(self.strategy.ss)
            self.d_strat.sg.copy_to_host(self.strategy.sg)
        if self.risk is not None:
            host, dev = self.risk.arrays(), self.d_risk
            for name in ("g", "ls", "ps", "hs", "ro", "oh", "ofree", "st", "rt", "rc"):  # the state, not limits
                getattr(dev, name).copy_to_host(getattr(host, name))

    # -- errors -----------------------------------------------------------------------------------
    def _raise_if_failed(self) -> None:
        c = self.control()
        err, at = c.error, c.error_at
        if not err:
            return
        if err == RG.ERR_BOOK:
            code, row = c.book_error, c.book_event
            seq = int(self.d_cols["seq"].copy_to_host()[row])
            ts = int(self.d_cols["ts"].copy_to_host()[row])
            per = f" per shard, {self.sb.shards} shards" if self.sb.shards > 1 else ""
            key = {B.ERR_ORDERS_FULL: f"book.max_orders ({self.sb.so:,}{per})",
                   B.ERR_LEVELS_FULL: f"book.max_levels ({self.sb.sl:,}{per})",
                   B.ERR_FEATURES_FULL: "feature rows per batch"}.get(code, f"error {code}")
            raise BookCapacityError(f"{key} exceeded at event seq {seq} (ts {ts}); raise it in the config")
        if err == RG.ERR_RISK_OUT:
            raise RiskCapacityError(f"risk: the orders-out table ({self.d_work.out.shape[0]:,} rows) filled in device "
                                    f"batch {at}; raise risk.batch_rows or risk.max_open_orders")
        if err == RG.ERR_RING_FULL:
            raise GpuPipelineError(f"an output ring filled in device batch {at} with the stop flag set and nobody "
                                   f"reading it: raise gpu.orders_rows / gpu.intents_rows, or poll while it runs")
        if err == RG.ERR_JOURNAL_FULL:
            raise GpuPipelineError(f"the feature journal filled in device batch {at}: raise gpu.journal_rows")
        raise GpuPipelineError(f"device error {err} in batch {at}")

    # -- reports ----------------------------------------------------------------------------------
    def device_name(self) -> str:
        if simulated():
            return "CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
        return str(self.cuda.get_current_device().name.decode() if isinstance(
            self.cuda.get_current_device().name, bytes) else self.cuda.get_current_device().name)
