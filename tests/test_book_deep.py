"""Differential test on a small deep day (``generate(preset="deep")``): our book against
itch-book, at the end and midway.

The deep preset is what exercises the book's paged order-reference map (references rising with
gaps), its hash fallback, and the price ladders (hundreds to thousands of levels on the busiest
books, most of them far from the inside). The book is sized so both are on, and the comparison
goes 25 levels deep on every symbol, with the book statistics.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import reference as ref
from kernels import book as B
from replay.generator import generate
from tests.test_book_reference import (assert_stats_agree, cut_file, diff, itchbook_depth, message_offsets,
                                       our_depth, run_ours)

N = 240_000
SYMBOLS = 24
LIVE = 40_000
DEPTH = 25


@pytest.fixture(scope="module")
def deep_day(tmp_path_factory):
    path = tmp_path_factory.mktemp("deep") / "deep.itch"
    summary = generate(path, fmt="itch", n_messages=N, n_symbols=SYMBOLS, seed=5, preset="deep", live_orders=LIVE)
    return path, summary


def test_the_deep_day_is_deep(deep_day):
    _, s = deep_day
    x = s.extra
    assert x["preset"] == "deep" and x["live_orders_target"] == LIVE
    assert x["live_orders_mid"] > LIVE // 2 and x["live_orders_now"] > 0.8 * LIVE
    assert x["max_levels_one_symbol_now"] > 1000  # thousands of price levels on the busiest book
    assert s.last_order_ref > s.counts["A"] + s.counts["F"] + s.counts["U"]  # references skip numbers


def test_deep_day_matches_itchbook_25_levels_deep(deep_day, tmp_path):
    pytest.importorskip("itch_book", reason=f"itch_book not installed: pip install {ref.PINS['itch_book']}")
    path, _ = deep_day
    data = path.read_bytes()
    n_all = len(message_offsets(data)) - 1
    assert n_all == N
    for k in (N // 2, N):
        if k < N:
            src = tmp_path / f"cut{k}.itch"
            head, _ = cut_file(path, src, k)
        else:
            src, head = path, data
        ib = ref.itchbook_book(head, (), depth=DEPTH, strict=True)
        state = run_ours(src)
        assert state.ok.shape[0] >= B.PAGED_MIN_SLOTS and state.lk.shape[0] >= B.LADDER_MIN_SLOTS
        handed, _free, hashed = B.ref_map_stats(state.ok, state.ov)
        assert handed > 0 and hashed == 0  # dense references: every one in a page
        assert (state.lk[state.lk.shape[0] // 2:][:state.bk.shape[0]] != 0).any()  # ladders in use
        c = state.counters()
        assert c["events"] == k and c["max_levels_in_a_book"] > 300
        assert_stats_agree(c, ib["stats"])
        ours, theirs = our_depth(state, DEPTH), itchbook_depth(ib)
        assert len(ours) == SYMBOLS
        assert ours == theirs, f"after {k} messages: " + diff(ours, theirs)


def test_perf_book_reads_perf_stat_csv_and_cuts_a_message_prefix(deep_day, tmp_path):
    """bench/perf_book.py's pieces that do not need a PMU: the ``perf stat -x,`` reader (counts,
    ``<not supported>``) and the prefix file it subtracts (whole messages, nothing else)."""
    import shutil

    from bench import perf_book as P
    from tests.test_book_reference import message_offsets

    text = ("1234,,cache-misses,100.00,,\n<not supported>,,cache-references,0,100.00,,\n"
            "98765432,,instructions:u,99.80,,\n5,,cycles,100.00,,\n")
    assert P.parse(text) == {"cache-misses": 1234, "cache-references": None, "instructions": 98765432, "cycles": 5}
    path, _ = deep_day
    src = tmp_path / path.name
    shutil.copy(path, src)
    cut = P.prefix_file(src, 1000)
    head = cut.read_bytes()
    offs = message_offsets(src.read_bytes())
    assert head == src.read_bytes()[:offs[1000]] and P.count(cut) == 1000
    why = P.perf_status()
    assert why is None or ("perf" in why or "counters" in why)


def test_prefetching_changes_nothing(deep_day):
    """The book with prefetching (from its first live order) and without: identical state, array
    for array (the prefetch setting's own counter slot aside)."""
    path, _ = deep_day
    on, off = run_ours(path, prefetch_live=1), run_ours(path, prefetch_live=0)
    assert on.counters()["live_orders"] > LIVE // 2
    for name, a, b in zip(on.arrays()._fields, on.arrays(), off.arrays()):
        if name == "ctr":
            a, b = np.delete(a, B.C_PREFETCH_LIVE), np.delete(b, B.C_PREFETCH_LIVE)
        assert np.array_equal(a, b), name
