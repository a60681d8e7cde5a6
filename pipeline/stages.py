"""Pipeline stages. A stage owns its preallocated output and calls one backend's kernels.

Replay and live differ only in where frames come from: every stage after the frame source is
the same object in both modes.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from kernels.events import EventTable
from kernels.state import Events, Frames
from replay.capture import MessageBatch, RecordBatch


class DecodeStage:
    """Message blocks -> event table (ITCH 5.0 decode). Backends: cpu, cuda.

    A BinaryFILE batch (``RecordBatch``) is decoded in the record walk where the backend says so
    (``WALK_BINARYFILE``: the CPU): ``decode_binaryfile`` walks the chunk's records straight
    into the table, no frame index written, and tells the batch where it stopped. The same
    rows and counters as framing then decoding (``tests/test_decode_walk.py``); any other batch,
    or a BinaryFILE batch whose frame index was read already, is decoded from its frames.

    The walk leaves the ``sess`` and ``rx`` columns alone (a BinaryFILE has neither: they must be
    0). The table starts zeroed; the rows a decode from frames may have written there (or every
    row, once ``events()`` handed the columns to a fused step) are zeroed before the next walk.
    """

    accepts = MessageBatch
    produces = EventTable
    backends = ("cpu", "cuda")

    def __init__(self, backend: ModuleType, capacity: int, stats):
        self.k = backend
        self.table = EventTable(capacity)
        self.stats = stats
        self._ev = Events(*self.table.columns())  # the table's columns never change: one bundle
        self._sess_rx_rows = 0  # leading rows whose sess / rx another decode may have written

    def __call__(self, batch: MessageBatch) -> EventTable:
        t = self.table
        rec = batch.records() if isinstance(batch, RecordBatch) and self.walks else None
        # the walk counts framing's counters too (END_OF_SESSION): only into the reader's own
        if rec is not None and rec.max_msgs <= t.capacity and batch.stats is self.stats:
            if self._sess_rx_rows:
                t.cols["sess"][: self._sess_rx_rows] = 0
                t.cols["rx"][: self._sess_rx_rows] = 0
                self._sess_rx_rows = 0
            rows, n, pos, status = self.k.decode_binaryfile(
                rec.buf, rec.pos, rec.end, np.uint64(rec.next_seq), rec.max_msgs, self._ev, self.stats)
            batch.walked(n, pos, status)
            t.n = int(rows)
            return t
        t.n = int(self.k.decode_batch(self.frames(batch), batch.n, 0, self._ev, self.stats))
        self._sess_rx_rows = max(self._sess_rx_rows, t.n)
        return t

    @property
    def walks(self) -> bool:
        """BinaryFILE batches are decoded in the record walk on this backend."""
        return bool(getattr(self.k, "WALK_BINARYFILE", False))

    def frames(self, batch: MessageBatch) -> Frames:
        """``batch`` as the Frames bundle decode reads (it must fit the event table)."""
        if batch.n > self.table.capacity:
            raise RuntimeError(f"batch of {batch.n} messages exceeds the event table ({self.table.capacity})")
        return Frames(batch.buf, batch.off, batch.length, batch.seq, batch.sess, batch.rx)

    def events(self) -> Events:
        """The event table's columns as the Events bundle decode writes (fused steps decode into it
        too: set ``table.n`` to the rows they wrote)."""
        self._sess_rx_rows = self.table.capacity
        return self._ev
