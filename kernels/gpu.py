"""CUDA backend: the same kernel bodies as `kernels/cpu.py`, compiled with ``numba.cuda``.

Importing this module needs ``numba-cuda`` (``pip install -e '.[cuda]'``); with
``NUMBA_ENABLE_CUDASIM=1`` it runs on the CPU under the CUDA simulator (how CI tests it).

The functions here keep the CPU backend's names and signatures and take host arrays: each call
stages its inputs on the device, launches, and copies results back. That is the per-batch
dual-target edge; the persistent, device-resident pipeline of the `cuda` backend builds on the
same device functions. Decode runs one thread per message; the framing walks are sequential by
nature (a file is a chain of lengths) and run as a single thread, for correctness checks.
The kernels themselves take their state as named bundles (``kernels/state.py``), unpacked at
the top; results are copied back by argument name.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import cuda
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "the cuda backend needs numba-cuda: pip install -e '.[cuda]' (or choose backend=cpu)"
    ) from exc

from kernels import framing as _framing
from kernels import itch as _itch
from kernels import stats as S
from kernels.state import BookArrays, BookEvents, BookRefs, Events, Frames, RiskTables

_decode_message = cuda.jit(device=True)(_itch.decode_message)
_index_pcap = cuda.jit(device=True)(_framing.index_pcap)
_index_pcapng = cuda.jit(device=True)(_framing.index_pcapng)
_index_binaryfile = cuda.jit(device=True)(_framing.index_binaryfile)
_split_mold = cuda.jit(device=True)(_framing.split_mold)
_decode_binaryfile = cuda.jit(device=True)(_itch.decode_binaryfile)

#: ``DecodeStage`` frames a BinaryFILE chunk and decodes one thread per message here: the
#: record walk (``decode_binaryfile``) runs as one thread, for correctness checks
WALK_BINARYFILE = False

THREADS = 128


@cuda.jit(device=True)
def _decode_one(i, j, frames, ev):
    """Decode message ``j`` of ``frames`` (a ``Frames`` bundle) into row ``i`` of ``ev`` (``Events``)."""
    buf, mo, ml, mseq, msess, mrx = frames
    kind, side, locate, tracking, sess, mpid, ts, rx, seq, ref, new_ref, shares, price, match, stock, aux, alpha = ev
    return _decode_message(buf, mo[j], ml[j], mseq[j], msess[j], mrx[j], i, kind, side, locate, tracking, sess, mpid,
                           ts, rx, seq, ref, new_ref, shares, price, match, stock, aux, alpha, True)


@cuda.jit
def _decode_kernel(frames, n, status, ev):
    i = cuda.grid(1)
    if i < n:
        status[i] = _decode_one(i, i, frames, ev)


@cuda.jit
def _index_pcap_kernel(buf, pos, end, little, ts_ns_per_unit, linktype, filt_ip, filt_port, n_filt,
                       pay_off, pay_len, pay_rx, stats, out):
    if cuda.grid(1) == 0:
        n, p, st = _index_pcap(buf, pos, end, little, ts_ns_per_unit, linktype, filt_ip, filt_port,
                               n_filt, pay_off, pay_len, pay_rx, stats)
        out[0] = n
        out[1] = p
        out[2] = st


@cuda.jit
def _index_pcapng_kernel(buf, pos, end, state, if_link, if_res_kind, if_res_val, filt_ip, filt_port,
                         n_filt, pay_off, pay_len, pay_rx, stats, out):
    if cuda.grid(1) == 0:
        n, p, st = _index_pcapng(buf, pos, end, state, if_link, if_res_kind, if_res_val, filt_ip,
                                 filt_port, n_filt, pay_off, pay_len, pay_rx, stats)
        out[0] = n
        out[1] = p
        out[2] = st


@cuda.jit
def _index_binaryfile_kernel(buf, pos, end, next_seq, msg_off, msg_len, msg_seq, msg_sess, msg_rx,
                             stats, out):
    if cuda.grid(1) == 0:
        n, p, st = _index_binaryfile(buf, pos, end, next_seq, msg_off, msg_len, msg_seq, msg_sess,
                                     msg_rx, stats)
        out[0] = n
        out[1] = p
        out[2] = st


@cuda.jit
def _decode_binaryfile_kernel(buf, pos, end, next_seq, max_msgs, ev, stats, out):
    if cuda.grid(1) == 0:
        rows, n, p, st = _decode_binaryfile(buf, pos, end, next_seq, max_msgs, ev, stats)
        out[0] = rows
        out[1] = n
        out[2] = p
        out[3] = st


@cuda.jit
def _split_mold_kernel(pay, first, n_pay, sessions, msgs, stats, out):
    if cuda.grid(1) == 0:
        m, nxt = _split_mold(pay, first, n_pay, sessions, msgs, stats)
        out[0] = m
        out[1] = nxt


def _stage(x):
    """A host array, or a bundle of them, staged on the device; scalars as they are."""
    if isinstance(x, np.ndarray):
        return cuda.to_device(x)
    if isinstance(x, tuple):
        return type(x)(*(_stage(v) for v in x))
    return x


def _copy_back(dev, host) -> None:
    """Every array of ``dev`` (a device array or a bundle of them) back into ``host``."""
    if isinstance(host, np.ndarray):
        dev.copy_to_host(host)
    elif isinstance(host, tuple):
        for d, h in zip(dev, host):
            _copy_back(d, h)


def _pick(cls, bundle):
    """The fields of bundle type ``cls`` read by name from ``bundle`` (which may have more)."""
    return cls(*(getattr(bundle, f) for f in cls._fields))


def _run_single(kernel, args: dict, changed: tuple[str, ...], width: int = 3) -> np.ndarray:
    """Launch a one-thread kernel on host arrays and bundles (``args``: name -> value, in the
    kernel's argument order, before its ``out``); copy back the arguments named in ``changed``.
    Returns ``out`` (int64 [width]: what the body returned)."""
    dev = {name: _stage(v) for name, v in args.items()}
    out = cuda.device_array(width, dtype=np.int64)
    kernel[1, 1](*dev.values(), out)
    for name in changed:
        _copy_back(dev[name], args[name])
    return out.copy_to_host()


_PAYLOADS = ("pay_off", "pay_len", "pay_rx", "stats")
_MESSAGES = ("msg_off", "msg_len", "msg_seq", "msg_sess", "msg_rx", "stats")


def index_pcap(buf, pos, end, little, ts_ns_per_unit, linktype, filt_ip, filt_port, n_filt,
               pay_off, pay_len, pay_rx, stats):
    args = dict(buf=buf, pos=pos, end=end, little=little, ts_ns_per_unit=ts_ns_per_unit, linktype=linktype,
                filt_ip=filt_ip, filt_port=filt_port, n_filt=n_filt, pay_off=pay_off, pay_len=pay_len, pay_rx=pay_rx,
                stats=stats)
    r = _run_single(_index_pcap_kernel, args, _PAYLOADS)
    return int(r[0]), int(r[1]), int(r[2])


def index_pcapng(buf, pos, end, state, if_link, if_res_kind, if_res_val, filt_ip, filt_port, n_filt,
                 pay_off, pay_len, pay_rx, stats):
    args = dict(buf=buf, pos=pos, end=end, state=state, if_link=if_link, if_res_kind=if_res_kind,
                if_res_val=if_res_val, filt_ip=filt_ip, filt_port=filt_port, n_filt=n_filt, pay_off=pay_off,
                pay_len=pay_len, pay_rx=pay_rx, stats=stats)
    r = _run_single(_index_pcapng_kernel, args, ("state", "if_link", "if_res_kind", "if_res_val") + _PAYLOADS)
    return int(r[0]), int(r[1]), int(r[2])


def index_binaryfile(buf, pos, end, next_seq, msg_off, msg_len, msg_seq, msg_sess, msg_rx, stats):
    args = dict(buf=buf, pos=pos, end=end, next_seq=next_seq, msg_off=msg_off, msg_len=msg_len, msg_seq=msg_seq,
                msg_sess=msg_sess, msg_rx=msg_rx, stats=stats)
    r = _run_single(_index_binaryfile_kernel, args, _MESSAGES)
    return int(r[0]), int(r[1]), int(r[2])


def decode_binaryfile(buf, pos, end, next_seq, max_msgs, ev, stats):
    """The record walk of the CPU ``decode_binaryfile`` as one device thread (the whole event
    table staged and copied back): ``(rows, records, new_pos, status)``."""
    args = dict(buf=buf, pos=pos, end=end, next_seq=next_seq, max_msgs=max_msgs, ev=ev, stats=stats)
    r = _run_single(_decode_binaryfile_kernel, args, ("ev", "stats"), width=4)
    return int(r[0]), int(r[1]), int(r[2]), int(r[3])


def split_mold(pay, first, n_pay, sessions, msgs, stats):
    # msgs.buf is pay.buf, which the kernel does not read through msgs: a one-byte stand-in is
    # staged (and copied back) instead of the bytes a second time
    args = dict(pay=pay, first=first, n_pay=n_pay, sessions=sessions,
                msgs=msgs._replace(buf=np.zeros(1, pay.buf.dtype)), stats=stats)
    r = _run_single(_split_mold_kernel, args, ("sessions", "msgs", "stats"))
    return int(r[0]), int(r[1])


def decode_batch(frames, n, start_row, ev, stats):
    """Decode on the device, one thread per message; same contract as the CPU ``decode_batch``
    (rows compacted from ``start_row``, outcomes counted in ``stats``)."""
    if n == 0:
        return start_row
    d_frames = Frames(cuda.to_device(frames.buf), *(cuda.to_device(a[:n]) for a in (frames.off, frames.length,
                                                                                   frames.seq, frames.sess, frames.rx)))
    d_cols = Events(*(cuda.to_device(np.zeros((n,) + c.shape[1:], dtype=c.dtype)) for c in ev))
    d_status = cuda.device_array(n, dtype=np.int64)
    blocks = (n + THREADS - 1) // THREADS
    _decode_kernel[blocks, THREADS](d_frames, n, d_status, d_cols)
    status = d_status.copy_to_host()
    ok = status == _itch.OK
    row = start_row
    m = int(ok.sum())
    for c, d in zip(ev, d_cols):
        c[row:row + m] = d.copy_to_host()[ok]
    kinds = ev.kind[row:row + m]
    stats[S.TYPE_BASE:S.TYPE_BASE + 256] += np.bincount(kinds, minlength=256)
    bad = status[~ok]
    if bad.size:
        np.add.at(stats, bad, 1)
    stats[S.MESSAGES_IN] += n
    stats[S.DECODED] += m
    return row + m


# --- books ----------------------------------------------------------------------------------
from kernels import book as _book  # noqa: E402

_apply_events = cuda.jit(device=True)(_book.apply_events)
_top_levels = cuda.jit(device=True)(_book.top_levels)
_shard_rows = cuda.jit(device=True)(_book.shard_rows)


@cuda.jit
def _apply_events_kernel(n, ev, book, feat, fo, fk, out):
    # Book updates are a chain: one thread applies the batch in order. The device-resident
    # pipeline partitions symbols across threads; this edge is the reference for it.
    if cuda.grid(1) == 0:
        i, nf = _apply_events(n, ev, book, feat, fo, fk)
        out[0] = i
        out[1] = nf


@cuda.jit
def _shard_rows_kernel(n, locate, p, owner, rows, out):
    if cuda.grid(1) == 0:
        out[0] = _shard_rows(n, locate, p, owner, rows)


@cuda.jit
def _top_levels_kernel(book, depth, bk, li, lj, res, out):
    if cuda.grid(1) == 0:
        out[0] = _top_levels(book, depth, bk, li, lj, res)


def apply_events(n, ev, book, feat, fo, fk):
    args = dict(n=n, ev=ev, book=book, feat=feat, fo=fo, fk=fk)
    r = _run_single(_apply_events_kernel, args, ("book", "fo", "fk"))
    return int(r[0]), int(r[1])


def shard_rows(n, locate, p, owner, rows):
    """The CPU thread-sharding helper's body on one device thread (tested under the simulator
    with the CPU's; the device pipeline shards inside its kernel, ``_books_shard``)."""
    r = _run_single(_shard_rows_kernel, dict(n=n, locate=locate, p=p, owner=owner, rows=rows), ("rows",))
    return int(r[0])


def top_levels(book, depth, bk, li, lj, out):
    r = _run_single(_top_levels_kernel, dict(book=book, depth=depth, bk=bk, li=li, lj=lj, res=out), ("res",))
    return int(r[0])


# --- model inference (kernels/model.py): one thread per feature row -----------------------------
from numba import float64 as _f64  # noqa: E402

from kernels import model as _model  # noqa: E402

_predict_row = cuda.jit(device=True)(_model.predict_row)
_input_value = cuda.jit(device=True)(_model.input_value)
_MAX_WIDTH = _model.MAX_WIDTH  # a module-level int: a compile-time constant for cuda.local.array


@cuda.jit
def _predict_kernel(f, n, model, out):
    r = cuda.grid(1)
    if r < n:
        in_col, in_rel, in_scale, in_shift, n_layers, dims, w, w_off, b, b_off, act = model
        h = cuda.local.array((2, _MAX_WIDTH), _f64)
        out[r] = _predict_row(f, r, in_col, in_rel, in_scale, in_shift, n_layers, dims, w, w_off, b, b_off, act, h)


@cuda.jit
def _prepare_inputs_kernel(f, n, in_col, in_rel, x):
    r = cuda.grid(1)
    if r < n:
        for i in range(in_col.shape[0]):
            x[r, i] = _input_value(f, r, in_col[i], in_rel[i])


def predict_batch(f, n, model, scratch, out):
    """Same contract as the CPU ``predict_batch`` (``scratch`` is unused: each thread has its
    own); host arrays in and out, staged per call (the per-batch edge)."""
    if n == 0:
        return 0
    d_model = _stage(model)
    d_f = cuda.to_device(f[:n])
    d_out = cuda.device_array(n, dtype=np.float64)
    blocks = (n + THREADS - 1) // THREADS
    _predict_kernel[blocks, THREADS](d_f, n, d_model, d_out)
    d_out.copy_to_host(out[:n])
    return n


def prepare_inputs(f, n, in_col, in_rel, x):
    if n == 0:
        return 0
    d_f = cuda.to_device(f[:n])
    d_x = cuda.device_array((n, x.shape[1]), dtype=x.dtype)
    blocks = (n + THREADS - 1) // THREADS
    _prepare_inputs_kernel[blocks, THREADS](d_f, n, cuda.to_device(in_col), cuda.to_device(in_rel), d_x)
    d_x.copy_to_host(x[:n])
    return n


# --- risk (kernels/risk.py): the checks are a chain over shared state, one thread per call -------
from kernels import risk as _risk  # noqa: E402

_check_intents = cuda.jit(device=True)(_risk.check_intents)
_apply_exec = cuda.jit(device=True)(_risk.apply_exec)
_feed_health = cuda.jit(device=True)(_risk.feed_health)
_mark_to_market = cuda.jit(device=True)(_risk.mark_to_market)
_kill_switch = cuda.jit(device=True)(_risk.kill_switch)


@cuda.jit
def _check_intents_kernel(n, intents, res, out_rows, risk, book, out):
    if cuda.grid(1) == 0:
        out[0] = _check_intents(n, intents, res, out_rows, risk, book)


@cuda.jit
def _apply_exec_kernel(n, ev, out_rows, risk, book, out):
    if cuda.grid(1) == 0:
        out[0] = _apply_exec(n, ev, out_rows, risk, book)


@cuda.jit
def _feed_health_kernel(n, sess, seq, locate, ts, g, lim, ls, ps, hs, ovk, ovl, sym, out):
    if cuda.grid(1) == 0:
        out[0] = _feed_health(n, sess, seq, locate, ts, g, lim, ls, ps, hs, ovk, ovl, sym)


@cuda.jit
def _mark_to_market_kernel(now, out_rows, g, lim, ps, ro, bk, li, sym, out):
    if cuda.grid(1) == 0:
        out[0] = _mark_to_market(now, out_rows, g, lim, ps, ro, bk, li, sym)


@cuda.jit
def _kill_switch_kernel(reason, now, out_rows, g, ro, out):
    if cuda.grid(1) == 0:
        out[0] = _kill_switch(reason, now, out_rows, g, ro)


# ``risk`` (RiskArrays) and ``book`` (BookArrays) are staged as the smaller RiskTables and BookRefs:
# only what the kernel reads goes to the device. What a call changes is copied back: decisions,
# orders out, risk's state (the limits come back unchanged).
def check_intents(n, intents, res, out_rows, risk, book):
    args = dict(n=n, intents=intents, res=res, out_rows=out_rows, risk=_pick(RiskTables, risk),
                book=_pick(BookRefs, book))
    r = _run_single(_check_intents_kernel, args, ("res", "out_rows", "risk"))
    return int(r[0])


def apply_exec(n, ev, out_rows, risk, book):
    args = dict(n=n, ev=ev, out_rows=out_rows, risk=_pick(RiskTables, risk), book=_pick(BookRefs, book))
    r = _run_single(_apply_exec_kernel, args, ("out_rows", "risk"))
    return int(r[0])


def feed_health(n, sess, seq, locate, ts, g, lim, ls, ps, hs, ovk, ovl, sym):
    if n == 0:
        return 0
    args = dict(n=n, sess=sess, seq=seq, locate=locate, ts=ts, g=g, lim=lim, ls=ls, ps=ps, hs=hs, ovk=ovk, ovl=ovl,
                sym=sym)
    r = _run_single(_feed_health_kernel, args, ("g", "ls", "ps", "hs"))
    return int(r[0])


def mark_to_market(now, out_rows, g, lim, ps, ro, bk, li, sym):
    args = dict(now=now, out_rows=out_rows, g=g, lim=lim, ps=ps, ro=ro, bk=bk, li=li, sym=sym)
    r = _run_single(_mark_to_market_kernel, args, ("out_rows", "g", "ps", "ro"))
    return int(r[0])


def kill_switch(reason, now, out_rows, g, ro):
    r = _run_single(_kill_switch_kernel, dict(reason=reason, now=now, out_rows=out_rows, g=g, ro=ro),
                    ("out_rows", "g", "ro"))
    return int(r[0])


# --- strategy (kernels/strategy.py): one thread, a chain over per-symbol state -------------------
from kernels import strategy as _strategy  # noqa: E402

_strategy_batch = cuda.jit(device=True)(_strategy.strategy_batch)
_strategy_ack = cuda.jit(device=True)(_strategy.strategy_ack)


@cuda.jit
def _strategy_batch_kernel(n, pred, f, fk, ps, ss, sg, pf, pi, intents, out):
    if cuda.grid(1) == 0:
        out[0] = _strategy_batch(n, pred, f, fk, ps, ss, sg, pf, pi, intents)


@cuda.jit
def _strategy_ack_kernel(n, intents, decisions, ss, sg, out):
    if cuda.grid(1) == 0:
        out[0] = _strategy_ack(n, intents, decisions, ss, sg)


def strategy_batch(n, pred, f, fk, ps, ss, sg, pf, pi, intents):
    if n == 0:
        return 0
    args = dict(n=n, pred=pred, f=f, fk=fk, ps=ps, ss=ss, sg=sg, pf=pf, pi=pi, intents=intents)
    r = _run_single(_strategy_batch_kernel, args, ("ss", "sg", "intents"))
    return int(r[0])


def strategy_ack(n, intents, decisions, ss, sg):
    if n == 0:
        return 0
    r = _run_single(_strategy_ack_kernel, dict(n=n, intents=intents, decisions=decisions, ss=ss, sg=sg), ("ss", "sg"))
    return int(r[0])


# --- the device-resident pipeline (pipeline/gpu.py drives it) -------------------------------------
# One kernel runs decode -> books -> features -> model -> strategy -> risk for every batch that the
# host publishes in the mapped frame ring (kernels/ring.py), and publishes order rows and
# intents with their decisions to mapped output rings. ``wait=1`` makes it persistent: thread 0
# polls the control block until the host sets the stop flag (no launch per tick); ``wait=0``
# processes the batches already published and returns (the batched-launch mode). One block:
# every phase ends at a block barrier, so phases need no grid-wide synchronisation.
#
# Parallel phases: decode (one thread per message), the books (one thread per book shard: a
# shard owns the symbols with ``locate % shards == p`` and its own slices of the order and level
# tables, hashes and free stacks, so shards never share a slot), feature-row compaction and the
# model (one thread per feature row). Chains over shared state (feed status, strategy, risk)
# run on thread 0, in batch order, exactly as on the CPU: the trading half is the step's own
# ``decide`` body (``kernels/step.py``), the one the CPU drivers compile.
from numba import int64 as _i64  # noqa: E402

from kernels import book as _B  # noqa: E402
from kernels import features as _FT  # noqa: E402
from kernels import intents as _IN  # noqa: E402
from kernels import ring as _R  # noqa: E402
from kernels import step as _step  # noqa: E402

_N_FEATURES = _FT.N_FEATURES
_N_KEYS = _FT.N_KEYS
_NI = _IN.NI
_N_CTR = _B.N_CTR


@cuda.jit(device=True)
def _wait_space(ctl, head_slot, tail_slot, cap, need):
    """Thread 0: wait until an output ring has ``need`` free slots. False when it cannot happen
    (the stop flag is set, or the ring is smaller than ``need``): the caller flags the error."""
    if need > cap:
        return False
    while True:
        cuda.threadfence_system()
        if _R.ring_free(ctl[head_slot], ctl[tail_slot], cap) >= need:
            return True
        if ctl[_R.CTL_STOP] != 0:
            return False


@cuda.jit(device=True)
def _fail(ctl, code, batch):
    ctl[_R.CTL_ERROR_AT] = batch
    cuda.threadfence_system()
    ctl[_R.CTL_ERROR] = code


@cuda.jit(device=True)
def _emit_ring(rings, out, no):
    """Risk's ``no`` order rows in ``out`` to the mapped orders ring, waiting for space. 0, or
    ``ERR_RING_FULL``. The GPU driver's order sink (``kernels/step.py``), and where the orders
    risk makes from execution reports go (``_exec_pending``)."""
    ctl = rings.ctl
    oring = rings.oring
    if not _wait_space(ctl, _R.CTL_ORD_HEAD, _R.CTL_ORD_TAIL, oring.shape[0], no):
        return _R.ERR_RING_FULL
    head = _R.push_rows(oring, ctl[_R.CTL_ORD_HEAD], out, 0, no)
    cuda.threadfence_system()
    ctl[_R.CTL_ORD_HEAD] = head
    return 0


@cuda.jit(device=True)
def _exec_pending(rings, risk, out, book, risk_rows):
    """Thread 0: apply the execution events the host published to the exec ring since the last
    call, in order, with risk's ``apply_exec`` (chunks of at most ``risk_rows`` events, as
    ``RiskStage.on_exec``; a chunk never wraps the ring), publishing risk's own orders (hedges,
    cancels) to the orders ring. Returns 0 or an ``ERR_*`` code."""
    ctl = rings.ctl
    ering = rings.ering
    g = risk.g
    cuda.threadfence_system()
    head = ctl[_R.CTL_EX_HEAD]
    tail = ctl[_R.CTL_EX_TAIL]
    ecap = ering.shape[0]
    while tail < head:
        s = tail % ecap
        m = min(risk_rows, head - tail, ecap - s)
        g[_risk.G_OUT_N] = 0
        _apply_exec(m, ering[s:], out, risk, book)
        if g[_risk.G_ERROR] != 0:
            return _R.ERR_RISK_OUT
        e = _emit_ring(rings, out, g[_risk.G_OUT_N])
        if e != 0:
            return e
        tail += m
        ctl[_R.CTL_EX_TAIL] = tail
    return 0


@cuda.jit(device=True)
def _books_shard(p, n, ev, evi, book, feat, shards):
    """Shard ``p`` applies its symbols' events of the batch in order, one ``apply_events`` call
    per event, writing event ``i``'s feature row (if any) to row ``i`` of ``shards.fo_s`` /
    ``shards.fk_s``."""
    kind, side, locate, tracking, sess, mpid, ts, rx, seq, ref, new_ref, shares, price, match, stock, aux, alpha = ev
    ref_i, new_ref_i, stock_i = evi
    oi, oj, ofree, ok, ov, li, lj, lfree, lk, lv, bk, sym, fs, ctr = book
    status, frow, fo_s, fk_s, sctr, shard_dims = shards
    nsh = shard_dims[0]
    so = shard_dims[1]
    ho = shard_dims[2]
    sl = shard_dims[3]
    hl = shard_dims[4]
    pc = sctr[p]
    if pc[_B.C_ERROR] != 0:
        return
    # the shard's slices of the order and level tables, hashes and free stacks, and its counters
    pbook = BookArrays(oi, oj, ofree[p * so:(p + 1) * so], ok[p * ho:(p + 1) * ho], ov[p * ho:(p + 1) * ho], li, lj,
                       lfree[p * sl:(p + 1) * sl], lk[p * hl:(p + 1) * hl], lv[p * hl:(p + 1) * hl], bk, sym, fs, pc)
    for i in range(n):
        if status[i] == _itch.OK and _R.shard_of(_i64(locate[i]), nsh) == p:
            one = BookEvents(kind[i:], side[i:], locate[i:], ts[i:], seq[i:], ref_i[i:], new_ref_i[i:], shares[i:],
                             price[i:], stock_i[i:], aux[i:], alpha[i:])
            done, nf = _apply_events(1, one, pbook, feat, fo_s[i:], fk_s[i:])
            frow[i] = nf
            if pc[_B.C_ERROR] != 0:
                pc[_B.C_ERROR_EVENT] = i
                return


@cuda.jit(device=True)
def _books_reduce(n, shards, ctr):
    """Thread 0: the shards' counters summed into ``ctr`` (the largest book's level count: the
    maximum); feature rows numbered in event order (``frow[i]`` = row + 1, 0 for none).
    Returns ``(feature rows, book error code, event of the error)``."""
    frow = shards.frow
    sctr = shards.sctr
    nsh = shards.dims[0]
    err = 0
    at = n
    for c in range(_N_CTR):
        acc = 0
        for p in range(nsh):
            v = sctr[p, c]
            if c == _B.C_MAX_LEVELS_SEEN:
                if v > acc:
                    acc = v
            else:
                acc += v
        ctr[c] = acc
    for p in range(nsh):
        e = sctr[p, _B.C_ERROR]
        if e != 0 and sctr[p, _B.C_ERROR_EVENT] < at:
            err = e
            at = sctr[p, _B.C_ERROR_EVENT]
    ctr[_B.C_ERROR] = err
    ctr[_B.C_ERROR_EVENT] = at if err != 0 else 0
    nf = 0
    for i in range(n):
        if frow[i] != 0:
            nf += 1
            frow[i] = nf
    return nf, err, at


@cuda.jit(device=True)
def _compact_row(i, shards, work):
    """Event ``i``'s feature row (if any) from the shards' per-event rows to its place in event
    order in ``work.fo`` / ``work.fk``."""
    r = shards.frow[i]
    if r != 0:
        fo_s = shards.fo_s
        fk_s = shards.fk_s
        fo = work.fo
        fk = work.fk
        for c in range(_N_FEATURES):
            fo[r - 1, c] = fo_s[i, c]
        for c in range(_N_KEYS):
            fk[r - 1, c] = fk_s[i, c]


@cuda.jit(device=True)
def _predict_one(r, work, model, h):
    in_col, in_rel, in_scale, in_shift, n_layers, dims, w, w_off, b, b_off, act = model
    work.pred[r] = _predict_row(work.fo, r, in_col, in_rel, in_scale, in_shift, n_layers, dims, w, w_off, b, b_off,
                                act, h)


#: the trading half of the step (``kernels/step.py: decide``), bound to the device stage
#: functions and the orders-ring sink: the same body as the CPU drivers'
_decide = cuda.jit(device=True)(_step.bind(_step.decide, "decide_gpu", strategy_batch=_strategy_batch,
                                           check_intents=_check_intents, strategy_ack=_strategy_ack,
                                           emit=_emit_ring))


@cuda.jit(device=True)
def _risk_and_publish(n, nf, status, ev, rings, work, strat, risk, book, risk_rows, journal):
    """Thread 0, after the model: feed status, the kill request, the journal, then the step's
    ``decide`` (strategy -> risk in chunks of ``risk_rows``, each chunk's orders to the orders
    ring -> strategy acknowledgement), then the intents ring. Returns 0 or an ``ERR_*`` code.

    Feed status reads the uncompacted event table (row i = message i), so it skips the rows
    that did not decode; the model ran in the parallel phase."""
    sess = ev.sess
    seq = ev.seq
    locate = ev.locate
    ts = ev.ts
    ctl = rings.ctl
    iring = rings.iring
    fo, fk, pred, intents, res, out = work
    g, lim, ls, ps, hs, ro, oh, rofree, st, rt, rc, ovk, ovl = risk
    sym = book.sym
    jf, jk, jp = journal
    for i in range(n):
        if status[i] == _itch.OK:
            _feed_health(1, sess[i:], seq[i:], locate[i:], ts[i:], g, lim, ls, ps, hs, ovk, ovl, sym)
    if ctl[_R.CTL_KILL] != 0 and g[_risk.G_KILL] == 0:
        g[_risk.G_KILL] = ctl[_R.CTL_KILL]
    jcap = jp.shape[0]
    if jcap > 0:
        j0 = ctl[_R.CTL_JOURNAL]
        if j0 + nf > jcap:
            return _R.ERR_JOURNAL_FULL
        for r in range(nf):
            for c in range(_N_FEATURES):
                jf[j0 + r, c] = fo[r, c]
            for c in range(_N_KEYS):
                jk[j0 + r, c] = fk[r, c]
            jp[j0 + r] = pred[r]
        ctl[_R.CTL_JOURNAL] = j0 + nf
    k, no, code = _decide(nf, work, strat, risk, book, risk_rows, rings)
    if code == _step.STEP_RISK_FULL:
        return _R.ERR_RISK_OUT
    if code != 0:
        return code
    icap = iring.shape[0]
    if not _wait_space(ctl, _R.CTL_INT_HEAD, _R.CTL_INT_TAIL, icap, k):
        return _R.ERR_RING_FULL
    head = ctl[_R.CTL_INT_HEAD]
    for j in range(k):
        head = _R.push_pair(iring, head, intents, res, j, _NI)
    cuda.threadfence_system()
    ctl[_R.CTL_INT_HEAD] = head
    return 0


@cuda.jit
def pipeline_kernel(wait, flags, frames, rings, ev, evi, stats, book, feat, shards, model, strat, risk, work,
                    journal):
    """The whole pipeline on device-resident state, one block. Bundles (``kernels/state.py``;
    ``pipeline/gpu.py`` builds them): ``flags`` PipelineFlags, ``frames`` Frames (the mapped
    byte and descriptor rings), ``rings`` Rings (control block, batch ring, output and exec
    rings), ``ev`` Events (the batch's event table, row i = message i), ``evi`` EventViews,
    ``stats`` the decode counters, ``book`` BookArrays (in shard slices), ``feat`` FeatureConf,
    ``shards`` Shards, ``model`` ModelArrays, ``strat`` StrategyArrays, ``risk`` RiskArrays,
    ``work`` Work (compacted feature rows, predictions, intents, decisions, orders out),
    ``journal`` Journal.

    ``wait``: 1 persistent (poll the control block until stopped), 0 process the published
    batches and return. ``flags.full``: 0 stops after the books and features (the decode + book
    throughput mode), 1 runs model, strategy and risk too. With ``full``, thread 0 applies the
    execution events pending in the exec ring (``_exec_pending``) before it takes each batch and
    on every poll, so they reach risk in order, between batches, as on the CPU."""
    full, risk_rows = flags
    ctl = rings.ctl
    bq = rings.bq
    mcap = frames.off.shape[0]
    status = shards.status
    frow = shards.frow
    kind = ev.kind
    out = work.out
    ctr = book.ctr
    tid = cuda.threadIdx.x
    nthr = cuda.blockDim.x
    sh = cuda.shared.array(4, _i64)
    h = cuda.local.array((2, _MAX_WIDTH), _f64)
    polls = 0
    if tid == 0:
        ctl[_R.CTL_STATE] = _R.STATE_RUNNING
    while True:
        # --- thread 0 takes the next published batch (or learns to stop) -----------------------
        if tid == 0:
            t = ctl[_R.CTL_TAIL]
            go = 0
            while True:
                cuda.threadfence_system()
                if ctl[_R.CTL_ERROR] != 0:
                    break
                if full != 0:
                    ee = _exec_pending(rings, risk, out, book, risk_rows)
                    if ee != 0:
                        _fail(ctl, ee, t)
                        break
                if ctl[_R.CTL_HEAD] > t:
                    go = 1
                    break
                if wait == 0 or ctl[_R.CTL_STOP] != 0:
                    break
                polls += 1
            sh[0] = go
            sh[3] = 0
            if go != 0:
                slot = t % bq.shape[0]
                sh[1] = bq[slot, 0]
                sh[2] = bq[slot, 1]
        cuda.syncthreads()
        if sh[0] == 0:
            break
        m0 = sh[1]
        n = sh[2]
        # --- decode: one thread per message, into row i of the batch's event table -------------
        for i in range(tid, n, nthr):
            r = _decode_one(i, (m0 + i) % mcap, frames, ev)
            status[i] = r
            frow[i] = 0
            if r == _itch.OK:
                cuda.atomic.add(stats, S.TYPE_BASE + _i64(kind[i]), 1)
                cuda.atomic.add(stats, S.DECODED, 1)
            else:
                cuda.atomic.add(stats, r, 1)
        if tid == 0:
            cuda.atomic.add(stats, S.MESSAGES_IN, n)
        cuda.syncthreads()
        # --- books: one thread per shard ------------------------------------------------------
        if tid < shards.dims[0]:
            _books_shard(tid, n, ev, evi, book, feat, shards)
        cuda.syncthreads()
        if tid == 0:
            nf, err, at = _books_reduce(n, shards, ctr)
            sh[1] = nf
            if err != 0:
                ctl[_R.CTL_BOOK_ERROR] = err
                ctl[_R.CTL_BOOK_EVENT] = at
                _fail(ctl, _R.ERR_BOOK, ctl[_R.CTL_TAIL])
                sh[3] = 1
        cuda.syncthreads()
        if sh[3] != 0:
            break
        nf = sh[1]
        # --- feature rows in event order, then the model: one thread per row --------------------
        for i in range(tid, n, nthr):
            _compact_row(i, shards, work)
        cuda.syncthreads()
        if full != 0:
            for r in range(tid, nf, nthr):
                _predict_one(r, work, model, h)
            cuda.syncthreads()
        # --- chains on thread 0: feed status, strategy, risk; publish ---------------------------
        if tid == 0:
            t = ctl[_R.CTL_TAIL]
            e = 0
            if full != 0:
                e = _risk_and_publish(n, nf, status, ev, rings, work, strat, risk, book, risk_rows, journal)
            if e != 0:
                _fail(ctl, e, t)
                sh[3] = 1
            else:
                cuda.threadfence_system()
                ctl[_R.CTL_TAIL] = t + 1  # the done counter: the batch's outputs are published
        cuda.syncthreads()
        if sh[3] != 0:
            break
    if tid == 0:
        ctl[_R.CTL_POLLS] += polls
        cuda.threadfence_system()
        ctl[_R.CTL_STATE] = _R.STATE_EXITED
