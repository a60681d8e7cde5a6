"""The per-batch step is written once (``kernels/step.py``) and every driver is built from it.

The bound bodies are plain Python until a driver compiles them, so the chunking, numbering and
stop rules of ``decide`` are checked here with recording stand-ins for the stage kernels; the
drivers' compiled steps are checked to be the template's own code object (one body, not copies).
The drivers' results are compared with each other in test_tick_path.py (per packet vs batch) and
test_gpu_pipeline.py (the GPU kernel under the CUDA simulator vs the CPU run).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

from kernels import intents as IN
from kernels import risk as R
from kernels import step as S
from kernels.state import Work

Risk = namedtuple("Risk", "g ps")


def _bound(calls, risk_rows_out=1, sink_code_at=None):
    """``decide`` bound to stand-ins: the strategy makes one intent per feature row; risk accepts
    each intent with ``risk_rows_out`` order rows; the sink records each chunk."""

    def strategy_batch(n, pred, fo, fk, ps, ss, sg, pf, pi, intents):
        intents[:n, IN.I_QTY] = np.arange(n) + 1
        calls.append(("strategy", n))
        return n

    def check_intents(m, intents, res, out, risk, book):
        g = risk.g
        for j in range(m):
            res[j, IN.D_OUT] = g[R.G_OUT_N]
            for _ in range(risk_rows_out):
                out[g[R.G_OUT_N], 0] = intents[j, IN.I_QTY]
                g[R.G_OUT_N] += 1
        calls.append(("risk", m))
        return m

    def strategy_ack(n, intents, res, ss, sg):
        calls.append(("ack", n))
        return 0

    def emit(sink, out, no):
        calls.append(("emit", no))
        sink.append(out[:no, 0].copy())
        return 7 if sink_code_at is not None and len(sink) == sink_code_at else 0

    return S.bind(S.decide, "decide_test", strategy_batch=strategy_batch, check_intents=check_intents,
                  strategy_ack=strategy_ack, emit=emit)


def _work(n):
    return Work(np.zeros((n, 4)), np.zeros((n, 4), np.int64), np.zeros(n), np.zeros((n, IN.NI), np.int64),
                np.zeros((n, IN.ND), np.int64), np.zeros((64, IN.NI), np.int64))


def test_decide_checks_in_chunks_emits_each_chunk_and_numbers_orders_across_chunks():
    calls: list = []
    sink: list = []
    decide = _bound(calls)
    work = _work(5)
    risk = Risk(np.zeros(64, np.int64), np.zeros(1))
    ni, no, code = decide(5, work, (None, None, None, None), risk, None, 2, sink)
    assert (ni, no, code) == (5, 5, S.STEP_OK)
    assert calls == [("strategy", 5), ("risk", 2), ("emit", 2), ("risk", 2), ("emit", 2), ("risk", 1), ("emit", 1),
                     ("ack", 5)]
    assert [list(c) for c in sink] == [[1, 2], [3, 4], [5]]
    # D_OUT is the order's row in the whole sequence emitted, not in its chunk
    assert list(work.res[:5, IN.D_OUT]) == [0, 1, 2, 3, 4]


def test_a_sink_code_stops_decide_before_the_acknowledgement():
    calls: list = []
    decide = _bound(calls, sink_code_at=2)
    risk = Risk(np.zeros(64, np.int64), np.zeros(1))
    ni, no, code = decide(5, _work(5), (None, None, None, None), risk, None, 2, [])
    assert code == 7 and no == 2
    assert ("ack", 5) not in calls and calls[-1] == ("emit", 2)


def test_a_full_orders_table_is_the_steps_own_code():
    def check_intents(m, intents, res, out, risk, book):
        risk.g[R.G_ERROR] = R.ERR_OUT_FULL
        return 0

    decide = S.bind(S.decide, "decide_full", strategy_batch=lambda n, *a: n, check_intents=check_intents,
                    strategy_ack=lambda *a: 0, emit=lambda *a: 0)
    risk = Risk(np.zeros(64, np.int64), np.zeros(1))
    assert decide(3, _work(3), (None,) * 4, risk, None, 8, None)[2] == S.STEP_RISK_FULL


def test_bind_names_every_stage_left_unbound():
    with pytest.raises(TypeError, match="check_intents, emit, strategy_ack"):
        S.bind(S.decide, "decide_partial", strategy_batch=lambda *a: 0)


def test_collect_appends_and_refuses_what_does_not_fit():
    sink = S.order_sink(3)
    out = np.arange(4 * IN.NI, dtype=np.int64).reshape(4, IN.NI)
    assert S.collect(sink, out, 2) == 0 and sink.n[0] == 2
    assert (sink.rows[:2] == out[:2]).all()
    assert S.collect(sink, out, 2) == 1 and sink.n[0] == 2   # nothing half-written


def test_every_driver_compiles_the_one_body():
    from kernels import cpu
    from pipeline import tick

    assert tick.step_packet.py_func.__code__ is S.step_range.__code__
    assert tick._market_packet.py_func.__code__ is S.market.__code__
    assert S.batch_decider(cpu).py_func.__code__ is S.decide.__code__
    assert S.batch_market(cpu).py_func.__code__ is S.market.__code__


def test_the_gpu_kernel_compiles_the_one_body():
    gpu = pytest.importorskip("kernels.gpu", reason="numba-cuda is not installed (pip install -e '.[cuda]')")
    d = gpu._decide
    fn = getattr(d, "py_func", None) or getattr(d, "fn", None)
    assert fn is not None and fn.__code__ is S.decide.__code__
