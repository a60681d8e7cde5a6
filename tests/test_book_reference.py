"""Differential tests: our L3 book (``kernels/book.py`` through ``BookStage``) against the
reference books on PyPI.

References (test-only; each comparison skips with the pinned install when its package is
missing):
- ``itch-book==0.2.1``: C++ full-market L3 book, top-N depth with order counts and stats
  (``bench.reference.itchbook_book``). The main oracle: top-5 depth (price, shares, orders
  per level) of every symbol, and the book statistics.
- ``itchcpp==1.6.4``: C++ book, BBO (price and shares) per symbol only.
- ``meatpy==0.5.0``: pure-Python book, one processor per symbol (slow: small streams only).

Inputs: the deterministic synthetic day (``replay.generator``), as BinaryFILE and as pcap
(the pcap carries the same messages as the BinaryFILE of the same seed, so the references
read the BinaryFILE); hand-made streams with protocol anomalies (missing references,
over-executions, crossed books, references reused after a delete, a follow-up message with
another locate); and the real Nasdaq captures in ../shared/data (skipped when absent).

Books are compared at the end of a stream and at intermediate points (a BinaryFILE cut at a
message boundary; for pcap input, ``BookStage(stop_ts=...)``), so a bug that heals by the end
of the day cannot hide.

Known, deliberate differences on input that a real feed does not carry (duplicate live
references, zero shares or price, a side other than B/S, level sizes above 2**32) are pinned
in ``test_invalid_input_differences_are_the_known_ones``.
"""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import numpy as np
import pytest

from bench import reference as ref
from kernels import book as B
from kernels import cpu
from pipeline.book import BookStage, BookState
from pipeline.stages import DecodeStage
from replay.capture import CaptureReader
from replay.generator import generate
from tests.conftest import shared_data

N_MESSAGES = 200_000
N_SYMBOLS = 50
SEEDS = (1, 7)
DEPTH = 5
CUTS = (0.31, 0.5, 0.77)  # intermediate comparison points, as fractions of the messages
MAX_SYMBOLS = 16_384      # the full-day config: real locates go up to ~12k

ITCH_DIRS = ("Nasdaq.Equities.TotalView.Itch.v5.0", "Nasdaq.Equities.TotalView.Itch.v5.0.20230822",
             "Bx.Equities.TotalView.Itch.v5.0", "Bx.Equities.TotalView.Itch.v5.0.20230822",
             "Psx.Equities.TotalView.Itch.v5.0.20230822")


def need(module: str):
    pins = dict(ref.PINS, meatpy="meatpy==0.5.0", dpkt="dpkt==1.9.8")
    return pytest.importorskip(module, reason=f"{module} not installed: pip install {pins[module]}")


# ---------------------------------------------------------------------------------- helpers


def message_offsets(data: bytes) -> np.ndarray:
    """Start offset of every complete message record of a BinaryFILE, then the end offset.

    Walks the 2-byte length prefixes in plain Python (independent of our framing kernels);
    stops at a zero-length (end-of-session) record or an incomplete tail.
    """
    offs = []
    pos, n = 0, len(data)
    while pos + 2 <= n:
        ln = (data[pos] << 8) | data[pos + 1]
        if ln == 0 or pos + 2 + ln > n:
            break
        offs.append(pos)
        pos += 2 + ln
    offs.append(pos)
    return np.array(offs, np.int64)


def ts_of(data: bytes, off: int) -> int:
    """ITCH timestamp (ns since midnight) of the message record at ``off``."""
    return int.from_bytes(data[off + 7:off + 13], "big")


def run_ours(path: Path, *, symbols=(), max_orders: int = 1 << 18, stop_ts: int = 2**62,
             prefetch_live: int = 1) -> BookState:
    """Decode + book over a capture through the pipeline stages, as ``make run`` does (the
    book prefetching from its first live order on, so the small captures here take that path)."""
    reader = CaptureReader(path)
    state = BookState(max_orders, max_orders, MAX_SYMBOLS, prefetch_live=prefetch_live)
    dec = DecodeStage(cpu, reader.batch_rows, reader.stats)
    books = BookStage(cpu, state, reader.batch_rows, symbols=list(symbols), stop_ts=stop_ts)
    for batch in reader:
        books(dec(batch))
    assert reader.trailing_bytes == 0
    return state


