"""The decode and book CUDA kernels compile to real PTX for sm_90 (not only under the simulator).

The simulator runs kernel bodies as Python and so cannot catch typing errors of the real CUDA
target (numba-cuda, for one, cannot type ``inline="always"`` jitables). This compiles with NVVM
where numba-cuda's compiler libraries are installed (``pip install 'numba-cuda[cu13]'``) and
skips with that reason elsewhere. A separate process: the simulator flag is read at import.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = r'''
import sys
import numpy as np
from numba import cuda, types, typeof

def ptx(fn, sig):
    return cuda.compile_ptx(fn, sig, cc=(9, 0))

def probe(a):
    a[0] = 1

try:
    ptx(probe, (types.int64[::1],))
except Exception as exc:  # no NVRTC / NVVM here
    print("unavailable:", str(exc).splitlines()[0][:200])
    sys.exit(77)
# device functions ask the driver for the compute capability: a stand-in for the missing one
sys.modules["numba.cuda.dispatcher"].get_current_device = lambda: type("Dev", (), {"compute_capability": (9, 0)})()
from kernels import cpu, gpu
from kernels.events import EventTable
from pipeline.book import BookStage, BookState

def sig_of(args):
    return tuple(types.Array(typeof(a).dtype, a.ndim, "C") if isinstance(a, np.ndarray) else types.int64
                 for a in args)

t = EventTable(4)
c = t.cols
z = np.zeros(4, np.int64)
decode = (np.zeros(16, np.uint8), z, np.zeros(4, np.int32), np.zeros(4, np.uint64), np.zeros(4, np.uint16), z, 4,
          np.zeros(4, np.int64), *t.columns())
st = BookState(16, 16, 4)
bs = BookStage(cpu, st, 4)
book = (4, c["kind"], c["side"], c["locate"], c["ts"], c["seq"], c["ref"].view(np.int64), c["new_ref"].view(np.int64),
        c["shares"], c["price"], c["stock"].view(np.int64), c["aux"], c["alpha"], *st.arrays(), bs.params, bs.subs, 10,
        bs.fo, bs.fk, np.zeros(3, np.int64))
for name, kernel, args in (("decode", gpu._decode_kernel, decode), ("apply_events", gpu._apply_events_kernel, book)):
    ptx(kernel.py_func, sig_of(args))
    print(name, "ok", flush=True)
'''


def test_decode_and_book_kernels_compile_to_ptx_for_a_real_gpu():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0", "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-W", "ignore", "-c", SCRIPT], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    if res.returncode == 77:
        pytest.skip(f"no CUDA compiler libraries here ({res.stdout.strip()}): pip install 'numba-cuda[cu13]'")
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert res.stdout.count(" ok") == 2
