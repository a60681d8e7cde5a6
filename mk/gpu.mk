# GPU toolchain for `make test`: every CUDA kernel is compiled to real sm_90 PTX (tests/test_gpu_compile.py)
# with numba-cuda's NVRTC + NVVM, which the `cuda` extra installs (numba-cuda[cu13], ~190 MB of wheels;
# no GPU or driver needed). `make test` requires it: a missing toolchain fails the PTX tests
# instead of skipping them (HFTBOT_REQUIRE_PTX=1). A bare `pytest` still skips them with the reason.
PTX_STAMP := $(VENV)/.ptx-toolchain

$(PTX_STAMP): $(STAMP)
	@$(PY) -c "import os; os.environ['NUMBA_ENABLE_CUDASIM'] = '0'; from numba import cuda; \
from numba.core import types; cuda.compile_ptx(lambda a: None, (types.int64[::1],), cc=(9, 0))" 2>/dev/null \
	|| { echo "installing the CUDA compiler libraries (numba-cuda[cu13]: NVRTC, NVVM)"; \
	     $(PY) -m pip install -q -e '.[cuda]' && \
	     $(PY) -c "import os; os.environ['NUMBA_ENABLE_CUDASIM'] = '0'; from numba import cuda; \
from numba.core import types; cuda.compile_ptx(lambda a: None, (types.int64[::1],), cc=(9, 0))"; } \
	|| { echo "error: NVRTC/NVVM unusable: the PTX compile tests cannot run (pip install -e '.[cuda]')"; exit 1; }
	@touch $@

.PHONY: ptx-toolchain
ptx-toolchain: $(PTX_STAMP) ## check (and install) NVRTC + NVVM for the PTX compile tests

test: ptx-toolchain
test: export HFTBOT_REQUIRE_PTX = 1
