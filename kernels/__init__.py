"""The hot path: kernel bodies written once, compiled for the CPU (``cpu.py``) and CUDA (``gpu.py``).

Numba's on-disk cache (``cache=True``) checks only the source file of the function it
compiled, yet the kernels read constants from their sibling modules (counter slots, column
numbers, message lengths): a cached kernel would keep using stale ones after a sibling changed.
So every cache lives in a directory named by a hash of all of ``kernels/*.py``: any change
here starts a fresh cache. An explicit ``NUMBA_CACHE_DIR`` is respected as it is.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent

#: the flags every CPU kernel is compiled with (``cpu.py``, ``step.py``, and the risk helpers'
#: ``kernel_flags``: a jitable is compiled once per set of flags of its caller, so the helpers
#: must name the same set). ``_nrt=False``: these kernels never allocate, and without the
#: runtime numba emits no reference counting (with it, every array passed through the
#: per-message body cost an atomic incref/decref pair: decode measured 130 ns/msg, README
#: "Benchmarks"). ``nogil``: the kill watcher and the FIX side run while a kernel does.
KERNEL_FLAGS = {"nogil": True, "_nrt": False}


def _source_hash() -> str:
    h = hashlib.sha256()
    for path in sorted(_HERE.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


#: where compiled kernels are cached for this exact version of kernels/
CACHE_DIR = Path(os.environ.get("NUMBA_CACHE_DIR") or _HERE.parent / ".cache" / "numba" / _source_hash())

if not os.environ.get("NUMBA_CACHE_DIR"):
    from numba.core import config as _numba_config

    os.environ["NUMBA_CACHE_DIR"] = str(CACHE_DIR)  # for subprocesses started from here
    _numba_config.CACHE_DIR = str(CACHE_DIR)
