"""Book benchmark: our decode + full L3 book against itch-book (parse + full L3 book).

Each contender runs in its own fresh process (``python -m bench.book worker NAME FILE REPEAT
MAX_ORDERS MAX_LEVELS``) so its peak RSS is its own, on one core (except the ``*.threads`` rows:
the books split by symbol across ``threads()`` threads, against itch-book on one), best of
``repeat``. Every
contender reads the whole BinaryFILE into memory first and is timed on the in-memory buffer
(no disk I/O), except ``ours.book.stream``, which streams the file through ``CaptureReader`` in
4 MiB chunks as ``make run`` does (page cache warm after the first repetition).

Ours (``ours.book*``): the BinaryFILE's records decoded into the event table in the record walk
(``decode_binaryfile``, 2**18 messages a batch, as ``hftbot book``; before 2026-12-07 13:30 these
rows framed then decoded, ``index_binaryfile`` + ``decode_batch``), then ``apply_events`` on every
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

Inputs, cached in ``.cache/bench/``:

- shallow: the generator's default day (``replay.generator``, 500 symbols, seed 11); about 32k
  live orders at peak, so every book structure (ours and the peers') is far smaller than a real
  day's (1.9M-5.3M live orders, ~12k symbols);
- deep: ``generate(preset="deep")`` (500 symbols, seed 11): live orders ramp to half of the
  close's count, then rise to it (``deep_live_orders``: messages/18, at least 1M), thousands of
  price levels on the busiest symbols, references rising with gaps. ``DEEP_MESSAGES`` by
  default (``make bench`` stays a few minutes); ``python -m bench.book deep --deep-messages
  30000000`` for the issue's 30M-message day.

The deep section (:func:`deep_section`) measures shallow and deep side by side, each next to
itch-book in the same run: in memory (``ours.book`` / ``itch_book.book``, as above) and as a
whole process (:func:`whole_process`: wall time of ``hftbot book FILE --symbols AAPL --depth 1``
against a process that streams the file through itch-book in 4 MiB chunks and prints AAPL's top
level: interpreter start, imports, JIT cache load and file reads included). Each row carries the
day's peak live orders and levels (the sizing pass) next to its figure.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.decode import RecordWalk, inmem_walk, peak_rss_mb, run_reference

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
    "ours.book.packed": "ours: the same as ours.book with BookState(packed=True) (order and level rows one "
                        "cache line each)",
    "ours.book.noprefetch": "ours: the same as ours.book with the book's prefetching off (book.prefetch_live=0)",
    "ours.book.threads": "ours: the same as ours.book, books split by symbol across THREADS threads (BookShards; "
                         "the next batch decoded meanwhile)",
}


#: the ``*.threads`` rows' thread count when set (``--threads``; the worker processes inherit it)
THREADS_ENV = "HFTBOT_BENCH_THREADS"


def threads() -> int:
    """Book threads of the ``*.threads`` rows: ``--threads`` (``THREADS_ENV``) where given, else
    this machine's CPUs, at most 2 (the 2-core CI box and the machine the README figures come
    from)."""
    import os

    cpus = len(os.sched_getaffinity(0))
    given = os.environ.get(THREADS_ENV)
    if given:
        return min(int(given), cpus)
    return max(1, min(2, cpus))


def _inmem_sharded(k, data: np.ndarray, books) -> int:
    """``_inmem_book`` for ``BookShards``: walk the in-memory BinaryFILE batch by batch and hand
    each table to ``ShardedBookStage.replay`` (three event tables, decode overlapped with the
    shards), as ``hftbot book --threads N`` does."""
    from kernels import book as B
    from kernels.events import EventTable
    from pipeline.book import ShardedBookStage

    w = RecordWalk(k, data)

    def decoder(t):
        def dec(cursor):
            cursor.walk(t)
            return t
        return dec

    with ShardedBookStage(k, books, ROWS) as stage:
        stage.replay(w.batches(), [decoder(EventTable(ROWS)) for _ in range(3)])
    return int(books.ctr[B.C_EVENTS])


CONTENDERS = ("itch_book.book", "ours.book", "ours.book.fullday", "ours.book.features", "ours.book.stream")


def book_input(n: int, seed: int = 11, preset: str | None = None) -> Path:
    """The generated BinaryFILE of ``n`` messages (the decode section's file when sizes match);
    ``preset="deep"``: the deep day (its generator summary next to it as ``.json``)."""
    from replay.generator import generate

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / (f"deep-{n}-seed{seed}.itch" if preset == "deep" else f"bench-{n}-seed{seed}.itch")
    if not path.exists():
        tmp = path.with_suffix(".part")
        print(f"generating {path.name} ({n:,} messages{', deep preset' if preset else ''}) ...", flush=True)
        summary = generate(tmp, fmt="itch", n_messages=n, n_symbols=500, seed=seed, preset=preset)
        if preset:
            path.with_suffix(".json").write_text(summary.to_json())
        tmp.replace(path)
    return path


def _inmem_book(k, data: np.ndarray, table, books) -> int:
    """Decode and book the whole in-memory BinaryFILE; returns the events booked.

    Decode is the record walk (``bench/decode.py: inmem_walk``, what ``DecodeStage`` does with a
    BinaryFILE, so ``hftbot book``); the book step goes through ``BookStage.__call__`` (one
    Python call per batch of 2**18 messages, which raises on a capacity error).
    """
    from kernels import book as B

    inmem_walk(k, data, table, after=books)
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


def itchbook_process(path: str, symbol: str = "AAPL") -> int:
    """The whole-process peer of ``hftbot book FILE --symbols AAPL --depth 1``: stream the file
    through itch-book (parse + full L3 book) in 4 MiB chunks, print the symbol's top level."""
    from bench import reference as R

    s = R._itchbook_session(depth=1, symbols=[symbol])
    with open(path, "rb") as f:
        while True:
            chunk = f.read(4 << 20)
            if not chunk:
                break
            s.feed(chunk)
    st = s.stats()
    print(json.dumps({"symbol": symbol, "messages": int(st["messages"]), "live_orders": int(st["live_orders"])}))
    return 0


#: GNU time (Debian ``time``, mk/perf.mk) for a whole process's peak RSS; without it none is shown
TIME = ["/usr/bin/time", "-f", "BENCH_MAXRSS_KB %M"] if shutil.which("time") == "/usr/bin/time" else []


def whole_process(path: Path, repeat: int, sizing: dict | None) -> dict[str, dict]:
    """Wall time of a whole process, best of ``repeat``: ours (``hftbot book FILE --symbols AAPL
    --depth 1``, sized from the day like ``ours.book``) and itch-book (:func:`itchbook_process`).
    Both read the file from the page cache (warm after the first repetition)."""
    from bench.reference import available

    hftbot = Path(sys.executable).parent / "hftbot"
    ours = [str(hftbot), "book", str(path), "--symbols", "AAPL", "--depth", "1"]
    if sizing and "error" not in sizing:
        ours += ["--max-orders", str(sizing["max_orders"]), "--max-levels", str(sizing["max_levels"])]
    cmds = {"ours.book.process": ours,
            "ours.book.process.threads": [*ours, "--threads", str(threads())],
            "itch_book.process": [sys.executable, "-m", "bench.book", "itchbook-process", str(path)]}
    what = {"ours.book.process": "ours: whole process, hftbot book FILE --symbols AAPL --depth 1",
            "ours.book.process.threads": f"ours: the same with --threads {threads()} (books split by symbol)",
            "itch_book.process": "itch-book: whole process, file streamed in 4 MiB chunks, AAPL top level"}
    out: dict[str, dict] = {}
    for name, cmd in cmds.items():
        if name.startswith("itch_book") and not available().get("itch_book", False):
            out[name] = {"name": name, "error": "itch_book not installed (bench/reference.py PINS)"}
            continue
        best, best_cpu, rss, err = float("inf"), float("inf"), 0.0, ""
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            # GNU time reports the child's own peak RSS (a forked child's ru_maxrss from wait4
            # starts at this process's RSS at the fork)
            p = subprocess.run([*TIME, *cmd] if TIME else cmd, cwd=ROOT, capture_output=True, text=True)
            dt = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            if p.returncode != 0:
                err = (p.stderr or p.stdout).strip()[-400:] or f"exit {p.returncode}"
                break
            best = min(best, dt)
            best_cpu = min(best_cpu, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime))
            marks = [x.split()[1] for x in p.stderr.splitlines() if x.startswith("BENCH_MAXRSS_KB ")]
            if marks:
                rss = max(rss, int(marks[-1]) / 1024)
        out[name] = ({"name": name, "error": err} if err else
                     {"name": name, "best_s": best, "best_cpu_s": best_cpu, "what": what[name],
                      **({"rss_peak_mb": round(rss, 1)} if rss else {})})
    return out


