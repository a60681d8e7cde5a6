"""The per-batch step, written once: the order of the stages and what passes between them.

::

    step_range = market -> model -> decide
    market     = decode -> books + features -> feed status
    decide     = strategy -> risk (in chunks of ``risk_rows`` intents; each chunk's orders to the
                 driver's order sink) -> strategy acknowledgement

Undecorated template bodies, ``step_range`` (a range of message blocks through every stage),
``market`` (the market half) and ``decide`` (the trading half: feature rows with their
predictions -> orders), name the stage
functions they call (``decode_batch``, ``apply_events``, ``feed_health``, ``predict_batch``,
``strategy_batch``, ``check_intents``, ``strategy_ack``) and the order sink (``emit``) as free
globals. A driver *binds* them at its edge (``bind``): the same code object with the stage
functions of its backend (numba ``njit`` dispatchers, or numba-cuda device functions) and its
own sink, then compiles the result for its target, exactly as every other kernel body is
compiled at the edge (``kernels/cpu.py``, ``kernels/gpu.py``):

=========================  ===================================================================
``PacketEngine``           ``pipeline/tick.py``: ``step_range`` per MoldUDP64 packet, compiled
                           with ``njit``; the sink encodes FIX and calls ``write(2)``
``BatchEngine``            ``pipeline/engine.py``: ``market`` per batch, the model stage (any
                           backend: numba, onnxruntime, TensorRT), then ``decide`` per batch,
                           each compiled with ``njit`` (``batch_market``, ``batch_decider``
                           below); the sink collects the orders for the gateway
``GpuEngine``              ``kernels/gpu.py: pipeline_kernel``: decode, books and the model in
                           parallel phases (one thread per message / book shard / feature row:
                           the same stage bodies), then ``decide`` on thread 0, compiled as a
                           device function; the sink publishes to the mapped orders ring
=========================  ===================================================================

So a stage in the trading half (a new check, a hedger, a throttle) is one edit here, in
``decide``, for all three drivers; a stage in the market half is one edit here, in ``market``,
for both CPU drivers, and on the GPU, whose market half runs in parallel phases (one thread
per message, per book shard, per feature row), a phase of its own.

Sinks: ``emit(sink, out, n)`` takes the ``n`` order rows that risk wrote to ``out`` (one chunk),
returns 0 to go on or a positive code of the driver's that stops the step (the caller reads it).
``decide`` returns ``(intents, orders, code)``: ``code`` 0, ``STEP_RISK_FULL`` (risk's
orders-out table filled: ``g[G_ERROR]``), or the sink's code. Decisions' ``D_OUT`` rows are
numbered across chunks (the row in the sequence of orders emitted), as ``RiskStage.check``.
"""

from __future__ import annotations

import builtins
import dis
import types
from collections import namedtuple

import numpy as np
from numba.extending import register_jitable

from kernels import KERNEL_FLAGS
from kernels import book as _book
from kernels import intents as _intents
from kernels import risk as _risk
from kernels.state import BookEvents, BookRefs, RiskTables

#: ``decide``'s / ``step_range``'s codes (negative: the step's own; positive: the sink's)
STEP_OK = 0
STEP_RISK_FULL = -1   # risk's orders-out table filled on one chunk (raise risk.max_open_orders)
STEP_BOOK = -2        # a book capacity error (book.max_orders / book.max_levels)

_C_ERROR = _book.C_ERROR
_G_OUT_N = _risk.G_OUT_N
_G_ERROR = _risk.G_ERROR
_D_OUT = _intents.D_OUT

#: the feature-row arrays ``market`` writes (``work.fo``, ``work.fk``), where a driver has no Work
MarketWork = namedtuple("MarketWork", "fo fk")

#: an order sink for ``collect``: ``rows`` int64 [capacity, NI], ``n`` int64[1] (rows used)
OrderSink = namedtuple("OrderSink", "rows n")


def decide(nf, work, strat, risk, book, risk_rows, sink):
    """Strategy -> risk -> strategy acknowledgement on feature rows ``0..nf`` of ``work``
    (``fo``/``fk``, with the model's ``pred``): intents to ``work.intents``, one decision per
    intent to ``work.res``, each risk chunk's orders through ``emit(sink, work.out, n)``.
    ``risk``: RiskArrays or RiskTables (read by name); ``book``: BookArrays or BookRefs."""
    fo, fk, pred, intents, res, out = work
    ss, sg, pf, pi = strat
    g = risk.g
    ni = strategy_batch(nf, pred, fo, fk, risk.ps, ss, sg, pf, pi, intents)  # noqa: F821 (bound)
    base = 0
    lo = 0
    while lo < ni:
        m = min(risk_rows, ni - lo)
        g[_G_OUT_N] = 0
        done = check_intents(m, intents[lo:], res[lo:], out, risk, book)  # noqa: F821 (bound)
        if g[_G_ERROR] != 0 or done < m:
            return ni, base, STEP_RISK_FULL
        for j in range(m):
            if res[lo + j, _D_OUT] >= 0:
                res[lo + j, _D_OUT] += base
        no = g[_G_OUT_N]
        code = emit(sink, out, no)  # noqa: F821 (bound)
        if code != 0:
            return ni, base, code
        base += no
        lo += m
    strategy_ack(ni, intents, res, ss, sg)  # noqa: F821 (bound)
    return ni, base, STEP_OK