def our_depth(state: BookState, depth: int = DEPTH, by_locate: bool = False) -> dict:
    """``{symbol: {"bid": [(price, shares, orders)...], "ask": [...]}}`` for every non-empty book."""
    bk = state.bk[:, B.B_BEST].reshape(-1, 2)
    out = {}
    for loc in np.nonzero((bk >= 0).any(axis=1))[0]:
        d = state.depth(cpu, int(loc), depth)
        key = str(int(loc)) if by_locate else state.stock_of(int(loc))
        out[key] = {side: [(x["price"], x["shares"], x["orders"]) for x in d[name]]
                    for side, name in (("bid", "bids"), ("ask", "asks"))}
    return out


def our_bbo(levels: dict | None) -> tuple:
    """(bid_px, bid_sz, ask_px, ask_sz) from top-of-book levels, None/0 for an empty side."""
    out: tuple = ()
    for side in ("bid", "ask"):
        lv = (levels or {}).get(side) or []
        out += (lv[0][0], lv[0][1]) if lv else (None, 0)
    return out


def itchbook_depth(result: dict, locate_of=None) -> dict:
    """itch-book's last depth row per symbol, empty books dropped. itch-book names a book by its
    stock directory entry, or by its locate when the stream has none; ``locate_of`` (a
    name -> locate function) keys every book by locate."""
    out = {}
    for k, v in result["depth"].items():
        if v["bid"] or v["ask"]:
            key = k if locate_of is None or k.isdigit() else str(locate_of(k))
            out[key] = {"bid": v["bid"], "ask": v["ask"]}
    return out


def diff(ours: dict, theirs: dict, limit: int = 3) -> str:
    keys = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    lines = [f"{len(keys)} symbols differ"]
    for k in keys[:limit]:
        lines.append(f"  {k}: ours {ours.get(k)}\n  {' ' * len(k)}  ref  {theirs.get(k)}")
    return "\n".join(lines)


def assert_stats_agree(c: dict, st: dict) -> None:
    """Our counters against itch-book's ``stats()`` (the names differ, the meaning does not)."""
    ours = {k: c[k] for k in ("live_orders", "adds", "executions", "cancels", "deletes", "replaces",
                              "missing_refs", "duplicate_refs", "over_executed")}
    theirs = {"live_orders": st["live_orders"], "adds": st["adds"], "executions": st["executes"],
              "cancels": st["cancels"], "deletes": st["deletes"], "replaces": st["replaces"],
              "missing_refs": st["missing_ref"], "duplicate_refs": st["dup_ref"],
              "over_executed": st["clamped"]}
    assert ours == theirs
    # itch-book's crossed_books counts the books crossed or locked at the end
    assert c["crossed_or_locked_books_now"] == st["crossed_books"]
    assert st["rejected"] == 0


def cut_file(src: Path, dst: Path, n_messages: int) -> tuple[bytes, int]:
    """Write the first ``n_messages`` records of a BinaryFILE to ``dst``; returns (bytes, ts of the last)."""
    data = src.read_bytes()
    offs = message_offsets(data)
    assert n_messages < len(offs) - 1
    head = data[:offs[n_messages]]
    dst.write_bytes(head)
    return head, ts_of(data, offs[n_messages - 1])


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """``day(fmt, seed, n, symbols)``: a generated feed, written once per module."""
    root = tmp_path_factory.mktemp("book_days")
    made: dict = {}

    def get(fmt: str, seed: int, n: int = N_MESSAGES, symbols: int = N_SYMBOLS) -> Path:
        key = (fmt, seed, n, symbols)
        if key not in made:
            path = root / f"day-s{seed}-n{n}-k{symbols}.{fmt}"
            generate(path, fmt=fmt, n_messages=n, n_symbols=symbols, seed=seed)
            made[key] = path
        return made[key]

    return get


# ------------------------------------------------------------------ generated day vs itch-book


