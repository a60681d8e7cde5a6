"""The GPU-resident pipeline (``pipeline/gpu.py``) against the CPU backend: a generated capture
through decode -> books -> features -> model -> strategy -> risk on the CPU stages, and through
the one fused CUDA kernel (the simulator here; a GPU with HFTBOT_TEST_GPU=1) with the same batch
boundaries: identical event tables, books, features, intents, risk decisions and orders.

The simulator runs a kernel launch to completion, so the persistent kernel is tested on a
prefilled ring with the stop flag already set (``GpuPipeline.run_prefilled``); feeding a
running kernel is in ``tests/test_gpu_only.py``. Inputs are tiny: the simulator runs ~10K
threads/s.
"""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from kernels import book as B
from kernels import intents as IN
from kernels import ring as RG
from kernels import risk as R
from kernels.events import COLUMN_NAMES
from pipeline.config import register
from replay.capture import CaptureReader, MessageBatch
from tests.conftest import REPO

MESSAGES = 2500
SYMBOLS = 4
BATCH = 400  # messages per device batch: several batches, so state carries across them
BOOK = dict(max_orders=4096, max_levels=2048, max_symbols=16)


@pytest.fixture(scope="module")
def cfg():
    register()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="replay", overrides=["features.symbols=[*]", "risk.max_open_orders=1024",
                                                         "risk.batch_rows=64"])


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    from replay.generator import generate

    path = tmp_path_factory.mktemp("gpu") / "feed.itch"
    generate(path, fmt="itch", n_messages=MESSAGES, n_symbols=SYMBOLS, seed=5)
    return path


def device_batches(path, size=BATCH, reader=None):
    """The capture as message batches of at most ``size`` (the device's batch boundaries)."""
    reader = reader or CaptureReader(path)
    for b in reader:
        for lo in range(0, b.n, size):
            hi = min(b.n, lo + size)
            yield MessageBatch(b.buf, b.off[lo:hi], b.length[lo:hi], b.seq[lo:hi], b.sess[lo:hi], b.rx[lo:hi],
                               hi - lo)


def cpu_reference(cfg, path, kill=0):
    """The CPU stages batch by batch, as ``pipeline.run`` chains them; every output kept.
    ``kill``: a kill-switch reason latched before the first batch (as the signal handler does)."""
    from kernels import cpu
    from pipeline.book import BookStage, BookState
    from pipeline.model import ModelStage, load_model
    from pipeline.risk import RiskStage
    from pipeline.stages import DecodeStage
    from pipeline.strategy import StrategyStage

    reader = CaptureReader(path)
    ft = cfg.features
    state = BookState(**BOOK)
    decode = DecodeStage(cpu, BATCH, reader.stats)
    books = BookStage(cpu, state, BATCH, symbols=list(ft.symbols), tau_flow_ns=ft.tau_flow_ns,
                      tau_rv_ns=ft.tau_rv_ns, top_n=ft.top_n)
    risk = RiskStage.from_config(cpu, cfg, state)
    model = ModelStage(load_model(cfg.model.path), "numba", cpu, BATCH)
    strat = StrategyStage(cpu, cfg.strategy, rows=state.sym.shape[0], capacity=BATCH, positions=risk.state.ps)
    risk.state.g[R.G_KILL] = kill
    out = {"events": [], "fo": [], "fk": [], "pred": [], "intents": [], "decisions": [], "orders": []}
    for b in device_batches(path, reader=reader):
        ev = decode(b)
        out["events"].append(ev.to_records())
        fb = books(ev)
        out["fo"].append(fb.values[:fb.n].copy())
        out["fk"].append(fb.keys[:fb.n].copy())
        risk.on_events(ev)
        pb = model(fb)
        out["pred"].append(pb.values[:pb.n].copy())
        ib = strat(pb)
        if ib.n:
            d = risk.check(ib.rows, ib.n)
            strat.on_decisions(ib, d.decisions)
            out["intents"].append(ib.intents.copy())
            out["decisions"].append(d.decisions.copy())
            out["orders"].append(d.orders.copy())
    cat = {k: np.concatenate(v) for k, v in out.items() if k != "events"}
    cat["events"] = out["events"]
    return cat, state, risk, strat, reader.stats


