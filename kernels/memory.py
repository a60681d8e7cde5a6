"""Memory helpers for preallocated tables (numpy only, no compiled code).

``np.zeros`` maps a table lazily: every page is faulted in (and zeroed) on its first write. numpy
asks for transparent huge pages on large allocations (``madvise``), so a first touch can zero
2 MiB at once: measured in ``make run`` before this existed, the first orders of a run cost
0.7-8 ms each in the FIX bridge (its 1M-row order table and 2M-slot id map), against ~6 µs once
the pages were there. Tables on the order path are therefore touched once at start.
"""

from __future__ import annotations

import numpy as np


def prefault(*arrays: np.ndarray) -> int:
    """Touch every page of each array (values unchanged). Returns the bytes touched."""
    total = 0
    for a in arrays:
        if a.size == 0:
            continue
        b = a.reshape(-1).view(np.uint8)
        # `b[::4096] = b[::4096]` would not do: numpy skips an assignment of an array to itself
        # (measured: RSS unchanged); an in-place add writes every touched byte
        b[::4096] += 0
        total += b.nbytes
    return total
