"""Flags another thread may set while a kernel runs: ``load_flag(a, i)`` reads ``a[i]`` from memory
every time it is called.

The kill switch is a write to risk's ``g[G_KILL]`` from a watcher thread (``pipeline/control.py``)
while the main thread is inside a compiled batch. A plain ``a[i]`` in a loop may be loaded once:
LLVM hoists loop-invariant loads, and where other arrays are written in the loop it versions the
loop on a run-time no-overlap check and hoists anyway (measured in
``tests/test_run_control.py``: a plain read never saw the flag in 40e9 iterations; with this
one the loop stopped within microseconds of the write). On the CPU it is an atomic (monotonic)
load, which LLVM neither hoists nor merges and which costs the same as a plain load on x86; on
CUDA and under the simulator it is the plain read (the GPU pipeline takes kill requests through
its mapped control block, ``kernels/ring.py``, with system fences).
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload


def load_flag(a, i):
    """``a[i]`` (int64 array), re-read on every call."""
    return a[i]


@intrinsic
def _load_monotonic(typingctx, a, i):
    if not (isinstance(a, types.Array) and a.dtype == types.int64 and isinstance(i, types.Integer)):
        return None
    sig = types.int64(a, i)

    def codegen(context, builder, signature, args):
        aryty, ity = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = context.cast(builder, args[1], ity, types.intp)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [idx], wraparound=False)
        return builder.load_atomic(ptr, ordering="monotonic", align=8)

    return sig, codegen


@overload(load_flag, target="cpu", strict=False)
def _load_flag_cpu(a, i):
    return lambda a, i: _load_monotonic(a, i)


@overload(load_flag, target="cuda", strict=False)
def _load_flag_cuda(a, i):
    return lambda a, i: a[i]
