"""The per-packet path on the CPU: packet in the buffer -> FIX bytes on the socket, in compiled code.

The run loop works on batches (throughput: up to 262,144 messages a call). For latency, this
path takes the *same stage objects* (their state arrays, the same kernels from ``kernels.cpu``)
and runs them one MoldUDP64 packet at a time inside one compiled loop: decode, books +
features, feed status, model, strategy, risk, the bridge's FIX encoder and the ``write`` system
call on the FIX session's socket. Python is called once per batch of packets, not per packet,
and tick-to-trade is read from the CPU's time-stamp counter around each packet: from the moment
its processing starts (the packet is in the buffer) to the return of ``write``.

Execution reports are applied between calls (``FixBridge.poll`` -> ``RiskStage.on_exec``), as in
the run loop; a packet's orders see the fills of the previous call, not of the packet before.
"""

from __future__ import annotations

import ctypes
import time
from collections import namedtuple

import numpy as np
from numba import njit

from kernels.clock import rdtsc, ticks_per_ns, tsc
from bridges.fix.codec import C_BAD_ROW, encode_orders, parse_reports  # noqa: F401  (parse: warm-up)
from kernels import book as B
from kernels import risk as R
from kernels.cpu import (apply_events, check_intents, decode_batch, feed_health, predict_batch, strategy_ack,
                         strategy_batch)
from kernels.intents import ND, NI
from kernels.memory import prefault
from kernels.state import BookEvents, BookRefs, Events, Frames, ModelScratch, RiskTables, TickSession, Work

_libc = ctypes.CDLL(None, use_errno=True)
_write = _libc.write
_write.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
_write.restype = ctypes.c_ssize_t

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
NX = 8

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


@njit(nogil=True)
def tick_batch(packets, frames, ev, stats, book, feat, model, scratch, strat, risk, work, fix, session, rec, x):
    """Run the packets ``k`` (messages ``packets.lo[k]..packets.hi[k]`` of ``frames``) through every stage
    and the FIX encoder + ``write(session.fd)``. Bundles (``kernels/state.py``): ``frames``
    Frames, ``ev`` Events (the decode table, reused per packet), ``book`` BookArrays, ``feat``
    FeatureConf, ``model`` ModelArrays, ``strat`` StrategyArrays, ``risk`` RiskArrays, ``work``
    Work (feature rows, predictions, intents, decisions, orders out), ``fix`` FixArrays,
    ``session`` TickSession. Per-packet records go to ``rec`` (``T_*``, tsc ticks), totals to
    ``x`` (``X_*``, read them with ``results``). Returns the packets done.

    The step order (decode -> books + features -> feed status -> model -> strategy -> risk ->
    FIX) is the run loop's; the GPU kernel runs the same stages in phases of its own (parallel
    decode and book shards), so the two are not one body (``kernels/gpu.py: pipeline_kernel``)."""
    buf, off, length, mseq, msess, mrx = frames
    kind, side, locate, tracking, sess, mpid, ts, rxc, seq, ref, new_ref, shares, price, match, stock, aux, alpha = ev
    bev = BookEvents(kind, side, locate, ts, seq, ref.view(np.int64), new_ref.view(np.int64), shares, price,
                     stock.view(np.int64), aux, alpha)
    bsym = book.sym
    ctr = book.ctr
    ss, sg, pf, pi = strat
    g, lim, ls, ps, hs, ro, oh, ofree, st, rt, rc, ovk, ovl = risk
    # risk's kernels get the smaller bundles (the arrays they read), as RiskStage passes them
    risk_tables = RiskTables(g, lim, ls, ps, hs, ro, oh, ofree, st, rt, rc)
    book_refs = BookRefs(book.bk, book.li, book.sym)
    fo, fk, pred, intents, res, out = work
    sym, date, sender, target, prefix, msg_ids, msg_of, ot, obuf, offs, cnt, bad = fix
    fd, seq0, msg0, max_msgs, wall_ns, tsc0, ns_per_tick = session
    pk_lo, pk_hi = packets
    n_pk = pk_lo.shape[0]
    seqn = seq0
    msg = msg0
    x[X_STOP] = STOP_DONE
    k = 0
    while k < n_pk:
        t0 = rdtsc()
        a = pk_lo[k]
        z = pk_hi[k]
        m = decode_batch(Frames(buf, off[a:z], length[a:z], mseq[a:z], msess[a:z], mrx[a:z]), z - a, 0, ev, stats)
        _, nf = apply_events(m, bev, book, feat, fo, fk)
        if ctr[B.C_ERROR] != 0:
            x[X_STOP] = STOP_BOOK
            break
        feed_health(m, sess, seq, locate, ts, g, lim, ls, ps, hs, ovk, ovl, bsym)
        if m > 0:
            x[X_TS] = ts[m - 1]
        nw = 0
        if nf > 0:
            predict_batch(fo, nf, model, scratch, pred)
            ni = strategy_batch(nf, pred, fo, fk, ps, ss, sg, pf, pi, intents)
            if ni > 0:
                g[R.G_OUT_N] = 0
                dn = check_intents(ni, intents, res, out, risk_tables, book_refs)
                if g[R.G_ERROR] != 0 or dn < ni:
                    x[X_STOP] = STOP_RISK
                    break
                strategy_ack(ni, intents, res, ss, sg)
                no = g[R.G_OUT_N]
                if no > 0:
                    if msg + no > max_msgs:
                        x[X_STOP] = STOP_BRIDGE_FULL
                        break
                    now = wall_ns + np.int64((rdtsc() - tsc0) * ns_per_tick)
                    nw = encode_orders(no, out, seqn, now, msg, fix)
                    nbytes = offs[no]
                    wr = 0
                    while wr < nbytes:
                        r = _write(fd, obuf[wr:].ctypes.data, nbytes - wr)
                        if r <= 0:
                            break
                        wr += r
                    seqn += nw
                    msg += nw
                    if wr < nbytes:  # the packet is done; Python writes the rest, then calls again
                        x[X_PENDING] = nbytes - wr
                        x[X_PENDING_OFF] = wr
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
    x[X_SEQ] = seqn
    x[X_MSG] = msg
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
