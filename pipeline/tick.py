"""The per-packet path on the CPU: packet in the buffer -> FIX bytes on the socket, in compiled code.

The run loop works on batches (throughput: up to 262,144 messages a call). For latency, this
path takes the *same stage objects* (their state arrays, the same kernels from ``kernels.cpu``)
and runs them one MoldUDP64 packet at a time inside one compiled loop: the step of
``kernels/step.py`` (decode, books + features, feed status, model, strategy, risk), bound to the
CPU kernels and an order sink that runs the bridge's FIX encoder and the ``write`` system call
on the FIX session's socket. Python is called once per batch of packets, not per packet,
and tick-to-trade is read from the CPU's time-stamp counter around each packet: from the moment
its processing starts (the packet is in the buffer) to the return of ``write``.

Execution reports are applied between calls (``FixBridge.poll`` -> ``RiskStage.on_exec``), as in
the run loop; a packet's orders see the fills of the previous call, not of the packet before.
"""

from __future__ import annotations

import time
from collections import namedtuple

import numpy as np
from numba import njit

from kernels.clock import rdtsc, ticks_per_ns, tsc
from bridges.fix.codec import C_BAD_ROW, encode_orders, parse_reports, write_all  # noqa: F401  (parse: warm-up)
from kernels import book as B
from kernels.cpu import (apply_events, check_intents, decode_batch, feed_health, predict_batch, strategy_ack,
                         strategy_batch)
from kernels.intents import ND, NI
from kernels.memory import prefault
from kernels.state import Events, Frames, ModelScratch, TickSession, Work
from kernels.step import STEP_BOOK, STEP_RISK_FULL, bind, decide, market, step_range

# per-packet record columns (int64 [packets, NT])
T_START = 0       # tsc when the packet's processing began
T_END = 1         # tsc after write() returned (orders) or after risk (no orders)
T_ORDERS = 2      # orders written for the packet
T_MSGS = 3        # messages in the packet
NT = 4

# results (int64 slots of ``x``; read them with ``results(x)``)
X_PACKETS = 0
X_ORDERS = 1
X_STOP = 2        # a STOP_* code
X_PENDING = 3     # bytes of the last packet's messages not written (STOP_WRITE): Python finishes them
X_PENDING_OFF = 4
X_SEQ = 5         # next MsgSeqNum after the call
X_MSG = 6         # next message number after the call
X_TS = 7          # feed timestamp of the last event decoded (the clock the venue may advance to)
X_STEP = 8        # 5 slots: the step's per-packet out (kernels/step.py step_range)
NX = 13

# why a call stopped (x[X_STOP])
STOP_DONE = 0
STOP_BOOK = 1         # book capacity error
STOP_RISK = 2         # risk error (orders-out table full)
STOP_WRITE = 3        # write() did not take every byte: Python writes the rest
STOP_BRIDGE_FULL = 4  # the bridge's message table is full

#: ``x`` read by name
TickResult = namedtuple("TickResult", "packets orders stop pending pending_off seq msg ts")

#: packets of a batch: message ``lo[k]`` up to (not including) ``hi[k]`` (int64 each)
Packets = namedtuple("Packets", "lo hi")


def results(x: np.ndarray) -> TickResult:
    """The totals a ``tick_batch`` call left in ``x``, by name."""
    return TickResult(int(x[X_PACKETS]), int(x[X_ORDERS]), int(x[X_STOP]), int(x[X_PENDING]),
                      int(x[X_PENDING_OFF]), int(x[X_SEQ]), int(x[X_MSG]), int(x[X_TS]))


#: the per-packet step's functions take a dozen bundles (~70 arrays): compiled without numba's
#: reference-counting runtime (they never allocate), or every call pays an atomic incref/decref
#: per array. Measured (bench.tick, quiet machine, 2026-12-06): packets without an order p50
#: 3.3 µs with it, 1.0 µs without (the earlier hand-written loop: 0.88 µs; kernels/cpu.py _jit).
_jit_step = njit(nogil=True, _nrt=False)
#: ``market`` and ``decide`` are inlined into ``step_packet`` (numba IR inlining: small bodies;
#: a call would pass every array of their bundles again, once per packet)
_jit_inline = njit(nogil=True, _nrt=False, inline="always")


