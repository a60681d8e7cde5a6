"""Model benchmark: inference latency per event and batched throughput for the shipped model
(``models/default.onnx``) on each available backend, next to onnxruntime on the CPU in the same
run (one thread each).

  python -m bench.model [--rows N] [--events N] [--repeat R]

Inputs: the feature rows of the training feed (generated: 200k messages, 8 symbols, every
symbol subscribed; ``pipeline/train.py``), so the inputs are real book states.

Per event (one feature row at a time, ``--events`` rows, p50 / p99 / mean):
- ``numba.kernel``: the fused kernel body (``kernels.model.predict_row``) called on one row
  inside compiled code, each call timed with the CPU's time-stamp counter (``rdtsc`` via
  ``llvm.readcyclecounter``, not serialising; the counter's rate is measured against
  ``perf_counter`` and the cost of an empty measurement is subtracted). This is the latency the
  pipeline pays, where the model runs inside the compiled hot path.
- ``numba.call``: ``NumbaBackend`` called from Python on one row (the njit dispatch of 15
  arguments included), timed with ``perf_counter_ns``.
- ``onnxruntime.call``: ``OnnxRuntimeBackend`` on one row from Python (input preparation,
  ``InferenceSession.run``, copy out), timed the same way: the peer of ``numba.call``.

Batched (all ``--rows`` rows through the stage interface, batches of 65,536, best of
``--repeat``): ``numba`` (njit, one core), ``onnxruntime`` (CPU provider, one thread), and
``numba.cuda`` when a real GPU is present (not on these machines).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

BATCH = 1 << 16


def _rdtsc_tools():
    from numba import njit

    from bench.clock import rdtsc
    from bench.clock import tsc as ticks
    from kernels import model as KM

    @njit(nogil=True, fastmath=True)  # as kernels.cpu compiles predict_batch
    def per_event(f, n, in_col, in_rel, in_scale, in_shift, n_layers, dims, w, w_off, b, b_off, act, h, out, dt):
        for r in range(n):
            t0 = rdtsc()
            out[r] = KM.predict_row(f, r, in_col, in_rel, in_scale, in_shift, n_layers, dims, w, w_off, b, b_off,
                                    act, h)
            dt[r] = rdtsc() - t0

    @njit(nogil=True)
    def empty(n, dt):
        for r in range(n):
            t0 = rdtsc()
            dt[r] = rdtsc() - t0

    return ticks, per_event, empty


def stats_ns(dt_ns: np.ndarray) -> dict[str, float]:
    return {"p50_ns": float(np.percentile(dt_ns, 50)), "p99_ns": float(np.percentile(dt_ns, 99)),
            "mean_ns": float(dt_ns.mean()), "events": int(len(dt_ns))}


def feature_rows(rows: int) -> np.ndarray:
    from pipeline.train import TrainConf, build_features, feed_path

    c = TrainConf()
    values, _ = build_features(feed_path(c), c)
    if rows > len(values):  # repeat the day's rows to the size asked for
        values = np.tile(values, (rows // len(values) + 1, 1))
    return np.ascontiguousarray(values[:rows])


def per_call(backend, f: np.ndarray, events: int) -> np.ndarray:
    out = np.zeros(1)
    for r in range(min(200, events)):  # warm-up
        backend(f[r:r + 1], 1, out)
    dt = np.zeros(events, np.int64)
    clock = time.perf_counter_ns
    for r in range(events):
        row = f[r:r + 1]
        t0 = clock()
        backend(row, 1, out)
        dt[r] = clock() - t0
    return dt.astype(np.float64)


def batched(backend, f: np.ndarray, repeat: int) -> dict[str, float]:
    out = np.zeros(len(f))
    backend(f[:BATCH], min(BATCH, len(f)), out)  # warm-up / compile
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for lo in range(0, len(f), BATCH):
            m = min(BATCH, len(f) - lo)
            backend(f[lo:lo + m], m, out[lo:lo + m])
        best = min(best, time.perf_counter() - t0)
    return {"rows": int(len(f)), "best_s": best, "per_s": len(f) / best, "ns_per_row": best / len(f) * 1e9}


def section(rows: int = 1_000_000, events: int = 20_000, repeat: int = 3) -> dict:
    """Run the model benchmark and print it; returns the figures."""
    from kernels import cpu
    from pipeline.model import NumbaBackend, OnnxRuntimeBackend, load_model

    model = load_model()
    f = feature_rows(rows)
    mlp = model.mlp()
    arch = model.meta["arch"]
    print(f"model: {model.path.name} (MLP {'-'.join(map(str, arch['dims']))}, {arch['params']:,} parameters), "
          f"{len(f):,} feature rows of the generated training feed; one thread each; ratio = numba / onnxruntime")
    res: dict = {"model": model.path.name, "dims": arch["dims"]}
    nb = NumbaBackend(model, cpu)
    ort = OnnxRuntimeBackend(model, cpu, threads=1)

    # per event, inside compiled code
    ticks, per_event, empty = _rdtsc_tools()
    from bench.clock import ticks_per_ns

    ghz = ticks_per_ns()  # ticks per ns = GHz
    n = min(events, len(f))
    out = np.zeros(n)
    dt = np.zeros(n, np.int64)
    h = np.zeros_like(nb.h)
    args = (f, n, model.in_col, model.in_rel, *mlp.args(), h, out, dt)
    per_event(*args)  # compile + warm
    best = None
    for _ in range(repeat):
        per_event(*args)
        if best is None or np.percentile(dt, 50) < np.percentile(best, 50):
            best = dt.copy()
    empty(n, dt)
    empty(n, dt)
    overhead = float(np.percentile(dt, 50))
    kern = stats_ns(np.maximum(best - overhead, 0) / ghz)
    res["numba.kernel"] = {**kern, "tsc_ghz": ghz, "rdtsc_overhead_ticks": overhead}
    res["numba.call"] = stats_ns(per_call(nb, f, n))
    res["onnxruntime.call"] = stats_ns(per_call(ort, f, n))
    peer = res["onnxruntime.call"]
    print(f"  per event ({n:,} events, one row at a time)      p50        p99       mean   p50 ratio")
    for name, what in (("numba.kernel", "fused kernel inside compiled code (rdtsc)"),
                       ("numba.call", "NumbaBackend from Python, one row"),
                       ("onnxruntime.call", "onnxruntime from Python, one row")):
        r = res[name]
        print(f"  {name:<18} {r['p50_ns']:9,.0f} ns {r['p99_ns']:9,.0f} ns {r['mean_ns']:9,.0f} ns  "
              f"{r['p50_ns'] / peer['p50_ns']:8.3f}x  {what}")
    res["batched.numba"] = batched(nb, f, repeat)
    res["batched.onnxruntime"] = batched(ort, f, repeat)
    gpu = _gpu_batched(model, f, repeat)
    if gpu:
        res["batched.numba.cuda"] = gpu
    print(f"  batched ({len(f):,} rows, {BATCH:,} a batch, best of {repeat})")
    peer = res["batched.onnxruntime"]
    for name in ("batched.numba", "batched.onnxruntime", "batched.numba.cuda"):
        if name in res:
            r = res[name]
            print(f"  {name:<22} {r['per_s'] / 1e6:7.2f} M inferences/s  {r['ns_per_row']:7.1f} ns/row  "
                  f"{r['per_s'] / peer['per_s']:6.2f}x")
    if not gpu:
        print("  numba.cuda             skipped: no CUDA GPU here (the kernel is tested under the simulator only)")
    k, b = res["numba.kernel"], res["batched.numba"]
    print(f"  goals: numba CPU p50 <= 1 us: {'met' if k['p50_ns'] <= 1000 else 'MISSED'} ({k['p50_ns']:,.0f} ns "
          f"in the kernel); >= 1M inferences/s batched: {'met' if b['per_s'] >= 1e6 else 'MISSED'} "
          f"({b['per_s'] / 1e6:.2f} M/s); GPU p99 <= 5 us: not measured (no GPU)")
    return res


def _gpu_batched(model, f, repeat):
    """numba.cuda batched throughput on a real GPU (None without one, or under the simulator)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return None
    try:
        from numba import cuda

        if not cuda.is_available():
            return None
        from kernels import gpu
        from pipeline.model import NumbaBackend
    except Exception:
        return None
    return batched(NumbaBackend(model, gpu), f, repeat)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.model")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    section(a.rows, a.events, a.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
