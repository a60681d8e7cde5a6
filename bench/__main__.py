"""``make bench``: every figure next to a peer measured in the same run, as a ratio.

  python -m bench [--messages N] [--repeat R] [--book-messages N]

Prints the machine, then one table per stage. Results also go to .cache/bench/latest.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from pathlib import Path

from bench import book, decode

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numba

    return (f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}, "
            f"numba {numba.__version__}, no GPU" if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" else "")


def inputs(n: int, seed: int = 11) -> dict[str, Path]:
    from replay.generator import generate

    CACHE.mkdir(parents=True, exist_ok=True)
    out = {}
    for fmt in ("itch", "pcap"):
        path = CACHE / f"bench-{n}-seed{seed}.{fmt}"
        if not path.exists():
            tmp = path.with_suffix(".part")
            print(f"generating {path.name} ({n:,} messages) ...", flush=True)
            generate(tmp, fmt=fmt, n_messages=n, n_symbols=500, seed=seed)
            tmp.replace(path)
        out[fmt] = path
    return out


def row(r: dict, peer: dict | None) -> str:
    if "error" in r:
        return f"  {r['name']:<18} error: {r['error'].splitlines()[-1] if r['error'] else '?'}"
    ratio = ""
    if peer and "error" not in peer and peer["msgs_per_s"]:
        ratio = f"{r['msgs_per_s'] / peer['msgs_per_s']:6.2f}x"
    return (f"  {r['name']:<18} {r['msgs_per_s'] / 1e6:8.1f} M msg/s  {r['messages']:>12,} msgs  "
            f"{r['best_s']:7.3f} s  peak RSS {r['rss_peak_mb']:7.0f} MB  {ratio:>8}  {r['what']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--messages", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--book-messages", type=int, default=20_000_000,
                    help="messages in the book benchmark's day (0 skips the book section)")
    ap.add_argument("--deep-messages", type=int, default=book.DEEP_MESSAGES,
                    help="messages in the deep book day (0 skips it; 30000000 for the issue's figure)")
    ap.add_argument("--fix-orders", type=int, default=200_000,
                    help="orders in the FIX session benchmark (0 skips it and tick-to-trade)")
    args = ap.parse_args(argv)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"hftbot bench  {when}\nmachine       {machine()}\n")
    files = inputs(args.messages)
    results: dict[str, dict] = {}
    print(f"decode: generated feed, {args.messages:,} messages, one core, best of {args.repeat}; "
          "ratio = ours / itchcpp C++ parse (no output)")
    for name, path in (("itchcpp.scan", files["itch"]), ("ours.itch", files["itch"]),
                       ("ours.walk", files["itch"]), ("ours.floor", files["itch"]), ("ours.pcap", files["pcap"]), ("ours.stream", files["pcap"]),
                       ("itchcpp.parse", files["itch"])):
        results[name] = decode.measure(name, path, args.repeat)
        print(row(results[name], results.get("itchcpp.scan") if name != "itchcpp.scan" else None), flush=True)
    # book: decode + full L3 book against itch-book (bench/book.py)
    book_results: dict[str, dict] = {}
    if args.book_messages > 0:
        print()
        book_results = book.section(args.book_messages, args.repeat, deep_messages=args.deep_messages)
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "latest.json").write_text(json.dumps({"when": when, "machine": machine(), "results": results,
                                                   "book": book_results}, indent=2))
    # model: inference latency per event and batched throughput, numba vs onnxruntime (bench/model.py)
    from bench import model as model_bench

    print()
    latest = json.loads((CACHE / "latest.json").read_text())
    latest["model"] = model_bench.section(repeat=args.repeat)
    (CACHE / "latest.json").write_text(json.dumps(latest, indent=2))
    # risk: the full pre-trade check set per intent, njit vs plain Python (bench/risk.py)
    from bench import risk as risk_bench

    print()
    latest = json.loads((CACHE / "latest.json").read_text())
    latest["risk"] = risk_bench.section(100_000, args.repeat)
    (CACHE / "latest.json").write_text(json.dumps(latest, indent=2))
    # kill switch: reaction time from another thread, file and SIGUSR1 (bench/kill.py)
    from bench import kill as kill_bench

    print()
    latest = json.loads((CACHE / "latest.json").read_text())
    latest["kill"] = kill_bench.section()
    (CACHE / "latest.json").write_text(json.dumps(latest, indent=2))
    # GPU-resident pipeline next to the CPU backend (bench/gpu.py); without a GPU it says what was not measured
    from bench import gpu as gpu_bench

    print()
    latest = json.loads((CACHE / "latest.json").read_text())
    latest["gpu"] = gpu_bench.section(messages=min(args.messages, 2_000_000), repeat=args.repeat)
    (CACHE / "latest.json").write_text(json.dumps(latest, indent=2, default=str))
    # live feed: AF_XDP vs the plain UDP socket on a veth pair (bench/live.py; needs root + BPF)
    from bench import live as live_bench

    print()
    out = live_bench.run(args)
    latest = json.loads((CACHE / "latest.json").read_text())
    latest["live"] = out
    (CACHE / "latest.json").write_text(json.dumps(latest, indent=2, default=str))
    if args.fix_orders > 0:
        # order TX: the bridge's compiled path vs QuickFIX's Python messages, one real session
        from bench import fix as fix_bench
        from bench import tick as tick_bench

        for section in (lambda: fix_bench.run(args.fix_orders), lambda: tick_bench.run(200_000)):
            print()
            out = section()
            print("\n".join(out), flush=True)
            latest = json.loads((CACHE / "latest.json").read_text())
            latest.setdefault("execution", []).extend(out)
            (CACHE / "latest.json").write_text(json.dumps(latest, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
