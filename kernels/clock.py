"""The CPU's time-stamp counter, readable inside compiled code (per-event latencies, tick-to-trade).

``rdtsc()`` is ``llvm.readcyclecounter`` as a numba intrinsic; ``tsc()`` the same callable from
Python (to calibrate ticks against ``time.perf_counter_ns``).

``rdtsc()`` is not ordered: the core may read the counter before earlier loads have completed
or before the timed code's last loads have. ``tsc_begin()`` / ``tsc_end()`` are the fenced pair
for timing a short region on x86-64 (``lfence; rdtsc`` before it, ``rdtscp; lfence`` after it):
the region's count then holds its own work and none of its neighbours'. CPU backend only (x86
inline assembly); the benchmarks use them, the pipeline does not.
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


def _fenced(asm: str, clobbers: str):
    @intrinsic
    def read(typingctx):
        def codegen(context, builder, signature, args):
            import llvmlite.binding as llvm

            llvm.initialize_native_asmparser()  # numba's code generator parses inline assembly with it
            fnty = ir.FunctionType(ir.IntType(64), [])
            return builder.asm(fnty, asm + "\n\tshlq $$32, %rdx\n\torq %rdx, %rax", "={rax}," + clobbers, [],
                               True)

        return types.int64(), codegen

    return read


#: the counter once every earlier instruction has completed (start of a timed region)
tsc_begin = _fenced("lfence\n\trdtsc", "~{rdx},~{memory}")
#: the counter once every earlier instruction has executed, before any later one starts (its end)
tsc_end = _fenced("rdtscp\n\tlfence", "~{rdx},~{rcx},~{memory}")


@njit(nogil=True)
def tsc():
    return rdtsc()


def ticks_per_ns(samples: int = 3, sleep_s: float = 0.05) -> float:
    """Time-stamp-counter ticks per nanosecond: the lowest of ``samples`` readings of the counter
    against ``perf_counter_ns`` over ``sleep_s`` each (a reading stretched by a preemption
    between the two clocks only errs high)."""
    import time

    tsc()
    best = None
    for _ in range(samples):
        t0, c0 = time.perf_counter_ns(), tsc()
        time.sleep(sleep_s)
        t1, c1 = time.perf_counter_ns(), tsc()
        r = (c1 - c0) / (t1 - t0)
        best = r if best is None else min(best, r)
    return float(best)