def run_ours(name: str, path: str, repeat: int, max_orders: int, max_levels: int) -> dict:
    from kernels import book as B
    from kernels import cpu
    from kernels.events import EventTable
    from pipeline.book import PREFETCH_LIVE, BookShards, BookStage, BookState

    if name == "ours.book.fullday":
        max_orders, max_levels, max_symbols = FULL_DAY
    else:
        max_symbols = MAX_SYMBOLS
    sharded = name == "ours.book.threads"
    symbols = list(FEATURE_SYMBOLS) if name == "ours.book.features" else []
    stream = name == "ours.book.stream"
    table = EventTable(ROWS)
    with open(path, "rb") as f:
        head = np.frombuffer(f.read(1 << 16), np.uint8)
    # JIT load on the first 64 KiB, outside the timing (packed rows are another specialization)
    warm = BookState(1 << 16, 1 << 16, max_symbols, packed=name == "ours.book.packed")
    _inmem_book(cpu, head, table, BookStage(cpu, warm, ROWS, symbols=symbols))
    if sharded:
        _inmem_sharded(cpu, head, BookShards(threads(), 1 << 16, 1 << 16, max_symbols))
    del warm
    data = None if stream else np.fromfile(path, dtype=np.uint8)
    loaded = peak_rss_mb()
    best, best_cpu, n, features = float("inf"), float("inf"), 0, 0
    for _ in range(max(1, repeat)):
        c0 = time.process_time()
        t0 = time.perf_counter()
        if sharded:
            state = BookShards(threads(), max_orders, max_levels, max_symbols)
        else:
            state = BookState(max_orders, max_levels, max_symbols, packed=name == "ours.book.packed",
                              prefetch_live=0 if name == "ours.book.noprefetch" else PREFETCH_LIVE)
        if sharded:
            books = None
            n = _inmem_sharded(cpu, data, state)
        elif stream:
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
            n = _inmem_book(cpu, data, table, books)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
        features = int(state.ctr[B.C_FEATURES])
        del state, books
    return {"messages": n, "best_s": best, "best_cpu_s": best_cpu, "max_orders": max_orders, "max_levels": max_levels,
            "feature_rows": features, "rss_loaded_mb": round(loaded, 1)}


