"""The run loop: frame source -> decode -> books and features -> model -> strategy -> risk -> report.

(The FIX bridge and the venue simulator that would send risk's accepted orders and return fills
are a later stage: until then accepted orders stay working in risk's books.)"""

from __future__ import annotations

import json
import time
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


def run(cfg: DictConfig, out_dir: Path | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Replay the configured feed through the pipeline; return (and optionally save) the report."""
    validate(cfg)
    backend = backends.load(cfg.backend.name)
    path = resolve_input(cfg.feed, log)
    reader = open_reader(cfg.feed, path)
    decode = DecodeStage(backend, capacity=reader.batch_rows, stats=reader.stats)
    b, ft = cfg.book, cfg.features
    state = BookState(b.max_orders, b.max_levels, b.max_symbols)
    books = BookStage(backend, state, capacity=reader.batch_rows, symbols=list(ft.symbols),
                      tau_flow_ns=ft.tau_flow_ns, tau_rv_ns=ft.tau_rv_ns, top_n=ft.top_n)
    fsum = FeatureSummary()
    risk = RiskStage.from_config(backend, cfg, state)
    model, strategy = model_and_strategy(cfg, backend, state, reader.batch_rows, positions=risk.state.ps, log=log)
    isum = IntentSummary()
    if risk.wants_signal:
        risk.install_signal_handler()
    t0 = time.perf_counter()
    t_first = None
    try:
        for batch in reader:
            events = decode(batch)
            fb = books(events)
            fsum.add(fb)
            risk.on_events(events)
            risk.poll()
            if model is not None:
                preds = model(fb)
                intents = strategy(preds) if strategy is not None else None
                if intents is not None and intents.n:
                    strategy.on_decisions(intents, risk.check(intents.rows, intents.n).decisions)
                isum.add(intents, preds.n)
            if t_first is None:
                t_first = time.perf_counter()
    finally:
        risk.remove_signal_handler()
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
    log("\n".join(format_risk(rep["risk"])))
    if out_dir is not None and cfg.report.save:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(json.dumps(rep, indent=2))
        log(f"report     {out_dir / 'report.json'}")
    return rep
