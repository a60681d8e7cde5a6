"""CPU backend: the kernel bodies compiled with ``njit`` (cached, GIL released).

The same names as ``kernels/gpu.py``; pick a backend by module, never by suffix.
"""

from __future__ import annotations

from llvmlite import binding as _llvm
from numba import njit

from kernels import KERNEL_FLAGS
from kernels import framing as _framing
from kernels import itch as _itch

_jit = njit(cache=True, **KERNEL_FLAGS)

# LLVM's default inline threshold (225) leaves the book's helpers (order_add, level_get, ...)
# as calls that pass a dozen arrays each; 3000 inlines them: the book update measured
# ~140 -> ~100 ns/msg, with the same compile time (numba's own IR inlining of the same
# functions took 200+ s to compile). A process-wide LLVM option, set once at import.
_llvm.set_option("hftbot", "-inline-threshold=3000")

decode_batch = _jit(_itch.decode_batch)
index_pcap = _jit(_framing.index_pcap)
index_pcapng = _jit(_framing.index_pcapng)
index_binaryfile = _jit(_framing.index_binaryfile)
split_mold = _jit(_framing.split_mold)
#: BinaryFILE records decoded in the record walk, no frame index (``kernels/itch.py``)
decode_binaryfile = _jit(_itch.decode_binaryfile)
#: ``DecodeStage`` decodes a BinaryFILE chunk with ``decode_binaryfile`` on this backend
WALK_BINARYFILE = True

from kernels import book as _book  # noqa: E402

apply_events = _jit(_book.apply_events)
#: a shard's rows of a batch, for the books split across threads (``pipeline/book.py``)
shard_rows = _jit(_book.shard_rows)
#: the book prefetches events ahead on this backend (``BookState(prefetch_live=...)``)
PREFETCH = True
top_levels = _jit(_book.top_levels)

# --- model inference (kernels/model.py) ---------------------------------------------------------
from kernels import model as _model  # noqa: E402

# fast-math: the dot products of the MLP reassociate, so they vectorise (model.py docstring)
predict_batch = njit(cache=True, fastmath=True, **KERNEL_FLAGS)(_model.predict_batch)
prepare_inputs = _jit(_model.prepare_inputs)

# --- risk (kernels/risk.py) ---------------------------------------------------------------------
from kernels import risk as _risk  # noqa: E402

check_intents = _jit(_risk.check_intents)
apply_exec = _jit(_risk.apply_exec)
feed_health = _jit(_risk.feed_health)
mark_to_market = _jit(_risk.mark_to_market)
kill_switch = _jit(_risk.kill_switch)

# --- strategy (kernels/strategy.py) -------------------------------------------------------------
from kernels import strategy as _strategy  # noqa: E402

strategy_batch = _jit(_strategy.strategy_batch)
strategy_ack = _jit(_strategy.strategy_ack)
