"""A full deep day through ``hftbot run`` with full-day sizing (``make fullday-day``).

  python -m bench.fullday [--messages 100000000] [--dir .cache/fullday] [--seed 1] [-- RUN ARGS]

1. Generates the deep day (``replay.generator.generate(preset="deep")``: 500 symbols, live
   orders rising to messages/18, at most 6M, at the close; Nasdaq BinaryFILE) as
   ``DIR/deep-<N>.itch`` unless it is there, with the generator's summary beside it
   (``deep-<N>.json``: live orders at the peak, levels, bytes).
2. Runs ``hftbot run --config-name replay book=full_day feed.path=DIR/deep-<N>.itch`` (what
   ``make run ARGS='book=full_day feed.path=...'`` runs, plus any extra overrides given after
   ``--``) as a child process, and samples its process tree (the bot and the venue simulator)
   every 0.5 s from ``/proc``: resident memory of each process and of the tree, and the load
   average.
3. Prints wall time, CPU time (user + system of the bot and its reaped children, the venue
   included), messages/s, peak RSS (the tree's sum, and each process's own peak), the load
   average before and after, and the report's figures (skips, books, orders); writes them to
   ``RUN_DIR/fullday.json`` beside the run's report (and the latest as ``DIR/fullday-<N>.json``).
   ``--preset shallow``: the same with the default shallow generator (~4k live orders), where
   memory that grew with the messages and not with the books would show as a slope.

The machine this runs on may be shared: compare CPU seconds, not only the wall clock.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT / ".cache" / "fullday"


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def tree_rss(root_pid: int) -> dict[int, tuple[str, int]]:
    """pid -> (command name, resident bytes) for ``root_pid`` and its descendants."""
    return {pid: (comm, rss) for pid, (comm, rss, _) in tree_stat(root_pid).items()}


def tree_stat(root_pid: int) -> dict[int, tuple[str, int, float]]:
    """pid -> (command name, resident bytes, CPU seconds so far) for ``root_pid`` and its
    descendants."""
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[str, int, float]] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    hz = os.sysconf("SC_CLK_TCK")
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            statm = (d / "statm").read_text().split()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        comm = stat[stat.index("(") + 1: stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2:].split()
        ppid = int(rest[1])
        pid = int(d.name)
        children.setdefault(ppid, []).append(pid)
        info[pid] = (comm, int(statm[1]) * page, (int(rest[11]) + int(rest[12])) / hz)  # utime + stime
    out: dict[int, tuple[str, int, float]] = {}
    todo = [root_pid]
    while todo:
        p = todo.pop()
        if p in info:
            out[p] = info[p]
        todo.extend(children.get(p, ()))
    return out


class Sampler(threading.Thread):
    """Peak resident memory of a process tree (sum and per process), sampled every ``every`` s."""

    def __init__(self, pid: int, every: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak_sum = 0
        self.peak_by_pid: dict[int, tuple[str, int]] = {}
        self.cpu_by_pid: dict[int, tuple[str, float]] = {}   # at the last sample
        self.samples = 0
        self.series: list[tuple[float, int]] = []   # (seconds since start, tree RSS bytes)
        self._t0 = time.perf_counter()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.every)

    def sample(self) -> None:
        st = tree_stat(self.pid)
        if not st:
            return
        t = {pid: (comm, rss) for pid, (comm, rss, _) in st.items()}
        for pid, (comm, _, cpu) in st.items():
            self.cpu_by_pid[pid] = (comm, cpu)
        self.samples += 1
        total = sum(rss for _, rss in t.values())
        self.series.append((round(time.perf_counter() - self._t0, 1), total))
        self.peak_sum = max(self.peak_sum, total)
        for pid, (comm, rss) in t.items():
            if rss > self.peak_by_pid.get(pid, ("", 0))[1]:
                self.peak_by_pid[pid] = (comm, rss)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def ensure_day(path: Path, messages: int, seed: int, log=print, preset: str = "deep") -> dict:
    """The deep day at ``path`` (generated unless present) and its generator summary."""
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        log(f"day        {path} (already there; summary {meta})")
        return json.loads(meta.read_text())
    from replay.generator import generate

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    log(f"generating {path}: {messages:,} messages, {preset} preset, seed {seed} (load {loadavg()})")
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    s = generate(tmp, fmt="itch", n_messages=messages, preset=None if preset == "shallow" else preset, seed=seed)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    tmp.replace(path)
    d = json.loads(s.to_json())
    d["path"] = str(path)
    d["cpu_s"] = round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 2)
    d["peak_rss_mb"] = round(r1.ru_maxrss / 1024, 1)
    meta.write_text(json.dumps(d, indent=2))
    log(f"generated  {d['bytes_written'] / 1e9:.2f} GB in {wall:.1f} s wall, {d['cpu_s']} s CPU, "
        f"peak live orders {d['extra']['live_orders_peak']:,}")
    return d


#: overrides before the user's (none: the venue replays the whole capture as well and may end tens
#: of seconds behind the bot on a shared machine, but the drain waits as long as the venue makes
#: progress; bridge.drain_timeout_s counts seconds without progress)
DEFAULT_OVERRIDES: list[str] = []


def run_day(path: Path, out_dir: Path, extra: list[str], log=print) -> dict:
    hftbot = Path(sys.executable).with_name("hftbot")
    cmd = [str(hftbot) if hftbot.is_file() else sys.executable, *([] if hftbot.is_file() else ["-m", "pipeline"]),
           "run", "--config-name", "replay", "book=full_day", f"feed.path={path}", f"hydra.run.dir={out_dir}",
           *DEFAULT_OVERRIDES, *extra]
    log("run        " + " ".join(cmd))
    load0 = loadavg()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    sampler = Sampler(proc.pid)
    sampler.start()
    rc = proc.wait()
    wall = time.perf_counter() - t0
    sampler.stop()
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load1 = loadavg()
    rep_path = out_dir / "report.json"
    rep = json.loads(rep_path.read_text()) if rep_path.is_file() else {}
    tm, feed, book, ex = rep.get("timing", {}), rep.get("feed", {}), rep.get("book", {}), rep.get("execution", {})
    res = {
        "command": cmd, "exit_code": rc, "run_dir": str(out_dir),
        "wall_s": round(wall, 2),
        "cpu_user_s": round(c1.ru_utime - c0.ru_utime, 2), "cpu_sys_s": round(c1.ru_stime - c0.ru_stime, 2),
        "peak_rss_tree_mb": round(sampler.peak_sum / 2**20, 1),
        "peak_rss_by_process_mb": {f"{comm} ({pid})": round(rss / 2**20, 1)
                                   for pid, (comm, rss) in sorted(sampler.peak_by_pid.items(), key=lambda kv: -kv[1][1])
                                   if rss > 32 << 20},
        "cpu_s_by_process_until_last_sample": {f"{comm} ({pid})": round(cpu, 1)
                                               for pid, (comm, cpu) in sampler.cpu_by_pid.items() if cpu >= 1},
        "peak_rss_largest_child_mb": round(c1.ru_maxrss / 1024, 1),
        "rss_samples": sampler.samples,
        # the tree's RSS every ~10 s (MB): a plateau, not a slope, once the books are full
        "rss_tree_series_mb": [(t, round(b / 2**20)) for i, (t, b) in enumerate(sampler.series) if i % 20 == 0], "loadavg_before": load0, "loadavg_after": load1,
        "status": rep.get("run", {}).get("status"),
        "timing": {k: tm.get(k) for k in ("total_s", "setup_s", "compile_s", "connect_s", "replay_s", "drain_s",
                                         "stop_s", "msgs_per_s", "mb_per_s")},
        "messages_in": feed.get("messages_in"),
        "feed_problems": feed.get("problems"), "gaps": feed.get("gaps"), "decoded": feed.get("decoded"),
        "book": {k: v for k, v in book.get("stats", {}).items()},
        "book_drops": book.get("drops"),
        "execution": {k: ex.get(k) for k in ("messages_sent", "new_sent", "fills", "reports", "orders_working")
                      if k in ex},
        # execution.drain (report schema 2): how the wait for the venue ended, how far it got
        "drain": ex.get("drain"),
        "venue_drained": (ex["drain"]["drained"] if isinstance(ex.get("drain"), dict)
                          else "not drained" not in _text(out_dir / "run.log").lower()),
        "risk": {k: rep.get("risk", {}).get(k) for k in ("intents", "accepted", "rejected", "pnl_usd")},
    }
    res["cpu_s"] = round(res["cpu_user_s"] + res["cpu_sys_s"], 2)
    return res


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(prog="python -m bench.fullday", description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--preset", choices=("deep", "shallow"), default="deep",
                    help="shallow: the default generator (~32k live orders): memory that grows with the "
                         "messages, not the books, shows as a slope")
    ap.add_argument("--generate-only", action="store_true", help="make the day file and stop")
    a = ap.parse_args(argv)
    name = f"{a.preset}-{a.messages // 1_000_000}m" if a.messages % 1_000_000 == 0 else f"{a.preset}-{a.messages}"
    path = (a.dir / f"{name}.itch").resolve()
    day = ensure_day(path, a.messages, a.seed, preset=a.preset)
    if a.generate_only:
        return 0
    out_dir = (a.dir / f"run-{name}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    res = run_day(path, out_dir, extra)
    res["day"] = {"path": str(path), "messages": day["n_messages"], "symbols": day["n_symbols"],
                  "bytes": day["bytes_written"], "live_orders_peak": day["extra"]["live_orders_peak"],
                  "live_orders_at_close": day["n_orders_live_at_end"], "levels_at_close": day["extra"]["live_levels_now"]}
    out = out_dir / "fullday.json"   # beside the run's report.json; the latest run's also as DIR/fullday-<N>.json
    out_dir.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    (a.dir / f"fullday-{name}.json").write_text(json.dumps(res, indent=2))
    tm = res["timing"]
    print(f"\nfullday    {res['day']['messages']:,} messages ({res['day']['bytes'] / 1e9:.2f} GB, peak "
          f"{res['day']['live_orders_peak']:,} live orders) -> status {res['status']} (exit {res['exit_code']})")
    print(f"time       wall {res['wall_s']:.1f} s, CPU {res['cpu_s']:.1f} s (user {res['cpu_user_s']:.1f}, sys "
          f"{res['cpu_sys_s']:.1f}; bot + venue; by process, to the last sample: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in res["cpu_s_by_process_until_last_sample"].items())
          + f"); replay {tm['replay_s'] or 0:.1f} s wall, "
          f"{(tm['msgs_per_s'] or 0) / 1e6:.2f} M msg/s; compile {tm['compile_s'] or 0:.1f} s")
    print(f"memory     peak RSS {res['peak_rss_tree_mb']:,.0f} MB (bot + venue, sampled), by process: "
          + ", ".join(f"{k} {v:,.0f} MB" for k, v in res["peak_rss_by_process_mb"].items()))
    print(f"report     skipped {res['feed_problems'] or 'nothing'}, gaps {res['gaps']}, book drops "
          f"{res['book_drops'] or 'none'}, live orders at the end {res['book'].get('live_orders', 0):,}, "
          f"levels {res['book'].get('live_levels', 0):,}; orders sent {res['execution'].get('new_sent')}, fills "
          f"{res['execution'].get('fills')}; venue drained: {res['venue_drained']}")
    print(f"load       before {res['loadavg_before']}, after {res['loadavg_after']}")
    print(f"summary    {out}")
    return res["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