@pytest.mark.parametrize("fmt", ["itch", "pcap"])
@pytest.mark.parametrize("seed", SEEDS)
def test_generated_day_top5_depth_and_stats_match_itchbook(day, fmt, seed):
    need("itch_book")
    itch = day("itch", seed)
    ib = ref.itchbook_book(itch, (), depth=DEPTH, strict=True)
    state = run_ours(day(fmt, seed))
    c = state.counters()
    assert c["events"] == ib["stats"]["messages"] == N_MESSAGES
    assert_stats_agree(c, ib["stats"])
    assert c["missing_refs"] == c["crossed_updates"] == c["locked_updates"] == 0
    assert c["crossed_or_locked_books_now"] == 0
    ours, theirs = our_depth(state), itchbook_depth(ib)
    assert len(ours) >= N_SYMBOLS - 2  # (nearly) every symbol has a book: the comparison is not vacuous
    assert ours == theirs, diff(ours, theirs)


@pytest.mark.parametrize("fmt,seed", [("itch", SEEDS[0]), ("pcap", SEEDS[1])])
def test_generated_day_matches_itchbook_midway(day, fmt, seed, tmp_path):
    """The same comparison after 31%, 50% and 77% of the messages: a BinaryFILE cut at a message
    boundary for both; for pcap input ours stops at the last message's timestamp (stop_ts)."""
    need("itch_book")
    itch = day("itch", seed)
    data = itch.read_bytes()
    offs = message_offsets(data)
    for frac in CUTS:
        k = int(N_MESSAGES * frac)
        head = data[:offs[k]]
        ib = ref.itchbook_book(head, (), depth=DEPTH)
        assert ib["stats"]["messages"] == k and ib["stats"]["pending_bytes"] == 0
        if fmt == "itch":
            cut = tmp_path / f"cut{k}.itch"
            cut.write_bytes(head)
            state = run_ours(cut)
        else:
            last_ts = ts_of(data, offs[k - 1])
            assert ts_of(data, offs[k]) > last_ts  # the cut falls between two timestamps
            state = run_ours(day("pcap", seed), stop_ts=last_ts)
        c = state.counters()
        assert c["events"] == k, frac
        assert_stats_agree(c, ib["stats"])
        ours, theirs = our_depth(state), itchbook_depth(ib)
        assert len(ours) >= N_SYMBOLS - 5
        assert ours == theirs, f"after {k} messages: " + diff(ours, theirs)


# ------------------------------------------------------------------ generated day vs itchcpp


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_day_bbo_matches_itchcpp(day, seed, tmp_path):
    need("itchcpp")
    itch = day("itch", seed)
    k = int(N_MESSAGES * CUTS[1])
    cut = tmp_path / "half.itch"
    head, _ = cut_file(itch, cut, k)
    for path, data in ((itch, itch.read_bytes()), (cut, head)):
        state = run_ours(path)
        ours = our_depth(state, depth=1)
        assert len(ours) >= N_SYMBOLS - 5
        names = [state.stock_of(int(loc)) for loc in np.nonzero(state.sym[:, B.S_STOCK])[0]]
        assert len(names) == N_SYMBOLS  # empty books too: itchcpp must have them empty (or absent)
        cpp = ref.itchcpp_book(data, names)
        assert cpp["error"] is None
        theirs = {s: (b["bid_px"], b["bid_sz"], b["ask_px"], b["ask_sz"]) if b else (None, 0, None, 0)
                  for s, b in cpp["bbo"].items()}
        mism = {s: (our_bbo(ours.get(s)), theirs[s]) for s in names if our_bbo(ours.get(s)) != theirs[s]}
        assert not mism, f"{path.name}: {len(mism)} differ (ours, itchcpp), e.g. {list(mism.items())[:3]}"


# ------------------------------------------------------------------ generated day vs meatpy


