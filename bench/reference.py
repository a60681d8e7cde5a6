"""Reference ITCH 5.0 decoders from PyPI, driven the fastest way each one allows.

`make bench` compares our decoder and book (``kernels/``) with these in the same process,
as a ratio. Two C++ packages are used; neither is a dependency of the product, so every
entry point imports lazily and raises a ``RuntimeError`` naming the pinned install command
when a package is missing:

``itch-book==0.2.1`` (``import itch_book``, C++23 core, nanobind)
    The Python API has **no parse-only path**: ``itch_book._core.Session.feed`` always
    parses *and* applies every message to the full-market L3 book (the cheapest mode,
    ``tables=[]``, is what its ``itch2parquet verify`` runs). Compare it with our
    decode + book, not with decode alone. ``feed`` takes the bytes zero-copy
    (``bytes`` or a C-contiguous ``uint8`` array), releases the GIL and runs on the calling
    thread; the public ``itch_book.Feed`` wrapper adds a Python reader thread (file I/O and
    gunzip) which we bypass so that one core is measured. ``Session.stats()`` gives
    message/unknown/malformed counts, the adds/executes/cancels/deletes/replaces the book
    applied, missing and duplicate references, rejected and clamped messages, live orders,
    books and crossed books, and ``pending_bytes`` (a truncated tail). Per-type counts of the
    other types come only from the optional tables (see :func:`itchbook_count`).
    Truncated input: the complete messages are counted, the partial tail is kept as
    ``pending_bytes``; ``itch_book.Feed`` turns that into ``ValueError: ... truncated
    (N messages decoded, K trailing bytes)``; here it is reported, not raised (see
    ``strict``). Unknown types count as ``unknown`` and a length that disagrees with the
    type's spec length as ``malformed`` (both skipped); a zero-length record ends the session
    (``end_of_session``); parsing goes on after ``S``/``C``.

``itchcpp==1.6.4`` (``import itchcpp``, C++20, pybind11; drop-in backend of ``itchfeed``)
    Parse-only: ``MessageParser(message_type).parse_stream(data: bytes)`` /
    ``parse_file(fileobj)`` / ``parse_messages(data, callback)`` frame and decode in C++ but
    hand out one Python object per message, so that path is bounded by object creation
    (about 3M msg/s); there is no counting or bulk API. The ``message_type`` filter runs in
    C++ before any object is made, so a filter that matches nothing (``b"!"``) is itchcpp's
    pure C++ parse with no output (``itchcpp.scan`` below, about 7x faster; it still reads
    every frame's type, it raises on an unknown one). ``parse_stream`` copies the input into a
    C++ string first (+1x input in RSS); ``parse_file`` over ``io.BytesIO`` reads 64 KiB
    chunks, needs no copy and is as fast or faster (30% on the scan), so both helpers use it. All three stop after the end-of-messages event (``S`` with code ``C``), silently
    drop a truncated tail, raise ``ValueError('Unknown message type: ...')`` on an unknown
    type or a zero-length record (BinaryFILE's end-of-session marker), and accept a frame
    shorter than its type's spec length. Book: ``BookManager.process_stream(data: bytes)``
    parses and applies everything in C++ (all symbols unless ``track_symbol`` restricts
    them; a symbol's book is created on its first order), then exposes per-symbol BBO only
    (``book_for_symbol(sym).bbo()``: float dollars and shares; ``None`` for a symbol without a
    book): no depth, no stats, no message count. It ignores unknown types and zero-length
    records, and on a truncated buffer raises ``RuntimeError('Incomplete message at end of
    buffer.')`` after applying the complete messages. None of these calls releases the GIL
    (measured: a Python thread makes no progress while they run); all are single-threaded.

Every timing here loads the whole file into memory first (each API wants one buffer or
parses from Python file objects in small chunks), so the numbers exclude disk I/O and page
cache effects, like our own in-memory benchmark. Run :func:`main` (``python -m
bench.reference``) to get throughput and peak RSS per reference, each in a fresh process.

The synthetic day (:func:`write_synthetic_itch`) is a benchmark input only: valid ITCH 5.0
order flow (A/E/X/D/U with consistent references, never crossed), written with numpy in
seconds. It belongs in ``/tmp``, never in the repository.
"""