def gpu_pipeline(cfg, **opts):
    from pipeline.gpu import GpuPipeline

    return GpuPipeline.from_config(cfg, batch=BATCH, journal_rows=MESSAGES, **{**BOOK_OPTS(cfg), **opts})


def BOOK_OPTS(cfg):
    cfg.book.max_orders, cfg.book.max_levels, cfg.book.max_symbols = (BOOK["max_orders"], BOOK["max_levels"],
                                                                      BOOK["max_symbols"])
    return {}


def books_equal(a, b, rows):
    """Every level of every book of ``a`` and ``b`` (BookState) the same, slot numbers aside."""
    from kernels import cpu

    for book in range(2 * rows):
        oa = np.zeros((4096, 3), np.int64)
        ob = np.zeros((4096, 3), np.int64)
        na = cpu.top_levels(book, 4096, a.bk, a.li, a.lj, oa)
        nb = cpu.top_levels(book, 4096, b.bk, b.li, b.lj, ob)
        assert na == nb and np.array_equal(oa[:na], ob[:nb]), f"book {book}"


@pytest.fixture(scope="module")
def reference(cfg, capture):
    return cpu_reference(cfg, capture)


@pytest.mark.cudasim
@pytest.mark.parametrize("shards", [1, 3])
def test_persistent_kernel_matches_the_cpu_pipeline(cfg, capture, reference, shards):
    ref, state, risk, strat, stats = reference
    g = gpu_pipeline(cfg, shards=shards, threads=4)
    framing = CaptureReader(capture)
    done = g.run_prefilled(device_batches(capture, reader=framing))
    assert done == len(ref["events"]) > 3
    g.fetch()
    assert g.control().state == RG.STATE_EXITED and g.control().error == 0
    # features and predictions, in event order
    jf, jk, jp = g.journal()
    np.testing.assert_array_equal(jf, ref["fo"])
    np.testing.assert_array_equal(jk, ref["fk"])
    np.testing.assert_allclose(jp, ref["pred"], rtol=1e-9, atol=1e-9)  # CPU: fast-math sums
    # intents, decisions, orders: what the host bridge polls from the mapped rings
    intents, decisions = g.poll_intents()
    np.testing.assert_array_equal(intents, ref["intents"])
    np.testing.assert_array_equal(decisions, ref["decisions"])
    np.testing.assert_array_equal(g.poll_orders(), ref["orders"])
    assert len(intents) > 5 and decisions[:, IN.D_ACCEPT].sum() > 0
    # books: every level; counters; with one shard the very same arrays
    books_equal(g.book, state, state.sym.shape[0])
    assert g.book.counters() == state.counters()
    # shards > 1: each shard has its own free slots; the prefetch setting is a CPU one (0 on the GPU)
    free = [B.C_FREE_ORDERS, B.C_FREE_LEVELS, B.C_PREFETCH_LIVE]
    np.testing.assert_array_equal(np.delete(g.book.ctr, free), np.delete(state.ctr, free))
    np.testing.assert_array_equal(g.book.sym, state.sym)
    np.testing.assert_array_equal(g.book.fs, state.fs)
    np.testing.assert_array_equal(g.book.bk[:, B.B_NLEVELS], state.bk[:, B.B_NLEVELS])
    if shards == 1:
        for name, a, b in zip(state.arrays()._fields, g.book.arrays(), state.arrays()):
            if name == "ctr":
                a, b = np.delete(a, B.C_PREFETCH_LIVE), np.delete(b, B.C_PREFETCH_LIVE)
            np.testing.assert_array_equal(a, b)
    # risk and strategy state
    for a, b in zip((g.risk.state.g, g.risk.state.ps, g.risk.state.ls, g.risk.state.hs, g.risk.state.ro,
                     g.risk.state.rc, g.risk.state.st, g.risk.state.rt), (risk.state.g, risk.state.ps, risk.state.ls,
                                                                        risk.state.hs, risk.state.ro, risk.state.rc,
                                                                        risk.state.st, risk.state.rt)):
        np.testing.assert_array_equal(a, b)
    assert g.risk.summary() == risk.summary()
    np.testing.assert_array_equal(g.strategy.ss, strat.ss)
    np.testing.assert_array_equal(g.strategy.sg, strat.sg)
    # decode counters: the device's plus the host's framing counts are the CPU reader's
    np.testing.assert_array_equal(g.stats + framing.stats, stats)


