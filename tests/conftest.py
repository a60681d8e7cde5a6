"""Shared fixtures. Kernel tests run on every backend: ``cpu`` (njit) and ``cuda`` (the CUDA
simulator here; a real GPU when ``HFTBOT_TEST_GPU=1``, where a missing GPU then fails)."""

from __future__ import annotations

import os
from pathlib import Path

# The simulator flag is read when numba.cuda is first imported: decide before any test imports it.
if os.environ.get("HFTBOT_TEST_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np
import pytest


def pytest_configure(config):
    # the simulator warns that small launches under-use a GPU: expected with tiny test inputs
    config.addinivalue_line("filterwarnings", "ignore::numba.core.errors.NumbaPerformanceWarning")

def pytest_collection_modifyitems(config, items):
    # `gpu` tests need a real GPU: they run only with HFTBOT_TEST_GPU=1
    if os.environ.get("HFTBOT_TEST_GPU") != "1":
        skip = pytest.mark.skip(reason="needs a CUDA GPU: run with HFTBOT_TEST_GPU=1 on a GPU machine")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # on a GPU machine (HFTBOT_TEST_GPU=1) a `gpu` test that skips is a failure: no silent "no GPU"
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and os.environ.get("HFTBOT_TEST_GPU") == "1" and "gpu" in item.keywords:
        rep.outcome = "failed"
        rep.longrepr = f"HFTBOT_TEST_GPU=1 but this GPU test skipped: {rep.longrepr}"


REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared/data ({path} not found): real captures are not in the repo")
    return path


@pytest.fixture(params=["cpu", "cuda"])
def backend(request):
    """A kernels backend module; ``cuda`` runs under the CUDA simulator unless HFTBOT_TEST_GPU=1."""
    if request.param == "cpu":
        from kernels import cpu

        return cpu
    from pipeline.backends import BackendError, load

    try:
        return load("cuda")
    except BackendError as exc:
        if os.environ.get("HFTBOT_TEST_GPU") == "1":
            pytest.fail(f"HFTBOT_TEST_GPU=1 but the CUDA backend is unavailable: {exc}")
        pytest.skip(str(exc))


def decode_blocks(k, blocks: list[bytes]):
    """Decode a list of raw ITCH blocks with backend ``k``; returns (records, stats)."""
    from kernels import stats as S
    from kernels.events import EventTable
    from kernels.state import Events, Frames

    from tests.packets import lay_out

    buf, off, length = lay_out(blocks)
    length = length.astype(np.int32)
    n = len(blocks)
    seq = np.arange(1, max(n, 1) + 1, dtype=np.uint64)
    sess = np.zeros(max(n, 1), np.uint16)
    rx = np.zeros(max(n, 1), np.int64)
    table = EventTable(max(n, 1))
    stats = S.new_stats()
    table.n = k.decode_batch(Frames(buf, off, length, seq, sess, rx), n, 0, Events(*table.columns()), stats)
    return table.to_records(), stats
