"""Cache misses per message: our decode + full L3 book against itch-book, under ``perf stat``.

  python -m bench.perf_book [--deep-messages N] [--messages N] [--shallow]

Each contender runs as its own process under ``perf stat -e cache-misses,cache-references,
instructions,cycles -x,`` twice: on the whole day and on the day's first ``BASE_MESSAGES``
messages (a prefix file). The difference, divided by the difference in messages, is the cost
per message of framing, decode and the book alone (interpreter start, imports, the JIT cache
load and state allocation cancel out). Contenders:

- ``ours.book``: ``python -m bench.book worker ours.book FILE 1 MAX_ORDERS MAX_LEVELS`` (in
  memory, sized from the day, one timed repetition);
- ``itch_book``: ``python -m bench.book itchbook-process FILE`` (streamed in 4 MiB chunks).

Needs the ``perf`` binary (Debian ``linux-perf``: ``mk/perf.mk``), a kernel that lets this user
count (``/proc/sys/kernel/perf_event_paranoid`` <= 2, or root), and hardware counters (a PMU the
kernel exposes: most VMs have none, and then every event reads ``<not supported>``). Where any
of these is missing it prints one line saying which, and exits 0: nothing is estimated.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.book import CACHE, DEEP_MESSAGES, ROOT, book_input, size

EVENTS = ("cache-misses", "cache-references", "instructions", "cycles")
BASE_MESSAGES = 20_000


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
    out.write_bytes(data[:o])
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


def per_message(path: Path, sizing: dict) -> dict[str, dict]:
    """Counter deltas per message (whole day minus the prefix) for each contender."""
    base = prefix_file(path, BASE_MESSAGES)
    n_full, n_base = count(path), count(base)
    mo, ml = str(sizing["max_orders"]), str(sizing["max_levels"])

    def ours(p: Path) -> list[str]:
        return [sys.executable, "-m", "bench.book", "worker", "ours.book", str(p), "1", mo, ml]

    def itch(p: Path) -> list[str]:
        return [sys.executable, "-m", "bench.book", "itchbook-process", str(p)]

    res: dict[str, dict] = {}
    for name, cmd in (("ours.book", ours), ("itch_book", itch)):
        try:
            full, short = run_under_perf(cmd(path)), run_under_perf(cmd(base))
        except RuntimeError as exc:
            res[name] = {"error": str(exc)}
            continue
        d = {e: (full[e] - short[e]) / (n_full - n_base)
             for e in EVENTS if full.get(e) is not None and short.get(e) is not None}
        res[name] = {"messages": n_full - n_base, **{f"{e}_per_msg": round(v, 2) for e, v in d.items()}}
        if d.get("cycles") and d.get("instructions"):
            res[name]["ipc"] = round(d["instructions"] / d["cycles"], 2)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.perf_book", description=__doc__.splitlines()[0])
    ap.add_argument("--deep-messages", type=int, default=DEEP_MESSAGES)
    ap.add_argument("--messages", type=int, default=20_000_000, help="the shallow day's messages")
    ap.add_argument("--shallow", action="store_true", help="measure the shallow day too")
    a = ap.parse_args(argv)
    if a.deep_messages <= BASE_MESSAGES or a.messages <= BASE_MESSAGES:
        ap.error(f"--deep-messages and --messages must be above {BASE_MESSAGES:,}")
    why = perf_status()
    if why:
        print(f"perf_book: {why}")
        return 0
    days = [("deep", book_input(a.deep_messages, preset="deep"))]
    if a.shallow:
        days.insert(0, ("shallow", book_input(a.messages)))
    out = {}
    for label, path in days:
        sizing = size(path)
        if "error" in sizing:
            print(f"perf_book: sizing pass failed: {sizing['error']}")
            return 1
        r = per_message(path, sizing)
        out[label] = r
        print(f"perf stat, {label} day ({path.name}; peak {sizing['peak_live_orders']:,} live orders, "
              f"{sizing['peak_live_levels']:,} levels), per message, whole day minus its first {BASE_MESSAGES:,}:")
        for name, v in r.items():
            if "error" in v:
                print(f"  {name:<10} error: {v['error']}")
                continue
            print(f"  {name:<10} " + "  ".join(f"{e} {v.get(e + '_per_msg', float('nan')):8.2f}" for e in EVENTS)
                  + f"  IPC {v.get('ipc', float('nan')):.2f}")
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "perf_book.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
