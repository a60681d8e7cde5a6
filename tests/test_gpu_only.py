"""On a real GPU only (marked ``gpu``: skipped unless HFTBOT_TEST_GPU=1, and then a skip is a
failure): the persistent kernel fed while it runs, through mapped memory, as in production.

The simulator cannot do this (a launch there runs to completion), so these are the only tests of
the live path: the host publishes batches one by one to a running kernel, waits on the done
counter in mapped memory, and polls the intents and orders rings; results equal the CPU's.
"""

from __future__ import annotations

import numpy as np
import pytest

from kernels import ring as RG
from tests.test_gpu_pipeline import BATCH, BOOK, capture, cfg, cpu_reference, device_batches  # noqa: F401

pytestmark = pytest.mark.gpu


@pytest.mark.timeout(300)
def test_a_running_persistent_kernel_processes_batches_as_they_are_published(cfg, capture):  # noqa: F811
    from pipeline.gpu import GpuPipeline

    ref = cpu_reference(cfg, capture)[0]
    cfg.book.max_orders, cfg.book.max_levels, cfg.book.max_symbols = (BOOK["max_orders"], BOOK["max_levels"],
                                                                      BOOK["max_symbols"])
    g = GpuPipeline.from_config(cfg, batch=BATCH, shards=2, ring_batches=2)
    g.start()
    intents, decisions, orders = [], [], []
    try:
        for i, b in enumerate(device_batches(capture)):
            g.submit(b)  # with ring_batches=2 this also waits for the kernel to free a slot
            while g.done < i + 1:  # the done counter, in mapped memory
                assert not g.control().error
            it, d = g.poll_intents()
            intents.append(it)
            decisions.append(d)
            orders.append(g.poll_orders())
        assert g.control().state == RG.STATE_RUNNING  # still polling: no launch per batch
    finally:
        g.stop()
    assert g.control().state == RG.STATE_EXITED
    np.testing.assert_array_equal(np.concatenate(intents), ref["intents"])
    np.testing.assert_array_equal(np.concatenate(decisions), ref["decisions"])
    np.testing.assert_array_equal(np.concatenate(orders), ref["orders"])


def test_the_benchmark_measures_on_the_gpu_and_names_the_card():
    from bench import gpu as bench_gpu

    r = bench_gpu.section(messages=20_000, repeat=1, ticks=200, batch=4096)
    assert r["measured"] and r["card"] and r["tick_gpu"]["ticks"] > 0
    assert r["throughput_gpu"]["messages"] == r["throughput_cpu"]["messages"] > 0
