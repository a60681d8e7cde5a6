"""Live receive benchmark: AF_XDP (XDP program + UMEM rings) against the plain UDP socket path
(recvmmsg), in the same run on the same veth pair between two private network namespaces.

  python -m bench.live [--messages N] [--pps-latency 20000]

Throughput: a generated capture is replayed onto the veth at full speed (tcpreplay when present,
else the Python AF_PACKET publisher) from the sender namespace; the receiver decodes through
``LiveSource`` + ``DecodeStage`` (gaps from drops are recovered from the rewind server, so the
output is complete and the figures count only delivered messages). Latency: the same capture
paced at ``--pps-latency``, each packet's send time against the time its last message left
decode (same host clock), p50 / p99. Root only; otherwise it prints why it skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GROUP = ("239.9.9.9", 31001)


def _problem() -> str | None:
    from bridges.xdp.loader import unavailable_reason
    from bridges.xdp.netns import netns_problem

    return netns_problem() or unavailable_reason()


def _one(net, capture: Path, method: str, pcap: Path, npackets: int, pps: float, times_path: Path | None):
    from omegaconf import OmegaConf

    from bridges.xdp.netns import enter, nsenter_cmd
    from kernels import cpu
    from pipeline.config import FeedConf
    from pipeline.live import open_live_source
    from pipeline.stages import DecodeStage
    from replay import rewind as RW

    store = RW.MessageStore.from_capture(capture)
    with enter(net.tx.ns):
        srv = RW.RewindServer.bind(store, (net.tx.ip, 0))
    srv.start()
    conf = OmegaConf.structured(FeedConf)
    conf.source = "live"
    conf.batch_rows = 1 << 16
    lv = conf.live
    lv.method, lv.interface = method, net.rx.ifname
    lv.groups = [f"{GROUP[0]}:{GROUP[1]}"]
    lv.rewind = f"{srv.address[0]}:{srv.address[1]}"
    lv.retry_ms = 5
    lv.idle_timeout_ms = 20000
    with enter(net.rx.ns):
        src = open_live_source(conf, log=lambda s: None)
    src.trace = [] if times_path is not None else None
    decode = DecodeStage(cpu, capacity=src.batch_rows, stats=src.stats)
    if pps > 0 or not shutil.which("tcpreplay"):
        cmd = [*nsenter_cmd(net.tx.ns), sys.executable, "-m", "replay.rewind", "publish", str(capture),
               "--iface", net.tx.ifname, "--src", f"{net.tx.ip}:40000", "--dst", f"{GROUP[0]}:{GROUP[1]}",
               "--src-mac", net.tx.mac, "--pps", str(pps)]
        if times_path is not None:
            cmd += ["--times", str(times_path)]
    else:
        cmd = [*nsenter_cmd(net.tx.ns), "tcpreplay", "-q", "--topspeed", "-i", net.tx.ifname, str(pcap)]
    first = [0]
    msgs = 0
    try:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        it = iter(src)
        t0 = 0
        for batch in it:
            if not t0:
                t0 = time.perf_counter_ns()
            t = decode(batch)
            msgs += t.n
        t1 = time.perf_counter_ns()
        proc.wait()
        first[0] = t0
        counters = src.counters()
        trace = src.trace
    finally:
        src.close()
        srv.stop()
    el = (t1 - t0) / 1e9 if t0 else float("nan")
    row = {"method": method, "messages": msgs, "packets": counters["packets"], "elapsed_s": el,
           "pps": counters["packets"] / el, "msgs_per_s": msgs / el,
           "gaps_recovered": counters.get("gaps_recovered", 0), "replies": counters.get("replies", 0),
           "rx_dropped": counters.get("rx_dropped", 0), "lost_messages": counters.get("lost_messages", 0)}
    if times_path is not None and trace:
        sent = np.load(times_path)
        tr = np.array(trace, np.int64)
        payloads = RW.capture_payloads(capture)
        last_seq = np.array([int.from_bytes(p[10:18], "big") + max(int.from_bytes(p[18:20], "big"), 1) - 1
                             if int.from_bytes(p[18:20], "big") not in (0, 0xFFFF) else 0 for p in payloads])
        ok = last_seq > 0
        k = np.searchsorted(tr[:, 1], last_seq[ok], "left")
        k = np.minimum(k, len(tr) - 1)
        lat = (tr[k, 0] - sent[: len(payloads)][ok]) / 1e3
        row["lat_p50_us"] = float(np.percentile(lat, 50))
        row["lat_p99_us"] = float(np.percentile(lat, 99))
    return row


def run(args) -> list[str]:
    """Run the benchmark; returns the printed lines."""
    lines: list[str] = []

    def out(s: str) -> None:
        print(s, flush=True)
        lines.append(s)

    why = _problem()
    if why:
        out(f"live (AF_XDP vs UDP socket): skipped: {why}")
        return lines
    from bridges.xdp.netns import TestNet
    from replay import rewind as RW
    from replay.generator import generate

    n = int(getattr(args, "live_messages", None) or getattr(args, "messages", 1_000_000) or 1_000_000)
    n = min(n, 2_000_000)
    lat_pps = float(getattr(args, "pps_latency", 20000))
    cache = ROOT / ".cache" / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    capture = cache / f"live-{n}.pcap"
    if not capture.exists():
        generate(capture.with_suffix(".part"), fmt="pcap", n_messages=n, n_symbols=500, seed=13)
        capture.with_suffix(".part").replace(capture)
    lat_capture = cache / "live-lat-100000.pcap"
    if not lat_capture.exists():
        generate(lat_capture.with_suffix(".part"), fmt="pcap", n_messages=100_000, n_symbols=100, seed=14)
        lat_capture.with_suffix(".part").replace(lat_capture)
    sender = "tcpreplay --topspeed" if shutil.which("tcpreplay") else "Python AF_PACKET publisher"
    out(f"live receive on a veth pair (generic XDP, AF_XDP copy mode), {n:,} messages, sender: {sender}")
    rows = []
    with TestNet("bn") as net, tempfile.TemporaryDirectory() as tmp:
        payloads = RW.capture_payloads(capture)
        frames = RW.rewrite(payloads, (net.tx.ip, 40000), GROUP, net.tx.mac)
        pcap = Path(tmp) / "rewritten.pcap"
        RW.write_pcap(pcap, frames)
        del frames, payloads
        for method in ("xdp", "udp"):
            rows.append(_one(net, capture, method, pcap, 0, 0.0, None))
        lat = []
        for method in ("xdp", "udp"):
            lat.append(_one(net, lat_capture, method, pcap, 0, lat_pps, Path(tmp) / f"send-{method}.npy"))
    x, u = rows
    for r in rows:
        out(f"  {('AF_XDP' if r['method'] == 'xdp' else 'UDP socket'):<11} {r['pps'] / 1e3:9.1f} K pkt/s "
            f"{r['msgs_per_s'] / 1e6:7.2f} M msg/s  {r['packets']:>9,} pkts {r['messages']:>10,} msgs  "
            f"gaps recovered {r['gaps_recovered']}, kernel drops {r['rx_dropped']:,}, "
            f"messages lost {r['lost_messages']:,}")
    out(f"  AF_XDP / UDP socket: {x['pps'] / u['pps']:.2f}x packets/s, {x['msgs_per_s'] / u['msgs_per_s']:.2f}x msgs/s")
    out(f"  receive latency, packet sent -> decoded (paced {lat_pps:,.0f} pkt/s, Python sender in another process):")
    for r in lat:
        out(f"  {('AF_XDP' if r['method'] == 'xdp' else 'UDP socket'):<11} p50 {r.get('lat_p50_us', float('nan')):8.1f} µs"
            f"  p99 {r.get('lat_p99_us', float('nan')):8.1f} µs")
    if "lat_p50_us" in lat[0] and "lat_p50_us" in lat[1]:
        out(f"  AF_XDP / UDP socket latency: p50 {lat[0]['lat_p50_us'] / lat[1]['lat_p50_us']:.2f}x, "
            f"p99 {lat[0]['lat_p99_us'] / lat[1]['lat_p99_us']:.2f}x")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.live")
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--pps-latency", type=float, default=20000)
    args = ap.parse_args(argv)
    from bench.__main__ import machine

    print(machine())
    run(args)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
