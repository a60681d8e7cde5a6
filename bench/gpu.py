"""GPU-resident pipeline benchmark (``pipeline/gpu.py``), next to the CPU backend in the same run.

- **tick latency**: one message per device batch through the persistent kernel, from the frame
  in mapped memory (the host publishes the batch head) to the done counter (every intent and
  order of the batch published in the mapped rings): p50 / p99. Peer: the CPU stages on the same
  one-message batches (decode, book, feed status, model, strategy, risk).
- **batched throughput**: decode + books (+ features) over a generated day, in device batches
  of ``--gpu-batch`` messages, one launch per group (``wait=0``). Peer: the CPU ``DecodeStage`` +
  ``BookStage`` on the same batches.

Every figure comes with the card it ran on. Without a GPU (or under the simulator) nothing is
timed: ``section`` prints what was not measured and why, and returns that.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

NOT_MEASURED = ("GPU pipeline: not measured ({why}): per-tick latency frame -> intent (p50/p99; goal "
                "<= 5 us p99 for the inference round trip) and batched decode + book throughput (goal >= 10x "
                "the CPU backend) need a CUDA GPU; run `make bench` on a GPU machine")


def _why_not() -> str | None:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "the CUDA simulator is on: its timings mean nothing"
    try:
        from numba import cuda
    except ImportError:
        return "numba-cuda is not installed (pip install -e '.[cuda]')"
    try:
        if not cuda.is_available():
            return "no CUDA GPU or driver on this machine"
    except Exception as exc:  # a broken driver install
        return f"CUDA unavailable: {exc}"
    return None


def _cfg():
    from hydra import compose, initialize_config_dir

    from pipeline.config import register

    register()
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return compose(config_name="replay", overrides=["book=small", "features.symbols=[*]"])


def _batches(path, size):
    from replay.capture import CaptureReader, MessageBatch

    for b in CaptureReader(path):
        for lo in range(0, b.n, size):
            hi = min(b.n, lo + size)
            yield MessageBatch(b.buf, b.off[lo:hi], b.length[lo:hi], b.seq[lo:hi],
                               b.sess[lo:hi], b.rx[lo:hi], hi - lo)


def _pct(ns: list[int]) -> dict:
    a = np.array(ns, np.float64) / 1e3
    return {"p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99)), "ticks": len(a)}


def tick_latency(path, ticks: int) -> dict:
    """Persistent kernel, one message per batch: publish -> done counter, per tick."""
    from kernels import ring as RG
    from pipeline.gpu import GpuPipeline

    cfg = _cfg()
    g = GpuPipeline.from_config(cfg, batch=1, ring_batches=64)
    g.start()
    lat = []
    try:
        for i, b in enumerate(_batches(path, 1)):
            if i >= ticks:
                break
            t0 = time.perf_counter_ns()
            g.submit(b)
            while g.h_ctl[RG.CTL_TAIL] < i + 1:
                if g.h_ctl[RG.CTL_ERROR]:
                    break
            lat.append(time.perf_counter_ns() - t0)
            g.poll_orders()
            g.poll_intents()
    finally:
        g.stop()
    return {**_pct(lat[10:]), "card": g.device_name()}


def tick_latency_cpu(path, ticks: int) -> dict:
    from kernels import cpu
    from pipeline.book import BookStage, BookState
    from pipeline.model import ModelStage, load_model
    from pipeline.risk import RiskStage
    from pipeline.stages import DecodeStage
    from pipeline.strategy import StrategyStage
    from replay.capture import CaptureReader

    cfg = _cfg()
    b, ft = cfg.book, cfg.features
    st = BookState(b.max_orders, b.max_levels, b.max_symbols)
    dec = DecodeStage(cpu, 1, CaptureReader(path).stats)
    books = BookStage(cpu, st, 1, symbols=list(ft.symbols), tau_flow_ns=ft.tau_flow_ns, tau_rv_ns=ft.tau_rv_ns,
                      top_n=ft.top_n)
    risk = RiskStage.from_config(cpu, cfg, st)
    model = ModelStage(load_model(cfg.model.path), "numba", cpu, 1)
    strat = StrategyStage(cpu, cfg.strategy, rows=st.sym.shape[0], capacity=1, positions=risk.state.ps)
    lat = []
    for i, mb in enumerate(_batches(path, 1)):
        if i >= ticks:
            break
        t0 = time.perf_counter_ns()
        ev = dec(mb)
        fb = books(ev)
        risk.on_events(ev)
        ib = strat(model(fb))
        if ib.n:
            strat.on_decisions(ib, risk.check(ib.rows, ib.n).decisions)
        lat.append(time.perf_counter_ns() - t0)
    return _pct(lat[10:])


def throughput(path, batch: int, repeat: int) -> tuple[dict, dict]:
    """Decode + books, batched: GPU (one launch per ring of batches) and CPU on the same batches."""
    from kernels import cpu
    from pipeline.book import BookStage, BookState
    from pipeline.gpu import GpuPipeline
    from pipeline.stages import DecodeStage
    from replay.capture import CaptureReader

    cfg = _cfg()
    b = cfg.book
    best_g = best_c = float("inf")
    n = 0
    card = ""
    for _ in range(repeat):
        g = GpuPipeline(max_orders=b.max_orders, max_levels=b.max_levels, max_symbols=b.max_symbols, symbols=["*"],
                        full=False, batch=batch, shards=128, threads=128, shard_capacity=8 / 128,
                        ring_batches=8, frame_bytes=64 << 20)
        card = g.device_name()
        t0 = time.perf_counter()
        n = 0
        for mb in _batches(path, batch):
            g.submit(mb)  # waits for ring space while the previous launch drains
            n += mb.n
            if g.published - g.done >= 4:
                g.launch(sync=False)
        g.launch(sync=True)
        best_g = min(best_g, time.perf_counter() - t0)
        st = BookState(b.max_orders, b.max_levels, b.max_symbols)
        reader = CaptureReader(path)
        dec = DecodeStage(cpu, batch, reader.stats)
        books = BookStage(cpu, st, batch, symbols=["*"])
        t0 = time.perf_counter()
        for mb in _batches(path, batch):
            books(dec(mb))
        best_c = min(best_c, time.perf_counter() - t0)
    return ({"msgs_per_s": n / best_g, "messages": n, "card": card},
            {"msgs_per_s": n / best_c, "messages": n})


def section(messages: int = 1_000_000, repeat: int = 3, ticks: int = 5000, batch: int = 65536) -> dict:
    """Print the GPU pipeline's figures next to the CPU's; returns them (or what was not measured)."""
    why = _why_not()
    if why is not None:
        line = NOT_MEASURED.format(why=why)
        print(line)
        return {"measured": False, "why": why, "line": line}
    from bench.__main__ import inputs

    path = inputs(messages)["itch"]
    print(f"gpu pipeline: generated feed, {messages:,} messages; tick = one message per device batch")
    gl = tick_latency(path, ticks)
    cl = tick_latency_cpu(path, ticks)
    print(f"  tick latency  gpu  p50 {gl['p50_us']:8.2f} us  p99 {gl['p99_us']:8.2f} us   ({gl['card']}, persistent "
          f"kernel, frame in mapped memory -> intents published)")
    print(f"  tick latency  cpu  p50 {cl['p50_us']:8.2f} us  p99 {cl['p99_us']:8.2f} us   (the same stages, njit, "
          f"one message per call)")
    gt, ct = throughput(path, batch, repeat)
    print(f"  decode+book   gpu {gt['msgs_per_s'] / 1e6:8.1f} M msg/s   {gt['msgs_per_s'] / ct['msgs_per_s']:6.2f}x cpu"
          f"   ({gt['card']}, batches of {batch:,}, 128 book shards of 8/128 of the book each)")
    print(f"  decode+book   cpu {ct['msgs_per_s'] / 1e6:8.1f} M msg/s")
    return {"measured": True, "card": gl["card"], "tick_gpu": gl, "tick_cpu": cl, "throughput_gpu": gt,
            "throughput_cpu": ct}
