"""bench/perf_book.py's cachegrind path (the fallback where perf has no hardware counters):
the cache geometry read from sysfs, the reader of cachegrind's output file, and one real
difference of two cachegrind runs on a tiny day (a pure-Python framing pass, so it takes
seconds: the book contenders import numba, a minute under valgrind)."""

from __future__ import annotations

import math
import shutil
import sys

import pytest

from bench import perf_book as P
from replay.generator import generate

# an output file of valgrind 3.19's cachegrind (--cache-sim=yes), header and summary as written
CG_OUT = """desc: I1 cache:         32768 B, 64 B, 8-way associative
desc: D1 cache:         32768 B, 64 B, 8-way associative
desc: LL cache:         33554432 B, 64 B, 16-way associative
cmd: python -S -c pass
events: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw
fl=???
fn=0x0000000000001140
0 3 1 1 0 0 0 1 0 0
summary: 2715462886 30767197 127511 775955031 29538134 1035146 466237974 5620977 3075661
"""


def test_parse_cachegrind_output():
    r = P.parse_cachegrind(CG_OUT)
    assert r["Ir"] == 2715462886 and r["D1mr"] == 29538134 and r["DLmw"] == 3075661
    assert r["desc"][2].startswith("LL cache:         33554432 B")
    with pytest.raises(ValueError):
        P.parse_cachegrind("events: Ir\nsummary: 1 2\n")
    with pytest.raises(ValueError, match="cache-sim"):
        P.parse_cachegrind("events: Ir Dr Dw\nsummary: 1 2 3\n")


def test_per_message_difference():
    short = P.parse_cachegrind(CG_OUT)
    long = {e: short[e] + 1000 * (i + 1) for i, e in enumerate(P.CG_EVENTS)}
    d = P.cg_per_message(long, short, 100)
    # Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw grew by 1000, 2000, ... 9000 over 100 messages
    assert d["Ir"] == 10 and d["D_refs"] == 40 + 70 and d["D1_miss"] == 50 + 80
    assert d["LL_miss"] == 30 + 60 + 90 and d["LL_miss_rd"] == 30 + 60 and d["LL_miss_wr"] == 90


def _cache(root, index, level, kind, size, ways, line=64):
    d = root / f"index{index}"
    d.mkdir(parents=True)
    for name, v in (("level", level), ("type", kind), ("size", size), ("ways_of_associativity", ways),
                    ("coherency_line_size", line)):
        (d / name).write_text(f"{v}\n")


def test_cache_geometry_from_sysfs(tmp_path):
    _cache(tmp_path, 0, 1, "Data", "32K", 8)
    _cache(tmp_path, 1, 1, "Instruction", "32K", 8)
    _cache(tmp_path, 2, 2, "Unified", "512K", 8)
    _cache(tmp_path, 3, 3, "Unified", "32768K", 16)
    g = P.cache_geometry(tmp_path)
    assert g["D1"]["opt"] == "--D1=32768,8,64" and g["I1"]["opt"] == "--I1=32768,8,64"
    assert g["LL"]["opt"] == "--LL=33554432,16,64" and g["LL"]["level"] == 3
    assert g["L2"]["size"] == 512 << 10 and "opt" not in g["L2"]
    text = P.describe(g)
    assert "simulation" in text and "not hardware" in text and "L2 (512 KiB) is not modelled" in text


def test_cache_geometry_with_sets_not_a_power_of_two(tmp_path):
    # e.g. a 30 MiB 12-way L3 (40,960 sets): cachegrind wants power-of-two sets
    _cache(tmp_path, 0, 1, "Data", "48K", 12)
    _cache(tmp_path, 1, 1, "Instruction", "32K", 8)
    _cache(tmp_path, 2, 3, "Unified", "30720K", 12)
    g = P.cache_geometry(tmp_path)
    assert g["D1"]["opt"] == "--D1=49152,12,64" and not g["D1"]["note"]  # 64 sets: as it is
    sets = g["LL"]["size"] // (g["LL"]["ways"] * g["LL"]["line"])
    assert sets & (sets - 1) == 0 and g["LL"]["size"] >= 30 << 20 and "adjusted" in g["LL"]["note"]
    assert "L2" not in g


# a pure-Python contender: walks the BinaryFILE's frames and prints how many
FRAMES = ("import sys\nd = open(sys.argv[1], 'rb').read()\no = n = s = 0\nwhile o + 2 <= len(d):\n"
          "    ln = int.from_bytes(d[o:o + 2], 'big')\n    s += d[o + 2]\n    o += 2 + ln\n    n += 1\n"
          "print(n, s)\n")


def test_cachegrind_difference_on_a_tiny_day(tmp_path):
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed (Debian valgrind, installed by make setup via mk/cachesim.mk)")
    why = P.cachegrind_status()
    if why:
        pytest.skip(why)
    day = tmp_path / "day.itch"
    generate(day, fmt="itch", n_messages=6_000, n_symbols=20, seed=3)
    long, short, n_long, n_short = P.window(day, 2_000, 6_000)
    assert (n_long, n_short) == (6_000, 2_000) and long.read_bytes().startswith(short.read_bytes())
    try:
        geo = P.cache_geometry()
    except RuntimeError:  # no sysfs cache description here: a fixed hierarchy
        geo = {k: {"size": s, "ways": w, "line": 64, "level": lv, "note": "", "opt": f"--{k}={s},{w},64"}
               for k, s, w, lv in (("I1", 32768, 8, 1), ("D1", 32768, 8, 1), ("LL", 8 << 20, 16, 3))}
    cmds = {"frames": lambda p: [sys.executable, "-S", "-c", FRAMES, str(p)]}
    res = P.cg_measure(cmds, long, short, n_long - n_short, geo, tmp_path, log=lambda s: None)
    v = res["frames"]
    assert "error" not in v, v
    assert v["messages"] == 4_000
    for k in ("Ir", "D_refs", "D1_miss", "D1_miss_rd", "LL_miss"):
        assert math.isfinite(v[k]) and v[k] > 0, (k, v)
    assert v["Ir"] > v["D1_miss"] >= v["LL_miss"] - v["LL_miss_wr"] - 1e-9
    out = (tmp_path / f"cachegrind.frames.{long.stem}.out").read_text()
    assert f"LL cache:         {geo['LL']['size']} B" in out  # the geometry given, not cachegrind's guess
    rows = P.cg_table({"frames": v, "itch_book": v})
    assert rows[-1].split()[3] == "1.00x"  # the ratio row, Ir
