"""Decode benchmark: our framing + ITCH decode against the PyPI reference decoders.

Each contender runs in its own fresh process (``python -m bench.decode worker NAME FILE``) so
its peak RSS is its own. Ours runs the same way the references are timed: the whole file in
memory first, best of ``repeat``; the ``stream`` variant reads the file through
``CaptureReader`` in bounded chunks, as ``make run`` does.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    """This process's peak RSS in MB: ``VmHWM`` of /proc/self/status.

    Not ``getrusage().ru_maxrss``: on Linux that survives fork + exec, so a worker started by a
    parent holding 500 MB reports at least 500 MB (measured here). ``VmHWM`` belongs to the
    address space that exec created. Falls back to ``ru_maxrss`` where /proc is missing.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def inmem_binaryfile(k, data: np.ndarray, table, idx, after=None) -> int:
    """Frame and decode a whole in-memory BinaryFILE batch by batch; ``after(table)`` is called
    on each decoded batch (the book benchmark books it). Returns the messages decoded."""
    from kernels import stats as S
    from kernels.state import Events, Frames

    off, length, seq, sess, rx = idx
    stats = S.new_stats()
    pos, end, nxt = 0, len(data), 1
    while True:
        n, pos, status = k.index_binaryfile(data, pos, end, np.uint64(nxt), off, length, seq, sess, rx, stats)
        if n == 0:
            break
        nxt += n
        table.n = int(k.decode_batch(Frames(data, off, length, seq, sess, rx), n, 0, Events(*table.columns()), stats))
        if after is not None:
            after(table)
        if status != 0:
            break
    return int(stats[S.DECODED])


def _inmem_pcap(k, data: np.ndarray, table, idx) -> int:
    from kernels import stats as S
    from kernels.state import Events, Frames, MoldSessions, Payloads

    off, length, seq, sess, rx = idx
    stats = S.new_stats()
    pays = 1024
    pay_off, pay_len, pay_rx = (np.zeros(pays, np.int64) for _ in range(3))
    sid, snext, nsess = np.zeros((4, 10), np.uint8), np.zeros(4, np.uint64), np.zeros(1, np.int64)
    ip, port = np.zeros(0, np.int64), np.zeros(0, np.int64)
    pos, end = 24, len(data)
    while True:
        n, pos, _st = k.index_pcap(data, pos, end, 1, 1, 1, ip, port, 0, pay_off, pay_len, pay_rx, stats)
        if n == 0:
            break
        i = 0
        while i < n:
            m, i = k.split_mold(Payloads(data, pay_off, pay_len, pay_rx), i, n, MoldSessions(sid, snext, nsess),
                                Frames(data, off, length, seq, sess, rx), stats)
            k.decode_batch(Frames(data, off, length, seq, sess, rx), m, 0, Events(*table.columns()), stats)
    return int(stats[S.DECODED])


def run_reference(name: str, path: str, repeat: int) -> dict:
    """``bench.reference.measure_one`` with the RSS read from ``VmHWM`` (see :func:`peak_rss_mb`):
    the same timed call (``_time_raw``: fresh reference state per repetition, input in memory)."""
    import importlib

    from bench import reference as R

    name = R.ALIASES.get(name, name)
    R._require(name.split(".")[0])
    if name.startswith("itchcpp"):
        importlib.import_module("itchcpp.book")
    data = R.load(path)
    loaded = peak_rss_mb()
    n, best = R._time_raw(name, data, repeat)
    peak = peak_rss_mb()
    if n < 0:
        n = R.count_messages(data)  # untimed, after the peak was read
    return {"name": name, "what": R.REFERENCES[name][1], "messages": n, "best_s": best,
            "rss_loaded_mb": round(loaded, 1), "rss_peak_mb": round(peak, 1),
            "input_mb": round(len(data) / 2**20, 1)}


def run_ours(name: str, path: str, repeat: int) -> dict:
    from kernels import cpu
    from kernels.events import EventTable

    if name == "ours.stream":
        from replay.capture import CaptureReader
        from pipeline.stages import DecodeStage

        best, n = float("inf"), 0
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            reader = CaptureReader(path)
            stage = DecodeStage(cpu, reader.batch_rows, reader.stats)
            for b in reader:
                stage(b)
            best = min(best, time.perf_counter() - t0)
            n = int(reader.stats[291])
        return {"messages": n, "best_s": best}
    rows = 1 << 18  # the same batch size as CaptureReader's default
    table = EventTable(rows)
    idx = (np.zeros(rows, np.int64), np.zeros(rows, np.int32), np.zeros(rows, np.uint64), np.zeros(rows, np.uint16),
           np.zeros(rows, np.int64))
    data = np.fromfile(path, dtype=np.uint8)
    fn = inmem_binaryfile if name == "ours.itch" else _inmem_pcap
    fn(cpu, data[: 1 << 16], table, idx)  # JIT load
    best, n = float("inf"), 0
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        n = fn(cpu, data, table, idx)
        best = min(best, time.perf_counter() - t0)
    return {"messages": n, "best_s": best}


WHAT = {
    "ours.itch": "ours: BinaryFILE framing + ITCH decode to the event table (in memory)",
    "ours.pcap": "ours: pcap + Eth/IP/UDP + MoldUDP64 + ITCH decode to the event table (in memory)",
    "ours.stream": "ours: the same from the file through CaptureReader (what make run does)",
}


def worker(name: str, path: str, repeat: int) -> dict:
    if name.startswith("ours"):
        t0 = peak_rss_mb()
        res = run_ours(name, path, repeat)
        res.update(name=name, what=WHAT[name], rss_peak_mb=round(peak_rss_mb(), 1), rss_loaded_mb=round(t0, 1))
    else:
        res = run_reference(name, path, repeat)
    res["msgs_per_s"] = res["messages"] / res["best_s"] if res["best_s"] > 0 else 0.0
    return res


def measure(name: str, path: Path, repeat: int = 3) -> dict:
    """Run one contender in a fresh process; returns its JSON result (or an error entry)."""
    p = subprocess.run([sys.executable, "-m", "bench.decode", "worker", name, str(path), str(repeat)],
                       cwd=ROOT, capture_output=True, text=True)
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"name": name, "error": (p.stderr or p.stdout).strip()[-400:]}
    return json.loads(lines[-1])


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "worker":
        print(json.dumps(worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    else:
        sys.exit("usage: python -m bench.decode worker NAME FILE REPEAT")