def used_slots(column, width):
    """Per message type, which slots of ``aux``/``alpha`` it writes (kernels/itch_spec.py); the
    rest are unspecified (whatever the reused table held) and not compared."""
    from kernels.itch_spec import MESSAGES

    mask = np.zeros((256, width), bool)
    for t, (_, _, fields) in MESSAGES.items():
        for _, _, size, _, col, slot in fields:
            if col == column:
                mask[ord(t), slot:slot + (size if column == "alpha" else 1)] = True
    return mask


def events_equal(t, records):
    assert t.n == len(records)
    for name in COLUMN_NAMES:
        a, b = t[name], records[name]
        if name in ("aux", "alpha"):
            m = used_slots(name, a.shape[1])[records["kind"]]
            a, b = np.where(m, a, 0), np.where(m, b, 0)
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.cudasim
def test_batched_launches_match_the_cpu_event_tables_batch_by_batch(cfg, capture, reference):
    ref = reference[0]
    g = gpu_pipeline(cfg, shards=2, threads=2)
    g.warm()  # compiles: a launch with nothing published returns at once
    assert g.done == 0 and g.control().state == RG.STATE_EXITED
    for i, b in enumerate(device_batches(capture)):
        assert g.submit(b) == 1
        g.launch()  # one launch per batch here; a launch takes every batch published so far
        assert g.done == i + 1
        events_equal(g.last_events(), ref["events"][i])
    intents, decisions = g.poll_intents()
    np.testing.assert_array_equal(intents, ref["intents"])
    np.testing.assert_array_equal(decisions, ref["decisions"])
    np.testing.assert_array_equal(g.poll_orders(), ref["orders"])


@pytest.mark.cudasim
def test_a_kill_request_in_mapped_memory_rejects_every_intent_as_on_the_cpu(cfg, capture):
    ref, _, risk, _, _ = cpu_reference(cfg, capture, kill=R.KILL_MANUAL)
    g = gpu_pipeline(cfg, threads=2)
    g.kill(R.KILL_MANUAL)
    g.run_prefilled(device_batches(capture))
    g.fetch()
    intents, decisions = g.poll_intents()
    assert len(intents) > 0 and set(decisions[:, IN.D_REASON]) == {IN.R_KILL_SWITCH}
    np.testing.assert_array_equal(intents, ref["intents"])
    np.testing.assert_array_equal(decisions, ref["decisions"])
    assert g.risk.summary() == risk.summary() and g.risk.kill_reason == "manual"


@pytest.mark.cudasim
def test_a_full_shard_stops_with_the_config_key_to_raise(cfg, capture):
    from pipeline.book import BookCapacityError

    from pipeline.gpu import GpuPipeline

    # books only (no model): each of 2 shards gets half of book.max_orders = 80
    g = GpuPipeline(max_orders=80, max_levels=4096, max_symbols=16, symbols=["*"], full=False, batch=BATCH,
                    shards=2, threads=2, shard_capacity=0.5)
    with pytest.raises(BookCapacityError, match=r"book\.max_orders \(40 per shard, 2 shards\) exceeded at event seq \d+"):
        g.run_prefilled(device_batches(capture))
    assert g.control().error == RG.ERR_BOOK and g.control().state == RG.STATE_EXITED


def test_prefilling_more_than_the_rings_hold_names_the_size_to_raise(cfg, capture):
    from pipeline.gpu import GpuPipelineError

    g = gpu_pipeline(cfg, ring_batches=2)
    with pytest.raises(GpuPipelineError, match=r"ring batches is full with no kernel running: raise gpu\.ring_batches"):
        g.run_prefilled(device_batches(capture))


