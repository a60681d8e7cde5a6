"""Compile CUDA kernels to real PTX (sm_90) in a subprocess, for tests that need NVRTC/NVVM.

The simulator runs kernel bodies as Python and cannot catch typing errors of the real CUDA
target. ``compile_in_subprocess(body)`` runs ``PREAMBLE + body`` with the simulator off; the
preamble exits 77 when numba-cuda's compiler libraries are missing (``numba-cuda[cu13]``),
which becomes a skip with that reason, or a failure where the toolchain is required
(``HFTBOT_REQUIRE_PTX=1``: ``make test`` sets it, since ``make setup`` installs the toolchain).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

PREAMBLE = r'''
import sys
import numpy as np
from numba import cuda, typeof
from numba.core import types

def ptx(fn, sig):
    return cuda.compile_ptx(fn, sig, cc=(9, 0))

def sig_of(args):
    return tuple(types.Array(typeof(a).dtype, a.ndim, "C") if isinstance(a, np.ndarray) else types.int64
                 for a in args)

def probe(a):
    a[0] = 1

try:
    ptx(probe, (types.int64[::1],))
except Exception as exc:  # no NVRTC / NVVM here
    print("unavailable:", str(exc).splitlines()[0][:200])
    sys.exit(77)
# device functions ask the driver for the compute capability: a stand-in for the missing one
sys.modules["numba.cuda.dispatcher"].get_current_device = lambda: type("Dev", (), {"compute_capability": (9, 0)})()
'''


def compile_in_subprocess(body: str, expect_ok: int) -> None:
    """Run the compile script; ``body`` prints ``NAME ok`` per kernel compiled."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0", "HFTBOT_TEST_GPU": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-W", "ignore", "-c", PREAMBLE + body], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    if res.returncode == 77:
        why = f"no CUDA compiler libraries here ({res.stdout.strip()}): pip install -e '.[cuda]' (numba-cuda[cu13])"
        if os.environ.get("HFTBOT_REQUIRE_PTX") == "1":
            pytest.fail(f"HFTBOT_REQUIRE_PTX=1 but {why}")
        pytest.skip(why)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert res.stdout.count(" ok") == expect_ok, res.stdout
