"""What a run looked like over time, for the plots of ``report.html`` (``replay/report_html.py``).

``report.json`` holds end-of-run figures only. Two files beside it keep what the plots need:

``timeline.npz``
    One row per batch, recorded by ``Timeline.record`` right after ``engine.step``: the wall
    clock (``perf_counter_ns``), the feed time the batch reached (ITCH ns since midnight), the
    messages in the batch, and the risk state's cumulative counters and PnL; plus the non-zero
    positions per symbol after each batch (sparse: ``pos_row``, ``pos_locate``, ``pos_qty``).
    ``Timeline.finish`` adds one last row after the drain (``batch`` = 0, no messages): the
    fills the venue reported after the last batch.
    Money is in Price(4) x shares, as in ``RiskStage.summary()`` (divide by 10,000 for dollars).

``latency.hdr.json``
    Every latency histogram of the run (``pipeline.latency.Latencies``), HdrHistogram-encoded,
    so that percentile plots show the whole distribution and not only report.json's p50 / p99 /
    p99.9 / max.

The cost per batch is a few array reads and one ``np.nonzero`` over the position column (one
row per symbol), taken once per batch in Python: never per message.
"""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from kernels import risk as R

TIMELINE_FILE = "timeline.npz"
HISTOGRAMS_FILE = "latency.hdr.json"
TIMELINE_VERSION = 1

#: per-batch columns (int64), in the order ``record`` fills them
COLUMNS = ("wall_ns", "feed_ns", "batch", "messages", "pnl_realised", "pnl_unrealised", "open_orders",
           "fills", "intents", "accepted", "rejected")


class Timeline:
    """Per-batch samples of one run. Create it (or call ``start``) when the replay starts: the
    first batch's duration is counted from then. Call ``record`` after every ``engine.step``,
    ``finish`` after the drain, ``save`` at the end."""

    def __init__(self, risk_live: bool = True) -> None:
        """``risk_live``: the engine's risk state (``engine.risk.state``) is current after each
        step. False for the GPU engine, whose risk state lives on the device and is copied back
        only at ``finish``: its PnL / position columns are then not recorded (saved as such)."""
        self.t0_ns = time.perf_counter_ns()
        self.risk_live = bool(risk_live)
        self.rows: list[tuple[int, ...]] = []
        self.pos_row: list[np.ndarray] = []
        self.pos_loc: list[np.ndarray] = []
        self.pos_qty: list[np.ndarray] = []
        self._feed_ns = 0

    def start(self) -> None:
        """The replay starts now (the clock the first batch's duration is counted from)."""
        self.t0_ns = time.perf_counter_ns()

    @classmethod
    def for_engine(cls, engine: Any) -> "Timeline":
        return cls(risk_live=getattr(engine, "name", "") != "gpu")

    def __len__(self) -> int:
        return len(self.rows)

    def record(self, feed_ns: int, messages: int, risk: Any | None) -> None:
        """One batch done: ``feed_ns`` what ``engine.step`` returned (the last event's ITCH
        time; 0 = none yet, the previous value is kept), ``messages`` the batch's message
        blocks (``batch.n``), ``risk`` the engine's ``RiskStage`` (``engine.risk``) or None."""
        self._add(1, feed_ns, messages, risk)

    def finish(self, feed_ns: int, risk: Any | None) -> None:
        """The run's state after the drain (the last execution reports): one row, ``batch`` 0."""
        self._add(0, feed_ns, 0, risk)

    def _add(self, is_batch: int, feed_ns: int, messages: int, risk: Any | None) -> None:
        now = time.perf_counter_ns()
        if feed_ns:
            self._feed_ns = int(feed_ns)
        if risk is not None and self.risk_live:
            g = risk.state.g
            row = (now, self._feed_ns, is_batch, int(messages), int(g[R.G_RPNL]), int(g[R.G_UPNL]),
                   int(g[R.G_OPEN]), int(g[R.G_FILLS]), int(g[R.G_INTENTS]), int(g[R.G_ACCEPTED]),
                   int(g[R.G_REJECTED]))
            pos = risk.state.ps[:, R.PS_POS]
            loc = np.flatnonzero(pos)
            if loc.size:
                self.pos_row.append(np.full(loc.size, len(self.rows), np.int64))
                self.pos_loc.append(loc.astype(np.int64))
                self.pos_qty.append(pos[loc].astype(np.int64))
        else:
            row = (now, self._feed_ns, is_batch, int(messages), 0, 0, 0, 0, 0, 0, 0)
        self.rows.append(row)

    def arrays(self) -> dict[str, np.ndarray]:
        """The columns (``COLUMNS``, int64 per batch), ``t0_ns``, ``risk_live`` and the sparse
        positions (``pos_row``: batch index, ``pos_locate``, ``pos_qty``: shares, + long)."""
        table = np.array(self.rows, np.int64).reshape(-1, len(COLUMNS))
        out = {name: table[:, i].copy() for i, name in enumerate(COLUMNS)}
        cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64))
        out.update(version=np.int64(TIMELINE_VERSION), t0_ns=np.int64(self.t0_ns),
                   risk_live=np.bool_(self.risk_live), pos_row=cat(self.pos_row),
                   pos_locate=cat(self.pos_loc), pos_qty=cat(self.pos_qty))
        return out

    def save(self, out_dir: Path | str) -> Path:
        """Write ``out_dir/timeline.npz`` (compressed); return its path."""
        path = Path(out_dir) / TIMELINE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **self.arrays())
        return path


def load_timeline(run_dir: Path | str) -> dict[str, np.ndarray] | None:
    """``timeline.npz`` of a run as a dict of arrays, or None if the run did not write one.
    Raises ``ValueError`` if the file is there but unreadable."""
    path = Path(run_dir) / TIMELINE_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable timeline ({exc})") from None
    missing = [k for k in (*COLUMNS, "t0_ns", "pos_row", "pos_locate", "pos_qty") if k not in data]
    if missing:
        raise ValueError(f"{path}: missing arrays {', '.join(missing)}")
    return data


def save_histograms(out_dir: Path | str, latencies: Iterable[Any]) -> Path:
    """Write every histogram of the given ``pipeline.latency.Latencies`` objects (the engine's
    ``lat`` and the gateway's ``lat``) to ``out_dir/latency.hdr.json``: name -> {"what": the
    unit text, "count", "hdr": HdrHistogram's compressed base64 encoding}."""
    out: dict[str, Any] = {}
    for lat in latencies:
        if lat is None:
            continue
        for name, h in lat.h.items():
            if h.get_total_count():
                out[name] = {"what": lat.unit.get(name, "ns"), "count": int(h.get_total_count()),
                             "hdr": h.encode().decode("ascii")}
    path = Path(out_dir) / HISTOGRAMS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "unit": "ns", "histograms": out}, indent=1))
    return path


def load_histograms(run_dir: Path | str) -> dict[str, tuple[str, Any]] | None:
    """``latency.hdr.json`` of a run: name -> (what, HdrHistogram), or None if absent. Raises
    ``ValueError`` on a file that cannot be decoded."""
    from hdrh.histogram import HdrHistogram

    path = Path(run_dir) / HISTOGRAMS_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        return {name: (str(v.get("what", "")), HdrHistogram.decode(v["hdr"].encode("ascii")))
                for name, v in doc["histograms"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable histogram file ({exc})") from None
