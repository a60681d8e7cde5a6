"""CUDA backend: the same kernel bodies as `kernels/cpu.py`, compiled with ``numba.cuda``.

Importing this module needs ``numba-cuda`` (``pip install -e '.[cuda]'``); with
``NUMBA_ENABLE_CUDASIM=1`` it runs on the CPU under the CUDA simulator (how CI tests it).

The functions here keep the CPU backend's names and signatures and take host arrays: each call
stages its inputs on the device, launches, and copies results back. That is the per-batch
dual-target edge; the persistent, device-resident pipeline of the `cuda` backend builds on the
same device functions. Decode runs one thread per message; the framing walks are sequential by
nature (a file is a chain of lengths) and run as a single thread, for correctness checks.
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

_decode_message = cuda.jit(device=True)(_itch.decode_message)
_index_pcap = cuda.jit(device=True)(_framing.index_pcap)
_index_pcapng = cuda.jit(device=True)(_framing.index_pcapng)
_index_binaryfile = cuda.jit(device=True)(_framing.index_binaryfile)
_split_mold = cuda.jit(device=True)(_framing.split_mold)

THREADS = 128


@cuda.jit
def _decode_kernel(buf, msg_off, msg_len, msg_seq, msg_sess, msg_rx, n, status,
                   kind, side, locate, tracking, sess, mpid, ts, rx, seq, ref, new_ref, shares,
                   price, match, stock, aux, alpha):
    i = cuda.grid(1)
    if i < n:
        status[i] = _decode_message(buf, msg_off[i], msg_len[i], msg_seq[i], msg_sess[i], msg_rx[i],
                                    i, kind, side, locate, tracking, sess, mpid, ts, rx, seq, ref,
                                    new_ref, shares, price, match, stock, aux, alpha)


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
def _split_mold_kernel(buf, pay_off, pay_len, pay_rx, first, n_pay, sess_id, sess_next, n_sess,
                       msg_off, msg_len, msg_seq, msg_sess, msg_rx, stats, out):
    if cuda.grid(1) == 0:
        m, nxt = _split_mold(buf, pay_off, pay_len, pay_rx, first, n_pay, sess_id, sess_next, n_sess,
                             msg_off, msg_len, msg_seq, msg_sess, msg_rx, stats)
        out[0] = m
        out[1] = nxt


def _run_single(kernel, args: tuple, outputs: tuple[int, ...]) -> np.ndarray:
    """Launch a one-thread kernel on host arrays; copy back the arrays at ``outputs``."""
    dev = [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in args]
    out = cuda.device_array(3, dtype=np.int64)
    kernel[1, 1](*dev, out)
    for k in outputs:
        dev[k].copy_to_host(args[k])
    return out.copy_to_host()


def index_pcap(buf, pos, end, little, ts_ns_per_unit, linktype, filt_ip, filt_port, n_filt,
               pay_off, pay_len, pay_rx, stats):
    args = (buf, pos, end, little, ts_ns_per_unit, linktype, filt_ip, filt_port, n_filt,
            pay_off, pay_len, pay_rx, stats)
    r = _run_single(_index_pcap_kernel, args, (9, 10, 11, 12))
    return int(r[0]), int(r[1]), int(r[2])


def index_pcapng(buf, pos, end, state, if_link, if_res_kind, if_res_val, filt_ip, filt_port, n_filt,
                 pay_off, pay_len, pay_rx, stats):
    args = (buf, pos, end, state, if_link, if_res_kind, if_res_val, filt_ip, filt_port, n_filt,
            pay_off, pay_len, pay_rx, stats)
    r = _run_single(_index_pcapng_kernel, args, (3, 4, 5, 6, 10, 11, 12, 13))
    return int(r[0]), int(r[1]), int(r[2])


def index_binaryfile(buf, pos, end, next_seq, msg_off, msg_len, msg_seq, msg_sess, msg_rx, stats):
    args = (buf, pos, end, next_seq, msg_off, msg_len, msg_seq, msg_sess, msg_rx, stats)
    r = _run_single(_index_binaryfile_kernel, args, (4, 5, 6, 7, 8, 9))
    return int(r[0]), int(r[1]), int(r[2])


def split_mold(buf, pay_off, pay_len, pay_rx, first, n_pay, sess_id, sess_next, n_sess,
               msg_off, msg_len, msg_seq, msg_sess, msg_rx, stats):
    args = (buf, pay_off, pay_len, pay_rx, first, n_pay, sess_id, sess_next, n_sess,
            msg_off, msg_len, msg_seq, msg_sess, msg_rx, stats)
    r = _run_single(_split_mold_kernel, args, (6, 7, 8, 9, 10, 11, 12, 13, 14))
    return int(r[0]), int(r[1])


def decode_batch(buf, msg_off, msg_len, msg_seq, msg_sess, msg_rx, n, start_row,
                 kind, side, locate, tracking, sess, mpid, ts, rx, seq, ref, new_ref, shares,
                 price, match, stock, aux, alpha, stats):
    """Decode on the device, one thread per message; same contract as the CPU ``decode_batch``
    (rows compacted from ``start_row``, outcomes counted in ``stats``)."""
    if n == 0:
        return start_row
    cols = (kind, side, locate, tracking, sess, mpid, ts, rx, seq, ref, new_ref, shares, price,
            match, stock, aux, alpha)
    d_in = [cuda.to_device(a[:n]) for a in (msg_off, msg_len, msg_seq, msg_sess, msg_rx)]
    d_buf = cuda.to_device(buf)
    d_cols = [cuda.to_device(np.zeros((n,) + c.shape[1:], dtype=c.dtype)) for c in cols]
    d_status = cuda.device_array(n, dtype=np.int64)
    blocks = (n + THREADS - 1) // THREADS
    _decode_kernel[blocks, THREADS](d_buf, *d_in, n, d_status, *d_cols)
    status = d_status.copy_to_host()
    ok = status == _itch.OK
    row = start_row
    m = int(ok.sum())
    for c, d in zip(cols, d_cols):
        c[row:row + m] = d.copy_to_host()[ok]
    kinds = kind[row:row + m]
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


@cuda.jit
def _apply_events_kernel(n, kind, side, locate, ts, seq, ref, new_ref, shares, price, stock, aux, alpha,
                         oi, oj, ofree, ok, ov, li, lj, lfree, lk, lv, bk, sym, fs, ctr, p, subs, stop_ts, fo, fk,
                         out):
    # Book updates are a chain: one thread applies the batch in order. The device-resident
    # pipeline partitions symbols across threads; this edge is the reference for it.
    if cuda.grid(1) == 0:
        i, nf = _apply_events(n, kind, side, locate, ts, seq, ref, new_ref, shares, price, stock, aux, alpha,
                              oi, oj, ofree, ok, ov, li, lj, lfree, lk, lv, bk, sym, fs, ctr, p, subs, stop_ts,
                              fo, fk)
        out[0] = i
        out[1] = nf


@cuda.jit
def _top_levels_kernel(book, depth, bk, li, lj, res, out):
    if cuda.grid(1) == 0:
        out[0] = _top_levels(book, depth, bk, li, lj, res)


def apply_events(n, kind, side, locate, ts, seq, ref, new_ref, shares, price, stock, aux, alpha,
                 oi, oj, ofree, ok, ov, li, lj, lfree, lk, lv, bk, sym, fs, ctr, p, subs, stop_ts, fo, fk):
    args = (n, kind, side, locate, ts, seq, ref, new_ref, shares, price, stock, aux, alpha,
            oi, oj, ofree, ok, ov, li, lj, lfree, lk, lv, bk, sym, fs, ctr, p, subs, stop_ts, fo, fk)
    state = tuple(range(13, 27)) + (30, 31)
    r = _run_single(_apply_events_kernel, args, state)
    return int(r[0]), int(r[1])


def top_levels(book, depth, bk, li, lj, out):
    r = _run_single(_top_levels_kernel, (book, depth, bk, li, lj, out), (5,))
    return int(r[0])