def worker(name: str, path: str, repeat: int, max_orders: int, max_levels: int) -> dict:
    if name.startswith("ours"):
        res = run_ours(name, path, repeat, max_orders, max_levels)
        res.update(name=name, what=WHAT[name].replace("THREADS", str(threads())), rss_peak_mb=round(peak_rss_mb(), 1))
    elif name == "itch_book.book":
        res = run_itchbook(path, repeat)
    else:
        res = run_reference(name, path, repeat)
    res["msgs_per_s"] = res["messages"] / res["best_s"] if res["best_s"] > 0 else 0.0
    return res


def run_itchbook(path: str, repeat: int) -> dict:
    """``itch_book.book`` timed as :func:`bench.reference.measure_one` does (fresh session per
    repetition, input in memory), with the process CPU time of each repetition as well."""
    from bench import reference as R

    R._require("itch_book")
    run = R.REFERENCES["itch_book.book"][0]
    data = R.load(path)
    loaded = peak_rss_mb()
    best, best_cpu, n = float("inf"), float("inf"), 0
    for _ in range(max(1, repeat)):
        c0 = time.process_time()
        t0 = time.perf_counter()
        n = run(data)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return {"name": "itch_book.book", "what": R.REFERENCES["itch_book.book"][1], "messages": n, "best_s": best,
            "best_cpu_s": best_cpu, "rss_loaded_mb": round(loaded, 1), "rss_peak_mb": round(peak_rss_mb(), 1),
            "input_mb": round(len(data) / 2**20, 1)}


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
        if r.get("best_cpu_s") and peer.get("best_cpu_s"):
            ratio += f" (cpu {peer['best_cpu_s'] / r['best_cpu_s']:5.2f}x)"
    added = r["rss_peak_mb"] - r["rss_loaded_mb"]
    cpu = f" cpu {r['best_cpu_s']:7.3f} s" if r.get("best_cpu_s") else " " * 16
    return (f"  {r['name']:<18} {r['msgs_per_s'] / 1e6:8.1f} M msg/s  {r['messages']:>12,} msgs  "
            f"{r['best_s']:7.3f} s{cpu}  peak RSS {r['rss_peak_mb']:6.0f} MB (+{added:5.0f})  {ratio:>8}  "
            f"{r['what']}")