def market(frames, n, ev, stats, book, feat, risk, work, out):
    """The market half: message blocks ``0..n`` of ``frames`` decoded into ``ev`` (Events, the
    event table), applied to the books (``book`` BookArrays; feature rows to ``work.fo``/``fk``
    for the subscribed symbols, settings ``feat``), and the feed's status handed to risk
    (``risk`` RiskArrays: sessions, gaps, halts, stale symbols). ``out`` gets rows decoded,
    feature rows, events applied (``out[0..2]``). Returns ``STEP_OK`` or ``STEP_BOOK``."""
    m = decode_batch(frames, n, 0, ev, stats)  # noqa: F821 (bound)
    bev = BookEvents(ev.kind, ev.side, ev.locate, ev.ts, ev.seq, ev.ref.view(np.int64), ev.new_ref.view(np.int64),
                     ev.shares, ev.price, ev.stock.view(np.int64), ev.aux, ev.alpha)
    done, nf = apply_events(m, bev, book, feat, work.fo, work.fk)  # noqa: F821 (bound)
    out[0] = m
    out[1] = nf
    out[2] = done
    if book.ctr[_C_ERROR] != 0:
        return STEP_BOOK
    feed_health(m, ev.sess, ev.seq, ev.locate, ev.ts, risk.g, risk.lim, risk.ls, risk.ps, risk.hs,  # noqa: F821
                risk.ovk, risk.ovl, book.sym)
    return STEP_OK


def step_range(frames, n, ev, stats, book, feat, model, scratch, strat, risk, work, risk_rows, sink, out):
    """Message blocks ``0..n`` of ``frames`` through every stage: ``market`` (decode, books +
    features, feed status), the model (``model`` ModelArrays; ``work.pred``) and ``decide``.
    ``out`` (int64[5]) gets messages decoded, feature rows, intents, orders and the code
    (``STEP_*`` or the sink's). Returns the code.

    Risk and the book are handed to ``decide`` as ``RiskTables`` / ``BookRefs``, the bundles
    ``RiskStage`` passes, so the risk kernel is the same compiled specialization on every path."""
    code = market(frames, n, ev, stats, book, feat, risk, work, out)  # noqa: F821 (bound)
    nf = out[1]
    out[2] = 0
    out[3] = 0
    if code == STEP_OK and nf > 0:
        predict_batch(work.fo, nf, model, scratch, work.pred)  # noqa: F821 (bound)
        tables = RiskTables(risk.g, risk.lim, risk.ls, risk.ps, risk.hs, risk.ro, risk.oh, risk.ofree, risk.st,
                            risk.rt, risk.rc)
        ni, no, code = decide(nf, work, strat, tables, BookRefs(book.bk, book.li, book.sym), risk_rows,  # noqa: F821
                              sink)
        out[2] = ni
        out[3] = no
    out[4] = code
    return code


def bind(template, name: str, **stages):
    """``template`` (``decide`` or ``step_range``) with its free stage names bound to ``stages``:
    a new function object over the same code (so one body), named ``name`` (numba's cache keys
    on the name: every binding has its own). Compile the result at the edge (``njit``,
    ``cuda.jit(device=True)``)."""
    env = dict(template.__globals__)
    env.update(stages)
    used = {i.argval for i in dis.get_instructions(template) if i.opname == "LOAD_GLOBAL"}
    missing = sorted(n for n in used if n not in env and not hasattr(builtins, n))
    if missing:
        raise TypeError(f"bind({template.__name__}): no implementation for {', '.join(missing)}")
    fn = types.FunctionType(template.__code__, env, name, template.__defaults__, template.__closure__)
    fn.__qualname__ = name
    fn.__doc__ = template.__doc__
    return fn


# --- the batch driver's binding (CPU) ---------------------------------------------------------------
@register_jitable
def collect(sink, out, n):
    """BatchEngine's sink: append ``n`` order rows to ``sink.rows`` at ``sink.n[0]``; 1 when they
    do not fit (the caller raises, naming the key)."""
    rows, cnt = sink
    k = cnt[0]
    if k + n > rows.shape[0]:
        return 1
    for r in range(n):
        for c in range(rows.shape[1]):
            rows[k + r, c] = out[r, c]
    cnt[0] = k + n
    return 0


def _batch_binding(k, template, **stages):
    """``template`` bound for ``BatchEngine`` on backend module ``k`` (``kernels.cpu`` or
    ``kernels.gpu``): compiled with ``njit`` (cached) for the CPU backend. The cuda backend's
    per-batch edge functions take host arrays and launch a kernel each, so there the bound body
    runs as Python over them: the same body, each stage on the device."""
    from kernels import cpu

    fn = bind(template, f"{template.__name__}_batch_{k.__name__.rsplit('.', 1)[-1]}", **stages)
    if k is cpu:
        from numba import njit

        return njit(cache=True, **KERNEL_FLAGS)(fn)
    return fn


def batch_market(k):
    """``market`` bound to backend ``k``'s stage functions: what ``BatchEngine`` calls once per
    batch before its model stage, as ``(frames, n, ev, stats, book, feat, risk, work, out) ->
    code``."""
    return _batch_binding(k, market, decode_batch=k.decode_batch, apply_events=k.apply_events,
                          feed_health=k.feed_health)


def batch_decider(k):
    """``decide`` bound to backend ``k``'s stage functions and the ``collect`` sink: what
    ``BatchEngine`` calls once per batch after its model stage, as ``(nf, work, strat, risk,
    book, risk_rows, sink) -> (intents, orders, code)`` with ``risk`` RiskTables and ``book``
    BookRefs."""
    return _batch_binding(k, decide, strategy_batch=k.strategy_batch, check_intents=k.check_intents,
                          strategy_ack=k.strategy_ack, emit=collect)


def order_sink(rows: int, cols: int = _intents.NI) -> OrderSink:
    """A ``collect`` sink holding up to ``rows`` order rows."""
    return OrderSink(np.zeros((rows, cols), np.int64), np.zeros(1, np.int64))
