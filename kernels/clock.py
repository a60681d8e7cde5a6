"""The CPU's time-stamp counter, readable inside compiled code (per-event latencies, tick-to-trade).

``rdtsc()`` is ``llvm.readcyclecounter`` as a numba intrinsic; ``tsc()`` the same callable from
Python (to calibrate ticks against ``time.perf_counter_ns``).
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def rdtsc(typingctx):
    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.readcyclecounter")
        return builder.call(fn, [])

    return types.int64(), codegen


@njit(nogil=True)
def tsc():
    return rdtsc()
