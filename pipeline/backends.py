"""Pick the kernels backend module named in config (``backend.name``)."""

from __future__ import annotations

import os
from types import ModuleType


class BackendError(RuntimeError):
    pass


def load(name: str) -> ModuleType:
    """``kernels.cpu`` for ``cpu``; ``kernels.gpu`` for ``cuda`` (a GPU or the simulator)."""
    if name == "cpu":
        from kernels import cpu

        return cpu
    if name == "cuda":
        try:
            from kernels import gpu
        except ImportError as exc:
            raise BackendError(f"backend.name=cuda: {exc}") from None
        if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
            from numba import cuda

            if not cuda.is_available():
                raise BackendError(
                    "backend.name=cuda: no CUDA driver or GPU found; use backend=cpu, or set "
                    "NUMBA_ENABLE_CUDASIM=1 to run the CUDA kernels on the simulator (slow)"
                )
        return gpu
    raise BackendError(f"backend.name: unknown backend {name!r} (cpu, cuda)")