def meatpy_depths(data: bytes, symbols, checkpoints, depth: int = DEPTH) -> list[dict]:
    """meatpy's books (one ``ITCH50MarketProcessor`` per symbol) after each checkpoint's number
    of messages, and at the end; same shape as :func:`our_depth`."""
    need("meatpy")
    from meatpy.itch50.itch50_market_message import ITCH50MarketMessage
    from meatpy.itch50.itch50_market_processor import ITCH50MarketProcessor

    procs = {s: ITCH50MarketProcessor(s, dt.datetime(2026, 11, 2)) for s in symbols}

    def snapshot() -> dict:
        out = {}
        for s, p in procs.items():
            lob = p.current_lob
            if lob is None or not (lob.bid_levels or lob.ask_levels):
                continue
            out[s] = {side: [(int(lv.price), int(sum(o.volume for o in lv.queue)), len(lv.queue))
                             for lv in levels[:depth]]
                      for side, levels in (("bid", lob.bid_levels), ("ask", lob.ask_levels))}
        return out

    offs = message_offsets(data)
    snaps = []
    marks = set(checkpoints)
    for i in range(len(offs) - 1):
        if i in marks:
            snaps.append(snapshot())
        msg = ITCH50MarketMessage.from_bytes(data[offs[i] + 2:offs[i + 1]])
        for p in procs.values():
            p.process_message(msg)
    snaps.append(snapshot())
    return snaps


def test_generated_day_top5_depth_matches_meatpy(day, tmp_path):
    """meatpy is slow Python: 30k messages, 10 symbols (all of them compared), three points."""
    need("meatpy")
    n, k_syms = 30_000, 10
    itch = day("itch", 3, n, k_syms)
    data = itch.read_bytes()
    cuts = [int(n * f) for f in CUTS[:2]]
    states = []
    for k in cuts:
        cut = tmp_path / f"cut{k}.itch"
        cut_file(itch, cut, k)
        states.append(run_ours(cut))
    states.append(run_ours(itch))
    symbols = sorted(our_depth(states[-1]))
    assert len(symbols) == k_syms
    ref_snaps = meatpy_depths(data, symbols, cuts)
    for k, state, theirs in zip(cuts + [n], states, ref_snaps):
        ours = our_depth(state)
        assert len(ours) >= k_syms - 1
        assert ours == theirs, f"after {k} messages: " + diff(ours, theirs)


# ------------------------------------------------------------------ hand-made streams

TS0 = 34_200_000_000_000


class Stream:
    """ITCH 5.0 messages built with struct (independent of our writers), timestamps increasing."""

    def __init__(self, symbols=("AAA", "BBB", "CCC")):
        self.ts = TS0
        self.msgs: list[bytes] = []
        self.symbols = symbols
        for i, s in enumerate(symbols, 1):
            self._put("R", i, s.encode().ljust(8) + b"QN" + struct.pack(">I", 100) + b"NCZ PNN1N\0\0\0\0N")

    def _put(self, t: str, loc: int, body: bytes) -> None:
        self.ts += 1000
        self.msgs.append(t.encode() + struct.pack(">HH", loc, 0) + self.ts.to_bytes(6, "big") + body)

    def add(self, r, side, shares, px, loc=1, mpid=None):
        body = struct.pack(">QcI8sI", r, side, shares, self.symbols[loc - 1].encode().ljust(8), px)
        self._put("A" if mpid is None else "F", loc, body + (mpid or b""))

    def execute(self, r, shares, loc=1, match=1):
        self._put("E", loc, struct.pack(">QIQ", r, shares, match))

    def execute_px(self, r, shares, px, printable=b"Y", loc=1, match=1):
        self._put("C", loc, struct.pack(">QIQcI", r, shares, match, printable, px))

    def cancel(self, r, shares, loc=1):
        self._put("X", loc, struct.pack(">QI", r, shares))

    def delete(self, r, loc=1):
        self._put("D", loc, struct.pack(">Q", r))

    def replace(self, r, new, shares, px, loc=1):
        self._put("U", loc, struct.pack(">QQII", r, new, shares, px))

    def trade(self, shares, px, loc=1, match=1):
        stock = self.symbols[loc - 1].encode().ljust(8)
        self._put("P", loc, struct.pack(">QcI8sIQ", 0, b"B", shares, stock, px, match))

    def binaryfile(self, n: int | None = None) -> bytes:
        return b"".join(struct.pack(">H", len(m)) + m for m in self.msgs[:n])


def compare_stream(data: bytes, path: Path) -> tuple[dict, dict, dict, dict]:
    path.write_bytes(data)
    state = run_ours(path, max_orders=1 << 12)
    ib = ref.itchbook_book(data, (), depth=DEPTH)
    return our_depth(state), itchbook_depth(ib), state.counters(), ib["stats"]