@_jit_step
def emit_write(sink, out, no):
    """The per-packet driver's order sink (``kernels/step.py``): encode risk's ``no`` order rows
    as FIX and ``write`` them to the session's socket, in the compiled call. ``sink``: (FixArrays,
    TickSession, ``x``); the running MsgSeqNum and message number are ``x[X_SEQ]``, ``x[X_MSG]``.
    A short write leaves the rest to Python (``x[X_PENDING]``, ``X_PENDING_OFF``): the packet
    is finished, then the loop stops (``STOP_WRITE``)."""
    fix, session, x = sink
    if no == 0:
        return 0
    if x[X_PENDING] != 0:   # bytes of an earlier chunk still unwritten: never reorder the stream
        return STOP_WRITE
    msg = x[X_MSG]
    if msg + no > session.max_msgs:
        return STOP_BRIDGE_FULL
    now = session.wall_ns + np.int64((rdtsc() - session.tsc0) * session.ns_per_tick)
    nw = encode_orders(no, out, x[X_SEQ], now, msg, fix)
    nbytes = fix.offs[no]
    wr = write_all(session.fd, fix.out.ctypes.data, nbytes)
    x[X_SEQ] += nw
    x[X_MSG] += nw
    if wr < nbytes:
        x[X_PENDING] = nbytes - wr
        x[X_PENDING_OFF] = wr
    return 0


#: the step (``kernels/step.py``) bound to the CPU stage kernels and the FIX write sink
_decide_packet = _jit_inline(bind(decide, "decide_packet", strategy_batch=strategy_batch,
                                       check_intents=check_intents, strategy_ack=strategy_ack, emit=emit_write))
_market_packet = _jit_inline(bind(market, "market_packet", decode_batch=decode_batch, apply_events=apply_events,
                                      feed_health=feed_health))
step_packet = _jit_step(bind(step_range, "step_packet", market=_market_packet, predict_batch=predict_batch,
                                    decide=_decide_packet))


@_jit_step
def tick_batch(packets, frames, ev, stats, book, feat, model, scratch, strat, risk, work, fix, session, rec, x):
    """Run the packets ``k`` (messages ``packets.lo[k]..packets.hi[k]`` of ``frames``) through the
    step (``kernels/step.py: step_range``, bound here to the CPU kernels and the FIX write sink).
    Bundles (``kernels/state.py``): ``frames`` Frames, ``ev`` Events (the decode table, reused per
    packet), ``book`` BookArrays, ``feat`` FeatureConf, ``model`` ModelArrays, ``strat``
    StrategyArrays, ``risk`` RiskArrays, ``work`` Work (feature rows, predictions, intents,
    decisions, orders out), ``fix`` FixArrays, ``session`` TickSession. Per-packet records go to
    ``rec`` (``T_*``, tsc ticks), totals to ``x`` (``X_*``, read them with ``results``). Returns
    the packets done."""
    buf, off, length, mseq, msess, mrx = frames
    ts = ev.ts
    pk_lo, pk_hi = packets
    n_pk = pk_lo.shape[0]
    x[X_STOP] = STOP_DONE
    x[X_SEQ] = session.seq0
    x[X_MSG] = session.msg0
    sink = (fix, session, x)
    risk_rows = work.intents.shape[0]   # one risk chunk per packet: its orders go out in one write
    so = x[X_STEP:X_STEP + 5]
    k = 0
    while k < n_pk:
        t0 = rdtsc()
        a = pk_lo[k]
        z = pk_hi[k]
        msg_before = x[X_MSG]
        code = step_packet(Frames(buf, off[a:z], length[a:z], mseq[a:z], msess[a:z], mrx[a:z]), z - a, ev, stats,
                           book, feat, model, scratch, strat, risk, work, risk_rows, sink, so)
        if so[0] > 0:
            x[X_TS] = ts[so[0] - 1]
        if code == STEP_BOOK:
            x[X_STOP] = STOP_BOOK
            break
        if code == STEP_RISK_FULL:
            x[X_STOP] = STOP_RISK
            break
        if code > 0:
            x[X_STOP] = code
            break
        nw = x[X_MSG] - msg_before
        if x[X_PENDING] != 0:   # the packet is done; Python writes the rest, then calls again
            x[X_STOP] = STOP_WRITE
        rec[k, T_START] = t0
        rec[k, T_END] = rdtsc()
        rec[k, T_ORDERS] = nw
        rec[k, T_MSGS] = z - a
        x[X_ORDERS] += nw
        k += 1
        if x[X_STOP] != STOP_DONE:
            break
    x[X_PACKETS] = k
    return k


