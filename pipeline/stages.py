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
    """

    accepts = MessageBatch
    produces = EventTable
    backends = ("cpu", "cuda")

    def __init__(self, backend: ModuleType, capacity: int, stats):
        self.k = backend
        self.table = EventTable(capacity)
        self.stats = stats
        self._ev = Events(*self.table.columns())  # the table's columns never change: one bundle

    def __call__(self, batch: MessageBatch) -> EventTable:
        t = self.table
        rec = batch.records() if isinstance(batch, RecordBatch) and self.walks else None
        # the walk counts framing's counters too (END_OF_SESSION): only into the reader's own
        if rec is not None and rec.max_msgs <= t.capacity and batch.stats is self.stats:
            rows, n, pos, status = self.k.decode_binaryfile(
                rec.buf, rec.pos, rec.end, np.uint64(rec.next_seq), rec.max_msgs, self._ev, self.stats)
            batch.walked(n, pos, status)
            t.n = int(rows)
            return t
        t.n = int(self.k.decode_batch(self.frames(batch), batch.n, 0, self._ev, self.stats))
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
        return self._ev
