"""The decode and book CUDA kernels compile to real PTX for sm_90 (not only under the simulator).

The simulator runs kernel bodies as Python and so cannot catch typing errors of the real CUDA
target (numba-cuda, for one, cannot type ``inline="always"`` jitables). ``tests/ptx.py`` compiles
with NVVM where numba-cuda's compiler libraries are installed and skips elsewhere.
"""

from __future__ import annotations

from tests.ptx import compile_in_subprocess

SCRIPT = r'''
from kernels import cpu, gpu
from kernels.events import EventTable
from pipeline.book import BookStage, BookState

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
    compile_in_subprocess(SCRIPT, expect_ok=2)
