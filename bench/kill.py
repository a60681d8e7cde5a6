"""Kill-switch reaction time, from the user's side: a kill file touched (or SIGUSR1 sent) by
another thread while the main thread is inside a compiled batch, until the compiled loop sees
the flag and stops accepting (``pipeline/control.py``, ``kernels/flags.py``).

Peer, measured in the same run: the previous design checked the kill file only between reader
batches, so its reaction was the rest of the batch in progress; the figure is the time of one
262,144-message batch through decode and books on the generated feed (what a kill would have
waited for, at worst, before the order path saw it).

  python -m bench.kill [--trials N] [--poll-ms MS]
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from numba import njit

from kernels.flags import load_flag


@njit(nogil=True)
def _batch(flag, out, n):
    """Stands for a long batch: reads the flag before each item, as the risk check does."""
    for i in range(n):
        if load_flag(flag, 0) != 0:
            return i
        out[i & 1023] += i
    return -1


def _trial(kind: str, poll_s: float, tmp: Path) -> float:
    """ns from the touch (or the signal) to the compiled loop's return."""
    from pipeline.control import RunControl
    from pipeline.engine import KILL_CODES

    flag = np.zeros(1, np.int64)
    out = np.zeros(1024, np.int64)
    kill = tmp / "KILL"
    kill.unlink(missing_ok=True)
    t_act = [0]

    def act() -> None:
        t_act[0] = time.perf_counter_ns()
        if kind == "file":
            kill.touch()
        else:
            os.kill(os.getpid(), signal.SIGUSR1)

    ctl = RunControl(kill if kind == "file" else None, lambda c: flag.__setitem__(0, c), KILL_CODES, poll_s=poll_s,
                     signals=False, usr1=kind == "signal").start()
    try:
        threading.Timer(0.02 + np.random.default_rng().random() * poll_s, act).start()
        seen = _batch(flag, out, 1 << 40)
        t_seen = time.perf_counter_ns()
    finally:
        ctl.close()
        kill.unlink(missing_ok=True)
    if seen < 0:
        raise RuntimeError("the loop never saw the flag")
    return float(t_seen - t_act[0])


def _batch_time_ms(messages: int = 1 << 18) -> float:
    """One reader batch of ``messages`` through decode + books (best of 3), in ms."""
    from kernels import cpu
    from pipeline.book import BookStage, BookState
    from pipeline.stages import DecodeStage
    from replay.capture import CaptureReader
    from replay.generator import generate

    from bench.__main__ import CACHE

    path = CACHE / f"kill-batch-{messages}.itch"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        generate(path.with_suffix(".part"), fmt="itch", n_messages=messages + 1000, n_symbols=500, seed=3)
        path.with_suffix(".part").replace(path)
    best = float("inf")
    for _ in range(3):
        reader = CaptureReader(path, batch_rows=messages, chunk_bytes=64 << 20)
        decode = DecodeStage(cpu, capacity=reader.batch_rows, stats=reader.stats)
        books = BookStage(cpu, BookState(4_000_000, 1_000_000, 1024), capacity=reader.batch_rows)
        batch = next(iter(reader))
        t = time.perf_counter_ns()
        books(decode(batch))
        best = min(best, (time.perf_counter_ns() - t) / 1e6)
    return best


def section(trials: int = 50, poll_ms: float = 5.0) -> dict:
    _batch(np.zeros(1, np.int64), np.zeros(1024, np.int64), 1)   # compile
    tmp = Path(tempfile.mkdtemp(prefix="hftbot-kill-"))
    out: dict = {"poll_ms": poll_ms, "trials": trials}
    print(f"kill switch: from the act (kill file touched / SIGUSR1 sent, another thread) to the compiled loop "
          f"of the batch in progress stopping; watcher poll {poll_ms:g} ms, {trials} trials each")
    peer = _batch_time_ms()
    out["peer_batch_ms"] = peer
    for kind in ("file", "signal"):
        v = np.array([_trial(kind, poll_ms / 1e3, tmp) for _ in range(trials)]) / 1e6
        p50, p99, mx = (float(np.percentile(v, 50)), float(np.percentile(v, 99)), float(v.max()))
        out[kind] = {"p50_ms": p50, "p99_ms": p99, "max_ms": mx}
        print(f"  {'kill file' if kind == 'file' else 'SIGUSR1':<10} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
              f"max {mx:7.2f} ms   peer: between-batch check, one 262,144-msg batch (decode + books) "
              f"{peer:7.1f} ms  ({peer / max(mx, 1e-9):.0f}x the worst case)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.kill")
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--poll-ms", type=float, default=5.0)
    a = ap.parse_args(argv)
    section(a.trials, a.poll_ms)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