def section(n: int, repeat: int, extra=("itchcpp.book",), deep_messages: int | None = None) -> dict:
    """The ``make bench`` book section: prints the table, returns the results by name; then the
    deep section (:func:`deep_section`, ``deep_messages``: ``DEEP_MESSAGES`` by default, 0 skips
    it) under the key ``"deep"``."""
    res = shallow_section(n, repeat, extra)
    dm = DEEP_MESSAGES if deep_messages is None else int(deep_messages)
    if dm > 0:
        print()
        res["deep"] = deep_section(dm, repeat, shallow=(n, res))
    return res


def shallow_section(n: int, repeat: int, extra=("itchcpp.book",)) -> dict:
    """The shallow day's table (every contender), results by name."""
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


def _depth_note(sizing: dict) -> str:
    if not sizing or "error" in sizing:
        return "depth unknown"
    return f"peak {sizing['peak_live_orders'] / 1e6:.2f}M live orders, {sizing['peak_live_levels']:,} levels"


def _pair_line(label: str, ours: dict, peer: dict, messages: int, note: str) -> str:
    """One side-by-side line: wall-clock rate and time, then CPU time (the process's own: on a
    shared machine the wall clock also counts waiting for a core), for ours and itch-book."""
    def fig(r):
        if not r or "error" in r:
            return "   error" + " " * 28, None, None
        rate = messages / r["best_s"]
        cpu = r.get("best_cpu_s")
        rss = f", {r['rss_peak_mb']:,.0f} MB" if r.get("rss_peak_mb") else ""
        return (f"{rate / 1e6:6.2f} M/s ({r['best_s']:6.2f} s, cpu {cpu:6.2f} s{rss})", rate,
                messages / cpu if cpu else None)
    a, ra, ca = fig(ours)
    b, rb, cb = fig(peer)
    ratio = f"{ra / rb:5.2f}x" if ra and rb else "   -  "
    cratio = f"{ca / cb:5.2f}x" if ca and cb else "   -  "
    return f"  {label:<22} ours {a}  itch-book {b}  wall {ratio} cpu {cratio}  {note}"


def deep_section(n: int, repeat: int, shallow: tuple[int, dict] | None = None) -> dict:
    """Deep day against itch-book, in memory and whole process, next to the shallow day's.

    ``shallow``: ``(messages, results)`` of :func:`shallow_section` already run (its in-memory
    rows are reused, its whole-process rows measured here); without it the shallow day is
    measured here too (in memory: ``ours.book`` and ``itch_book.book`` only)."""
    path = book_input(n, preset="deep")
    gen = {}
    side = path.with_suffix(".json")
    if side.exists():
        gen = json.loads(side.read_text()).get("extra", {})
    print(f"book, deep: generated deep BinaryFILE, {n:,} messages, 500 symbols (generator: "
          f"{gen.get('live_orders_mid', 0):,} live orders mid-stream, {gen.get('live_orders_peak', 0):,} at peak, "
          f"{gen.get('max_levels_one_symbol_now', 0):,} levels on the busiest symbol at the close); one core "
          f"(the threads rows: {threads()}), best of {repeat}, each in a fresh process; ratio = ours / itch-book in this run", flush=True)
    out: dict[str, dict] = {}
    days = {}
    if shallow is not None:
        sn, sres = shallow
        days["shallow"] = (sn, book_input(sn), sres.get("sizing"), sres)
    else:
        sn = n
        days["shallow"] = (sn, book_input(sn), None, None)
    days["deep"] = (n, path, None, None)
    for label, (msgs, p, sizing, prev) in days.items():
        if sizing is None:
            sizing = size(p)
        r = {"sizing": sizing, "generator": gen if label == "deep" else {}}
        ok_sizing = sizing if "error" not in sizing else None
        if prev is not None:
            r["ours.book"], r["itch_book.book"] = prev.get("ours.book"), prev.get("itch_book.book")
        else:
            r["itch_book.book"] = measure("itch_book.book", p, repeat, ok_sizing)
            r["ours.book"] = measure("ours.book", p, repeat, ok_sizing)
        r["ours.book.packed"] = measure("ours.book.packed", p, repeat, ok_sizing)
        r["ours.book.noprefetch"] = measure("ours.book.noprefetch", p, repeat, ok_sizing)
        r["ours.book.threads"] = measure("ours.book.threads", p, repeat, ok_sizing)
        r.update(whole_process(p, repeat, sizing))
        m = (r.get("ours.book") or {}).get("messages") or (r.get("itch_book.book") or {}).get("messages") or msgs
        note = _depth_note(sizing)
        print(_pair_line(f"{label}, in memory", r["ours.book"], r["itch_book.book"], m, note), flush=True)
        print(_pair_line(f"{label}, packed rows", r["ours.book.packed"], r["itch_book.book"], m, note), flush=True)
        print(_pair_line(f"{label}, no prefetch", r["ours.book.noprefetch"], r["itch_book.book"], m, note),
              flush=True)
        t = threads()
        print(_pair_line(f"{label}, {t} threads", r["ours.book.threads"], r["itch_book.book"], m, note), flush=True)
        print(_pair_line(f"{label}, whole process", r["ours.book.process"], r["itch_book.process"], m, note),
              flush=True)
        print(_pair_line(f"{label}, process, {t} thr", r["ours.book.process.threads"], r["itch_book.process"], m,
                         note), flush=True)
        for name in ("ours.book", "itch_book.book"):
            if r.get(name) and "rss_peak_mb" in r[name]:
                r[name].setdefault("peak_live_orders", sizing.get("peak_live_orders"))
        out[label] = r
    return out


