"""Cold compile time of the CPU kernels a ``make run`` uses, per kernel.

  python -m bench.compile [--detail N] [--json PATH]

A fresh process with an empty numba cache (``NUMBA_CACHE_DIR`` set to a new temporary directory)
builds the run's stages (``pipeline/run.py``, ``pipeline/engine.py``: decode, books and features,
risk, model and strategy; the ``smoke`` config) over a tiny generated pcap (generated beforehand in
this process, so the generator's own kernels are not counted), pushes one batch through every
stage, calls each risk kernel, and warms the FIX codec as the run does (``FixBridge.warm_up``).
Every kernel compiles on its first call with the argument types of the real run.

``numba.core.dispatcher.Dispatcher.compile`` is wrapped to time each compilation: wall seconds and
process CPU seconds (``time.process_time``; it is the CPU figure that holds when the machine is
shared). A kernel's time includes the jitable helpers compiled for it (``register_jitable``
helpers are compiled once per process and type signature and reused by later kernels, so the
first kernel that needs a helper pays for it; the order below is the run's). ``--detail N``
also lists the N most expensive nested compilations (exclusive time).

The venue simulator (a separate process in ``make run``) and the sample-feed generator are not
counted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# --- the child: an empty cache, the real stages ----------------------------------------------------
def _install_timer(records: list[dict]) -> None:
    from numba.core import dispatcher

    orig = dispatcher.Dispatcher.compile
    stack: list[dict] = []

    def compile(self, sig):  # noqa: A001 - numba's name
        misses = sum(self._cache_misses.values())
        rec = {"name": f"{self.py_func.__module__}.{self.py_func.__qualname__}", "depth": len(stack),
               "child_wall": 0.0, "child_cpu": 0.0}
        stack.append(rec)
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            return orig(self, sig)
        finally:
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            stack.pop()
            if sum(self._cache_misses.values()) > misses:  # compiled here (not a lookup or a cache hit)
                rec.update(wall=wall, cpu=cpu, excl_wall=wall - rec["child_wall"],
                           excl_cpu=cpu - rec["child_cpu"])
                records.append(rec)
                if stack:
                    stack[-1]["child_wall"] += wall
                    stack[-1]["child_cpu"] += cpu
            elif stack:  # a lookup: charge what was compiled under it to the parent
                stack[-1]["child_wall"] += rec["child_wall"]
                stack[-1]["child_cpu"] += rec["child_cpu"]

    dispatcher.Dispatcher.compile = compile


def child(path: Path) -> dict:
    records: list[dict] = []
    _install_timer(records)
    t_import = time.perf_counter()
    import numpy as np
    from hydra import compose, initialize_config_dir

    from kernels import cpu
    from kernels import intents as IN
    from pipeline.app import CONF_DIR
    from pipeline.config import register
    from pipeline.engine import build_stages
    from pipeline.feed import open_reader
    from replay.report import book_summary

    t_import = time.perf_counter() - t_import
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("smoke", overrides=[f"feed.path={path}", "features.symbols=['*']"])

    steps: list[tuple[str, float, float]] = []

    def step(name, fn):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        steps.append((name, time.perf_counter() - w0, time.process_time() - c0))
        return out

    w_all, c_all = time.perf_counter(), time.process_time()
    reader = open_reader(cfg.feed, path)
    decode, books, risk, model, strategy = build_stages(cfg, cpu, reader.batch_rows, reader.stats,
                                                        log=lambda s: None)
    state = books.state
    batch = step("framing (reader)", lambda: next(iter(reader)))
    events = step("decode", lambda: decode(batch))
    fb = step("book", lambda: books(events))
    step("risk.feed_health", lambda: risk.on_events(events))
    preds = step("model", lambda: model(fb))
    intents = step("strategy", lambda: strategy(preds))
    # one well-formed intent, so the risk kernel runs whatever the strategy made of the tiny input
    rows = np.zeros((1, IN.NI), np.int64)
    for col, v in ((IN.I_LOCATE, 1), (IN.I_SIDE, IN.SIDE_BUY), (IN.I_PRICE, 10_000), (IN.I_QTY, 1),
                   (IN.I_KIND, IN.KIND_NEW), (IN.I_ID, 1), (IN.I_TS, int(events.cols["ts"][events.n - 1]))):
        rows[0, col] = v
    dec = step("risk.check", lambda: risk.check(rows, 1))
    if intents.n:
        dec = risk.check(intents.rows, intents.n)
    else:
        dec = type(dec)(np.zeros((0, IN.ND), np.int64), dec.orders)
    step("strategy.on_decisions", lambda: strategy.on_decisions(intents, dec.decisions))

    def decide():
        # BatchEngine's trading half: kernels/step.py decide, bound to the CPU kernels (its callees
        # are compiled above; this is the binding's own compile and link)
        from kernels.state import Work
        from kernels.step import batch_decider, order_sink

        rt, br = risk.tables()
        work = Work(fb.values, fb.keys, preds.values, strategy.out, np.zeros((1, IN.ND), np.int64), risk.out)
        return batch_decider(cpu)(0, work, strategy.arrays(), rt, br, risk.batch_rows, order_sink(16))

    step("decide (kernels/step.py)", decide)
    ev = np.zeros((1, IN.NE), np.int64)
    ev[0, IN.E_KIND], ev[0, IN.E_ID] = IN.EX_ACK, 1
    step("risk.on_exec", lambda: risk.on_exec(ev, 1))
    step("risk.mark_to_market", lambda: risk.mark_to_market())
    step("risk.kill", lambda: risk.kill())
    step("book_summary", lambda: book_summary(state, cpu, list(cfg.features.symbols), cfg.book.depth))

    def fix():
        from bridges.fix.bridge import FixBridge

        # what the run does before it connects (Execution.prepare)
        br = FixBridge(host="127.0.0.1", port=1, sender="HFTBOT", target="VENUE",
                       state_dir=path.parent / "fix", sym=state.sym, date="20190130", max_orders=64)
        br.warm_up()

    step("fix codec", fix)
    total_wall, total_cpu = time.perf_counter() - w_all, time.process_time() - c_all
    return {"records": records, "steps": steps, "total_wall": total_wall, "total_cpu": total_cpu,
            "import_s": t_import}


# --- the parent ------------------------------------------------------------------------------------
def measure(messages: int = 5_000) -> dict:
    from replay.generator import generate

    with tempfile.TemporaryDirectory(prefix="hftbot-compile-") as tmp:
        path = Path(tmp) / "tiny.pcap"
        generate(path, fmt="pcap", n_messages=messages, n_symbols=4, seed=3)
        cache = Path(tmp) / "numba-cache"
        cache.mkdir()
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
        env.pop("NUMBA_ENABLE_CUDASIM", None)
        p = subprocess.run([sys.executable, "-m", "bench.compile", "--child", str(path)], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"the compile child failed (rc {p.returncode})")
        return json.loads(p.stdout.strip().splitlines()[-1])


def report(r: dict, detail: int = 0) -> list[str]:
    top = [x for x in r["records"] if x["depth"] == 0]
    lines = ["cold compile, empty numba cache (seconds; wall / process CPU), in the run's order:",
             f"  {'kernel':<44} {'wall':>7} {'cpu':>7}"]
    for x in top:
        lines.append(f"  {x['name']:<44} {x['wall']:7.1f} {x['cpu']:7.1f}")
    sw, sc = sum(x["wall"] for x in top), sum(x["cpu"] for x in top)
    lines.append(f"  {'sum of kernels':<44} {sw:7.1f} {sc:7.1f}")
    what = "all stages, first call (compile + run)"
    lines.append(f"  {what:<44} {r['total_wall']:7.1f} {r['total_cpu']:7.1f}")
    if detail:
        nested = sorted((x for x in r["records"] if x["depth"] > 0), key=lambda x: -x["excl_cpu"])[:detail]
        lines.append("  most expensive nested compilations (exclusive; counted in their kernel above):")
        for x in nested:
            lines.append(f"    {x['name']:<42} {x['excl_wall']:7.1f} {x['excl_cpu']:7.1f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.compile")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--detail", type=int, default=0,
                    help="also list the N most expensive nested compilations")
    ap.add_argument("--json", type=Path, help="write the raw records here")
    a = ap.parse_args(argv)
    if a.child is not None:
        print(json.dumps(child(a.child)))
        return 0
    r = measure()
    for line in report(r, a.detail):
        print(line, flush=True)
    if a.json:
        a.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
