"""Book benchmark: our decode + full L3 book against itch-book (parse + full L3 book).

Each contender runs in its own fresh process (``python -m bench.book worker NAME FILE REPEAT
MAX_ORDERS MAX_LEVELS``) so its peak RSS is its own, on one core, best of ``repeat``. Every
contender reads the whole BinaryFILE into memory first and is timed on the in-memory buffer
(no disk I/O), except ``ours.book.stream``, which streams the file through ``CaptureReader`` in
4 MiB chunks as ``make run`` does (page cache warm after the first repetition).

Ours (``ours.book*``): BinaryFILE framing + ITCH decode into the event table
(``index_binaryfile`` + ``decode_batch``, 2**18 messages a batch), then ``apply_events`` on every
batch: the full-market L3 book, L2 levels, per-symbol state and the book counters. Each
repetition builds a fresh ``BookState`` inside the timed region (itch-book's timed run also
builds its ``Session``).

- ``ours.book``: no feature subscriptions; ``BookState`` sized from this file's peak (live
  orders and levels at batch boundaries, measured by an untimed pass, x1.25 + 64Ki).
- ``ours.book.fullday``: the same with the full-day config (``conf/book/full_day.yaml``:
  6M orders, 2M levels, 16,384 symbols): much bigger hash tables, so more cache misses.
- ``ours.book.features``: as ``ours.book`` plus feature rows for the 3 busiest symbols
  (the generator's first tickers).
- ``ours.book.stream``: as ``ours.book``, through ``CaptureReader``/``DecodeStage``/``BookStage``.

Peer: ``itch_book.book`` = ``itch_book._core.Session(tables=[]).feed(data)`` (its cheapest path:
parse + full L3 book + stats), timed like :func:`bench.reference.measure_one` (see
:func:`run_reference`). Extra row: ``itchcpp.book`` (``BookManager.process_stream``: parse + L3
book, BBO only).

Input: the generator's day (``replay.generator``, 500 symbols, seed 11), cached in
``.cache/bench/``; about 32k live orders at peak, so every book structure (ours and the peers')
is far smaller than a real day's (1.9M-5.3M live orders, ~12k symbols).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.decode import inmem_binaryfile, peak_rss_mb, run_reference

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench"
ROWS = 1 << 18  # messages per batch, CaptureReader's default
FULL_DAY = (6_000_000, 2_000_000, 16_384)  # conf/book/full_day.yaml
MAX_SYMBOLS = 16_384
FEATURE_SYMBOLS = ("AAPL", "MSFT", "NVDA")  # the generator's busiest tickers (Zipf weights, first = busiest)

WHAT = {
    "ours.book": "ours: BinaryFILE + ITCH decode + full L3 book, no features (in memory, sized from the day)",
    "ours.book.fullday": "ours: the same with the full-day book config (6M orders, 2M levels)",
    "ours.book.features": "ours: the same as ours.book + feature rows for 3 symbols",
    "ours.book.stream": "ours: the same as ours.book, file streamed through CaptureReader (make run)",
}
CONTENDERS = ("itch_book.book", "ours.book", "ours.book.fullday", "ours.book.features", "ours.book.stream")


def book_input(n: int, seed: int = 11) -> Path:
    """The generated BinaryFILE of ``n`` messages (the decode section's file when sizes match)."""
    from replay.generator import generate

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"bench-{n}-seed{seed}.itch"
    if not path.exists():
        tmp = path.with_suffix(".part")
        print(f"generating {path.name} ({n:,} messages) ...", flush=True)
        generate(tmp, fmt="itch", n_messages=n, n_symbols=500, seed=seed)
        tmp.replace(path)
    return path


def _inmem_book(k, data: np.ndarray, table, idx, books) -> int:
    """Frame, decode and book the whole in-memory BinaryFILE; returns the events booked.

    The book step goes through ``BookStage.__call__`` (one Python call per batch of 2**18
    messages, which raises on a capacity error); framing and decode are ``bench/decode.py``'s.
    """
    from kernels import book as B

    inmem_binaryfile(k, data, table, idx, after=books)
    return int(books.state.ctr[B.C_EVENTS])


def size_day(path: str) -> dict:
    """Peak live orders and levels (at batch boundaries) of a day, with a full-day BookState."""
    from kernels import cpu
    from pipeline.book import BookStage, BookState
    from pipeline.stages import DecodeStage
    from replay.capture import CaptureReader

    reader = CaptureReader(path)
    state = BookState(*FULL_DAY)
    dec = DecodeStage(cpu, reader.batch_rows, reader.stats)
    books = BookStage(cpu, state, reader.batch_rows, symbols=[])
    peak_o = peak_l = 0
    for batch in reader:
        books(dec(batch))
        c = state.counters()
        peak_o, peak_l = max(peak_o, c["live_orders"]), max(peak_l, c["live_levels"])
    return {"peak_live_orders": peak_o, "peak_live_levels": peak_l,
            "max_orders": int(peak_o * 1.25) + 65_536, "max_levels": int(peak_l * 1.25) + 65_536}


def run_ours(name: str, path: str, repeat: int, max_orders: int, max_levels: int) -> dict:
    from kernels import book as B
    from kernels import cpu
    from kernels.events import EventTable
    from pipeline.book import BookStage, BookState

    if name == "ours.book.fullday":
        max_orders, max_levels, max_symbols = FULL_DAY
    else:
        max_symbols = MAX_SYMBOLS
    symbols = list(FEATURE_SYMBOLS) if name == "ours.book.features" else []
    stream = name == "ours.book.stream"
    table = EventTable(ROWS)
    idx = (np.zeros(ROWS, np.int64), np.zeros(ROWS, np.int32), np.zeros(ROWS, np.uint64),
           np.zeros(ROWS, np.uint16), np.zeros(ROWS, np.int64))
    with open(path, "rb") as f:
        head = np.frombuffer(f.read(1 << 16), np.uint8)
    warm = BookState(1 << 16, 1 << 16, max_symbols)  # JIT load on the first 64 KiB, outside the timing
    _inmem_book(cpu, head, table, idx, BookStage(cpu, warm, ROWS, symbols=symbols))
    del warm
    data = None if stream else np.fromfile(path, dtype=np.uint8)
    loaded = peak_rss_mb()
    best, n, features = float("inf"), 0, 0
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        state = BookState(max_orders, max_levels, max_symbols)
        if stream:
            from pipeline.stages import DecodeStage
            from replay.capture import CaptureReader

            reader = CaptureReader(path, batch_rows=ROWS)
            dec = DecodeStage(cpu, reader.batch_rows, reader.stats)
            books = BookStage(cpu, state, reader.batch_rows, symbols=symbols)
            for b in reader:
                books(dec(b))
            n = int(state.ctr[B.C_EVENTS])
        else:
            books = BookStage(cpu, state, ROWS, symbols=symbols)
            n = _inmem_book(cpu, data, table, idx, books)
        best = min(best, time.perf_counter() - t0)
        features = int(state.ctr[B.C_FEATURES])
        del state, books
    return {"messages": n, "best_s": best, "max_orders": max_orders, "max_levels": max_levels,
            "feature_rows": features, "rss_loaded_mb": round(loaded, 1)}


def worker(name: str, path: str, repeat: int, max_orders: int, max_levels: int) -> dict:
    if name.startswith("ours"):
        res = run_ours(name, path, repeat, max_orders, max_levels)
        res.update(name=name, what=WHAT[name], rss_peak_mb=round(peak_rss_mb(), 1))
    else:
        res = run_reference(name, path, repeat)
    res["msgs_per_s"] = res["messages"] / res["best_s"] if res["best_s"] > 0 else 0.0
    return res


def _call(name: str, args: list[str]) -> dict:
    p = subprocess.run([sys.executable, "-m", "bench.book", *args], cwd=ROOT, capture_output=True, text=True)
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"name": name, "error": (p.stderr or p.stdout).strip()[-400:]}
    return json.loads(lines[-1])