def packet_bounds(rx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Packets of a batch: runs of messages with the same capture time (one MoldUDP64 packet)."""
    r = rx[:n]
    cut = np.flatnonzero(r[1:] != r[:-1]) + 1
    lo = np.concatenate(([0], cut)).astype(np.int64)
    hi = np.concatenate((cut, [n])).astype(np.int64)
    return lo, hi


class TickPath:
    """The stage objects of one run, driven one packet at a time (see the module docstring).

    Needs the numba model backend (the others are not callable from compiled code)."""

    def __init__(self, decode, books, risk, model, strategy, bridge, max_packets: int = 1 << 16,
                 defer_write: bool = False):
        if getattr(model.impl, "name", "") != "numba":
            raise ValueError("the per-packet path needs model.backend=numba")
        self.decode, self.books, self.risk, self.model, self.strategy, self.bridge = (decode, books, risk, model,
                                                                                     strategy, bridge)
        #: defer_write: the compiled loop stops at a packet's encoded orders (T_END before the
        #: system call) and Python writes them: separates compute from the kernel's send path
        self.defer_write = bool(defer_write)
        self.rec = np.zeros((max_packets, NT), np.int64)
        self.x = np.zeros(NX, np.int64)
        self.tpn = ticks_per_ns()
        cap = decode.table.capacity
        self.pred = np.zeros(max(cap, 1), np.float64)
        self.res = np.zeros((max(cap, 1), ND), np.int64)
        self.intents = np.zeros((max(cap, 1), NI), np.int64)
        self._model = model.impl.kernel_args()
        self._scratch = ModelScratch(model.impl.h, model.impl.hb)
        self._work = Work(books.fo, books.fk, self.pred, self.intents, self.res, risk.out)
        rs = risk.state
        prefault(bridge.ot, bridge.msg_ids, bridge.msg_of, bridge.out, risk.out, risk.res, rs.ro, rs.oh, rs.ofree,
                 rs.ps, rs.ls, rs.hs, self.pred, self.res, self.intents, strategy.ss, strategy.out)

    def warm(self, batch) -> None:
        """Compile (or load) ``tick_batch`` on zero packets of ``batch``'s arrays, before the
        session exists: nothing is decoded, sent or changed."""
        d, b, br = self.decode, self.books, self.bridge
        none = np.zeros(0, np.int64)
        session = TickSession(fd=-1, seq0=1, msg0=br.n_msgs + 1, max_msgs=br.max_orders, wall_ns=time.time_ns(),
                              tsc0=int(tsc()), ns_per_tick=1.0 / self.tpn)
        last_ts = results(self.x).ts
        tick_batch(Packets(none, none), Frames(batch.buf, batch.off, batch.length, batch.seq, batch.sess, batch.rx),
                   Events(*d.table.columns()), d.stats, b.state.arrays(), b.feature_conf(), self._model,
                   self._scratch, self.strategy.arrays(), self.risk.arrays(), self._work, br.arrays(), session,
                   self.rec, self.x)
        self.x[:] = 0
        self.x[X_TS] = last_ts

    @property
    def last_ts(self) -> int:
        """Feed time of the last event processed (ns since midnight; 0 before any)."""
        return results(self.x).ts

    def __call__(self, batch) -> np.ndarray:
        """Run every packet of ``batch``; returns the per-packet records (tsc ticks)."""
        lo, hi = packet_bounds(batch.rx, batch.n)
        out_recs = []
        p = 0
        while p < lo.shape[0]:
            n_pk = min(lo.shape[0] - p, self.rec.shape[0])
            res = self._call(batch, Packets(lo[p:p + n_pk], hi[p:p + n_pk]))
            out_recs.append(self.rec[:res.packets].copy())
            p += res.packets
            if res.stop == STOP_BOOK:
                raise RuntimeError(f"book capacity error {int(self.books.state.ctr[B.C_ERROR])} (book.max_orders / "
                                   "book.max_levels): raise it in the config")
            if res.stop == STOP_RISK:
                self.risk.raise_if_error("check")
                raise RuntimeError("risk: the orders-out table filled on one packet")
            if res.stop == STOP_BRIDGE_FULL:
                raise RuntimeError(f"bridge.max_orders ({self.bridge.max_orders:,}) messages used up; raise it")
        return np.concatenate(out_recs) if out_recs else np.zeros((0, NT), np.int64)

    def _call(self, batch, packets: Packets) -> TickResult:
        # the bridge's lock: no heartbeat from its keepalive thread between our sequence numbers
        with self.bridge.lock:
            return self._call_locked(batch, packets)

    def _call_locked(self, batch, packets: Packets) -> TickResult:
        d, b, br = self.decode, self.books, self.bridge
        if not br.logged_on or br.fd < 0:
            raise RuntimeError(f"the FIX session is down (logged on {br.logged_on}, socket {br.fd}): the "
                               "per-packet path needs a logged-on bridge")
        msg0 = br.n_msgs + 1
        session = TickSession(fd=br.fd if not self.defer_write else -1, seq0=br.next_seq(), msg0=msg0,
                              max_msgs=br.max_orders, wall_ns=time.time_ns(), tsc0=int(tsc()),
                              ns_per_tick=1.0 / self.tpn)
        last_ts = results(self.x).ts
        self.x[:] = 0
        self.x[X_TS] = last_ts
        tick_batch(packets, Frames(batch.buf, batch.off, batch.length, batch.seq, batch.sess, batch.rx),
                   Events(*d.table.columns()), d.stats, b.state.arrays(), b.feature_conf(), self._model,
                   self._scratch, self.strategy.arrays(), self.risk.arrays(), self._work, br.arrays(), session,
                   self.rec, self.x)
        res = results(self.x)
        br.commit_sent(res.seq, res.msg - msg0)
        if res.stop == STOP_WRITE:
            br.write(memoryview(br.out)[res.pending_off:res.pending_off + res.pending])
        return res
