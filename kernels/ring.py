"""Rings and flags shared by the host and the device-resident pipeline (``pipeline/gpu.py``).

Undecorated bodies: ``kernels/gpu.py`` compiles them as device functions for the persistent
kernel, and the host driver calls the same functions as plain Python on the mapped arrays (the
host's side of each ring is a few stores per batch, not a hot loop).

Every ring is a preallocated array of ``cap`` slots with two monotone int64 counters in the
control block ``ctl`` (mapped host memory): the writer owns ``head``, the reader owns ``tail``;
slot of item ``i`` is ``i % cap``; the ring is full when ``head - tail == cap``. A writer fills
the slots first, then fences, then publishes ``head`` (one store): a reader that sees the new
``head`` sees the slots. Counters never wrap (2**63 items).

Control block ``ctl[CTL_*]`` (int64):

- host writes: ``CTL_HEAD`` (batches published), ``CTL_STOP`` (finish the published batches,
  then exit), ``CTL_KILL`` (kill-switch request: a ``KILL_*`` reason of ``kernels/risk.py``,
  latched into risk's state before the next check), ``CTL_ORD_TAIL`` / ``CTL_INT_TAIL``
  (rows of the orders / intents rings the host has read: the device waits when a ring is full),
  ``CTL_EX_HEAD`` (execution events published to the exec ring: ``kernels/intents.py`` ``E_*``
  rows, what the FIX bridge reports).
- device writes: ``CTL_TAIL`` (batches done: the "done counter"), ``CTL_ERROR`` / ``CTL_ERROR_AT``
  (``ERR_*`` and the batch; the kernel exits), ``CTL_ORD_HEAD`` / ``CTL_INT_HEAD`` (rows
  published), ``CTL_JOURNAL`` (feature rows journaled), ``CTL_STATE`` (1 running, 2 exited),
  ``CTL_POLLS`` (empty polls, a diagnostic), ``CTL_EX_TAIL`` (execution events applied to
  risk's state: thread 0 applies the pending ones, in order, before each batch and while it
  polls; risk's own orders from them go to the orders ring like the others).
"""

from __future__ import annotations

from numba.extending import register_jitable

CTL_HEAD = 0
CTL_TAIL = 1
CTL_STOP = 2
CTL_KILL = 3
CTL_ERROR = 4
CTL_ERROR_AT = 5
CTL_INT_HEAD = 6
CTL_INT_TAIL = 7
CTL_ORD_HEAD = 8
CTL_ORD_TAIL = 9
CTL_JOURNAL = 10
CTL_STATE = 11
CTL_POLLS = 12
CTL_BOOK_ERROR = 13  # the book's own error code (kernels/book.py ERR_*) when CTL_ERROR == ERR_BOOK
CTL_BOOK_EVENT = 14  # ... and the batch row of the event that hit it
CTL_EX_HEAD = 15     # host: execution events published to the exec ring
CTL_EX_TAIL = 16     # device: execution events applied
N_CTL = 24

ERR_BOOK = 1         # a book capacity error (book.max_orders / max_levels per shard)
ERR_RISK_OUT = 2     # risk's orders-out table filled (kernels/risk.py ERR_OUT_FULL)
ERR_RING_FULL = 3    # an output ring stayed full with the stop flag set (nobody will read it)
ERR_JOURNAL_FULL = 4

STATE_RUNNING = 1
STATE_EXITED = 2


@register_jitable
def ring_free(head, tail, cap):
    """Free slots of a ring with counters ``head`` (written) and ``tail`` (read)."""
    return cap - (head - tail)


@register_jitable
def push_rows(ring, head, src, k0, n):
    """Copy rows ``src[k0:k0+n]`` into the ring's slots from item ``head`` (the caller checked
    ``ring_free``); returns the new head, to be published after a fence."""
    cap = ring.shape[0]
    w = ring.shape[1]
    for j in range(n):
        s = (head + j) % cap
        for c in range(w):
            ring[s, c] = src[k0 + j, c]
    return head + n


@register_jitable
def push_pair(ring, head, a, b, k, wa):
    """Ring row ``head % cap`` = row ``k`` of ``a`` (``wa`` columns) followed by row ``k`` of
    ``b`` (the rest): an intent with its risk decision. Returns the new head."""
    s = head % ring.shape[0]
    for c in range(wa):
        ring[s, c] = a[k, c]
    for c in range(ring.shape[1] - wa):
        ring[s, wa + c] = b[k, c]
    return head + 1


@register_jitable
def shard_of(locate, shards):
    """Book shard (one device thread each) that owns a stock locate."""
    return locate % shards
