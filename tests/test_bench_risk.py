"""The risk benchmark's timing (``bench/risk.py``) and the fenced counter reads it uses
(``kernels/clock.py``), on a small flow."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from kernels.clock import rdtsc, tsc_begin, tsc_end


@njit
def _regions(n, work, out):
    acc = 0
    for k in range(n):
        a = tsc_begin()
        for j in range(work):
            acc += (j * 7919) ^ k
        b = tsc_end()
        out[k] = b - a
    return acc


def test_fenced_counter_reads_order_and_count_the_region():
    """``tsc_begin``/``tsc_end`` compile into njit code, never run backwards, and a region with
    work counts more than an empty one (medians: a single region may be interrupted)."""
    empty = np.zeros(2000, np.int64)
    busy = np.zeros(2000, np.int64)
    _regions(len(empty), 0, empty)
    _regions(len(busy), 2000, busy)
    assert (empty >= 0).all() and (busy >= 0).all()
    assert np.median(busy) > np.median(empty)
    plain = njit(lambda: rdtsc())
    a = plain()
    assert plain() >= a


@pytest.mark.slow
def test_risk_bench_times_every_intent_and_agrees_with_python():
    """A small flow through ``measure`` (timed, untimed and the Python peer reach the same
    decisions) and through ``lines`` (the loop with each intent's lines loaded first reaches
    the same decisions: asserted inside; both variants reported for both cases)."""
    from bench import risk as B

    r = B.measure(n=2000, repeat=1, focused=10, messages=30_000)
    for case in ("focused", "wide"):
        c = r[case]
        assert c["identical_decisions"], c["decisions"]
        assert c["intents"] == 2000 and sum(c["decisions"].values()) == 2000
        o = c["ours"]
        assert 0 < o["p50_ns"] <= o["p99_ns"] <= o["p999_ns"]
        assert o["timer"]["tsc_step_ns"] > 0 and o["timer_ns"] > 0
        assert set(o["by_kind"]) >= {"new", "cancel", "replace", "accepted"}
    out = B.lines(n=2000, rounds=1, focused=10, messages=30_000)
    rows = [x.strip() for x in out[1:]]
    assert sum(x.startswith("as it runs") for x in rows) == 2 and sum(x.startswith("loaded first") for x in rows) == 2
    assert out[0].startswith("risk, where the p99 comes from: fenced counter reads")
