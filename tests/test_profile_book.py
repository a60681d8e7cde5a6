"""bench/profile_book.py: samples of a real run land on real source lines of the book."""

from __future__ import annotations

import pytest

from bench import profile_book as P
from replay.generator import generate


def test_a_sample_is_charged_to_the_instruction_before_it():
    lines = {0: 10, 4: 11, 9: 12, 12: 13}
    insns = {0: "mov", 4: "movl (%rdx), %esi", 9: "cmp", 12: "je"}
    per_line, per_insn = P.attribute([9, 9, 12, 0], lines, insns)
    assert dict(per_line) == {11: 2, 12: 1, 10: 1}  # 9 -> the load at 4; 12 -> 9; 0 has no predecessor
    assert per_insn[0] == (4, 2)


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
    # every named line is in apply_events (inlined helpers count on the line that calls them)
    assert all(first <= x["line"] <= len(src) for x in named)
    assert sum(x["share"] for x in named) >= 0.5 * r["book_share"]
