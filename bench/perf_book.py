"""Cache misses per message: our decode + full L3 book against itch-book, under ``perf stat``, or
where this machine has no hardware counters, in cachegrind's simulated caches.

  python -m bench.perf_book [--tool auto|perf|cachegrind] [--deep-messages N] [--messages N]
                            [--shallow] [--base N] [--upto N] [--noprefetch]

Method (both tools): each contender runs as its own process, once on the first ``--upto``
messages of the day (0: the whole day) and once on its first ``--base`` messages (prefix files:
whole messages, cut from the same day). The difference of the two runs' counts, divided by the
difference in messages, is the cost per message of framing, decode and the book alone over that
window of the day: interpreter start, imports, the JIT cache load, the book's allocation and
every other fixed cost are the same in both runs and cancel out. Contenders:

- ``ours.book``: ``python -m bench.book worker ours.book FILE 1 MAX_ORDERS MAX_LEVELS`` (in
  memory, one repetition; the book sized from the whole day, as ``make bench`` sizes it, the
  same for both runs);
- ``ours.book.noprefetch`` (``--noprefetch``): the same with the book's prefetching off;
- ``itch_book``: ``python -m bench.book itchbook-process FILE`` (streamed in 4 MiB chunks).

``--tool perf`` (Debian ``linux-perf``: ``mk/perf.mk``): hardware counters, ``perf stat -e
cache-misses,cache-references,instructions,cycles``; needs a kernel that lets this user count
(``/proc/sys/kernel/perf_event_paranoid`` <= 2, or root) and a PMU the kernel exposes (most VMs
have none: every event reads ``<not supported>``). Window: the whole day minus its first 20,000
messages.

``--tool cachegrind`` (valgrind, Debian ``valgrind``: ``mk/cachesim.mk``): NOT hardware counts but
a cachegrind simulation of an I1/D1/LL hierarchy sized as this CPU's (``--I1/--D1/--LL`` set from
``/sys/devices/system/cpu/cpu0/cache``: its level-1 caches and its last level, printed with the
figures): per message, instructions (Ir), data references, D1 misses and LL misses (reads +
writes). What it does not model: the hardware prefetchers, software prefetch instructions
(valgrind 3.19 drops ``prefetcht0``/``prefetchw``: 2M of them on random lines of a 256 MiB array
give 0 data references and 0 misses, against 1.05M D1 read misses for the same loads; so the
book's staged prefetch shows here only as the extra loads that compute its addresses, never as
misses it saves), the TLB and page walks, the L2 between L1 and the last level, memory-level
parallelism, timing of any kind, and the other processes sharing the real LL. The caches are
write-allocate LRU. Window: messages ``--base`` to ``--upto`` of the day (1,000,000 to
1,500,000 by default: on the deep 10M day the book then holds 0.51M-0.56M live orders, its
working set far bigger than the 32 MiB LL; the shallow day's book fits in it). Under valgrind a
process runs 50-100x slower, and each ``ours`` process pays ~50 s CPU of imports and JIT-cache
load before its first message (cancelled by the difference, paid twice): on this 2-vCPU VM
(load 4-5) the deep day with ``--noprefetch`` took 10.5 minutes (six runs of 36-145 s wall), the
shallow day 6 more (981 s in all; ``ours.book.noprefetch`` is skipped on a day that never
reaches ``book.prefetch_live`` live orders, as it would run the same code); each extra 100,000
messages in either prefix adds about 3 s CPU to an ``ours`` run (measured: 2.72G Ir, 43 s CPU on
20,000 messages; 3.82G Ir, 71 s on 1,000,000).

Spread: the same command run twice under cachegrind differs by up to 5.2M instructions (0.2%,
the fixed part: see :func:`run_under_cachegrind`) and by at most 250 in any miss count, so over
the default 500,000-message window Ir is good to ~1% and the misses to 0.001 a message.

Before valgrind runs, every contender runs once natively on both prefix files (numba's kernel
cache filled, the files in the page cache; itch-book's run also gives the live orders at either
end of the window). Under valgrind the CPU numba sees is valgrind's virtual one (it reports
``haswell``, not this CPU), which would miss the kernel cache and compile other code: the
valgrind runs get ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` set to the native host's, so they
load the very code the native run compiled; a run that wrote to the kernel cache anyway is
reported as an error.

Where the chosen tool is missing it prints one line saying which, and exits 0: nothing is
estimated.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.book import CACHE, DEEP_MESSAGES, ROOT, book_input, size

EVENTS = ("cache-misses", "cache-references", "instructions", "cycles")
BASE_MESSAGES = 20_000
#: cachegrind's default window of the day (messages): the deep day is deep by then
CG_BASE, CG_UPTO = 1_000_000, 1_500_000
SYS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
#: cachegrind's events (``--cache-sim=yes``), as its output file's ``events:`` line names them
CG_EVENTS = ("Ir", "I1mr", "ILmr", "Dr", "D1mr", "DLmr", "Dw", "D1mw", "DLmw")


def perf_status() -> str | None:
    """None when ``perf stat`` can count the hardware events here, else why not (one line)."""
    perf = shutil.which("perf")
    if perf is None:
        return "perf not found: install Debian linux-perf (make setup installs it via mk/perf.mk)"
    try:
        paranoid = int(Path("/proc/sys/kernel/perf_event_paranoid").read_text().strip())
    except (OSError, ValueError):
        paranoid = None
    if paranoid is not None and paranoid > 2 and os.geteuid() != 0:
        return (f"perf not permitted: kernel.perf_event_paranoid = {paranoid} (needs <= 2, or root); "
                "sysctl -w kernel.perf_event_paranoid=2")
    p = subprocess.run([perf, "stat", "-x,", "-e", ",".join(EVENTS), "--", "true"], capture_output=True, text=True)
    counts = parse(p.stderr)
    if p.returncode != 0 or not counts:
        return f"perf stat failed: {(p.stderr or p.stdout).strip().splitlines()[-1:] or p.returncode}"
    missing = [e for e in EVENTS if counts.get(e) is None]
    if missing:
        return (f"hardware counters not available on this machine ({', '.join(missing)}: <not supported>; "
                f"perf_event_paranoid = {paranoid}): no PMU exposed to this kernel (typical of VMs), "
                "cache misses not measured")
    return None


def cachegrind_status() -> str | None:
    """None when ``valgrind --tool=cachegrind`` can run here, else why not (one line)."""
    vg = shutil.which("valgrind")
    if vg is None:
        return "valgrind not found: install Debian valgrind (make setup installs it via mk/cachesim.mk)"
    p = subprocess.run([vg, "--tool=cachegrind", "--cache-sim=yes", "--cachegrind-out-file=/dev/null", "-q",
                        "true"], capture_output=True, text=True)
    if p.returncode != 0:
        return f"valgrind --tool=cachegrind failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}"
    return None


def choose_tool(tool: str) -> tuple[str | None, str]:
    """``(tool, note)``: the tool to use (None: none can run here) and a line saying why."""
    if tool == "perf":
        why = perf_status()
        return (None, why) if why else ("perf", "perf stat: hardware counters")
    if tool == "cachegrind":
        why = cachegrind_status()
        return (None, why) if why else ("cachegrind", "cachegrind asked for")
    why_perf = perf_status()
    if why_perf is None:
        return "perf", "perf stat: hardware counters"
    why_cg = cachegrind_status()
    if why_cg is None:
        return "cachegrind", f"{why_perf}; falling back to a cachegrind simulation"
    return None, f"{why_perf}; and {why_cg}"


def parse(text: str) -> dict[str, int | None]:
    """``perf stat -x,`` lines -> {event: count, or None when not supported/counted}."""
    out: dict[str, int | None] = {}
    for line in text.splitlines():
        f = line.split(",")
        if len(f) < 3:
            continue
        for e in EVENTS:
            if f[2] == e or f[2].startswith(e + ":") or f[2].split("/")[-1] == e:
                try:
                    out[e] = int(float(f[0]))
                except ValueError:
                    out[e] = None
    return out


# --- cachegrind -----------------------------------------------------------------------------

def _size_bytes(text: str) -> int:
    """sysfs cache sizes: ``32K``, ``32768K``, ``1M``, or plain bytes."""
    t = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    return int(t[:-1] if mult > 1 else t) * mult


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _fit(size_b: int, ways: int, line: int) -> tuple[int, int, int, str]:
    """A geometry cachegrind accepts (``--I1/--D1/--LL`` need a power-of-two number of sets): where
    the sets are not one, round them down to one and raise the ways to keep (at least) the size;
    the printed geometry says so."""
    sets = size_b // (ways * line)
    if _pow2(sets) and sets * ways * line == size_b:
        return size_b, ways, line, ""
    p2 = 1 << max(0, sets.bit_length() - 1)
    w = max(1, math.ceil(size_b / (p2 * line)))
    note = f" (sysfs: {size_b} B, {ways}-way; adjusted: cachegrind needs power-of-two sets)"
    return p2 * w * line, w, line, note


def cache_geometry(root: Path = SYS_CACHE) -> dict[str, dict]:
    """This CPU's caches as cachegrind's ``--I1``, ``--D1`` and ``--LL`` (``size,ways,line``):
    the level-1 instruction and data caches and the highest level, from sysfs. Also ``L2``
    (informational: cachegrind simulates two levels, so the L2 is not modelled)."""
    found = []
    for d in sorted(root.glob("index*")):
        try:
            level = int((d / "level").read_text())
            kind = (d / "type").read_text().strip()
            size_b = _size_bytes((d / "size").read_text())
            ways = int((d / "ways_of_associativity").read_text())
            line = int((d / "coherency_line_size").read_text())
        except (OSError, ValueError):
            continue
        found.append((level, kind, size_b, ways, line))
    if not found:
        raise RuntimeError(f"no cache description under {root}")
    out: dict[str, dict] = {}
    for level, kind, size_b, ways, line in found:
        if level == 1 and kind in ("Instruction", "Data"):
            out["I1" if kind == "Instruction" else "D1"] = (size_b, ways, line)
    top = max(found, key=lambda c: (c[0], c[2]))
    out["LL"] = top[2:]
    l2 = [c for c in found if c[0] == 2 and c[0] != top[0]]
    missing = {"I1", "D1"} - set(out)
    if missing:
        raise RuntimeError(f"no level-1 {'/'.join(sorted(missing))} cache under {root}")
    geo: dict[str, dict] = {}
    for name, (size_b, ways, line) in out.items():
        s, w, ln, note = _fit(size_b, ways, line)
        geo[name] = {"size": s, "ways": w, "line": ln, "level": top[0] if name == "LL" else 1, "note": note,
                     "opt": f"--{name}={s},{w},{ln}"}
    if l2:
        geo["L2"] = {"size": l2[0][2], "ways": l2[0][3], "line": l2[0][4], "level": 2, "note": "not modelled"}
    return geo


def _kib(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n >> 10} KiB"


def describe(geo: dict[str, dict]) -> str:
    """One line: the simulated hierarchy, labelled as a simulation."""
    parts = [f"{k} {_kib(v['size'])} {v['ways']}-way" + (f" (the L{v['level']})" if k == "LL" else "")
             + v["note"] for k, v in geo.items() if k in ("I1", "D1", "LL")]
    line = geo["D1"]["line"]
    l2 = f"; the L2 ({_kib(geo['L2']['size'])}) is not modelled" if "L2" in geo else ""
    return ("cachegrind simulation (valgrind, not hardware counters) of an I1/D1/LL hierarchy sized as this "
            f"CPU's: {', '.join(parts)}, {line} B lines, write-allocate LRU{l2}")


def parse_cachegrind(text: str) -> dict[str, int]:
    """A cachegrind output file (``--cachegrind-out-file``) -> its ``summary:`` totals by event,
    plus the simulated caches' ``desc:`` lines under ``"desc"``."""
    events: list[str] = []
    totals: list[int] = []
    desc: list[str] = []
    for line in text.splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("summary:"):
            totals = [int(x) for x in line.split()[1:]]
        elif line.startswith("desc:"):
            desc.append(line[5:].strip())
    if not events or len(totals) != len(events):
        raise ValueError("not a cachegrind output file (no events:/summary: lines that agree)")
    out = dict(zip(events, totals))
    missing = [e for e in CG_EVENTS if e not in out]
    if missing:
        raise ValueError(f"cachegrind output without {', '.join(missing)} (run with --cache-sim=yes)")
    out["desc"] = desc  # type: ignore[assignment]
    return out


