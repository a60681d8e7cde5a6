"""Helpers for the live-feed tests: a generated capture, its file replay as the reference, the
same stages over a live source, and the comparison (event table without ``rx``, book state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kernels.events import COLUMN_NAMES
from pipeline.book import BookStage, BookState
from pipeline.stages import DecodeStage

BOOK = dict(max_orders=200_000, max_levels=100_000, max_symbols=1024)
#: columns that must agree between live and file replay (rx is the receive time)
COMPARED = tuple(c for c in COLUMN_NAMES if c != "rx")


def generate_capture(path: Path, messages: int = 20_000, symbols: int = 16, seed: int = 5) -> Path:
    from replay.generator import generate

    if not path.exists():
        tmp = path.with_suffix(".part")
        generate(tmp, fmt="pcap", n_messages=messages, n_symbols=symbols, seed=seed)
        tmp.replace(path)
    return path


class Pipeline:
    """Decode + books over any frame source; keeps every decoded event (columns) and the book."""

    def __init__(self, source):
        from kernels import cpu

        self.source = source
        self.decode = DecodeStage(cpu, capacity=source.batch_rows, stats=source.stats)
        self.state = BookState(**BOOK)
        self.books = BookStage(cpu, self.state, capacity=source.batch_rows, symbols=["*"])
        self.cols: dict[str, list[np.ndarray]] = {c: [] for c in COLUMN_NAMES}
        self.batches = 0

    def run(self, on_batch=None) -> "Pipeline":
        for batch in self.source:
            # decode leaves the slots a type does not use (aux, alpha) as they were: clear them so
            # that tables cut into different batches compare equal
            for col in self.decode.table.cols.values():
                col[: batch.n] = 0
            t = self.decode(batch)
            self.books(t)
            for c in COLUMN_NAMES:
                self.cols[c].append(t.cols[c][: t.n].copy())
            self.batches += 1
            if on_batch is not None:
                on_batch(t)
        return self

    def table(self) -> dict[str, np.ndarray]:
        return {c: np.concatenate(v) if v else np.zeros(0) for c, v in self.cols.items()}


def reference(path: Path, batch_rows: int = 1 << 16) -> Pipeline:
    from replay.capture import CaptureReader

    return Pipeline(CaptureReader(path, batch_rows=batch_rows)).run()


def assert_same(live: Pipeline, ref: Pipeline) -> None:
    a, b = live.table(), ref.table()
    assert len(a["kind"]) == len(b["kind"]), f"live decoded {len(a['kind'])} events, replay {len(b['kind'])}"
    for c in COMPARED:
        assert np.array_equal(a[c], b[c]), f"event column {c!r} differs between live and file replay"
    for i, (x, y) in enumerate(zip(live.state.arrays(), ref.state.arrays())):
        assert np.array_equal(x, y), f"book state array #{i} differs between live and file replay"