#: the deep day's messages in ``make bench`` (``--deep-messages``: 30M for the issue's figure)
DEEP_MESSAGES = 10_000_000


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.book deep [--deep-messages N] [--messages N] [--repeat R] [--threads T]``:
    the deep section alone (shallow day of ``--messages`` next to it)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench.book deep")
    ap.add_argument("--deep-messages", type=int, default=DEEP_MESSAGES)
    ap.add_argument("--messages", type=int, default=20_000_000, help="the shallow day's messages")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None,
                    help="book threads of the threads rows (default: this machine's CPUs, at most 2; at most "
                         "the CPUs this process may run on): the issue's 10M msg/s whole process is a "
                         "question for a machine with more cores, e.g. --threads 4")
    a = ap.parse_args(argv)
    if a.deep_messages < 1 or a.messages < 1 or a.repeat < 1:
        ap.error("--deep-messages, --messages and --repeat must be positive")
    if a.threads is not None:
        import os

        cpus = len(os.sched_getaffinity(0))
        if not 1 <= a.threads <= cpus:
            ap.error(f"--threads must be 1..{cpus} (the CPUs this process may run on)")
        os.environ[THREADS_ENV] = str(a.threads)
    res = deep_section(a.deep_messages, a.repeat, shallow=None) if a.messages == a.deep_messages else None
    if res is None:
        shallow = {"sizing": size(book_input(a.messages))}
        sp = book_input(a.messages)
        ok = shallow["sizing"] if "error" not in shallow["sizing"] else None
        shallow["itch_book.book"] = measure("itch_book.book", sp, a.repeat, ok)
        shallow["ours.book"] = measure("ours.book", sp, a.repeat, ok)
        res = deep_section(a.deep_messages, a.repeat, shallow=(a.messages, shallow))
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "deep.json").write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "worker":
        name, path, repeat, max_orders, max_levels = sys.argv[2:]
        print(json.dumps(worker(name, path, int(repeat), int(max_orders), int(max_levels))))
    elif len(sys.argv) == 3 and sys.argv[1] == "size":
        print(json.dumps(size_day(sys.argv[2])))
    elif len(sys.argv) == 3 and sys.argv[1] == "itchbook-process":
        sys.exit(itchbook_process(sys.argv[2]))
    elif len(sys.argv) >= 2 and sys.argv[1] == "deep":
        sys.exit(main(sys.argv[2:]))
    else:
        sys.exit("usage: python -m bench.book worker NAME FILE REPEAT MAX_ORDERS MAX_LEVELS | size FILE | "
                 "itchbook-process FILE | deep [--deep-messages N] [--messages N] [--repeat R] [--threads T]")