def size(path: Path) -> dict:
    """Book sizes for ``ours.book`` from an untimed pass over the file (fresh process)."""
    return _call("size", ["size", str(path)])


def measure(name: str, path: Path, repeat: int = 3, sizing: dict | None = None) -> dict:
    """Run one contender in a fresh process; returns its JSON result (or an error entry)."""
    sizing = sizing or {"max_orders": FULL_DAY[0], "max_levels": FULL_DAY[1]}
    return _call(name, ["worker", name, str(path), str(repeat), str(sizing["max_orders"]),
                        str(sizing["max_levels"])])


def row(r: dict, peer: dict | None) -> str:
    """One printed line: throughput, time, peak RSS and what the contender allocated on top of
    its input (peak minus the RSS after loading the file, where known), ratio to ``peer``."""
    if "error" in r:
        return f"  {r['name']:<18} error: {r['error'].splitlines()[-1] if r['error'] else '?'}"
    ratio = ""
    if peer and "error" not in peer and peer.get("msgs_per_s"):
        ratio = f"{r['msgs_per_s'] / peer['msgs_per_s']:6.2f}x"
    added = r["rss_peak_mb"] - r["rss_loaded_mb"]
    return (f"  {r['name']:<18} {r['msgs_per_s'] / 1e6:8.1f} M msg/s  {r['messages']:>12,} msgs  "
            f"{r['best_s']:7.3f} s  peak RSS {r['rss_peak_mb']:6.0f} MB (+{added:5.0f})  {ratio:>8}  "
            f"{r['what']}")


def section(n: int, repeat: int, extra=("itchcpp.book",)) -> dict:
    """The ``make bench`` book section: prints the table, returns the results by name."""
    path = book_input(n)
    print(f"book: generated BinaryFILE, {n:,} messages, 500 symbols, one core, best of {repeat}, each in a "
          "fresh process; all in memory except ours.book.stream; "
          "ratio = ours / itch-book (parse + full L3 book); "
          "(+N) = MB added to the RSS after loading the input (for stream: after imports)", flush=True)
    sizing = size(path)
    results: dict[str, dict] = {"sizing": sizing}
    if "error" in sizing:
        print(f"  sizing pass failed: {sizing['error']}")
        sizing = None
    else:
        print(f"  book sized from the day: peak {sizing['peak_live_orders']:,} live orders, "
              f"{sizing['peak_live_levels']:,} levels -> max_orders {sizing['max_orders']:,}, "
              f"max_levels {sizing['max_levels']:,}", flush=True)
    from bench.reference import available

    have = available()
    for name in CONTENDERS + tuple(extra):
        module = name.split(".")[0]
        if module in have and not have[module]:
            results[name] = {"name": name, "error": f"{module} not installed (bench/reference.py PINS)"}
        else:
            results[name] = measure(name, path, repeat, sizing)
        peer = results.get("itch_book.book") if name != "itch_book.book" else None
        print(row(results[name], peer), flush=True)
    return results


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "worker":
        name, path, repeat, max_orders, max_levels = sys.argv[2:]
        print(json.dumps(worker(name, path, int(repeat), int(max_orders), int(max_levels))))
    elif len(sys.argv) == 3 and sys.argv[1] == "size":
        print(json.dumps(size_day(sys.argv[2])))
    else:
        sys.exit("usage: python -m bench.book worker NAME FILE REPEAT MAX_ORDERS MAX_LEVELS | size FILE")
