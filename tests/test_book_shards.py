"""The books split by symbol across threads (``BookShards``, ``ShardedBookStage``,
``kernels/book.py: shard_rows`` and ``apply_events(..., sel=rows)``): every book, counter and symbol row equal to one book state's,
on generated shallow and deep days, real captures, with a stop time, and from the command line
(``hftbot book --threads``)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from kernels import book as B
from kernels import features as FT
from kernels import cpu
from kernels.events import EventTable
from kernels.itch_spec import LENGTHS
from pipeline.book import BookCapacityError, BookShards, BookStage, BookState, ShardedBookStage, book_events
from pipeline.stages import DecodeStage
from replay.capture import CaptureReader
from replay.generator import generate
from tests.test_bad_input import cli, one_line_error
from tests.test_book_reference import ITCH_DIRS
from tests.conftest import shared_data
from tests.packets import add_order, binaryfile

MAX_SYMBOLS = 1024
DEPTH = 10_000  # every level


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    shallow, deep = d / "shallow.itch", d / "deep.itch"
    generate(shallow, fmt="itch", n_messages=140_000, n_symbols=40, seed=3)
    generate(deep, fmt="itch", n_messages=200_000, n_symbols=16, seed=8, preset="deep", live_orders=30_000)
    return {"shallow": shallow, "deep": deep, "every kind": every_kind(d / "every.itch")}


def every_kind(path, n: int = 100_000):
    """Every ITCH 5.0 message type, random bodies (the symbol-state messages R, H, h, Y, J, L,
    ... with every field set), between adds, executions, deletes and replaces of live orders,
    over 20 locates; batches of 65,536 rows need two."""
    rng = np.random.default_rng(7)
    kinds = sorted(LENGTHS)
    msgs, live, ref = [], [], 0
    for i in range(n):
        ts = (34_200_000_000_000 + 1000 * i).to_bytes(6, "big")
        loc = int(rng.integers(1, 21))
        r = rng.random()
        if r < 0.35 or not live:
            ref += 1
            live.append((ref, loc))
            msgs.append(add_order(ref, side=b"BS"[i % 2:i % 2 + 1], shares=int(rng.integers(1, 500)), locate=loc,
                                  price=int(rng.integers(90, 110)) * 100, ts=34_200_000_000_000 + 1000 * i))
        elif r < 0.65:
            old, oloc = live.pop(int(rng.integers(len(live))))
            t = "DXECU"[int(rng.integers(5))]
            body = struct.pack(">Q", old) + rng.integers(0, 256, LENGTHS[t] - 19, dtype=np.uint8).tobytes()
            if t in "XEC":  # a share count that does not always empty the order
                body = struct.pack(">QI", old, int(rng.integers(1, 300))) + body[12:]
            elif t == "U":
                ref += 1
                live.append((ref, oloc))
                body = struct.pack(">QQII", old, ref, int(rng.integers(1, 500)), int(rng.integers(90, 110)) * 100)
            msgs.append(t.encode() + struct.pack(">HH", oloc, 0) + ts + body)
        else:
            t = kinds[int(rng.integers(len(kinds)))]
            msgs.append(t.encode() + struct.pack(">HH", loc, 0) + ts
                        + rng.integers(0, 256, LENGTHS[t] - 11, dtype=np.uint8).tobytes())
    path.write_bytes(binaryfile(msgs))
    return path


def one_state(path, *, stop_ts: int = 2**62, max_orders: int = 1 << 17, batch_rows: int | None = None) -> BookState:
    reader = CaptureReader(path, batch_rows=batch_rows) if batch_rows else CaptureReader(path)
    state = BookState(max_orders, max_orders, MAX_SYMBOLS, prefetch_live=1)
    dec = DecodeStage(cpu, reader.batch_rows, reader.stats)
    books = BookStage(cpu, state, reader.batch_rows, symbols=[], stop_ts=stop_ts)
    for batch in reader:
        books(dec(batch))
        if books.stopped:
            break
    return state


def sharded(path, shards: int, *, stop_ts: int = 2**62, max_orders: int = 1 << 17, pipelined: bool = True,
            batch_rows: int | None = None) -> BookShards:
    reader = CaptureReader(path, batch_rows=batch_rows) if batch_rows else CaptureReader(path)
    books = BookShards(shards, max_orders, max_orders, MAX_SYMBOLS, prefetch_live=1)
    dec = DecodeStage(cpu, reader.batch_rows, reader.stats)
    with ShardedBookStage(cpu, books, reader.batch_rows, stop_ts=stop_ts) as stage:
        if pipelined:  # a ring of 2 or 3 tables
            stage.replay(reader, [dec] + [DecodeStage(cpu, reader.batch_rows, reader.stats) for _ in range(shards - 1)])
        else:
            for batch in reader:
                stage(dec(batch))
                if stage.stopped:
                    break
    return books


def snapshot(books, max_symbols: int = MAX_SYMBOLS) -> dict:
    """Every non-empty book to its last level (price, shares, orders), each symbol's row, and
    the counters."""
    of = books.of if isinstance(books, BookShards) else (lambda loc: books)
    out: dict = {"counters": books.counters(), "books": {}, "sym": {}}
    for loc in range(max_symbols + 1):
        st = of(loc)
        if (st.bk[2 * loc:2 * loc + 2, B.B_BEST] >= 0).any():
            out["books"][loc] = books.depth(cpu, loc, DEPTH)
        if st.sym[loc].any():
            out["sym"][loc] = st.sym[loc].tolist()
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a["counters"] == b["counters"]
    assert a["sym"] == b["sym"]
    assert a["books"].keys() == b["books"].keys()
    for loc in a["books"]:
        assert a["books"][loc] == b["books"][loc], f"locate {loc}"


# --- the kernels ---------------------------------------------------------------------------------
def test_shard_rows_picks_a_shards_rows_in_order(backend):
    rng = np.random.default_rng(4)
    n, shards = 257, 3
    locate = rng.integers(0, 1 << 16, n).astype(np.uint16)
    owner = (np.arange(1 << 16) % shards).astype(np.int32)
    seen = np.zeros(n, bool)
    for p in range(shards):
        rows = np.full(n + 1, -1, np.int64)
        m = backend.shard_rows(n, locate, p, owner, rows)
        want = np.nonzero(locate % shards == p)[0]
        assert m == len(want) > 0
        assert (rows[:m] == want).all()
        seen[want] = True
    assert seen.all()
    assert backend.shard_rows(0, locate, 0, owner, np.zeros(1, np.int64)) == 0


def test_apply_events_on_selected_rows_equals_apply_events_on_those_rows_copied(days):
    """``apply_events(..., sel=rows)`` reads rows ``rows[q]`` in place: the same books, counters
    and error row as the same events copied to a table of their own, on a day of every message
    type (every third row)."""
    reader = CaptureReader(days["every kind"])
    dec = DecodeStage(cpu, reader.batch_rows, reader.stats)
    t = dec(next(iter(reader)))
    rows = np.arange(0, t.n, 3, dtype=np.int64)
    a, b = BookState(1 << 14, 1 << 14, MAX_SYMBOLS, prefetch_live=1), BookState(1 << 14, 1 << 14, MAX_SYMBOLS,
                                                                               prefetch_live=1)
    conf = BookStage(cpu, a, 4, symbols=[]).feature_conf()
    fo, fk = np.zeros((1, FT.N_FEATURES)), np.zeros((1, FT.N_KEYS), np.int64)
    done, _ = cpu.apply_events(len(rows), book_events(t.cols), a.arrays(), conf, fo, fk, rows)
    copied = {k: v[rows].copy() for k, v in t.cols.items()}
    done2, _ = cpu.apply_events(len(rows), book_events(copied), b.arrays(), conf, fo, fk)
    assert done == done2 == len(rows) > 20_000
    assert_same(snapshot(a), snapshot(b))
    assert a.counters()["replaces"] > 0 and a.counters()["trades"] > 0


# --- whole days ----------------------------------------------------------------------------------
@pytest.mark.parametrize("day", ["shallow", "deep", "every kind"])
@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_books_equal_one_state(days, day, shards):
    # small batches: many hand-overs between the decoding thread and the shard threads
    want = snapshot(one_state(days[day]))
    assert want["counters"]["events"] > 0 and len(want["books"]) > 10
    assert_same(snapshot(sharded(days[day], shards, batch_rows=1 << 16)), want)
    assert_same(snapshot(sharded(days[day], shards, pipelined=False)), want)


def test_sharded_books_stop_where_one_state_stops(days):
    ts = [int(x) for x in _timestamps(days["deep"])]
    stop = ts[len(ts) // 3]
    want = snapshot(one_state(days["deep"], stop_ts=stop, batch_rows=1 << 16))
    assert 0 < want["counters"]["events"] < len(ts)
    assert_same(snapshot(sharded(days["deep"], 2, stop_ts=stop, batch_rows=1 << 16)), want)


def _timestamps(path) -> np.ndarray:
    reader = CaptureReader(path)
    dec = DecodeStage(cpu, reader.batch_rows, reader.stats)
    return np.concatenate([dec(b).cols["ts"][:b.n].copy() for b in reader])


def test_real_captures_sharded_equal_one_state():
    root = shared_data("omi-pcaps", "Nasdaq")
    files = sorted(p for d in ITCH_DIRS for p in (root / d).glob("*.pcap"))
    files.append(shared_data("itch50-nasdaq-01302019-head4096", "sample.itch"))
    assert len(files) >= 40
    for path in files:
        want = snapshot(one_state(path, max_orders=1 << 12))
        got = snapshot(sharded(path, 2, max_orders=1 << 12))
        assert got == want, path.name


def test_a_full_shard_names_the_setting_and_the_event(days):
    with pytest.raises(BookCapacityError, match=r"book\.max_orders \(2,000\) exceeded at event seq \d+"):
        sharded(days["deep"], 2, max_orders=2_000)


def test_the_sharded_stage_refuses_features_and_a_second_table_before_the_first_result():
    books = BookShards(2, 1024, 1024, 16)
    with pytest.raises(ValueError, match="feature rows need the books in one state"):
        ShardedBookStage(cpu, books, 16, symbols=["AAPL"])
    with ShardedBookStage(cpu, books, 16) as stage:
        t = EventTable(16)
        stage.submit(t)
        with pytest.raises(RuntimeError, match="result was not taken"):
            stage(t)
        stage.result()
        with pytest.raises(RuntimeError, match="no table was submitted"):
            stage.result()
        with pytest.raises(ValueError, match="at least two decoders"):
            stage.replay([], [None])
    with pytest.raises(RuntimeError, match="closed"):
        stage.submit(t)
    with pytest.raises(ValueError, match="shards must be >= 1"):
        BookShards(0, 1024, 1024, 16)


# --- the command line -----------------------------------------------------------------------------
def test_hftbot_book_threads_prints_what_one_thread_prints(days, capsys):
    import os

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: --threads 2 is refused here")
    ts = _timestamps(days["deep"])
    at = int(ts[len(ts) // 2])
    clock = f"{at // 3_600_000_000_000:02d}:{at // 60_000_000_000 % 60:02d}:{at // 1_000_000_000 % 60:02d}." \
            f"{at % 1_000_000_000:09d}"
    for extra in ((), ("--at", clock)):
        one = cli("book", str(days["deep"]), "--symbols", "AAPL,MSFT,NOPE", "--depth", "50", *extra, capsys=capsys)
        two = cli("book", str(days["deep"]), "--symbols", "AAPL,MSFT,NOPE", "--depth", "50", "--threads", "2",
                  *extra, capsys=capsys)
        assert one.returncode == two.returncode == 0, two.stderr
        assert one.stdout == two.stdout and '"bids": [{' in one.stdout
        assert one.stderr == two.stderr
    full = cli("book", str(days["deep"]), "--symbols", "AAPL", "--threads", "2", "--max-orders", "500", capsys=capsys)
    assert full.returncode == 3
    assert "--max-orders (500) exceeded" in one_line_error(full, "hftbot book")


def test_hftbot_book_threads_is_checked(days, capsys):
    import os

    for bad, msg in (("0", "must be at least 1, got 0"), (str((os.cpu_count() or 1) + 1), "must be at most")):
        res = cli("book", str(days["shallow"]), "--symbols", "AAPL", "--threads", bad, capsys=capsys)
        assert res.returncode == 2 and f"argument --threads: {msg}" in res.stderr
