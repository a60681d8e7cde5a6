"""Software prefetch inside compiled code: ``prefetch(arr, i)`` asks the CPU to start loading the
cache line holding ``arr[i]`` (row ``i`` of a 2-D array) and returns at once.

On the CPU backend it is ``llvm.prefetch`` (x86 ``prefetcht0``/``prefetchw``), a hint that never
faults; on the CUDA backend it compiles to nothing, and under the CUDA simulator (plain Python)
it is the no-op function below. Callers pass indices already checked to be in bounds anyway:
the address is computed from them before the hint is issued.

Used by the book (``kernels/book.py``) to load the order, level and reference-map lines of
events a few places ahead while it applies the current one (measured there).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload


def prefetch(arr, i):
    """Start loading the line of ``arr[i]`` (read). No-op outside the CPU backend."""


def prefetch_w(arr, i):
    """Start loading the line of ``arr[i]`` for writing. No-op outside the CPU backend."""


def _on_cpu(context) -> bool:
    from numba.core.cpu import CPUContext

    return isinstance(context, CPUContext)


def _make(rw: int):
    @intrinsic
    def _pf(typingctx, arr, i):
        if not isinstance(arr, types.Array) or not isinstance(i, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            if not _on_cpu(context):
                return context.get_dummy_value()
            aryty, idxty = signature.args
            ary = context.make_array(aryty)(context, builder, args[0])
            idx = context.cast(builder, args[1], idxty, types.intp)
            inds = [idx] + [context.get_constant(types.intp, 0)] * (aryty.ndim - 1)
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, inds, wraparound=False)
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
            builder.call(fn, [builder.bitcast(ptr, i8p), i32(rw), i32(3), i32(1)])
            return context.get_dummy_value()

        return types.none(arr, i), codegen

    return _pf


_pf_read = _make(0)
_pf_write = _make(1)


@overload(prefetch)
def _ov_prefetch(arr, i):
    def impl(arr, i):
        _pf_read(arr, i)

    return impl


@overload(prefetch_w)
def _ov_prefetch_w(arr, i):
    def impl(arr, i):
        _pf_write(arr, i)

    return impl
