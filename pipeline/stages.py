"""Pipeline stages. A stage owns its preallocated output and calls one backend's kernels.

Replay and live differ only in where frames come from: every stage after the frame source is
the same object in both modes.
"""

from __future__ import annotations

from types import ModuleType

from kernels.events import EventTable
from kernels.state import Events, Frames
from replay.capture import MessageBatch


class DecodeStage:
    """Message blocks -> event table (ITCH 5.0 decode). Backends: cpu, cuda."""

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
        t.n = int(self.k.decode_batch(self.frames(batch), batch.n, 0, self._ev, self.stats))
        return t

    def frames(self, batch: MessageBatch) -> Frames:
        """``batch`` as the Frames bundle decode reads (it must fit the event table)."""
        if batch.n > self.table.capacity:
            raise RuntimeError(f"batch of {batch.n} messages exceeds the event table ({self.table.capacity})")
        return Frames(batch.buf, batch.off, batch.length, batch.seq, batch.sess, batch.rx)

    def events(self) -> Events:
        """The event table's columns as the Events bundle decode writes (fused steps decode into it
        too: set ``table.n`` to the rows they wrote)."""
        return self._ev
