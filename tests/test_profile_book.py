"""bench/profile_book.py: samples of a real run land on real source lines of the book."""

from __future__ import annotations

import pytest

from bench import profile_book as P
from replay.generator import generate


def test_a_sample_is_charged_to_the_instruction_before_it():
    f = "apply_events"
    lines = {0: (f, 10), 4: (f, 11), 9: (f, 12), 12: (f, 13)}
    insns = {0: "mov", 4: "movl (%rdx), %esi", 9: "cmp", 12: "je"}
    per_line, per_insn = P.attribute([9, 9, 12, 0], lines, insns)
    assert dict(per_line) == {(f, 11): 2, (f, 12): 1, (f, 10): 1}  # 9 -> the load at 4; 12 -> 9; 0 has none
    assert per_insn[0] == (4, 2)


def test_function_names_from_numba_symbols():
    assert P.function_name("_ZN7kernels4book9level_newB3v53B38c8tJTIeFIjxB2IKSgI4CrvQEx") == "level_new"
    assert P.function_name("_ZN7kernels4book12apply_eventsB2v1B54c8tJTC") == "apply_events"


def test_profile_of_a_small_deep_day(tmp_path):
    why = P.tools_status()
    if why:
        pytest.skip(why)
    path = tmp_path / "deep.itch"
    s = generate(path, fmt="itch", n_messages=300_000, n_symbols=12, seed=3, preset="deep", live_orders=30_000)
    r = P.profile(path, 65_536, 65_536, prefetch_live=1)
    assert r["events"] == 300_000 and r["live_orders_end"] == s.extra["live_orders_now"]
    assert r["samples"] > 0 and 0 < r["samples_in_book"] <= r["samples"]
    src = P.BOOK_SRC.read_text().splitlines()
    first = next(k for k, t in enumerate(src, 1) if t.startswith("def apply_events("))
    named = [x for x in r["lines"] if x["line"]]
    assert named and sum(x["share"] for x in r["lines"]) <= 1.0 + 1e-9
    # apply_events' own lines are in its body (inlined helpers count on the line that calls them);
    # a function LLVM kept out of line is named with its own lines
    assert all(first <= x["line"] <= len(src) for x in named if x["function"] == "apply_events")
    assert all(0 < x["line"] <= len(src) and x["function"] for x in named)
    assert any(x["function"] == "apply_events" for x in named)
    assert sum(x["share"] for x in named) >= 0.5 * r["book_share"]