def native_cpu_env() -> dict[str, str]:
    """``NUMBA_CPU_NAME`` and ``NUMBA_CPU_FEATURES`` of this host as numba sees it natively (or as
    already set), for the runs under valgrind (whose virtual CPU numba would see otherwise)."""
    if os.environ.get("NUMBA_CPU_NAME") and "NUMBA_CPU_FEATURES" in os.environ:
        return {k: os.environ[k] for k in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}
    code = ("import llvmlite.binding as ll; from numba.core.codegen import get_host_cpu_features as f; "
            "print(ll.get_host_cpu_name()); print(f())")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    name, feats = p.stdout.strip().splitlines()[:2]
    return {"NUMBA_CPU_NAME": os.environ.get("NUMBA_CPU_NAME") or name, "NUMBA_CPU_FEATURES": feats}


def _kernel_cache_files() -> dict[str, tuple[int, int]]:
    from kernels import CACHE_DIR  # also sets NUMBA_CACHE_DIR for the children

    d = Path(CACHE_DIR)
    if not d.exists():
        return {}
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in d.rglob("*") if p.is_file()}


def run_under_cachegrind(cmd: list[str], geo: dict[str, dict], out_file: Path,
                         env: dict[str, str] | None = None, check_cache: bool = False) -> dict:
    """Run ``cmd`` under cachegrind with the caches of ``geo``: its summary totals (and the
    run's wall and CPU seconds under ``"wall_s"``/``"cpu_s"``)."""
    before = _kernel_cache_files() if check_cache else None
    vg = ["valgrind", "--tool=cachegrind", "--cache-sim=yes", "--branch-sim=no",
          geo["I1"]["opt"], geo["D1"]["opt"], geo["LL"]["opt"], f"--cachegrind-out-file={out_file}"]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # PYTHONHASHSEED fixed, so both runs hash alike. The same command twice still differs a little
    # (measured, 20,000 messages: ours.book 5.2M Ir, 0.7M Dr of 2.71G Ir, every miss count within
    # 250; itch-book 2.0M Ir of 614M, misses within 12): on a 500,000-message window, +-10 Ir and
    # +-1.4 D refs a message, the misses to 0.001 a message.
    p = subprocess.run([*vg, *cmd], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONHASHSEED": "0", **(env or {})})
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip()
        hint = (" (valgrind cannot run an instruction of the code: set NUMBA_CPU_NAME/NUMBA_CPU_FEATURES "
                "to an older CPU, e.g. haswell and '', which compiles the kernels afresh)"
                if "unhandled instruction" in tail or "SIGILL" in tail else "")
        raise RuntimeError(tail[-400:] + hint)
    if before is not None and _kernel_cache_files() != before:
        raise RuntimeError("numba wrote to the kernel cache under valgrind (its cache missed: the figures "
                           "would include compilation); rerun, or check NUMBA_CPU_NAME/NUMBA_CPU_FEATURES")
    res = parse_cachegrind(out_file.read_text())
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    res.update(wall_s=round(wall, 1), cpu_s=round(cpu, 1))
    return res


def cg_per_message(long: dict, short: dict, messages: int) -> dict[str, float]:
    """Per-message differences of two cachegrind runs: instructions, data references, D1 misses
    and LL misses (reads + writes, split too; LL counts instruction fetches that missed it too)."""
    d = {e: (long[e] - short[e]) / messages for e in CG_EVENTS}
    return {"Ir": d["Ir"], "D_refs": d["Dr"] + d["Dw"],
            "D1_miss": d["D1mr"] + d["D1mw"], "D1_miss_rd": d["D1mr"], "D1_miss_wr": d["D1mw"],
            "LL_miss": d["ILmr"] + d["DLmr"] + d["DLmw"], "LL_miss_rd": d["ILmr"] + d["DLmr"],
            "LL_miss_wr": d["DLmw"], "I1_miss": d["I1mr"]}


# --- both tools -----------------------------------------------------------------------------

def prefix_file(path: Path, n: int) -> Path:
    """The first ``n`` messages of a BinaryFILE (2-byte length per message) as a file of its own."""
    out = path.with_name(f"{path.stem}.first{n}.itch")
    if out.exists():
        return out
    with open(path, "rb") as f:
        data = f.read(n * 64 + 4096)
    o = 0
    for _ in range(n):
        if o + 2 > len(data):
            break
        ln = int.from_bytes(data[o:o + 2], "big")
        if ln == 0 or o + 2 + ln > len(data):
            break
        o += 2 + ln
    tmp = out.with_suffix(".part")
    tmp.write_bytes(data[:o])
    tmp.replace(out)
    return out


def count(path: Path) -> int:
    n, o = 0, 0
    data = path.read_bytes()
    while o + 2 <= len(data):
        ln = int.from_bytes(data[o:o + 2], "big")
        if ln == 0:
            break
        o += 2 + ln
        n += 1
    return n


def run_under_perf(cmd: list[str]) -> dict[str, int | None]:
    p = subprocess.run(["perf", "stat", "-x,", "-e", ",".join(EVENTS), "--", *cmd], cwd=ROOT,
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError((p.stderr or p.stdout).strip()[-300:])
    return parse(p.stderr)


def contenders(sizing: dict, noprefetch: bool = False) -> dict[str, Callable[[Path], list[str]]]:
    """name -> (file -> command line) for the processes measured."""
    mo, ml = str(sizing["max_orders"]), str(sizing["max_levels"])

    def ours(name):
        return lambda p: [sys.executable, "-m", "bench.book", "worker", name, str(p), "1", mo, ml]

    out = {"ours.book": ours("ours.book")}
    if noprefetch:
        out["ours.book.noprefetch"] = ours("ours.book.noprefetch")
    out["itch_book"] = lambda p: [sys.executable, "-m", "bench.book", "itchbook-process", str(p)]
    return out


def window(path: Path, base: int, upto: int) -> tuple[Path, Path, int, int]:
    """The two files of the difference (the day's first ``upto`` messages, 0: the whole day, and
    its first ``base``) and their message counts."""
    short = prefix_file(path, base)
    long = prefix_file(path, upto) if upto else path
    return long, short, count(long), count(short)


def per_message(path: Path, sizing: dict, base: int = BASE_MESSAGES, upto: int = 0,
                noprefetch: bool = False) -> dict[str, dict]:
    """``perf stat`` counter deltas per message (first ``upto`` messages minus the first ``base``)."""
    long, short, n_full, n_base = window(path, base, upto)
    res: dict[str, dict] = {}
    for name, cmd in contenders(sizing, noprefetch).items():
        try:
            full, part = run_under_perf(cmd(long)), run_under_perf(cmd(short))
        except RuntimeError as exc:
            res[name] = {"error": str(exc)}
            continue
        d = {e: (full[e] - part[e]) / (n_full - n_base)
             for e in EVENTS if full.get(e) is not None and part.get(e) is not None}
        res[name] = {"messages": n_full - n_base, **{f"{e}_per_msg": round(v, 2) for e, v in d.items()}}
        if d.get("cycles") and d.get("instructions"):
            res[name]["ipc"] = round(d["instructions"] / d["cycles"], 2)
    return res


def _native(cmd: list[str]) -> str:
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError((p.stderr or p.stdout).strip()[-400:])
    return p.stdout


def cg_measure(cmds: dict, long: Path, short: Path, messages: int, geo: dict[str, dict], workdir: Path,
               env: dict[str, str] | None = None, check_cache: bool = False, log=print) -> dict[str, dict]:
    """Each contender under cachegrind on ``long`` and on ``short``; per-message differences."""
    res: dict[str, dict] = {}
    for name, cmd in cmds.items():
        try:
            runs = {}
            for label, f in (("long", long), ("short", short)):
                out = workdir / f"cachegrind.{name}.{f.stem}.out"
                runs[label] = run_under_cachegrind(cmd(f), geo, out, env, check_cache)
                log(f"    {name:<20} {f.name}: {runs[label]['Ir']:,} Ir under cachegrind, "
                    f"{runs[label]['wall_s']:.0f} s wall, {runs[label]['cpu_s']:.0f} s CPU")
        except (RuntimeError, ValueError, OSError) as exc:
            res[name] = {"error": str(exc)}
            continue
        pm = cg_per_message(runs["long"], runs["short"], messages)
        res[name] = {"messages": messages, **{k: round(v, 3) for k, v in pm.items()},
                     "run_s": {k: {"wall": v["wall_s"], "cpu": v["cpu_s"]} for k, v in runs.items()}}
    return res


COLS = (("Ir", "Ir"), ("D_refs", "D refs"), ("D1_miss", "D1 miss"), ("D1_miss_rd", "(rd"),
        ("D1_miss_wr", "wr)"), ("LL_miss", "LL miss"), ("LL_miss_rd", "(rd"), ("LL_miss_wr", "wr)"))


def cg_table(res: dict[str, dict], peer: str = "itch_book") -> list[str]:
    """Printed rows: each contender's per-message figures, then ours / itch-book for each."""
    head = f"  {'':<34}" + "".join(f"{h:>10}" for _, h in COLS)
    lines = [head]
    for name, v in res.items():
        if "error" in v:
            err = v["error"].strip()
            lines.append(f"  {name:<34} error: {err.splitlines()[-1] if err else '?'}")
            continue
        lines.append(f"  {name:<34}" + "".join(f"{v[k]:10.2f}" for k, _ in COLS))
    p = res.get(peer, {})
    for name, v in res.items():
        if name == peer or "error" in v or "error" in p or not p:
            continue
        lines.append(f"  {name + ' / itch-book':<34}" + "".join(
            f"{v[k] / p[k]:9.2f}x" if p.get(k) else f"{'-':>10}" for k, _ in COLS))
    return lines


def cachegrind_day(label: str, path: Path, sizing: dict, base: int, upto: int, noprefetch: bool,
                   geo: dict[str, dict]) -> dict:
    """One day under cachegrind: native warm-up runs, then the valgrind runs; prints the table."""
    long, short, n_long, n_short = window(path, base, upto)
    if n_long <= n_short:
        return {"error": f"the day has {n_long:,} messages: no window above its first {n_short:,}"}
    from pipeline.book import PREFETCH_LIVE

    if noprefetch and sizing["peak_live_orders"] < PREFETCH_LIVE:
        print(f"  ours.book.noprefetch skipped: the day never holds {PREFETCH_LIVE:,} live orders, where the "
              "book starts prefetching (book.prefetch_live), so it would run the very same code as ours.book",
              flush=True)
        noprefetch = False
    cmds = contenders(sizing, noprefetch)
    live = {}
    t0 = time.perf_counter()
    for f, n in ((short, n_short), (long, n_long)):  # kernel cache, page cache; live orders at each end
        for name, cmd in cmds.items():
            if name.endswith("noprefetch"):
                continue
            out = _native(cmd(f))
            if name == "itch_book":
                live[n] = json.loads(out.strip().splitlines()[-1])["live_orders"]
    print(f"  native warm-up runs done ({time.perf_counter() - t0:.0f} s); the window: messages {n_short:,} "
          f"to {n_long:,} ({n_long - n_short:,}), live orders {live.get(n_short, 0):,} -> "
          f"{live.get(n_long, 0):,} "
          "(itch-book's count)", flush=True)
    work = CACHE / "cachegrind"
    work.mkdir(parents=True, exist_ok=True)
    res = cg_measure(cmds, long, short, n_long - n_short, geo, work, env=native_cpu_env(), check_cache=True,
                     log=lambda s: print(s, flush=True))
    return {"window": [n_short, n_long], "live_orders": [live.get(n_short), live.get(n_long)],
            "sizing": sizing, **res}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.perf_book", description=__doc__.splitlines()[0])
    ap.add_argument("--tool", choices=("auto", "perf", "cachegrind"), default="auto",
                    help="auto: perf stat where hardware counters work, else cachegrind (simulated caches)")
    ap.add_argument("--deep-messages", type=int, default=DEEP_MESSAGES)
    ap.add_argument("--messages", type=int, default=20_000_000, help="the shallow day's messages")
    ap.add_argument("--shallow", action="store_true", help="measure the shallow day too")
    ap.add_argument("--base", type=int, default=None,
                    help=f"messages of the shorter run (perf: {BASE_MESSAGES:,}; cachegrind: {CG_BASE:,})")
    ap.add_argument("--upto", type=int, default=None,
                    help=f"messages of the longer run, 0 = the whole day (perf: 0; cachegrind: {CG_UPTO:,})")
    ap.add_argument("--noprefetch", action="store_true", help="also ours.book.noprefetch (prefetching off)")
    a = ap.parse_args(argv)
    tool, note = choose_tool(a.tool)
    if tool is None:
        print(f"perf_book: {note}")
        return 0
    base = a.base if a.base is not None else (CG_BASE if tool == "cachegrind" else BASE_MESSAGES)
    upto = a.upto if a.upto is not None else (CG_UPTO if tool == "cachegrind" else 0)
    if base < 1 or upto < 0 or (upto and upto <= base):
        ap.error("--base must be positive and --upto above it (or 0: the whole day)")
    for n in (a.deep_messages, *((a.messages,) if a.shallow else ())):
        if n <= base:
            ap.error(f"the days must have more than --base ({base:,}) messages")
    days = [("deep", book_input(a.deep_messages, preset="deep"))]
    if a.shallow:
        days.insert(0, ("shallow", book_input(a.messages)))
    t_start = time.perf_counter()
    out: dict = {"tool": tool, "note": note, "load_start": os.getloadavg()}
    if tool == "cachegrind":
        geo = cache_geometry()
        out["geometry"] = geo
        print(f"perf_book: {note}")
        print(describe(geo))
        print("not modelled: hardware prefetchers, software prefetch instructions (dropped by valgrind), the "
              "TLB, the L2, memory-level parallelism, timing; per message = (first --upto messages - first "
              "--base) / "
              f"their difference; load average {os.getloadavg()[0]:.2f}", flush=True)
    for label, path in days:
        sizing = size(path)
        if "error" in sizing:
            print(f"perf_book: sizing pass failed: {sizing['error']}")
            return 1
        head = (f"{label} day ({path.name}; whole day peak {sizing['peak_live_orders']:,} live orders, "
                f"{sizing['peak_live_levels']:,} levels)")
        if tool == "cachegrind":
            print(f"cachegrind, {head}, per message:", flush=True)
            r = cachegrind_day(label, path, sizing, base, upto, a.noprefetch, geo)
            out[label] = r
            if "error" in r:
                print(f"  error: {r['error']}")
                continue
            print(f"  simulated, per message over messages {r['window'][0]:,}..{r['window'][1]:,} "
                  f"(live orders {r['live_orders'][0] or 0:,} -> {r['live_orders'][1] or 0:,}); "
                  "ratio = ours / itch-book:")
            rows = {k: v for k, v in r.items() if isinstance(v, dict) and ("Ir" in v or "error" in v)}
            for line in cg_table(rows):
                print(line, flush=True)
            continue
        r = per_message(path, sizing, base, upto, a.noprefetch)
        out[label] = r
        print(f"perf stat, {head}, per message, first {upto:,} messages minus the first {base:,}:"
              if upto else f"perf stat, {head}, per message, whole day minus its first {base:,}:")
        for name, v in r.items():
            if "error" in v:
                print(f"  {name:<10} error: {v['error']}")
                continue
            print(f"  {name:<10} " + "  ".join(f"{e} {v.get(e + '_per_msg', float('nan')):8.2f}" for e in EVENTS)
                  + f"  IPC {v.get('ipc', float('nan')):.2f}")
    out.update(load_end=os.getloadavg(), elapsed_s=round(time.perf_counter() - t_start, 1))
    print(f"perf_book: {out['elapsed_s']:.0f} s in all; load average {out['load_start'][0]:.2f} at the "
          f"start, {out['load_end'][0]:.2f} at the end")
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "perf_book.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