def messy_stream(seed: int, n: int = 3000) -> Stream:
    """Random order flow that is legal ITCH but not a clean day: deletes/cancels/executions/replaces
    of missing references, executions and cancels for more shares than remain, bids above asks
    (crossed and locked books), follow-ups that carry another locate than the order, references
    reused after the order is gone, C prints marked non-printable, P trades. No duplicate live
    reference, no zero shares or price (see the known differences below)."""
    rng = np.random.default_rng(seed)
    s = Stream()
    live: dict[int, list] = {}  # ref -> [locate, shares]
    dead: list[int] = []
    nxt = 1
    mids = {1: 1_000_000, 2: 250_000, 3: 42_000}

    def some_ref(missing_p=0.08):
        if not live or rng.random() < missing_p:
            return int(rng.integers(10**6, 2 * 10**6)), None
        r = int(rng.choice(list(live)))
        return r, live[r]

    def loc_for(entry):
        return int(rng.integers(1, 4)) if entry is None or rng.random() < 0.1 else entry[0]

    def remove(r):
        live.pop(r, None)
        dead.append(r)

    for _ in range(n):
        u = rng.random()
        if u < 0.42 or not live:
            if dead and rng.random() < 0.05:
                r = dead.pop(int(rng.integers(len(dead))))
            else:
                r, nxt = nxt, nxt + 1
            loc = int(rng.integers(1, 4))
            side = b"B" if rng.random() < 0.5 else b"S"
            px = mids[loc] + 100 * int(rng.integers(-6, 3) if side == b"B" else rng.integers(-2, 7))
            shares = int(rng.integers(1, 11)) * 100 + (int(rng.integers(1, 99)) if rng.random() < 0.2 else 0)
            s.add(r, side, shares, px, loc, mpid=b"GSCO" if rng.random() < 0.1 else None)
            live[r] = [loc, shares]
        elif u < 0.62:
            r, e = some_ref()
            s.delete(r, loc_for(e))
            if e:
                remove(r)
        elif u < 0.86:
            r, e = some_ref()
            left = e[1] if e else 100
            q = int(rng.integers(0, int(left * 1.3) + 2))
            kind = rng.integers(3)
            if kind == 0:
                s.cancel(r, q, loc_for(e))
            elif kind == 1:
                s.execute(r, q, loc_for(e))
            else:
                s.execute_px(r, q, mids[e[0] if e else 1] + 100 * int(rng.integers(-3, 4)),
                             b"Y" if rng.random() < 0.7 else b"N", loc_for(e))
            if e:
                if q >= e[1]:
                    remove(r)
                else:
                    e[1] -= q
        elif u < 0.97:
            r, e = some_ref()
            new, nxt = nxt, nxt + 1
            loc = e[0] if e else 1
            shares = int(rng.integers(1, 11)) * 100
            s.replace(r, new, shares, mids[loc] + 100 * int(rng.integers(-5, 6)), loc_for(e))
            if e:
                remove(r)
                live[new] = [loc, shares]
        else:
            loc = int(rng.integers(1, 4))
            s.trade(int(rng.integers(1, 500)), mids[loc], loc)
    return s


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_messy_stream_matches_itchbook_at_every_step(seed, tmp_path):
    need("itch_book")
    s = messy_stream(seed)
    n = len(s.msgs)
    seen = {"missing_refs": 0, "over_executed": 0, "crossed_updates": 0, "locked_updates": 0}
    for k in (50, 333, 1000, 2222, n):
        ours, theirs, c, st = compare_stream(s.binaryfile(k), tmp_path / "messy.itch")
        assert ours and ours == theirs, f"seed {seed}, after {k} messages: " + diff(ours, theirs)
        assert_stats_agree(c, st)
        for key in seen:
            seen[key] = c[key]
    # the stream does exercise the anomalies it is meant to
    assert all(v > 0 for v in seen.values()), seen


def _scenario(build) -> Stream:
    s = Stream()
    build(s)
    return s


