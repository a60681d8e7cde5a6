"""The run loop: frame source -> decode -> books and features -> model -> strategy -> risk -> FIX
bridge -> venue; execution reports -> risk; report.

Each batch: decode, books + features, feed status to risk, model, strategy, risk checks, the
accepted orders out through the FIX bridge, then the execution reports that arrived back into
risk (fills, acks, cancels; risk's hedges go out), then the simulation clock is published so the
venue simulator may advance its market. Stage times and tick-to-trade go into HdrHistograms.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from pipeline import backends
from pipeline.config import config_hash, validate
from pipeline.feed import open_reader, resolve_input
from pipeline.book import BookStage, BookState
from pipeline.stages import DecodeStage
from replay.report import FeatureSummary, book_summary, feed_summary, format_summary
from replay.report import IntentSummary, format_intents, format_risk
from pipeline.risk import RiskStage
from pipeline.strategy import model_and_strategy
from pipeline.execution import Execution, format_execution
from pipeline.latency import Latencies, format_latencies


def run(cfg: DictConfig, out_dir: Path | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Replay the configured feed through the pipeline; return (and optionally save) the report."""
    validate(cfg)
    backend = backends.load(cfg.backend.name)
    live = cfg.feed.source == "live"
    if live:
        from pipeline.live import open_live_source, sync_risk

        reader = open_live_source(cfg.feed, log)
        path = f"live:{cfg.feed.live.interface}"
    else:
        path = resolve_input(cfg.feed, log)
        reader = open_reader(cfg.feed, path)
    decode = DecodeStage(backend, capacity=reader.batch_rows, stats=reader.stats)
    b, ft = cfg.book, cfg.features
    # backend=cuda (replay, batch mode): the GPU-resident pipeline (pipeline/gpu.py) holds the
    # state on the device, one launch per batch; live and per-packet runs use the per-stage kernels
    gpu = None
    if cfg.backend.name == "cuda" and not live and not cfg.feed.per_packet:
        from pipeline.gpu import GpuPipeline

        n = int(reader.batch_rows)  # a device batch per reader batch; rings sized for one launch
        gpu = GpuPipeline.from_config(cfg, log=log, batch=n, ring_batches=2,
                                      frame_bytes=max(16 << 20, 4 * int(cfg.feed.chunk_bytes)), intents_rows=2 * n,
                                      orders_rows=n + int(cfg.risk.max_open_orders) + 2 * int(cfg.risk.batch_rows) + 16)
    state = BookState(b.max_orders, b.max_levels, b.max_symbols) if gpu is None else gpu.book
    books = BookStage(backend, state, capacity=reader.batch_rows, symbols=list(ft.symbols),
                      tau_flow_ns=ft.tau_flow_ns, tau_rv_ns=ft.tau_rv_ns, top_n=ft.top_n)
    fsum = FeatureSummary()
    risk = RiskStage.from_config(backend, cfg, state) if gpu is None or gpu.risk is None else gpu.risk
    model, strategy = model_and_strategy(cfg, backend, state, reader.batch_rows, positions=risk.state.ps, log=log)
    if gpu is not None and gpu.strategy is not None:
        strategy = gpu.strategy
    # live: gaps waiting for the rewind server mark their session stale in risk
    live_sync = sync_risk(reader, risk) if live else None
    isum = IntentSummary()
    lat = Latencies()
    ex = None
    if cfg.bridge.enabled:
        ex = Execution(cfg, out_dir or Path("runs") / "adhoc", None if live else path, state.sym, risk, log,
                       on_exec=gpu.on_exec if gpu is not None and gpu.risk is not None else None)
    if risk.wants_signal:
        risk.install_signal_handler()
    t0 = time.perf_counter()
    t_first = None
    pace0: tuple[int, int] | None = None
    tick = None
    try:
        if ex is not None:
            ex.start()
            if cfg.feed.per_packet:
                from pipeline.tick import TickPath

                tick = TickPath(decode, books, risk, model, strategy, ex.bridge)
        for batch in reader:
            if cfg.feed.pace:
                pace0 = _pace(batch, pace0, float(cfg.feed.speed))
            if tick is not None:
                _per_packet(batch, tick, decode, risk, ex, lat)
            elif gpu is not None:
                _gpu_batch(batch, gpu, risk, ex, isum, lat)
            else:
                ta = time.perf_counter_ns()
                events = decode(batch)
                tb = time.perf_counter_ns()
                fb = books(events)
                tc = time.perf_counter_ns()
                fsum.add(fb)
                risk.on_events(events)
                if live_sync is not None:
                    live_sync()
                kills = risk.poll()
                if ex is not None and kills.shape[0]:
                    ex.send(kills, ta)
                td = time.perf_counter_ns()
                te = tf = td
                if model is not None:
                    preds = model(fb)
                    te = time.perf_counter_ns()
                    intents = strategy(preds) if strategy is not None else None
                    tf = time.perf_counter_ns()
                    if intents is not None and intents.n:
                        dec = risk.check(intents.rows, intents.n)
                        strategy.on_decisions(intents, dec.decisions)
                        tg = time.perf_counter_ns()
                        lat.record("risk_check_batch", tg - tf, 1, "per batch")
                        if ex is not None and dec.orders.shape[0]:
                            ex.send(dec.orders, ta)
                    isum.add(intents, preds.n)
                if ex is not None:
                    ex.pump()
                    if events.n:
                        ex.publish(int(events.cols["ts"][events.n - 1]))
                n = max(events.n, 1)
                lat.record("decode_per_msg", (tb - ta) // n, events.n or 1, "per message, batch average")
                lat.record("book_features_per_msg", (tc - tb) // n, events.n or 1, "per message, batch average")
                if model is not None:
                    lat.record("model_batch", te - td, 1, "per batch")
                    lat.record("strategy_batch", tf - te, 1, "per batch")
                lat.record("batch_total", time.perf_counter_ns() - ta, 1, f"per batch of <= {reader.batch_rows:,} msgs")
            if t_first is None:
                t_first = time.perf_counter()
        if ex is not None:
            ex.finish()
        if gpu is not None:
            gpu.fetch()  # the device state back: books, risk, strategy, decode counters
            reader.stats += gpu.stats
            if strategy is not None:
                isum.predictions = strategy.counters()["rows"]
    finally:
        risk.remove_signal_handler()
        if ex is not None:
            ex.stop()
        if hasattr(reader, "close"):
            reader.close()
    t1 = time.perf_counter()
    feed = feed_summary(reader.stats)
    elapsed = t1 - t0
    rep: dict[str, Any] = {
        "config_hash": config_hash(cfg),
        "backend": cfg.backend.name,
        "input": str(path),
        "format": reader.format,
        "bytes": reader.bytes_read,
        "sessions": [s for s in reader.sessions()],
        "feed": feed,
        "book": book_summary(state, backend, list(ft.symbols), b.depth),
        "features": fsum.result(state),
        "trailing_bytes": reader.trailing_bytes,
        "model": {"backend": model.name, "path": str(model.model.path), "horizon_rows": model.model.horizon}
        if model is not None else {},
        "intents": isum.result(state, strategy.counters() if strategy is not None else None),
        "risk": risk.summary(),
        "execution": ex.summary() if ex is not None else {},
        "live": reader.counters() if live and hasattr(reader, "counters") else None,
        "error": reader.error,
        "timing": {
            "elapsed_s": elapsed,
            "startup_s": (t_first or t1) - t0,
            "msgs_per_s": feed["messages_in"] / elapsed if elapsed > 0 else 0.0,
            "mb_per_s": reader.bytes_read / elapsed / 1e6 if elapsed > 0 else 0.0,
        },
    }
    log(format_summary(rep, cfg.report.top_types))
    if rep["model"]:
        log(format_intents(rep))
    if tick is not None:
        log("per-packet mode: feature and intent summaries are not collected (feed.per_packet=true)")
    log("\n".join(format_risk(rep["risk"])))
    rep["latency"] = {**lat.summary(), **(rep["execution"].get("latency", {}) if rep["execution"] else {})}
    for line in format_execution(rep["execution"]) + format_latencies(rep["latency"]):
        log(line)
    if out_dir is not None and cfg.report.save:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(json.dumps(rep, indent=2))
        log(f"report     {out_dir / 'report.json'}")
    return rep


def _gpu_batch(batch, gpu, risk, ex, isum: IntentSummary, lat: Latencies) -> None:
    """backend=cuda: one batch through the GPU-resident pipeline (submit + one launch), its
    orders out through the FIX bridge, execution reports back through the exec ring."""
    from types import SimpleNamespace

    from kernels import risk as R

    ta = time.perf_counter_ns()
    if gpu.risk is not None:  # kill file / signal: a request in mapped memory, latched by the kernel
        if risk.kill_file and os.path.exists(risk.kill_file):
            gpu.kill(R.KILL_FILE)
        elif risk._signalled:
            gpu.kill(R.KILL_SIGNAL)
    gpu.submit(batch)
    gpu.launch()
    tb = time.perf_counter_ns()
    lat.record("gpu_batch", tb - ta, 1, "submit + launch, per batch")
    if gpu.risk is None:
        # books only on the device: feed status into the host's risk, as the cpu loop does
        risk.on_events(gpu.last_events())
    else:
        intents, _ = gpu.poll_intents()
        isum.add(SimpleNamespace(rows=intents, n=intents.shape[0]))
    orders = gpu.poll_orders()
    if ex is not None:
        if orders.shape[0]:
            gpu.sync_symbols()
            ex.send(orders, ta)
        ex.pump()
        if batch.n:
            last = gpu.last_events()
            if last.n:
                ex.publish(int(last.cols["ts"][last.n - 1]))


def _pace(batch, pace0: tuple[int, int] | None, speed: float) -> tuple[int, int]:
    """Recorded pace: wait until the batch's first capture time, relative to the first batch's,
    has elapsed on the wall clock (divided by ``speed``). Batch granularity."""
    rx = batch.rx[: batch.n]
    t = int(rx[0]) if batch.n else 0
    now = time.perf_counter_ns()
    if pace0 is None or t <= 0:
        return pace0 or (t, now)
    due = pace0[1] + int((t - pace0[0]) / speed)
    if due > now:
        time.sleep((due - now) / 1e9)
    return pace0


def _per_packet(batch, tick, decode, risk, ex, lat: Latencies) -> None:
    """Latency mode: the batch's packets one at a time through ``pipeline/tick.py``."""
    from pipeline.tick import T_END, T_ORDERS, T_START

    kills = risk.poll()
    if kills.shape[0]:
        ex.send(kills)
    recs = tick(batch)
    ns = ((recs[:, T_END] - recs[:, T_START]) / tick.tpn).astype(np.int64)
    has = recs[:, T_ORDERS] > 0
    for v in ns[has]:
        lat.record("tick_to_trade", int(v), 1, "packet in buffer -> FIX bytes written (per packet)")
    for v, c in zip(*np.unique(ns[~has] // 10 * 10, return_counts=True)):
        lat.record("tick_no_order", int(v), int(c), "packet in buffer -> strategy/risk done, no order")
    ex.pump()
    if tick.last_ts:
        ex.publish(tick.last_ts)