@pytest.mark.parametrize("case, expect", [
    ("import sys; sys.modules['numba.cuda'] = None",
     "the cuda backend needs numba-cuda: pip install -e '.[cuda]'"),
    ("import os; os.environ['NUMBA_ENABLE_CUDASIM'] = '0'",
     "no CUDA driver or GPU found; use backend=cpu, or set NUMBA_ENABLE_CUDASIM=1"),
])
def test_without_numba_cuda_or_a_gpu_the_error_says_what_to_do(case, expect):
    import os
    import subprocess
    import sys

    script = case + """
from numba import cuda
if cuda is not None and os.environ.get('NUMBA_ENABLE_CUDASIM') == '0' and cuda.is_available():
    print('HAS-GPU'); raise SystemExit(0)
from pipeline.gpu import GpuPipeline, GpuPipelineError
try:
    GpuPipeline(max_orders=16, max_levels=16, max_symbols=4, full=False)
except GpuPipelineError as exc:
    print('ERROR', exc)
""".replace("from numba import cuda\n", "import os\ntry:\n    from numba import cuda\nexcept ImportError:\n    cuda = None\n")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "HFTBOT_TEST_GPU")}
    res = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    if "HAS-GPU" in res.stdout:
        pytest.skip("a GPU is present: the no-GPU error cannot happen here")
    assert "ERROR the GPU-resident pipeline: backend.name=cuda: " in res.stdout, res.stdout + res.stderr
    assert expect in res.stdout, res.stdout


