"""Orders through a real FIX 4.4 session on loopback: the bridge's compiled path next to QuickFIX's
own Python message building, in the same run, against the same QuickFIX acceptor process.

  python -m bench.fix [--orders N]            (part of `make bench`)
  python -m bench.fix acceptor PORT DIR COUNTER   (the counterparty, started by the benchmark)

Figures: host cost per order (p50, p99: encode + write, measured around each send call and
divided by the orders in it) and orders/s sustained (orders sent until the acceptor, a separate
QuickFIX process validating every message against FIX44.xml, has received them all).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from bridges.fix.bridge import FixBridge, session_settings
from kernels import intents as IN
from kernels.events import pack_ascii
from replay.venue.process import free_port
from pipeline.latency import Latencies, fmt_ns


def acceptor(port: int, state: Path, counter: Path) -> None:
    """A QuickFIX acceptor counting the application messages it receives (slot 0 of ``counter``)."""
    import quickfix as fix

    counter.write_bytes(b"\0" * 4096)
    f = open(counter, "r+b")
    cnt = np.frombuffer(mmap.mmap(f.fileno(), 4096), np.int64)

    class App(fix.Application):
        def onCreate(self, sid): pass
        def onLogon(self, sid): pass
        def onLogout(self, sid): pass
        def toAdmin(self, msg, sid): pass
        def fromAdmin(self, msg, sid): pass
        def toApp(self, msg, sid): pass

        def fromApp(self, msg, sid):
            cnt[0] += 1

    state.mkdir(parents=True, exist_ok=True)
    cfg = state / "acceptor.cfg"
    cfg.write_text(session_settings(role="acceptor", host="127.0.0.1", port=port, sender="VENUE", target="HFTBOT",
                                    heartbeat_s=30, state_dir=state, extra={"ResetOnLogon": "Y"}))
    settings = fix.SessionSettings(str(cfg))
    app = App()
    # the counterparty keeps its session state in memory: a FileStore would add a write + fflush of
    # its sequence-number file per message received, which would measure the acceptor, not us
    acc = fix.SocketAcceptor(app, fix.MemoryStoreFactory(), settings)
    acc.start()
    try:
        print("READY", flush=True)
        sys.stdin.read()   # until the benchmark closes our stdin
    finally:
        acc.stop()


@contextlib.contextmanager
def acceptor_process(tmp: Path) -> Iterator[tuple[int, np.ndarray]]:
    """The counting acceptor (:func:`acceptor`) in its own process, state under ``tmp``; yields
    its port and the counter (slot 0: application messages received). Stopped on exit."""
    port = free_port()
    counter = tmp / "count"
    proc = subprocess.Popen([sys.executable, "-m", "bench.fix", "acceptor", str(port), str(tmp / "venue"),
                             str(counter)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout.readline().strip() != "READY":
            raise RuntimeError("the FIX acceptor did not start")
        with open(counter, "r+b") as f:
            cnt = np.frombuffer(mmap.mmap(f.fileno(), 4096), np.int64)
        yield port, cnt
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _orders(n: int, first_id: int) -> np.ndarray:
    rows = np.zeros((n, IN.NI), np.int64)
    rows[:, IN.I_LOCATE] = 1
    rows[:, IN.I_SIDE] = np.arange(n) % 2
    rows[:, IN.I_PRICE] = 1_000_000 + (np.arange(n) % 100) * 100
    rows[:, IN.I_QTY] = 100
    rows[:, IN.I_KIND] = IN.KIND_NEW
    rows[:, IN.I_ID] = first_id + np.arange(n)
    rows[:, IN.I_TS] = 34_200_000_000_000 + np.arange(n) * 1000
    return rows


def _wait_count(cnt: np.ndarray, want: int, timeout_s: float, bridge: FixBridge) -> bool:
    t_end = time.monotonic() + timeout_s
    while cnt[0] < want and time.monotonic() < t_end:
        bridge.poll(0.001)
    return bool(cnt[0] >= want)


def run(n_orders: int = 200_000) -> list[str]:
    import quickfix as fix

    lines = []
    with tempfile.TemporaryDirectory(prefix="hftbot-fixbench-") as td, acceptor_process(Path(td)) as (port, cnt):
        tmp = Path(td)
        bridge = None
        try:
            sym = np.zeros((4, 16), np.int64)
            sym[1, 0] = np.array([pack_ascii("AAPL", 8)], np.uint64).view(np.int64)[0]
            n_peer = max(n_orders // 10, 1000)
            bridge = FixBridge(host="127.0.0.1", port=port, sender="HFTBOT", target="VENUE",
                               state_dir=tmp / "bridge", sym=sym, date="20190130",
                               max_orders=3 * n_orders + n_peer + 16, batch_rows=4096)
            bridge.start()
            bridge.send(_orders(64, 10_000_000))    # load the compiled codec before timing
            _wait_count(cnt, 64, 30, bridge)
            sent = 0
            results = {}
            for batch in (1, 64):
                n = n_orders if batch > 1 else max(n_orders // 4, 1000)
                rows = _orders(n, 1 + bridge.n_msgs + 1_000_000 * batch)
                lat = Latencies()
                base = int(cnt[0])
                t0 = time.perf_counter()
                for lo in range(0, n, batch):
                    a = time.perf_counter_ns()
                    k = bridge.send(rows[lo:lo + batch])
                    b = time.perf_counter_ns()
                    lat.record("cost", (b - a) // max(k, 1), k)
                    if (lo // batch) % 256 == 0:
                        bridge.poll(0)
                t_sent = time.perf_counter()
                ok = _wait_count(cnt, base + n, 120, bridge)
                t1 = time.perf_counter()
                sent += n
                s = lat.summary()["cost"]
                results[f"bridge, batch {batch}"] = (s["p50_ns"], s["p99_ns"], n / (t1 - t0) if ok else 0.0,
                                                     n / (t_sent - t0))
            # the peer: QuickFIX's own Python message building and Session.send, same session
            lat = Latencies()
            base = int(cnt[0])
            sess = bridge.session
            t0 = time.perf_counter()
            for i in range(n_peer):
                a = time.perf_counter_ns()
                m = fix.Message()
                m.getHeader().setField(fix.MsgType("D"))
                m.setField(fix.ClOrdID(f"QF-{i}"))
                m.setField(fix.HandlInst("1"))
                m.setField(fix.Symbol("AAPL"))
                m.setField(fix.Side("1" if i % 2 == 0 else "2"))
                m.setField(fix.TransactTime())
                m.setField(fix.OrderQty(100))
                m.setField(fix.OrdType("2"))
                m.setField(fix.Price(100.0 + (i % 100) / 100))
                m.setField(fix.TimeInForce("0"))
                sess.send(m)
                b = time.perf_counter_ns()
                lat.record("cost", b - a)
                if i % 256 == 0:
                    bridge.poll(0)
            t_sent = time.perf_counter()
            ok = _wait_count(cnt, base + n_peer, 120, bridge)
            t1 = time.perf_counter()
            s = lat.summary()["cost"]
            results["QuickFIX Python"] = (s["p50_ns"], s["p99_ns"], n_peer / (t1 - t0) if ok else 0.0,
                                          n_peer / (t_sent - t0))
            peer = results["QuickFIX Python"]
            lines.append(f"fix orders through a real FIX 4.4 session on loopback (acceptor: QuickFIX, "
                         f"another process, validating against FIX44.xml); {n_orders:,} orders; load average "
                         + " ".join(f"{x:.2f}" for x in os.getloadavg()) + " (2 vCPUs are shared: compare in one run)")
            lines.append(f"  {'path':<22} {'p50/order':>10} {'p99/order':>10} {'sent/s':>12} {'sustained/s':>12}"
                         f"  vs QuickFIX Python (cost p50, sustained)")
            for name, (p50, p99, sus, rate) in results.items():
                lines.append(f"  {name:<22} {fmt_ns(p50):>10} {fmt_ns(p99):>10} {rate:>12,.0f} {sus:>12,.0f}"
                             f"  {peer[0] / max(p50, 1):6.1f}x {sus / max(peer[2], 1):6.1f}x")
            lines.append("  (sustained: until the acceptor received every order; 0 = it did not within 120 s)")
        finally:
            if bridge is not None:
                bridge.stop()
    return lines


def main(argv: list[str]) -> None:
    if argv and argv[0] == "acceptor":
        acceptor(int(argv[1]), Path(argv[2]), Path(argv[3]))
        return
    n = int(argv[argv.index("--orders") + 1]) if "--orders" in argv else 200_000
    print("\n".join(run(n)))


if __name__ == "__main__":
    main(sys.argv[1:])
