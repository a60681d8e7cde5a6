"""Big-endian field readers and writers on ``uint8`` buffers, callable from both backends.

``register_jitable`` makes a plain function callable from ``njit`` and ``cuda.jit`` code alike
(and under the CUDA simulator it stays plain Python). These are tiny: LLVM inlines them
(``kernels/cpu.py`` raises its inline threshold); numba's own ``inline="always"`` is not used,
since numba-cuda cannot type such functions for a real GPU. Every value is widened explicitly before
shifting: numpy ``uint8`` scalars would overflow under the simulator's Python semantics.
Callers bounds-check; these do not.

The big-endian readers ``rd_u8``, ``rd_u16``, ``rd_u32``, ``rd_u64`` (``be_reader``) are one unaligned
load and one ``bswap`` on the CPU when the buffer is a C-contiguous ``uint8`` vector (every
capture buffer is), with no negative-index wraparound: their byte-by-byte body is what the CUDA
target, the simulator and plain Python run. Byte by byte, numba wraps every byte's index
(``off + k < 0`` ? ``+ size``: a compare and a conditional move per byte) and LLVM cannot merge
the bytes into one load. ITCH decode alone measured 30.9 -> 17.9 ns/msg with these reads and one
store per column (CPU time, 4,096-row batches; ``kernels/itch.py`` docstring has the breakdown).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload, register_jitable


def inline_cpu(fn):
    """``register_jitable``, inlined into its callers on the CPU (numba IR inlining) and a plain
    device function on CUDA. A call passing a dozen arrays by value (each array is 7-11 scalar
    arguments) costs more than the work a small helper does.
    numba-cuda mistypes ``inline="always"`` overloads (their arguments arrive as ``omitted``:
    the kernel then does not compile for a real GPU), so CUDA gets the plain one.

    Small bodies only. numba compiles the function once to type it and then runs its passes again
    over every inlined copy, nested copies included. Plain ``register_jitable`` functions are
    compiled once per signature (and per compile flags of their callers) and linked into their
    callers, where LLVM inlines them when they fit its threshold (``kernels/cpu.py`` sets 3000):
    for the large risk bodies (``check_one``, ``commit``, ``order_alloc``) this gives the same
    machine code for ``check_intents`` (up to register and stack-slot choice). Measured cold
    (``python -m bench.compile``, process CPU s, 2026-12-06): with ``inline_cpu`` on those,
    ``check_intents`` 28.6 s, ``apply_exec`` 10.3 s, every CPU kernel 55.4 s; with
    ``register_jitable``, 7.6-9.2, 5.5-5.7 and 31.6-33.0 s, risk p50 the same (``kernels/risk.py``
    docstring). What LLVM does not inline stays a call: ``process_intent`` (thin in numba IR, large
    once LLVM has inlined ``check_one`` and ``commit`` into it) keeps ``inline_cpu`` so that the
    loop of ``check_intents`` makes no call (risk p50 41 -> 62 ns without it)."""
    overload(fn, target="cpu", inline="always", strict=False)(lambda *args, **kwargs: fn)
    overload(fn, target="cuda", strict=False)(lambda *args, **kwargs: fn)
    return fn


def _load_be(bits):
    """An intrinsic ``(uint8[::1] b, integer o) -> value``: the ``bits``-wide big-endian value at
    ``b[o]``, one unaligned load + ``bswap`` (``int64`` for 8..32 bits, ``uint64`` for 64), the
    index taken as it is (no wraparound, no bounds check)."""

    @intrinsic
    def load(typingctx, b, o):
        sig = (types.uint64 if bits == 64 else types.int64)(b, o)

        def codegen(context, builder, sig, args):
            ary = context.make_array(sig.args[0])(context, builder, args[0])
            i = context.cast(builder, args[1], sig.args[1], types.intp)
            p = builder.bitcast(builder.gep(ary.data, [i], inbounds=True), ir.IntType(bits).as_pointer())
            v = builder.load(p, align=1)
            if bits > 8:
                v = builder.bswap(v)
            return builder.zext(v, ir.IntType(64)) if bits < 64 else v

        return sig, codegen

    return load


def _is_c_bytes(b, o) -> bool:
    return (isinstance(b, types.Array) and b.ndim == 1 and b.layout == "C" and b.dtype == types.uint8
            and isinstance(o, types.Integer))


def be_reader(bits):
    """Register ``fn`` (its body reads byte by byte) as the ``bits``-wide big-endian reader:
    on the CPU a C-contiguous ``uint8`` buffer gets the one-load intrinsic, anything else (and
    CUDA, and the simulator, which runs the Python) the body itself."""
    load = _load_be(bits)

    def register(fn):
        def cpu_impl(b, o):
            if _is_c_bytes(b, o):
                return lambda b, o: load(b, o)
            return fn

        overload(fn, target="cpu", strict=False)(cpu_impl)
        overload(fn, target="cuda", strict=False)(lambda b, o: fn)
        return fn

    return register


@be_reader(8)
def rd_u8(b, o):
    return np.int64(b[o])


@be_reader(16)
def rd_u16(b, o):
    return (np.int64(b[o]) << 8) | np.int64(b[o + 1])


@be_reader(32)
def rd_u32(b, o):
    return (
        (np.int64(b[o]) << 24) | (np.int64(b[o + 1]) << 16) | (np.int64(b[o + 2]) << 8)
        | np.int64(b[o + 3])
    )


@register_jitable
def rd_u48(b, o):
    return (rd_u16(b, o) << 32) | rd_u32(b, o + 2)


@be_reader(64)
def rd_u64(b, o):
    """Unsigned 64-bit value as ``uint64`` (no float promotion: uint64 ops only)."""
    hi = np.uint64((np.int64(b[o]) << 24) | (np.int64(b[o + 1]) << 16) | (np.int64(b[o + 2]) << 8)
                   | np.int64(b[o + 3]))
    lo = np.uint64((np.int64(b[o + 4]) << 24) | (np.int64(b[o + 5]) << 16) | (np.int64(b[o + 6]) << 8)
                   | np.int64(b[o + 7]))
    return (hi << np.uint64(32)) | lo


@register_jitable
def rd_u16_le(b, o):
    return np.int64(b[o]) | (np.int64(b[o + 1]) << 8)


@register_jitable
def rd_u32_le(b, o):
    return (
        np.int64(b[o]) | (np.int64(b[o + 1]) << 8) | (np.int64(b[o + 2]) << 16)
        | (np.int64(b[o + 3]) << 24)
    )


@register_jitable
def rd_u32_e(b, o, little):
    """32-bit unsigned in the byte order of a capture file section."""
    if little:
        return rd_u32_le(b, o)
    return rd_u32(b, o)


@register_jitable
def rd_u16_e(b, o, little):
    if little:
        return rd_u16_le(b, o)
    return rd_u16(b, o)


@register_jitable
def wr_u16(b, o, v):
    b[o] = (v >> 8) & 0xFF
    b[o + 1] = v & 0xFF


@register_jitable
def wr_u32(b, o, v):
    b[o] = (v >> 24) & 0xFF
    b[o + 1] = (v >> 16) & 0xFF
    b[o + 2] = (v >> 8) & 0xFF
    b[o + 3] = v & 0xFF


@register_jitable
def wr_u48(b, o, v):
    wr_u16(b, o, (v >> 32) & 0xFFFF)
    wr_u32(b, o + 2, v & 0xFFFFFFFF)


@register_jitable
def wr_u64(b, o, v):
    wr_u32(b, o, (v >> 32) & 0xFFFFFFFF)
    wr_u32(b, o + 4, v & 0xFFFFFFFF)


@register_jitable
def wr_u32_le(b, o, v):
    b[o] = v & 0xFF
    b[o + 1] = (v >> 8) & 0xFF
    b[o + 2] = (v >> 16) & 0xFF
    b[o + 3] = (v >> 24) & 0xFF