AGREE = {
    "over-cancel": lambda s: (s.add(1, b"B", 100, 100000), s.add(2, b"B", 100, 100000), s.cancel(1, 150)),
    "over-execute": lambda s: (s.add(1, b"B", 100, 100000), s.add(2, b"B", 300, 100000), s.execute(1, 150)),
    "over-execute-C": lambda s: (s.add(1, b"S", 100, 100000), s.add(2, b"S", 100, 100100),
                                 s.execute_px(1, 101, 1)),
    "execute-all": lambda s: (s.add(1, b"B", 100, 100000), s.execute(1, 100)),
    "zero-cancel-execute": lambda s: (s.add(1, b"B", 100, 100000), s.cancel(1, 0), s.execute(1, 0)),
    "missing-refs": lambda s: (s.add(1, b"B", 100, 100000), s.delete(9), s.cancel(9, 1), s.execute(9, 1),
                               s.execute_px(9, 1, 5), s.replace(9, 10, 100, 100100)),
    "crossed": lambda s: (s.add(1, b"B", 100, 120000), s.add(2, b"S", 100, 110000)),
    "locked": lambda s: (s.add(1, b"B", 100, 110000), s.add(2, b"S", 100, 110000)),
    "other-locate-followups": lambda s: (s.add(1, b"B", 100, 100000), s.add(2, b"B", 100, 200000, loc=2),
                                         s.delete(1, loc=2), s.cancel(2, 10, loc=3),
                                         s.replace(2, 3, 50, 200100, loc=1)),
    "ref-reused-after-delete": lambda s: (s.add(1, b"B", 100, 100000), s.delete(1),
                                          s.add(1, b"S", 100, 110000)),
    "replace-keeps-ref": lambda s: (s.add(1, b"B", 100, 100000), s.add(2, b"B", 100, 100000),
                                    s.replace(1, 1, 300, 100000)),
    "replace-loses-priority": lambda s: (s.add(1, b"B", 100, 100000), s.add(2, b"B", 200, 100000),
                                         s.replace(1, 3, 100, 100000), s.execute(2, 200)),
    "prices-above-2**31": lambda s: (s.add(1, b"B", 100, 0xFFFFFFF0), s.add(2, b"S", 100, 0xFFFFFFFF),
                                     s.replace(1, 3, 100, 0x80000000)),
}


@pytest.mark.parametrize("name", sorted(AGREE))
def test_protocol_anomalies_match_itchbook(name, tmp_path):
    need("itch_book")
    s = _scenario(AGREE[name])
    ours, theirs, c, st = compare_stream(s.binaryfile(), tmp_path / "s.itch")
    assert ours == theirs, diff(ours, theirs)
    assert_stats_agree(c, st)


# scenario -> (our book, itch-book's book) for AAA (locate 1), as (price, shares, orders) levels
KNOWN_DIFFERENCES = {
    # an add whose reference is live: we keep the resting order (and count a duplicate);
    # itch-book replaces it with the new one (itchcpp does what we do)
    "duplicate-live-add": (
        lambda s: (s.add(1, b"B", 100, 100000), s.add(1, b"B", 200, 101000)),
        {"bid": [(100000, 100, 1)], "ask": []}, {"bid": [(101000, 200, 1)], "ask": []}),
    # a replace whose new reference is live: we remove the original and ignore the new order
    # (counted as a duplicate), the live order stays; itch-book overwrites the live order
    # with the new one (itchcpp does what we do)
    "replace-onto-live-ref": (
        lambda s: (s.add(1, b"B", 100, 100000), s.add(2, b"B", 100, 101000), s.replace(1, 2, 300, 102000)),
        {"bid": [(101000, 100, 1)], "ask": []}, {"bid": [(102000, 300, 1)], "ask": []}),
    # zero shares / zero price: we book the order as sent; itch-book rejects it (stats
    # "rejected"); for a replace it has removed the original first (itchcpp books it, like us)
    "add-zero-shares": (
        lambda s: (s.add(1, b"B", 0, 100000), s.add(2, b"S", 100, 110000)),
        {"bid": [(100000, 0, 1)], "ask": [(110000, 100, 1)]}, {"bid": [], "ask": [(110000, 100, 1)]}),
    "add-zero-price": (
        lambda s: (s.add(1, b"B", 100, 0), s.add(2, b"S", 100, 110000)),
        {"bid": [(0, 100, 1)], "ask": [(110000, 100, 1)]}, {"bid": [], "ask": [(110000, 100, 1)]}),
    "replace-zero-shares": (
        lambda s: (s.add(1, b"B", 100, 100000), s.add(2, b"S", 100, 110000), s.replace(1, 3, 0, 100000)),
        {"bid": [(100000, 0, 1)], "ask": [(110000, 100, 1)]}, {"bid": [], "ask": [(110000, 100, 1)]}),
    # a side other than B/S: we skip the add (counter bad_side); itch-book (and itchcpp) book
    # it as a sell
    "bad-side": (
        lambda s: (s.add(1, b"X", 100, 100000), s.add(2, b"B", 100, 90000)),
        {"bid": [(90000, 100, 1)], "ask": []}, {"bid": [(90000, 100, 1)], "ask": [(100000, 100, 1)]}),
    # level shares above 2**32: ours are int64; itch-book's level size wraps at 32 bits
    # (itchcpp agrees with us)
    "level-over-2**32-shares": (
        lambda s: (s.add(1, b"B", 0xFFFFFFFF, 100000), s.add(2, b"B", 0xFFFFFFFF, 100000)),
        {"bid": [(100000, 2 * 0xFFFFFFFF, 2)], "ask": []},
        {"bid": [(100000, 2 * 0xFFFFFFFF - 2**32, 2)], "ask": []}),
}