from __future__ import annotations

import importlib
import io
import os
import time
from collections import Counter
from pathlib import Path
from typing import Union

import numpy as np

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]

PINS = {"itch_book": "itch-book==0.2.1", "itchcpp": "itchcpp==1.6.4"}


def _require(module: str):
    """Import a reference package or raise a RuntimeError naming the pinned install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            f"reference decoder {module!r} is not installed: pip install {PINS[module]}"
        ) from e


def available() -> dict[str, bool]:
    """Which reference packages import in this interpreter."""
    out = {}
    for module in PINS:
        try:
            importlib.import_module(module)
            out[module] = True
        except ImportError:
            out[module] = False
    return out


def load(src: Source) -> bytes:
    """The whole BinaryFILE as one ``bytes`` object (both references accept it).

    ``bytes`` is what ``itchcpp`` requires; ``itch_book`` reads it zero-copy. A path is read
    in one call; a buffer is converted only if it is not already ``bytes``.
    """
    if isinstance(src, bytes):
        return src
    if isinstance(src, (bytearray, memoryview)):
        return bytes(src)
    if isinstance(src, np.ndarray):
        return np.ascontiguousarray(src, dtype=np.uint8).tobytes()
    return Path(src).read_bytes()


def _letter(t) -> str:
    return t.decode("ascii") if isinstance(t, bytes) else str(t)


# --------------------------------------------------------------------------- itchcpp


def itchcpp_count(src: Source, message_types: bytes | None = None) -> dict[str, int]:
    """Message counts by type letter with itchcpp's parse-only path.

    ``parse_file`` over the in-memory buffer (``io.BytesIO``), counting the class of each
    message object (its fastest usable entry point: ``parse_stream`` copies the input first
    and ``parse_messages`` adds a Python call per message; reading ``.message_type`` costs
    another 40%). ``message_types`` (e.g. ``b"AEXDU"``) is itchcpp's own C++-side filter.
    A truncated tail is dropped silently; parsing stops after ``S``/``C`` (end of messages);
    an unknown type or a zero-length record raises ``ValueError``.
    """
    mod = _require("itchcpp")
    from itchcpp.messages import messages as registry

    letter = {cls: _letter(t) for t, cls in registry.items()}
    data = load(src)
    parser = mod.MessageParser() if message_types is None else mod.MessageParser(message_types)
    counts = Counter(map(type, parser.parse_file(io.BytesIO(data))))
    return {letter[k]: v for k, v in sorted(counts.items(), key=lambda kv: letter[kv[0]])}


def itchcpp_book(src: Source, symbols=(), track_only: bool = False) -> dict:
    """itchcpp's C++ book over the whole buffer; BBO per requested symbol.

    Returns ``{"books": n, "truncated": bool, "error": str | None, "bbo": {sym: {...}}}``
    where each BBO is ``bid_px``/``ask_px`` in Price(4) integers (itchcpp hands out float
    dollars, converted back exactly), ``bid_sz``/``ask_sz`` in shares, ``None`` for an empty
    side. ``track_only`` restricts the book to ``symbols`` (itchcpp's ``track_symbol``);
    by default every symbol is booked, which is the fair comparison with a full-market book.
    A truncated buffer makes itchcpp raise after applying the complete messages; that is
    caught and reported as ``truncated``.
    """
    _require("itchcpp")
    from itchcpp.book import BookManager

    data = load(src)
    bm = BookManager()
    if track_only:
        for s in symbols:
            bm.track_symbol(s)
    err = None
    try:
        bm.process_stream(data)
    except RuntimeError as e:
        err = str(e)
    out = {"books": bm.book_count(), "truncated": err is not None and "Incomplete" in err,
           "error": err, "bbo": {}}
    for s in symbols:
        book = bm.book_for_symbol(s)  # None for a symbol that never had an order
        if book is None:
            out["bbo"][s] = None
            continue
        b = book.bbo()
        out["bbo"][s] = {
            "bid_px": round(b.bid_price * 10_000) if b.has_bid else None,
            "bid_sz": int(b.bid_shares) if b.has_bid else 0,
            "ask_px": round(b.ask_price * 10_000) if b.has_ask else None,
            "ask_sz": int(b.ask_shares) if b.has_ask else 0,
        }
    return out


# --------------------------------------------------------------------------- itch-book


def _itchbook_session(tables=(), depth: int = 0, symbols=()):
    _require("itch_book")
    from itch_book._core import Session

    return Session(tables=list(tables), depth=depth, symbols=sorted({s.upper() for s in symbols}))


def _check_strict(stats: dict, strict: bool, what: str) -> None:
    if strict and (stats["messages"] == 0 or stats["pending_bytes"]):
        kind = "truncated" if stats["messages"] else "not an ITCH 5.0 stream"
        raise ValueError(f"{what}: {kind} ({stats['messages']} messages decoded, "
                         f"{stats['pending_bytes']} trailing bytes)")


def itchbook_stats(src: Source, strict: bool = False) -> dict:
    """itch-book's cheapest run (parse + full book, no tables) and its ``stats()`` dict.

    Keys: messages, unknown, malformed, end_of_session, last_event, pending_bytes (the
    truncated tail), adds, executes, cancels, deletes, replaces, missing_ref, dup_ref,
    rejected, clamped, books, live_orders, crossed_books, selected. ``strict=True`` raises
    ``ValueError`` on a truncated or empty stream with itch-book's own wording.
    """
    s = _itchbook_session()
    s.feed(load(src))
    st = s.stats()
    _check_strict(st, strict, str(src) if not isinstance(src, (bytes, np.ndarray)) else "<buffer>")
    return st


def itchbook_count(src: Source, strict: bool = False) -> dict[str, int]:
    """Message counts by type letter from itch-book (a slower, table-building pass).

    itch-book has no parse-only or per-type counter, so the counts are read off its tables:
    S (system events), R (symbols), A/F/E/C/X/D/U (``messages`` table, every such message,
    applied or not), P/Q/B (``trades``), H/h (``halts``), Y (``reg_sho``), I (``noii``),
    J (``luld``). Types it frames without decoding (L, V, W, K, N, O) are summed under
    ``"other"``. The total equals ``stats["messages"]``; a truncated tail is not counted
    (``strict=True`` raises, like ``itch_book.Feed``).
    """
    s = _itchbook_session(tables=("messages", "trades", "halts", "reg_sho", "noii", "luld"))
    s.feed(load(src))
    st = s.stats()
    _check_strict(st, strict, "<itch>")
    counts: Counter = Counter()
    counts["S"] = len(s.take_events()["event"])
    counts["R"] = len(s.take_symbols())
    for col, table in (("type", s.take_messages()), ("kind", s.take_halts())):
        counts.update(bytes([c]).decode() for c in np.asarray(table[col]).tolist())
    kinds = np.asarray(s.take_trades()["kind"])
    for k in "PQB":
        counts[k] = int((kinds == ord(k)).sum())
    counts["Y"] = len(s.take_reg_sho()["action"])
    counts["I"] = len(s.take_noii()["paired"])
    counts["J"] = len(s.take_luld()["ref_px"])
    counts["other"] = st["messages"] - sum(counts.values())
    return {k: v for k, v in sorted(counts.items()) if v}


def itchbook_book(src: Source, symbols=(), depth: int = 5, strict: bool = False) -> dict:
    """itch-book's full-market book; final BBO and top-``depth`` levels per symbol, and stats.

    Returns ``{"stats": {...}, "bbo": {sym: {...}}, "depth": {sym: {...}}}``. Prices are Price(4)
    integers (``None`` for an empty side), sizes in shares, ``*_ct`` order counts. Only the
    last row per symbol is kept (itch-book emits a row per top-of-book / depth change).
    Symbols absent from the stock directory are missing from the result.
    """
    s = _itchbook_session(tables=("bbo",), depth=depth, symbols=symbols)
    s.feed(load(src))
    st = s.stats()
    _check_strict(st, strict, "<itch>")
    names = {row[0]: row[1].strip() for row in s.take_symbols()}
    out: dict = {"stats": st, "bbo": {}, "depth": {}}

    def last_rows(cols):
        loc = np.asarray(cols["locate"])
        if loc.size == 0:
            return {}
        # last occurrence of each locate
        rev = loc[::-1]
        uniq, idx = np.unique(rev, return_index=True)
        return {int(u): loc.size - 1 - int(i) for u, i in zip(uniq, idx)}

    def px(v):
        v = int(v)
        return v if v else None

    bbo = s.take_bbo()
    for loc, i in last_rows(bbo).items():
        out["bbo"][names.get(loc, str(loc))] = {
            "bid_px": px(bbo["bid_px"][i]), "bid_sz": int(bbo["bid_sz"][i]), "bid_ct": int(bbo["bid_ct"][i]),
            "ask_px": px(bbo["ask_px"][i]), "ask_sz": int(bbo["ask_sz"][i]), "ask_ct": int(bbo["ask_ct"][i]),
        }
    if depth:
        d = s.take_depth()
        for loc, i in last_rows(d).items():
            levels = {}
            for side in ("bid", "ask"):
                levels[side] = [
                    (int(d[f"{side}_px_{k:02d}"][i]), int(d[f"{side}_sz_{k:02d}"][i]), int(d[f"{side}_ct_{k:02d}"][i]))
                    for k in range(depth) if d[f"{side}_px_{k:02d}"][i]
                ]
            out["depth"][names.get(loc, str(loc))] = levels
    return out


# --------------------------------------------------------------------------- timing


def _run_itchcpp_parse(data: bytes) -> int:
    mod = _require("itchcpp")
    n = 0
    for _ in mod.MessageParser().parse_stream(data):
        n += 1
    return n


def _run_itchcpp_parse_file(data: bytes) -> int:
    mod = _require("itchcpp")
    n = 0
    for _ in mod.MessageParser().parse_file(io.BytesIO(data)):
        n += 1
    return n


def _run_itchcpp_scan(data: bytes) -> int:
    # A filter byte that is no ITCH type: itchcpp frames and parses every message in C++ and
    # hands none to Python. It reports no count, so the caller fills it in.
    # parse_file over BytesIO: 64 KiB chunks stay in cache; parse_stream copies the whole input
    # into a C++ string first and measured ~30% slower.
    for _ in _require("itchcpp").MessageParser(b"!").parse_file(io.BytesIO(data)):
        pass
    return -1


def _run_itchcpp_book(data: bytes) -> int:
    _require("itchcpp")
    from itchcpp.book import BookManager

    bm = BookManager()
    try:
        bm.process_stream(data)
    except RuntimeError:  # truncated tail: the complete messages were applied
        pass
    return -1  # itchcpp does not count; the caller fills it in


def _run_itchbook(tables):
    def run(data: bytes) -> int:
        s = _itchbook_session(tables=tables)
        s.reserve(1 << 16)
        s.feed(data)
        return int(s.stats()["messages"])
    return run


REFERENCES = {
    # name: (runner, what it measures)
    "itchcpp.parse": (_run_itchcpp_parse,
                      "itchcpp parse_stream(bytes): C++ decode + one Python object per message"),
    "itchcpp.parse_file": (_run_itchcpp_parse_file,
                           "itchcpp parse_file(BytesIO): same objects, fed in 64 KiB chunks"),
    "itchcpp.scan": (_run_itchcpp_scan,
                     "itchcpp parse_file(BytesIO) with a filter matching nothing: C++ parse, no output"),
    "itchcpp.book": (_run_itchcpp_book,
                     "itchcpp BookManager.process_stream: parse + L3 book, all symbols, BBO only"),
    "itch_book.book": (_run_itchbook(()),
                       "itch-book Session(tables=[]).feed: parse + full L3 book (its cheapest path)"),
    "itch_book.bbo": (_run_itchbook(("bbo",)),
                      "itch-book Session(tables=['bbo']).feed: book + a BBO row per change"),
}
# ``itchcpp`` = its C++ parse without Python objects: the closest peer of a batched decoder.
ALIASES = {"itchcpp": "itchcpp.scan", "itch-book": "itch_book.book", "itch_book": "itch_book.book"}


def time_reference(name: str, src: Source, repeat: int = 3) -> tuple[int, float]:
    """Best-of-``repeat`` wall time of one reference path over an in-memory buffer.

    ``name`` is a key of :data:`REFERENCES` (or an alias: ``itchcpp`` = ``itchcpp.scan``, its
    C++ parse with no output; ``itch-book`` = ``itch_book.book``, parse + full book, the only
    mode itch-book has). The file is read into memory
    once, before timing; each repetition builds fresh parser/book state, and nothing else runs
    in the timed region. Returns ``(n_messages, best_seconds)``; ``n_messages`` is what the
    reference itself decoded (for ``itchcpp.scan``/``itchcpp.book``, which report no count, it
    comes from an untimed itch-book or itchcpp pass).
    """
    data = load(src)
    n, best = _time_raw(name, data, repeat)
    if n < 0:
        n = count_messages(data)
    return n, best


def _time_raw(name: str, data: bytes, repeat: int) -> tuple[int, float]:
    name = ALIASES.get(name, name)
    if name not in REFERENCES:
        raise ValueError(f"unknown reference {name!r}; choose from {sorted(REFERENCES)} or {sorted(ALIASES)}")
    run = REFERENCES[name][0]
    best = float("inf")
    n = 0
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        n = run(data)
        best = min(best, time.perf_counter() - t0)
    return n, best


def count_messages(src: Source) -> int:
    """Complete messages in a BinaryFILE, counted by a reference (itch-book if present)."""
    data = load(src)
    if available()["itch_book"]:
        return int(itchbook_stats(data)["messages"])
    return _run_itchcpp_parse(data)


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def measure_one(name: str, path: str, repeat: int = 3) -> dict:
    """Time one reference and report peak RSS; meant to run alone in a fresh process.

    ``rss_loaded_mb`` is the peak after imports and loading the file, ``rss_peak_mb`` the peak
    after the timed runs; their difference is what the reference allocated on top of the input
    (itchcpp copies the input into a C++ string first, so that copy is included).
    """
    name = ALIASES.get(name, name)
    _require(name.split(".")[0])
    if name.startswith("itchcpp"):
        importlib.import_module("itchcpp.book")
    data = load(path)
    base = _peak_rss_mb()
    n, best = _time_raw(name, data, repeat)
    peak = _peak_rss_mb()
    if n < 0:
        n = count_messages(data)  # untimed, after the peak was read
    return {"name": name, "what": REFERENCES[name][1], "messages": n, "best_s": best,
            "msgs_per_s": n / best if best > 0 else float("inf"),
            "rss_loaded_mb": round(base, 1), "rss_peak_mb": round(peak, 1),
            "rss_added_mb": round(peak - base, 1), "input_mb": round(len(data) / 2**20, 1)}


def main(argv=None) -> int:
    """``python -m bench.reference [FILE] [--make N] [--repeat R] [--only NAME ...]``.

    Times every available reference on FILE (default: a synthetic day of ``--make`` messages
    written to /tmp, 10M by default), each in its own subprocess so peak RSS is per reference,
    and prints one JSON line per reference.
    """
    import argparse
    import json
    import subprocess
    import sys
    import tempfile

    ap = argparse.ArgumentParser(prog="python -m bench.reference", description=main.__doc__)
    ap.add_argument("file", nargs="?")
    ap.add_argument("--make", type=int, default=10_000_000, help="messages in the synthetic day")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args(argv)
    path = args.file
    if path is None:
        path = os.path.join(tempfile.gettempdir(), f"itch_synth_{args.make}.itch")
        if not os.path.exists(path):
            print(json.dumps({"wrote": path, "counts": write_synthetic_itch(path, args.make)}), flush=True)
    have = available()
    names = args.only or [n for n in REFERENCES if have[n.split(".")[0]]]
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for name in names:
        code = ("import json, bench.reference as r; "
                f"print(json.dumps(r.measure_one({name!r}, {path!r}, {args.repeat})))")
        p = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
        print(p.stdout.strip() or json.dumps({"name": name, "error": p.stderr.strip()[-500:]}), flush=True)
    return 0


# --------------------------------------------------------------------------- synthetic input

_HDR = [("len", ">u2"), ("type", "S1"), ("locate", ">u2"), ("track", ">u2"),
        ("ts_hi", ">u2"), ("ts_lo", ">u4")]
_DT = {
    "A": np.dtype(_HDR + [("ref", ">u8"), ("side", "S1"), ("shares", ">u4"), ("stock", "S8"), ("price", ">u4")]),
    "E": np.dtype(_HDR + [("ref", ">u8"), ("shares", ">u4"), ("match", ">u8")]),
    "X": np.dtype(_HDR + [("ref", ">u8"), ("shares", ">u4")]),
    "D": np.dtype(_HDR + [("ref", ">u8")]),
    "U": np.dtype(_HDR + [("ref", ">u8"), ("new_ref", ">u8"), ("shares", ">u4"), ("price", ">u4")]),
    "S": np.dtype(_HDR + [("event", "S1")]),
    "R": np.dtype(_HDR + [("stock", "S8"), ("rest", "S20")]),
}
_KINDS = "AEXDU"


def _fill_header(rec, kind: str, locate, ts) -> None:
    rec["len"] = _DT[kind].itemsize - 2
    rec["type"] = kind.encode()
    rec["locate"] = locate
    rec["track"] = 0
    rec["ts_hi"] = ts >> 32
    rec["ts_lo"] = ts & 0xFFFFFFFF


def write_synthetic_itch(path: str | os.PathLike, n_messages: int = 10_000_000, n_symbols: int = 1000,
                         block_orders: int = 100_000, seed: int = 0, drain: bool = False) -> dict[str, int]:
    """Write a valid ITCH 5.0 BinaryFILE of about ``n_messages`` order-flow messages.

    Layout: ``S``/``O``, one ``R`` per locate 1..``n_symbols`` (symbols ``SYM00001``...), then
    blocks of ``block_orders`` adds. Every order gets one fate in the next block: delete (70%),
    partial cancel X (10%), partial execute E (10%) or replace U to a new reference (10%); the
    last three are followed by a delete in the block after. Inside a block the messages are
    shuffled (no two refer to the same order), so the mix is about 43% A, 43% D, 4.3% each of
    E/X/U, with about 2.3 x ``block_orders`` live orders. Buys sit below and sells above a fixed
    per-symbol mid, so no book ever crosses; symbol activity is skewed (weight 1/(k+10)).
    With ``drain`` the last two blocks' orders are closed too and the books end empty; by
    default about 1.3 x ``block_orders`` orders stay live, so final BBOs can be compared.
    Ends with ``S``/``C``. Returns the counts by type that were written.
    """
    rng = np.random.default_rng(seed)
    n_blocks = max(1, round(n_messages / (2.3 * block_orders)))
    syms = np.array([f"SYM{i:05d}".encode() for i in range(1, n_symbols + 1)], dtype="S8")
    mids = rng.integers(10, 500, n_symbols).astype(np.int64) * 10_000
    weights = 1.0 / (np.arange(n_symbols) + 10.0)
    weights /= weights.sum()
    N = block_orders
    counts: Counter = Counter()
    ts0 = 4 * 3600 * 10**9
    step = 1000  # ns between messages
    t = ts0
    match = 1

    # per-block order state, kept for two blocks
    def new_orders(b):
        loc = rng.choice(n_symbols, N, p=weights)
        buy = rng.random(N) < 0.5
        off = rng.integers(1, 51, N) * 100
        price = np.where(buy, mids[loc] - off, mids[loc] + off)
        return {
            "ref": np.arange(N, dtype=np.uint64) + np.uint64(1 + 2 * b * N),
            "new_ref": np.arange(N, dtype=np.uint64) + np.uint64(1 + 2 * b * N + N),
            "loc": loc + 1, "buy": buy, "price": price,
            "shares": rng.integers(1, 11, N).astype(np.uint32) * 100,
            "fate": rng.choice(4, N, p=[0.7, 0.1, 0.1, 0.1]),  # 0 D, 1 X, 2 E, 3 U
        }

    with open(path, "wb") as f:
        head = np.zeros(1, _DT["S"])
        _fill_header(head, "S", 0, np.array([t]))
        head["event"] = b"O"
        f.write(head.tobytes())
        r = np.zeros(n_symbols, _DT["R"])
        _fill_header(r, "R", np.arange(1, n_symbols + 1), t + np.arange(n_symbols))
        r["stock"] = syms
        r["rest"] = b"QN" + b"\x00\x00\x00\x64" + b"NCZ PNN" + b"2" + b"N" + b"\x00\x00\x00\x00" + b"N"
        f.write(r.tobytes())
        counts["S"] += 1
        counts["R"] += n_symbols
        t += n_symbols
        prev = prev2 = None
        for b in range(n_blocks + (2 if drain else 0)):
            cur = new_orders(b) if b < n_blocks else None
            parts = []  # (kind, dict of columns)
            if cur is not None:
                parts.append(("A", {"loc": cur["loc"], "ref": cur["ref"], "buy": cur["buy"],
                                    "shares": cur["shares"], "price": cur["price"]}))
            if prev is not None:
                fate = prev["fate"]
                for code, kind in ((0, "D"), (1, "X"), (2, "E"), (3, "U")):
                    sel = fate == code
                    cols = {"loc": prev["loc"][sel], "ref": prev["ref"][sel],
                            "shares": prev["shares"][sel] // 2}
                    if kind == "U":
                        cols["new_ref"] = prev["new_ref"][sel]
                        cols["shares"] = prev["shares"][sel]
                        cols["price"] = np.where(prev["buy"][sel], prev["price"][sel] - 100,
                                                 prev["price"][sel] + 100)
                    parts.append((kind, cols))
            if prev2 is not None:
                sel = prev2["fate"] > 0
                ref = np.where(prev2["fate"][sel] == 3, prev2["new_ref"][sel], prev2["ref"][sel])
                parts.append(("D", {"loc": prev2["loc"][sel], "ref": ref}))
            prev2, prev = prev, cur
            if not parts:
                continue
            kinds = np.concatenate([np.full(len(c["loc"]), _KINDS.index(k), np.int8) for k, c in parts])
            which = np.concatenate([np.arange(len(c["loc"])) for _, c in parts])
            part_of = np.concatenate([np.full(len(c["loc"]), i) for i, (_, c) in enumerate(parts)])
            perm = rng.permutation(kinds.size)
            kinds, which, part_of = kinds[perm], which[perm], part_of[perm]
            sizes = np.array([_DT[k].itemsize for k in _KINDS])[kinds]
            offs = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            ts = t + np.arange(kinds.size, dtype=np.int64) * step
            t = int(ts[-1]) + step
            buf = np.zeros(int(sizes.sum()), np.uint8)
            for i, (kind, cols) in enumerate(parts):
                pos = np.nonzero(part_of == i)[0]
                src_idx = which[pos]
                rec = np.zeros(pos.size, _DT[kind])
                _fill_header(rec, kind, cols["loc"][src_idx], ts[pos])
                rec["ref"] = cols["ref"][src_idx]
                if kind == "A":
                    rec["side"] = np.where(cols["buy"][src_idx], b"B", b"S")
                    rec["shares"] = cols["shares"][src_idx]
                    rec["stock"] = syms[cols["loc"][src_idx] - 1]
                    rec["price"] = cols["price"][src_idx]
                elif kind in "XE":
                    rec["shares"] = cols["shares"][src_idx]
                    if kind == "E":
                        rec["match"] = np.arange(match, match + pos.size)
                        match += pos.size
                elif kind == "U":
                    rec["new_ref"] = cols["new_ref"][src_idx]
                    rec["shares"] = cols["shares"][src_idx]
                    rec["price"] = cols["price"][src_idx]
                size = _DT[kind].itemsize
                buf[(offs[pos][:, None] + np.arange(size)).ravel()] = rec.view(np.uint8)
                counts[kind] += pos.size
            f.write(buf.tobytes())
        tail = np.zeros(1, _DT["S"])
        _fill_header(tail, "S", 0, np.array([t]))
        tail["event"] = b"C"
        f.write(tail.tobytes())
        counts["S"] += 1
    return dict(sorted(counts.items()))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
