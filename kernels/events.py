"""The event table: the columnar contract between decode and every later stage.

Struct-of-arrays, one contiguous numpy array per column (the CUDA backend copies columns to the
device as they are; a structured array's strided views could not be). Column order is the
positional order in which kernels receive them.

Units: ``ts`` ITCH nanoseconds since midnight; ``rx`` capture/arrival time, ns since the Unix
epoch (0 for BinaryFILE input); prices integer fixed point in the feed's own units (Price(4) =
1e-4 $, Price(8) = 1e-8 $). Columns a message type does not carry are 0 for the 1-D columns;
``aux`` and ``alpha`` slots a type does not use are left as the table was allocated (zeros for a
fresh table) and must not be read: ``kernels/itch_spec.py`` says which slots each type uses.
"""

from __future__ import annotations

import numpy as np

AUX_SLOTS = 5
ALPHA_SLOTS = 12

#: (name, dtype, trailing shape) in kernel argument order
EVENT_COLUMNS: tuple[tuple[str, np.dtype, tuple[int, ...]], ...] = (
    ("kind", np.dtype(np.uint8), ()),       # ITCH message type letter (ord)
    ("side", np.dtype(np.uint8), ()),       # b'B' / b'S' for A, F, P; 0 otherwise
    ("locate", np.dtype(np.uint16), ()),    # stock locate
    ("tracking", np.dtype(np.uint16), ()),  # tracking number
    ("sess", np.dtype(np.uint16), ()),      # index into the reader's MoldUDP64 session table
    ("mpid", np.dtype(np.uint32), ()),      # F attribution / L MPID, 4 ASCII bytes big-endian
    ("ts", np.dtype(np.int64), ()),         # ns since midnight
    ("rx", np.dtype(np.int64), ()),         # packet arrival, ns since epoch
    ("seq", np.dtype(np.uint64), ()),       # MoldUDP64 (or BinaryFILE) sequence number
    ("ref", np.dtype(np.uint64), ()),       # order reference (U: original reference)
    ("new_ref", np.dtype(np.uint64), ()),   # U: new order reference
    ("shares", np.dtype(np.int64), ()),     # shares (E/C executed, X cancelled, I imbalance)
    ("price", np.dtype(np.int64), ()),      # price in Price(4) units (see itch_spec per type)
    ("match", np.dtype(np.uint64), ()),     # match number
    ("stock", np.dtype(np.uint64), ()),     # 8 ASCII bytes big-endian, space padded
    ("aux", np.dtype(np.int64), (AUX_SLOTS,)),      # rare numeric fields, per itch_spec
    ("alpha", np.dtype(np.uint8), (ALPHA_SLOTS,)),  # rare one-byte alphas, per itch_spec
)

COLUMN_NAMES: tuple[str, ...] = tuple(c[0] for c in EVENT_COLUMNS)

#: the same contract as one aligned structured dtype, for records, files and reports
EVENT_DTYPE = np.dtype(
    [(name, dt, shape) if shape else (name, dt) for name, dt, shape in EVENT_COLUMNS], align=True
)


class EventTable:
    """A preallocated, bounded batch of events; ``n`` rows are valid."""

    __slots__ = ("cols", "n", "capacity")

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"event table capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.cols = {name: np.zeros((capacity, *shape), dtype=dt) for name, dt, shape in EVENT_COLUMNS}
        self.n = 0

    def columns(self) -> tuple[np.ndarray, ...]:
        """All columns in kernel argument order."""
        return tuple(self.cols[name] for name in COLUMN_NAMES)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name][: self.n]

    def __len__(self) -> int:
        return self.n

    def to_records(self) -> np.ndarray:
        """Copy the valid rows into one structured array of ``EVENT_DTYPE``."""
        rec = np.zeros(self.n, dtype=EVENT_DTYPE)
        for name in COLUMN_NAMES:
            rec[name] = self.cols[name][: self.n]
        return rec


def pack_ascii(text: str | bytes, width: int) -> int:
    """Pack a space-padded ASCII alpha into the big-endian integer the kernels store."""
    raw = text.encode("latin-1") if isinstance(text, str) else bytes(text)
    if len(raw) > width:
        raise ValueError(f"{raw!r} is longer than {width} bytes")
    return int.from_bytes(raw.ljust(width, b" "), "big")


def unpack_ascii(value: int, width: int) -> str:
    """Inverse of ``pack_ascii``: the wire bytes, padding kept."""
    return int(value).to_bytes(width, "big").decode("latin-1")