def exec_events_for(orders, batch):
    """Execution reports for risk's new orders, as a venue would send them: an ack for each, a
    partial fill for every second, a cancel for every third; a session drop and reconnect after
    the first batch (cancel-on-disconnect makes risk's own cancels)."""
    ev = []
    for k, o in enumerate(orders):
        if o[IN.I_KIND] != IN.KIND_NEW:
            continue
        ts = int(o[IN.I_TS]) + 1000
        row = np.zeros(IN.NE, np.int64)
        row[[IN.E_KIND, IN.E_ID, IN.E_LOCATE, IN.E_SIDE, IN.E_TS]] = (IN.EX_ACK, o[IN.I_ID], o[IN.I_LOCATE],
                                                                      o[IN.I_SIDE], ts)
        ev.append(row.copy())
        if k % 2 == 0:
            row[[IN.E_KIND, IN.E_QTY, IN.E_PRICE, IN.E_TS]] = (IN.EX_FILL, max(1, int(o[IN.I_QTY]) // 2),
                                                               o[IN.I_PRICE], ts + 1)
            ev.append(row.copy())
        if k % 3 == 0:
            row[[IN.E_KIND, IN.E_TS]] = (IN.EX_CANCELED, ts + 2)
            ev.append(row.copy())
    if batch == 0 and ev:
        ts = int(ev[-1][IN.E_TS]) + 1
        for kind in (IN.EX_DISCONNECT, IN.EX_CONNECT):
            row = np.zeros(IN.NE, np.int64)
            row[IN.E_KIND], row[IN.E_TS] = kind, ts
            ev.append(row)
    return np.array(ev, np.int64).reshape(-1, IN.NE)


@pytest.mark.cudasim
def test_execution_events_through_the_exec_ring_give_the_cpu_risk_state(cfg, capture):
    """Batch by batch, the CPU stages and the GPU pipeline (batched launches) each get the same
    execution reports for the orders they sent: through ``RiskStage.on_exec`` on the CPU,
    through the mapped exec ring (``GpuPipeline.on_exec``) on the device. Same orders back
    (hedges, cancels), same risk state."""
    from kernels import cpu
    from pipeline.book import BookStage, BookState
    from pipeline.model import ModelStage, load_model
    from pipeline.risk import RiskStage
    from pipeline.stages import DecodeStage
    from pipeline.strategy import StrategyStage

    batches = list(device_batches(capture))
    ft = cfg.features
    state = BookState(**BOOK)
    reader = CaptureReader(capture)
    decode = DecodeStage(cpu, BATCH, reader.stats)
    books = BookStage(cpu, state, BATCH, symbols=list(ft.symbols), tau_flow_ns=ft.tau_flow_ns,
                      tau_rv_ns=ft.tau_rv_ns, top_n=ft.top_n)
    risk = RiskStage.from_config(cpu, cfg, state)
    model = ModelStage(load_model(cfg.model.path), "numba", cpu, BATCH)
    strat = StrategyStage(cpu, cfg.strategy, rows=state.sym.shape[0], capacity=BATCH, positions=risk.state.ps)
    g = gpu_pipeline(cfg, threads=2, exec_rows=8)  # a small ring: events wrap around it
    applied = made = 0
    for i, b in enumerate(batches):
        ev = decode(b)
        fb = books(ev)
        risk.on_events(ev)
        ib = strat(model(fb))
        orders = np.zeros((0, IN.NI), np.int64)
        if ib.n:
            d = risk.check(ib.rows, ib.n)
            strat.on_decisions(ib, d.decisions)
            orders = d.orders
        g.submit(b)
        g.launch()
        np.testing.assert_array_equal(g.poll_orders(), orders)
        events = exec_events_for(orders, i)
        more_cpu = risk.on_exec(events)
        more_gpu = g.on_exec(events)
        np.testing.assert_array_equal(more_gpu, more_cpu)
        assert g.exec_pending == 0 and g.control().ex_tail == applied + len(events)
        applied += len(events)
        made += len(more_cpu)
    g.fetch()
    assert applied > 10 and made > 0  # fills, cancels, and risk's own orders (cancel-on-disconnect)
    rs, gs = risk.state, g.risk.state
    for name in ("g", "ps", "ls", "hs", "ro", "oh", "ofree", "rc", "st", "rt"):
        np.testing.assert_array_equal(getattr(gs, name), getattr(rs, name), err_msg=name)
    assert g.risk.summary() == risk.summary()
    assert risk.summary()["fills"] > 0


def test_run_with_backend_cuda_uses_the_gpu_pipeline_and_reports_as_the_cpu(tmp_path):
    """``pipeline.run`` with ``backend=cuda`` (the GPU-resident pipeline, batched launches; the
    simulator here) on a tiny capture: the same risk report and book summary as ``backend=cpu``."""
    from replay.generator import generate

    from pipeline import gpu as PG
    from pipeline.run import run

    path = tmp_path / "feed.itch"
    generate(path, fmt="itch", n_messages=2000, n_symbols=4, seed=11)
    reps = {}
    launches = []
    real = PG.GpuPipeline.launch

    def counting(self, sync=True):
        launches.append(self.control().head)
        return real(self, sync)

    register()
    for name in ("cpu", "cuda"):
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            c = compose(config_name="smoke", overrides=[f"backend={name}", "bridge.enabled=false",
                                                         f"feed.path={path}", "feed.chunk_bytes=1048576",
                                                         "book.max_orders=8192", "book.max_levels=4096",
                                                         "book.max_symbols=64", "risk.max_open_orders=1024"])
        PG.GpuPipeline.launch = counting
        try:
            reps[name] = run(c, None, log=lambda s: None)
        finally:
            PG.GpuPipeline.launch = real
    cpu, cuda = reps["cpu"], reps["cuda"]
    from pipeline.feed import open_reader

    batches = sum(1 for _ in open_reader(c.feed, path))
    assert len(launches) == batches  # one launch per batch, no per-stage calls
    assert cpu["risk"]["intents"] > 0
    assert cuda["risk"] == cpu["risk"]
    assert cuda["book"] == cpu["book"] and cpu["book"]["symbols"]
    assert cuda["feed"] == cpu["feed"]
    assert cuda["intents"]["total"] == cpu["intents"]["total"]
    assert cuda["intents"]["by_symbol"] == cpu["intents"]["by_symbol"]