@pytest.mark.parametrize("name", sorted(KNOWN_DIFFERENCES))
def test_invalid_input_differences_are_the_known_ones(name, tmp_path):
    """Input a real feed does not carry, where our book and itch-book differ by design. Pinned
    both ways: a change on either side shows up here (and then belongs in the report)."""
    need("itch_book")
    build, expect_ours, expect_theirs = KNOWN_DIFFERENCES[name]
    s = _scenario(build)
    ours, theirs, c, st = compare_stream(s.binaryfile(), tmp_path / "s.itch")
    empty = {"bid": [], "ask": []}
    assert ours.get("AAA", empty) == expect_ours
    assert theirs.get("AAA", empty) == expect_theirs
    assert ours != theirs


# ------------------------------------------------------------------ real captures

MULTIPLE_PACKETS = ("omi-pcaps", "Nasdaq", "Nasdaq.Equities.TotalView.Itch.v5.0", "Multiple.Packets.pcap")
META_LOCATE = "6514"  # no stock directory in the capture: itch-book names the book by its locate


def pcap_to_binaryfile(path: Path) -> bytes:
    """The ITCH messages of a MoldUDP64 capture as a BinaryFILE, framed with dpkt (not our code):
    MoldUDP64 message blocks already are 2-byte length + message, as in a BinaryFILE."""
    dpkt = need("dpkt")
    out = bytearray()
    with open(path, "rb") as f:
        for _ts, frame in dpkt.pcap.Reader(f):
            payload = bytes(dpkt.ethernet.Ethernet(frame).data.data.data)  # 802.1Q tags are unwrapped
            count = struct.unpack(">H", payload[18:20])[0]
            pos = 20
            for _ in range(count if count != 0xFFFF else 0):
                ln = struct.unpack(">H", payload[pos:pos + 2])[0]
                out += payload[pos:pos + 2 + ln]
                pos += 2 + ln
    return bytes(out)


def test_multiple_packets_meta_book():
    """39 messages: 38 META adds and one delete of an order that is not in the capture."""
    state = run_ours(shared_data(*MULTIPLE_PACKETS), max_orders=1 << 10)
    c = state.counters()
    assert (c["events"], c["adds"], c["live_orders"], c["missing_refs"], c["deletes"]) == (39, 38, 38, 1, 0)
    assert c["crossed_updates"] == 0 and c["crossed_or_locked_books_now"] == 0
    loc = state.locate_of("META")
    assert loc == int(META_LOCATE)
    top = state.depth(cpu, loc, 1)
    assert top["bids"][0]["price"] == 805200 and top["bids"][0]["shares"] == 1
    assert top["asks"][0]["price"] == 3573300 and top["asks"][0]["shares"] == 100


