"""Every CUDA kernel of ``kernels/gpu.py`` compiles to real PTX for sm_90, not only under the
simulator: the persistent pipeline kernel and every per-stage kernel, with the argument types
the host code launches them with.

The simulator runs kernel bodies as Python and so cannot catch typing errors of the real CUDA
target (numba-cuda, for one, cannot type ``inline="always"`` jitables). ``tests/ptx.py`` compiles
with NVVM in a subprocess without the simulator; the toolchain is numba-cuda's ``cu13`` extra
(NVRTC + NVVM, in the project's ``cuda`` extra). ``make test`` sets ``HFTBOT_REQUIRE_PTX=1``, so
there a missing toolchain fails instead of skipping. A kernel added to ``kernels/gpu.py``
without a case here fails the test.
"""

from __future__ import annotations

import pytest

from tests.ptx import compile_in_subprocess

SETUP = r'''
from numba import typeof
from numba.cuda.dispatcher import CUDADispatcher

from kernels import cpu, gpu
from kernels import features as FT
from kernels import stats as S
from kernels.events import EventTable
from kernels.state import BookEvents, BookRefs, Events, Frames, ModelArrays, MoldSessions, Payloads, RiskTables
from pipeline.book import BookStage, BookState


def sig_of(args):
    out = []
    for a in args:
        if isinstance(a, tuple):  # a bundle (kernels/state.py): typed as a launch types it
            out.append(typeof(a))
        elif isinstance(a, np.ndarray):
            out.append(types.Array(typeof(a).dtype, a.ndim, "C"))
        elif isinstance(a, np.generic):
            out.append(typeof(a))
        elif isinstance(a, float):
            out.append(types.float64)
        else:
            out.append(types.int64)
    return tuple(out)


KERNELS = {name for name, obj in vars(gpu).items()
           if isinstance(obj, CUDADispatcher) and not obj.targetoptions.get("device")}


def cases():
    """name -> host arguments, as the wrappers in kernels/gpu.py and pipeline/gpu.py pass them."""
    from hydra import compose, initialize_config_dir

    from pipeline.config import register
    from pipeline.model import load_model
    from pipeline.risk import RiskStage
    from pipeline.strategy import StrategyStage

    register()
    with initialize_config_dir(config_dir=str(__import__("pathlib").Path("conf").resolve()), version_base="1.3"):
        cfg = compose(config_name="replay", overrides=["book=small", "book.max_orders=64", "book.max_levels=64",
                                                       "book.max_symbols=8", "risk.max_open_orders=64"])
    t = EventTable(4)
    c = t.cols
    z = np.zeros(4, np.int64)
    u8 = np.zeros(64, np.uint8)
    st = BookState(16, 16, 4)
    bs = BookStage(cpu, st, 4)
    stats = S.new_stats()
    res = np.zeros(3, np.int64)
    filt = (np.zeros(1, np.int64), np.zeros(1, np.int64), 0)
    pays = (z, z.copy(), z.copy())
    msgs = (z.copy(), np.zeros(4, np.int32), np.zeros(4, np.uint64), np.zeros(4, np.uint16), z.copy())
    model = load_model()
    mlp = model.mlp()
    margs = (model.in_col, model.in_rel, *mlp.args())
    f = np.zeros((4, FT.N_FEATURES))
    risk = RiskStage(cpu, cfg.risk, st)
    rs = risk.state
    rstate = (rs.g, risk.lim, rs.ls, rs.ps, rs.hs, rs.ro, rs.oh, rs.ofree, rs.st, rs.rt, rs.rc)
    book3 = (st.bk, st.li, st.sym)
    strat = StrategyStage(cpu, cfg.strategy, rows=st.sym.shape[0], capacity=4, positions=rs.ps)
    ev = np.zeros((4, 8), np.int64)
    yield "_decode_kernel", (Frames(u8, z, np.zeros(4, np.int32), np.zeros(4, np.uint64), np.zeros(4, np.uint16), z),
                             4, np.zeros(4, np.int64), Events(*t.columns()))
    yield "_index_pcap_kernel", (u8, 0, 64, 1, 1000, 1, *filt, *pays, stats, res)
    yield "_index_pcapng_kernel", (u8, 0, 64, np.zeros(2, np.int64), z, z, z, *filt, *pays, stats, res)
    yield "_index_binaryfile_kernel", (u8, 0, 64, np.uint64(1), *msgs, stats, res)
    yield "_decode_binaryfile_kernel", (u8, 0, 64, np.uint64(1), 4, Events(*t.columns()), stats,
                                        np.zeros(4, np.int64))
    yield "_split_mold_kernel", (Payloads(u8, *pays), 0, 4, MoldSessions(np.zeros((4, 10), np.uint8),
                                 np.zeros(4, np.uint64), np.zeros(1, np.int64)), Frames(u8, *msgs), stats, res)
    bev = BookEvents(c["kind"], c["side"], c["locate"], c["ts"], c["seq"], c["ref"].view(np.int64),
                     c["new_ref"].view(np.int64), c["shares"], c["price"], c["stock"].view(np.int64), c["aux"],
                     c["alpha"])
    yield "_apply_events_kernel", (4, bev, st.arrays(), bs.feature_conf(), bs.fo, bs.fk, res)
    yield "_top_levels_kernel", (0, 5, st.bk, st.li, st.lj, np.zeros((5, 3), np.int64), res)
    yield "_shard_rows_kernel", (4, c["locate"], 1, np.zeros(1 << 16, np.int32), np.zeros(5, np.int64), res)
    yield "_predict_kernel", (f, 4, ModelArrays(*margs), np.zeros(4))
    yield "_prepare_inputs_kernel", (f, 4, model.in_col, model.in_rel, np.zeros((4, model.n_inputs), np.float32))
    yield "_check_intents_kernel", (4, np.zeros((4, 12), np.int64), np.zeros((4, 3), np.int64), risk.out,
                                    RiskTables(*rstate), BookRefs(*book3), res)
    yield "_apply_exec_kernel", (4, ev, risk.out, RiskTables(*rstate), BookRefs(*book3), res)
    yield "_feed_health_kernel", (4, c["sess"], c["seq"], c["locate"], c["ts"], rs.g, risk.lim, rs.ls, rs.ps, rs.hs,
                                  risk.ovk, risk.ovl, st.sym, res)
    yield "_mark_to_market_kernel", (5, risk.out, rs.g, risk.lim, rs.ps, rs.ro, *book3, res)
    yield "_kill_switch_kernel", (1, 5, risk.out, rs.g, rs.ro, res)
    yield "_strategy_batch_kernel", (4, np.zeros(4), f, np.zeros((4, FT.N_KEYS), np.int64), rs.ps, strat.ss,
                                     strat.sg, strat.pf, strat.pi, strat.out, res)
    yield "_strategy_ack_kernel", (4, strat.out, np.zeros((4, 3), np.int64), strat.ss, strat.sg, res)
    yield "pipeline_kernel", pipeline_args(cfg)


def pipeline_args(cfg):
    """The persistent kernel's arguments as GpuPipeline lays them out, with numpy arrays standing
    in for device and mapped arrays (no driver here: only the types matter)."""
    import pipeline.gpu as PG

    class HostOnly:
        to_device = staticmethod(lambda a: np.array(a))
        device_array = staticmethod(lambda shape, dtype: np.zeros(shape, dtype))
        mapped_array = staticmethod(lambda shape, dtype: np.zeros(shape, dtype))
        stream = staticmethod(lambda: None)

    PG.load_cuda = lambda: (HostOnly, gpu)
    g = PG.GpuPipeline.from_config(cfg, batch=8, shards=2, threads=32, ring_batches=4, frame_bytes=4096,
                                   journal_rows=16)
    return (1, *g.kernel_args())
'''

PIPELINE = SETUP + r'''
for name, args in cases():
    if name == "pipeline_kernel":
        ptx(getattr(gpu, name).py_func, sig_of(args))
        print(name, "ok", flush=True)
'''

STAGES = SETUP + r'''
seen = set()
for name, args in cases():
    seen.add(name)
    if name != "pipeline_kernel":
        ptx(getattr(gpu, name).py_func, sig_of(args))
        print(name, "ok", flush=True)
missing = KERNELS - seen
print("uncovered:", sorted(missing) or "none", flush=True)
assert not missing, f"kernels without a PTX case in tests/test_gpu_compile.py: {sorted(missing)}"
'''


def test_the_persistent_pipeline_kernel_compiles_to_ptx_for_a_real_gpu():
    compile_in_subprocess(PIPELINE, expect_ok=1)


def test_every_stage_kernel_compiles_to_ptx_for_a_real_gpu():
    compile_in_subprocess(STAGES, expect_ok=18)
