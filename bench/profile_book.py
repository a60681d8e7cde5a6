"""Where the book's time goes, by source line: a sampling profile of framing + decode + book.

  python -m bench.profile_book [--deep-messages N | --file F] [--top K] [--prefetch-live N]

The process frames, decodes and books a day (in memory, as ``ours.book`` in ``bench/book.py``)
while ``perf record -e cpu-clock`` samples it: a timer event, so it works where the VM exposes no
PMU and ``perf stat`` counts nothing (``bench/perf_book.py``). The book step runs a debug-info
build of ``kernels.book.apply_events`` (the same optimisation and ``-inline-threshold`` as
``kernels/cpu.py``; debug info changes no code generation option but line tables); each sample
inside it is mapped to a line of ``kernels/book.py`` through the object code's DWARF line table
(``llvm-objdump -d -l``, Debian ``llvm``). numba emits no inlining records, so a helper LLVM
inlined counts on the line of ``apply_events`` that calls it (``prefetch_ahead(...)`` is the
whole prefetch stage). The hottest instructions are listed too, each with the instruction before
the sampled address: a timer sample lands on the instruction after the one that held up
retirement, so a stalled load shows as the line above it.

Needs ``perf`` (Debian ``linux-perf``, ``mk/perf.mk``) allowed to record this process (root, or
``kernel.perf_event_paranoid`` <= 2) and ``llvm-objdump``; says which is missing and exits 0
otherwise. Writes ``.cache/bench/profile_book.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench"
BOOK_SRC = ROOT / "kernels" / "book.py"
FREQ_HZ = 2999
DEFAULT_DEEP = 10_000_000


def tools_status() -> str | None:
    """None when ``perf record`` and ``llvm-objdump`` can do the job here, else why not."""
    if shutil.which("perf") is None:
        return "perf not found: install Debian linux-perf (make setup installs it via mk/perf.mk)"
    if shutil.which("llvm-objdump") is None:
        return "llvm-objdump not found: install Debian llvm (make setup installs it)"
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-o", f"{d}/t.data", "--", "true"],
                           capture_output=True, text=True)
    if p.returncode != 0:
        last = (p.stderr or p.stdout).strip().splitlines()[-1:] or [str(p.returncode)]
        return f"perf record cannot sample here: {last[0]}"
    return None


def function_name(symbol: str) -> str:
    """The Python name in a numba symbol of kernels/book.py (``_ZN7kernels4book9level_newB...``)."""
    m = re.search(r"7kernels4book(\d+)", symbol)
    if not m:
        return symbol[:40]
    return symbol[m.end():m.end() + int(m.group(1))]


def line_table(obj: bytes, symbol: str) -> tuple[dict[int, tuple[str, int]], dict[int, str], int, int, int]:
    """From the object code's disassembly with line numbers, every function of the code section
    that holds ``symbol``:
    ({offset: (function, source line of kernels/book.py, 0 = none)}, {offset: instruction}, the
    offset of ``symbol``, and the first and last offsets. Offsets are in the section, which is
    loaded as one block: a function's address is ``symbol``'s plus the difference of offsets.
    Functions LLVM did not inline (``level_new``, ...) are thus counted too."""
    with tempfile.NamedTemporaryFile(suffix=".o") as f:
        f.write(obj)
        f.flush()
        dis = subprocess.run(["llvm-objdump", "-d", "-l", "--no-show-raw-insn", f.name],
                             capture_output=True, text=True, check=True).stdout
    # numba's large code model puts the code in .ltext: keep the section that holds ``symbol``
    sections: dict[str, tuple[dict, dict]] = {}
    lines: dict[int, tuple[str, int]] = {}
    insns: dict[int, str] = {}
    fn, src, main, home = "", 0, -1, None
    for text in dis.splitlines():
        m = re.match(r"^Disassembly of section (.*):", text)
        if m:
            lines, insns = sections.setdefault(m.group(1), ({}, {}))
            fn = ""
            continue
        m = re.match(r"^([0-9a-f]+) <(.*)>:", text)
        if m:
            fn, src = function_name(m.group(2)), 0
            if m.group(2) == symbol:
                main, home = int(m.group(1), 16), (lines, insns)
            continue
        m = re.match(r"^; (.*):(\d+)", text)
        if m:
            src = int(m.group(2)) if m.group(1).endswith("book.py") else 0
            continue
        m = re.match(r"\s+([0-9a-f]+):\s+(.*)", text)
        if m and fn:
            off = int(m.group(1), 16)
            lines[off] = (fn, src)
            insns[off] = " ".join(m.group(2).split())
    if home is None or not home[1]:
        raise RuntimeError(f"{symbol[:60]}... not found in the object code")
    lines, insns = home
    return lines, insns, main, min(insns), max(insns) + 16


def attribute(offsets: list[int], lines: dict[int, tuple[str, int]], insns: dict[int, str]) -> tuple[list, list]:
    """Samples per (function, source line), and per instruction (the one before each sampled
    address)."""
    order = sorted(insns)
    prev = {order[k]: order[k - 1] for k in range(1, len(order))}
    per_line: collections.Counter = collections.Counter()
    per_insn: collections.Counter = collections.Counter()
    for off in offsets:
        at = prev.get(off, off)
        per_line[lines.get(at, ("", 0))] += 1
        per_insn[at] += 1
    return per_line.most_common(), per_insn.most_common()


def profile(path: Path, max_orders: int, max_levels: int, prefetch_live: int | None) -> dict:
    """Decode + book ``path`` in this process under ``perf record``; samples by book.py line."""
    from numba import njit

    from bench.decode import frame_index, inmem_binaryfile
    from kernels import book as B
    from kernels import cpu
    from kernels.events import EventTable
    from pipeline.book import PREFETCH_LIVE, BookStage, BookState

    # the debug build: numba's flags as kernels/cpu.py sets them, plus line tables
    apply_dbg = njit(cache=False, nogil=True, _nrt=False, debug=True, boundscheck=False)(B.apply_events)
    backend = types.SimpleNamespace(**{k: getattr(cpu, k) for k in dir(cpu) if not k.startswith("__")})
    backend.apply_events = apply_dbg
    rows = 1 << 18
    idx = frame_index(rows)
    data = np.fromfile(path, dtype=np.uint8)
    table = EventTable(rows)
    pl = PREFETCH_LIVE if prefetch_live is None else prefetch_live
    warm = BookStage(backend, BookState(1 << 16, 1 << 16, 16384, prefetch_live=pl), rows, symbols=[])
    inmem_binaryfile(backend, data[:1 << 16], table, idx, after=warm)  # compile before sampling
    cres = apply_dbg.overloads[apply_dbg.signatures[0]]
    symbol = cres.fndesc.llvm_func_name
    addr = cres.library.get_pointer_to_function(symbol)
    lines, insns, main, lo, hi = line_table(cres.library._get_compiled_object(), symbol)

    state = BookState(max_orders, max_levels, 16384, prefetch_live=pl)
    books = BookStage(backend, state, rows, symbols=[])
    with tempfile.TemporaryDirectory() as d:
        out = f"{d}/perf.data"
        perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(FREQ_HZ), "-o", out,
                                 "-p", str(os.getpid())], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # perf attaches
        c0, t0 = time.process_time(), time.perf_counter()
        inmem_binaryfile(backend, data, table, idx, after=books)
        cpu_s, wall_s = time.process_time() - c0, time.perf_counter() - t0
        perf.send_signal(signal.SIGINT)
        _, err = perf.communicate(timeout=60)
        script = subprocess.run(["perf", "script", "-i", out, "-F", "ip"], capture_output=True, text=True)
    ips = [int(x, 16) for x in script.stdout.split()]
    if not ips:
        raise RuntimeError(f"perf recorded no samples: {(err or b'').decode(errors='replace').strip()[-300:]}")
    inside = [ip - addr + main for ip in ips if lo <= ip - addr + main < hi]
    per_line, per_insn = attribute(inside, lines, insns)
    src = BOOK_SRC.read_text().splitlines()
    total = max(len(ips), 1)
    events = int(state.ctr[B.C_EVENTS])
    return {
        "file": str(path), "events": events, "live_orders_end": int(state.ctr[B.C_LIVE_ORDERS]),
        "prefetch_live": pl, "cpu_s": round(cpu_s, 3), "wall_s": round(wall_s, 3),
        "ns_per_event": round(cpu_s / max(events, 1) * 1e9, 1),
        "samples": len(ips), "samples_in_book": len(inside),
        "book_share": round(len(inside) / total, 4),
        "lines": [{"function": fn, "line": n, "share": round(c / total, 4),
                   "source": src[n - 1].strip() if 0 < n <= len(src) else ""} for (fn, n), c in per_line],
        "instructions": [{"offset": off, "share": round(c / total, 4), "function": lines[off][0],
                          "line": lines[off][1], "insn": insns[off]} for off, c in per_insn[:40]],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_book", description=__doc__.splitlines()[0])
    ap.add_argument("--deep-messages", type=int, default=DEFAULT_DEEP, help="the generated deep day's messages")
    ap.add_argument("--file", type=Path, help="a BinaryFILE to profile instead of the generated deep day")
    ap.add_argument("--top", type=int, default=15, help="source lines and instructions to print")
    ap.add_argument("--prefetch-live", type=int, default=None, help="book.prefetch_live (default: the config's)")
    ap.add_argument("--json", type=Path, default=CACHE / "profile_book.json")
    a = ap.parse_args(argv)
    why = tools_status()
    if why:
        print(f"profile_book: {why}")
        return 0
    from bench.book import book_input, size

    path = a.file or book_input(a.deep_messages, preset="deep")
    sizing = size(path)
    if "error" in sizing:
        print(f"profile_book: sizing pass failed: {sizing['error']}")
        return 1
    r = profile(path, sizing["max_orders"], sizing["max_levels"], a.prefetch_live)
    r["peak_live_orders"] = sizing["peak_live_orders"]
    print(f"profile of framing + decode + book, {path.name}: {r['events']:,} events, peak "
          f"{sizing['peak_live_orders']:,} live orders, {r['cpu_s']:.2f} s CPU ({r['ns_per_event']:.0f} ns an event), "
          f"{r['samples']:,} cpu-clock samples at {FREQ_HZ} Hz, {100 * r['book_share']:.1f}% in the book "
          f"(the rest: framing, decode, Python)")
    print("  by line of kernels/book.py (an inlined helper counts on the line that calls it):")
    for x in r["lines"][:a.top]:
        print(f"  {100 * x['share']:5.1f}%  {x['function'][:14]:<14} {x['line']:5d}  {x['source'][:84]}")
    print("  hottest instructions (the one before each sampled address):")
    for x in r["instructions"][:a.top]:
        print(f"  {100 * x['share']:5.1f}%  +{x['offset']:<6x} {x['function'][:14]:<14} line {x['line']:<5d} "
              f"{x['insn'][:56]}")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
