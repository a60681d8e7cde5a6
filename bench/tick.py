"""Tick-to-trade on the CPU backend: packet in the buffer -> FIX bytes written to the socket.

The run loop works on batches of up to 262,144 messages (throughput); here the same stage objects
run one MoldUDP64 packet at a time (latency): decode, books + features, feed status, model,
strategy, risk, and for a packet that produces orders the FIX bridge's encode + write to a
QuickFIX acceptor process on loopback. Per packet the Python glue between the compiled stages is
on the clock: that is what this figure measures against the 5 µs goal.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.latency import Latencies, fmt_ns


def run(n_messages: int = 200_000) -> list[str]:
    from hydra import compose, initialize_config_dir

    from kernels import cpu
    from pipeline.app import CONF_DIR
    from pipeline.book import BookStage, BookState
    from pipeline.config import register
    from pipeline.execution import free_port
    from pipeline.feed import open_reader, resolve_input
    from pipeline.risk import RiskStage
    from pipeline.stages import DecodeStage
    from pipeline.strategy import model_and_strategy
    from bridges.fix.bridge import FixBridge
    from replay.capture import MessageBatch

    register()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hftbot-tick-") as td:
        tmp = Path(td)
        port = free_port()
        counter = tmp / "count"
        proc = subprocess.Popen([sys.executable, "-m", "bench.fix", "acceptor", str(port), str(tmp / "venue"),
                                 str(counter)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        bridge = None
        try:
            if proc.stdout.readline().strip() != "READY":
                raise RuntimeError("the FIX acceptor did not start")
            with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
                cfg = compose("smoke", overrides=[f"feed.sample.messages={n_messages}", "feed.sample.symbols=8",
                                                  "feed.sample.dir=.cache/bench", "strategy.min_interval_ns=0"])
            path = resolve_input(cfg.feed, log=lambda s: None)
            reader = open_reader(cfg.feed, path)
            decode = DecodeStage(cpu, capacity=reader.batch_rows, stats=reader.stats)
            b, ft = cfg.book, cfg.features
            state = BookState(b.max_orders, b.max_levels, b.max_symbols)
            books = BookStage(cpu, state, capacity=reader.batch_rows, symbols=list(ft.symbols),
                              tau_flow_ns=ft.tau_flow_ns, tau_rv_ns=ft.tau_rv_ns, top_n=ft.top_n)
            risk = RiskStage.from_config(cpu, cfg, state)
            model, strategy = model_and_strategy(cfg, cpu, state, reader.batch_rows, positions=risk.state.ps,
                                                 log=lambda s: None)
            bridge = FixBridge(host="127.0.0.1", port=port, sender="HFTBOT", target="VENUE", state_dir=tmp / "b",
                               sym=state.sym, date="20190130", max_orders=1 << 20)
            bridge.start()
            lat = Latencies()
            packets = orders = 0
            for batch in reader:
                rx = batch.rx[: batch.n]
                cut = np.flatnonzero(np.diff(rx)) + 1
                bounds = np.concatenate(([0], cut, [batch.n]))
                for a, z in zip(bounds[:-1], bounds[1:]):
                    pb = MessageBatch(batch.buf, batch.off[a:z], batch.length[a:z], batch.seq[a:z], batch.sess[a:z],
                                      batch.rx[a:z], int(z - a))
                    t0 = time.perf_counter_ns()
                    events = decode(pb)
                    fb = books(events)
                    risk.on_events(events)
                    preds = model(fb)
                    intents = strategy(preds)
                    k = 0
                    if intents.n:
                        dec = risk.check(intents.rows, intents.n)
                        strategy.on_decisions(intents, dec.decisions)
                        if dec.orders.shape[0]:
                            k = bridge.send(dec.orders)
                    if k:
                        lat.record("tick_to_trade", bridge.last_write_ns - t0, 1)
                        orders += k
                    else:
                        lat.record("tick_to_decision", time.perf_counter_ns() - t0, 1)
                    packets += 1
                    if packets % 64 == 0:
                        ev = bridge.poll(0)
                        if ev.shape[0]:
                            risk.on_exec(ev)
            s = lat.summary()
            lines.append(f"tick-to-trade, CPU backend, one packet at a time through the stage objects "
                         f"({packets:,} packets, {orders:,} orders to a QuickFIX acceptor on loopback)")
            for name, what in (("tick_to_trade", "packet in buffer -> FIX bytes written"),
                               ("tick_to_decision", "packets with no order: in buffer -> risk/strategy done")):
                if name in s:
                    r = s[name]
                    lines.append(f"  {name:<17} p50 {fmt_ns(r['p50_ns']):>9}  p99 {fmt_ns(r['p99_ns']):>9}  "
                                 f"p99.9 {fmt_ns(r['p99_9_ns']):>9}  n {r['count']:>9,}   {what}")
            if "tick_to_trade" in s:
                lines.append(f"  goal p50 <= 5 µs: {s['tick_to_trade']['p50_ns'] / 5000:.1f}x the goal; "
                             "anchor: STAC-T1 software 6.1 µs mean (2012, not run here)")
        finally:
            if bridge is not None:
                bridge.stop()
            if proc.stdin:
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return lines


if __name__ == "__main__":
    print("\n".join(run(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)))