def test_multiple_packets_top5_depth_matches_itchbook():
    need("itch_book")
    path = shared_data(*MULTIPLE_PACKETS)
    data = pcap_to_binaryfile(path)
    ib = ref.itchbook_book(data, (), depth=DEPTH)
    assert ib["stats"]["messages"] == 39 and ib["stats"]["missing_ref"] == 1
    ours = our_depth(run_ours(path, max_orders=1 << 10), by_locate=True)
    theirs = itchbook_depth(ib)
    assert list(theirs) == [META_LOCATE]
    assert ours == theirs, diff(ours, theirs)
    assert len(ours[META_LOCATE]["bid"]) == len(ours[META_LOCATE]["ask"]) == DEPTH


def test_multiple_packets_bbo_matches_itchcpp_and_meatpy():
    path = shared_data(*MULTIPLE_PACKETS)
    data = pcap_to_binaryfile(path)
    bbo = our_bbo(our_depth(run_ours(path, max_orders=1 << 10))["META"])
    assert bbo == (805200, 1, 3573300, 100)
    need("itchcpp")
    cpp = ref.itchcpp_book(data, ["META"])
    assert cpp["error"] is None
    m = cpp["bbo"]["META"]
    assert (m["bid_px"], m["bid_sz"], m["ask_px"], m["ask_sz"]) == bbo
    need("meatpy")
    snap = meatpy_depths(data, ["META"], ())[-1]  # meatpy ignores the delete of an unknown order
    assert our_bbo(snap["META"]) == bbo


def test_every_nasdaq_itch50_capture_book_matches_itchbook():
    """All ITCH 5.0 captures in omi-pcaps (Nasdaq, BX, PSX; 49 files): stats and top-5 depth."""
    need("itch_book")
    root = shared_data("omi-pcaps", "Nasdaq")
    files = sorted(p for d in ITCH_DIRS for p in (root / d).glob("*.pcap"))
    assert len(files) >= 40
    for path in files:
        data = pcap_to_binaryfile(path)
        ib = ref.itchbook_book(data, (), depth=DEPTH)
        state = run_ours(path, max_orders=1 << 10)
        c = state.counters()
        assert c["events"] == ib["stats"]["messages"] > 0, path.name
        assert_stats_agree(c, ib["stats"])
        ours, theirs = our_depth(state, by_locate=True), itchbook_depth(ib, state.locate_of)
        assert ours == theirs, f"{path.name}: " + diff(ours, theirs)


# ------------------------------------------------------------------ the bench harness


def test_book_bench_workers_smoke(day):
    """``bench/book.py`` on a small day, in process: every contender books every message."""
    from bench import book as bench_book

    path = str(day("itch", 5, 20_000, 20))
    sizing = bench_book.size_day(path)
    assert 0 < sizing["peak_live_orders"] < sizing["max_orders"]
    for name in ("ours.book", "ours.book.features", "ours.book.stream", "ours.book.threads"):
        r = bench_book.worker(name, path, 1, sizing["max_orders"], sizing["max_levels"])
        assert r["messages"] == 20_000 and r["msgs_per_s"] > 0, r
        assert (r["feature_rows"] > 0) == (name == "ours.book.features")
        assert r["rss_peak_mb"] >= r["rss_loaded_mb"] > 0
        assert name in bench_book.row(r, None)
    need("itch_book")
    r = bench_book.worker("itch_book.book", path, 1, 0, 0)
    assert r["messages"] == 20_000


def test_book_bench_threads_setting(monkeypatch, capsys):
    """``python -m bench.book deep --threads T`` sets the threads rows' count for its workers (an
    environment variable they inherit), capped at the CPUs this process may run on; a count
    outside 1..CPUs is refused before anything runs."""
    import os

    from bench import book as bench_book

    cpus = len(os.sched_getaffinity(0))
    monkeypatch.delenv(bench_book.THREADS_ENV, raising=False)
    assert bench_book.threads() == max(1, min(2, cpus))
    monkeypatch.setenv(bench_book.THREADS_ENV, "1")
    assert bench_book.threads() == 1
    monkeypatch.setenv(bench_book.THREADS_ENV, str(cpus + 5))
    assert bench_book.threads() == cpus
    for bad in ("0", str(cpus + 1)):
        with pytest.raises(SystemExit) as e:
            bench_book.main(["--threads", bad])
        assert e.value.code == 2
        assert f"--threads must be 1..{cpus}" in capsys.readouterr().err
