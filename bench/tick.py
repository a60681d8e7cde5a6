"""Tick-to-trade on the CPU backend: packet in the buffer -> FIX bytes written to the socket.

The same stages as the run loop, one MoldUDP64 packet at a time, with orders going through the
FIX bridge to a QuickFIX acceptor process on loopback. Two ways, same run, same input:
- ``compiled``: ``pipeline/tick.py``, every stage and the FIX encoder + ``write`` in one compiled
  loop, Python once per batch (what the latency goal is about);
- ``python``: the peer: the stage objects called from Python per packet (decode, books, risk
  feed status, model, strategy, risk check, bridge send).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


from pipeline.latency import Latencies, fmt_ns


def _stages(cfg, path, port, state_dir):
    from bridges.fix.bridge import FixBridge
    from kernels import cpu
    from pipeline.engine import build_stages
    from pipeline.feed import open_reader

    reader = open_reader(cfg.feed, path)

    decode, books, risk, model, strategy = build_stages(cfg, cpu, reader.batch_rows, reader.stats,
                                                        log=lambda s: None)
    state = books.state
    bridge = FixBridge(host="127.0.0.1", port=port, sender="HFTBOT", target="VENUE", state_dir=state_dir,
                       sym=state.sym, date="20190130", max_orders=1 << 20)
    return reader, decode, books, risk, model, strategy, bridge


WARM_PACKETS = 5_000   # not recorded: first touches of code, tables and socket buffers


def _python_path(st, lat: Latencies) -> tuple[int, int]:
    from replay.capture import MessageBatch
    from pipeline.tick import packet_bounds

    reader, decode, books, risk, model, strategy, bridge = st
    packets = orders = 0
    for batch in reader:
        lo, hi = packet_bounds(batch.rx, batch.n)
        for a, z in zip(lo, hi):
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
            if packets >= WARM_PACKETS:
                if k:
                    lat.record("tick_to_trade", bridge.last_write_ns - t0)
                    orders += k
                else:
                    lat.record("tick_no_order", time.perf_counter_ns() - t0)
            packets += 1
            if packets % 64 == 0:
                ev = bridge.poll(0)
                if ev.shape[0]:
                    risk.on_exec(ev)
    return packets, orders


def _tick_path(st, cfg, capture, defer_write: bool = False):
    """The per-packet path, compiled (or loaded) before the FIX session exists, as ``make run``
    does: compiled after the logon, a cold compile outlasted the acceptor's heartbeat under load
    and the session dropped. ``warm`` runs zero packets of a batch read by a reader of its own."""
    from pipeline.feed import open_reader
    from pipeline.tick import TickPath

    reader, decode, books, risk, model, strategy, bridge = st
    path = TickPath(decode, books, risk, model, strategy, bridge, max_packets=4096, defer_write=defer_write)
    path.warm(next(iter(open_reader(cfg.feed, capture))))
    return path


def _compiled_path(st, lat: Latencies, path) -> tuple[int, int]:
    from pipeline.tick import T_END, T_ORDERS, T_START

    reader, decode, books, risk, model, strategy, bridge = st
    packets = orders = 0
    for batch in reader:
        recs = path(batch)
        skip = max(0, min(WARM_PACKETS - packets, recs.shape[0]))
        packets += recs.shape[0]
        recs = recs[skip:]
        ns = (recs[:, T_END] - recs[:, T_START]) / path.tpn
        has = recs[:, T_ORDERS] > 0
        for v in ns[has]:
            lat.record("tick_to_trade", int(v))
        for v in ns[~has]:
            lat.record("tick_no_order", int(v))
        orders += int(recs[:, T_ORDERS].sum())
        ev = bridge.poll(0)
        if ev.shape[0]:
            risk.on_exec(ev)
    return packets, orders


def run(n_messages: int = 200_000) -> list[str]:
    from hydra import compose, initialize_config_dir

    from pipeline.app import CONF_DIR
    from pipeline.config import register
    from bench.fix import acceptor_process

    register()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hftbot-tick-") as td, acceptor_process(Path(td)) as (port, _):
        tmp = Path(td)
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("smoke", overrides=[f"feed.sample.messages={n_messages}", "feed.sample.symbols=8",
                                              "feed.sample.dir=.cache/bench", "strategy.min_interval_ns=0",
                                              "features.symbols=['*']"])
        # packets as on the real feed: a packet takes the messages within 1 µs of its first
        # (1-3 messages on average; the default sample packs up to 1,400 bytes a packet)
        path = Path(".cache/bench") / f"tick-{n_messages}-seed7.pcap"
        if not path.is_file():
            from replay.generator import generate

            path.parent.mkdir(parents=True, exist_ok=True)
            tmp_path = path.with_suffix(".part")
            generate(tmp_path, fmt="pcap", n_messages=n_messages, n_symbols=8, seed=7, max_delay_ns=1000)
            tmp_path.replace(path)
        res = {}
        passes = (("compiled", False), ("no-syscall", True), ("python", None))
        for name, defer in passes:
            st = _stages(cfg, path, port, tmp / f"bridge-{name}")
            bridge = st[-1]
            tp = None if defer is None else _tick_path(st, cfg, path, defer)
            try:
                bridge.start()
                lat = Latencies()
                packets, orders = _python_path(st, lat) if tp is None else _compiled_path(st, lat, tp)
                res[name] = (lat.summary(), packets, orders)
            finally:
                bridge.stop()
        lines.append(f"tick-to-trade, CPU backend, one MoldUDP64 packet at a time, orders through the FIX "
                     f"bridge to a QuickFIX acceptor on loopback ({n_messages:,} messages)")
        py = res["python"][0].get("tick_to_trade", {})
        for name, (s, packets, orders) in res.items():
            for key, what in (("tick_to_trade", "packet in buffer -> FIX bytes written"),
                              ("tick_no_order", "packets without an order: in buffer -> risk done")):
                if key not in s:
                    continue
                r = s[key]
                ratio = ""
                if key == "tick_to_trade" and py and name != "python":
                    ratio = f"{py['p50_ns'] / max(r['p50_ns'], 1):6.1f}x p50 vs python"
                lines.append(f"  {name:<10} {key:<14} p50 {fmt_ns(r['p50_ns']):>9}  p99 {fmt_ns(r['p99_ns']):>9}  "
                             f"p99.9 {fmt_ns(r['p99_9_ns']):>9}  n {r['count']:>8,}  {ratio}  {what}")
            lines.append(f"  {name:<10} {packets:,} packets ({WARM_PACKETS:,} warm-up packets not recorded), "
                         f"{orders:,} orders recorded")
        lines.append("  compiled: every stage + FIX encode + write() in one compiled loop; no-syscall: the same, "
                     "timed up to the encoded bytes (Python writes them after); python: the stage objects per "
                     "packet from Python (the peer)")
        c = res["compiled"][0].get("tick_to_trade")
        if c:
            lines.append(f"  goal p50 <= 5 µs, p99 <= 15 µs: compiled p50 {fmt_ns(c['p50_ns'])}, "
                         f"p99 {fmt_ns(c['p99_ns'])} (anchor: STAC-T1 software 6.1 µs mean, 2012, not run here)")
    return lines


if __name__ == "__main__":
    print("\n".join(run(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)))
