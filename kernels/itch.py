"""ITCH 5.0 decode: one message block -> one row of the event table.

Undecorated bodies compiled at the edge by ``kernels/cpu.py`` (``njit``) and ``kernels/gpu.py``
(``cuda.jit``). ``decode_message`` is the per-message body (one GPU thread each);
``decode_batch`` is the CPU loop that also compacts rows and counts outcomes.

Every read is guarded by the message length check: a block is decoded only when its length is
exactly the specification's length for its type (``kernels/itch_spec.py``), so no field read can
leave ``[off, off + length)``; the framing kernels guarantee that range lies inside ``buf``.
"""

from __future__ import annotations

import numpy as np
from numba.extending import register_jitable

from kernels import stats as S
from kernels.itch_spec import LENGTHS
from kernels.wire import inline_cpu, rd_u16, rd_u32, rd_u48, rd_u64

_LEN = np.zeros(256, dtype=np.int64)
for _t, _l in LENGTHS.items():
    _LEN[ord(_t)] = _l
#: message length by type byte, 0 for unknown types (a compile-time constant in kernels)
MESSAGE_LENGTH = _LEN

OK = 0  # decode_message result for a decoded row; otherwise the stats slot of the reason


@register_jitable
def decode_rare(buf, o, t, row, shares, price, match, stock, mpid, aux, alpha):
    """The rarely seen types (well under 1% of a day's messages): kept out of line so the hot
    types inline into the decode loop without the compile time of the whole switch."""
    if t == 81:  # 'Q' cross trade
        shares[row] = np.int64(rd_u64(buf, o + 11))
        stock[row] = rd_u64(buf, o + 19)
        price[row] = rd_u32(buf, o + 27)
        match[row] = rd_u64(buf, o + 31)
        alpha[row, 0] = buf[o + 39]
    elif t == 66:  # 'B' broken trade
        match[row] = rd_u64(buf, o + 11)
    elif t == 83:  # 'S' system event
        alpha[row, 0] = buf[o + 11]
    elif t == 82:  # 'R' stock directory
        stock[row] = rd_u64(buf, o + 11)
        alpha[row, 0] = buf[o + 19]
        alpha[row, 1] = buf[o + 20]
        aux[row, 0] = rd_u32(buf, o + 21)
        alpha[row, 2] = buf[o + 25]
        alpha[row, 3] = buf[o + 26]
        alpha[row, 4] = buf[o + 27]
        alpha[row, 5] = buf[o + 28]
        alpha[row, 6] = buf[o + 29]
        alpha[row, 7] = buf[o + 30]
        alpha[row, 8] = buf[o + 31]
        alpha[row, 9] = buf[o + 32]
        alpha[row, 10] = buf[o + 33]
        aux[row, 1] = rd_u32(buf, o + 34)
        alpha[row, 11] = buf[o + 38]
    elif t == 72:  # 'H' trading action
        stock[row] = rd_u64(buf, o + 11)
        alpha[row, 0] = buf[o + 19]
        alpha[row, 1] = buf[o + 20]
        alpha[row, 2] = buf[o + 21]
        alpha[row, 3] = buf[o + 22]
        alpha[row, 4] = buf[o + 23]
        alpha[row, 5] = buf[o + 24]
    elif t == 89:  # 'Y' Reg SHO
        stock[row] = rd_u64(buf, o + 11)
        alpha[row, 0] = buf[o + 19]
    elif t == 76:  # 'L' market participant position
        mpid[row] = rd_u32(buf, o + 11)
        stock[row] = rd_u64(buf, o + 15)
        alpha[row, 0] = buf[o + 23]
        alpha[row, 1] = buf[o + 24]
        alpha[row, 2] = buf[o + 25]
    elif t == 86:  # 'V' MWCB decline levels, Price(8)
        aux[row, 0] = np.int64(rd_u64(buf, o + 11))
        aux[row, 1] = np.int64(rd_u64(buf, o + 19))
        aux[row, 2] = np.int64(rd_u64(buf, o + 27))
    elif t == 87:  # 'W' MWCB status
        alpha[row, 0] = buf[o + 11]
    elif t == 75:  # 'K' IPO quoting period update
        stock[row] = rd_u64(buf, o + 11)
        aux[row, 0] = rd_u32(buf, o + 19)
        alpha[row, 0] = buf[o + 23]
        price[row] = rd_u32(buf, o + 24)
    elif t == 74:  # 'J' LULD auction collar
        stock[row] = rd_u64(buf, o + 11)
        price[row] = rd_u32(buf, o + 19)
        aux[row, 0] = rd_u32(buf, o + 23)
        aux[row, 1] = rd_u32(buf, o + 27)
        aux[row, 2] = rd_u32(buf, o + 31)
    elif t == 104:  # 'h' operational halt
        stock[row] = rd_u64(buf, o + 11)
        alpha[row, 0] = buf[o + 19]
        alpha[row, 1] = buf[o + 20]
    elif t == 73:  # 'I' NOII
        aux[row, 0] = np.int64(rd_u64(buf, o + 11))
        shares[row] = np.int64(rd_u64(buf, o + 19))
        alpha[row, 0] = buf[o + 27]
        stock[row] = rd_u64(buf, o + 28)
        aux[row, 1] = rd_u32(buf, o + 36)
        aux[row, 2] = rd_u32(buf, o + 40)
        price[row] = rd_u32(buf, o + 44)
        alpha[row, 1] = buf[o + 48]
        alpha[row, 2] = buf[o + 49]
    elif t == 78:  # 'N' retail interest
        stock[row] = rd_u64(buf, o + 11)
        alpha[row, 0] = buf[o + 19]
    elif t == 79:  # 'O' direct listing with capital raise
        stock[row] = rd_u64(buf, o + 11)
        alpha[row, 0] = buf[o + 19]
        aux[row, 0] = rd_u32(buf, o + 20)
        aux[row, 1] = rd_u32(buf, o + 24)
        price[row] = rd_u32(buf, o + 28)
        aux[row, 2] = np.int64(rd_u64(buf, o + 32))
        aux[row, 3] = rd_u32(buf, o + 40)
        aux[row, 4] = rd_u32(buf, o + 44)


@inline_cpu
def decode_message(buf, off, length, mseq, msess, mrx, row,
                   kind, side, locate, tracking, sess, mpid, ts, rx, seq, ref, new_ref, shares,
                   price, match, stock, aux, alpha):
    """Decode the ITCH block ``buf[off:off+length]`` into ``row``.

    Returns ``OK`` or the stats slot of the reason it was skipped (unknown type, bad length);
    a skipped row is left with ``kind = 0``.
    """
    if length < 1:
        kind[row] = 0
        return S.MOLD_EMPTY_MESSAGE
    t = np.int64(buf[off])
    expected = MESSAGE_LENGTH[t]
    if expected == 0:
        kind[row] = 0
        return S.UNKNOWN_TYPE
    if length != expected:
        kind[row] = 0
        return S.BAD_LENGTH
    kind[row] = t
    locate[row] = rd_u16(buf, off + 1)
    tracking[row] = rd_u16(buf, off + 3)
    ts[row] = rd_u48(buf, off + 5)
    seq[row] = mseq
    sess[row] = msess
    rx[row] = mrx
    side[row] = 0
    mpid[row] = 0
    ref[row] = 0
    new_ref[row] = 0
    shares[row] = 0
    price[row] = 0
    match[row] = 0
    stock[row] = 0
    o = off
    if t == 65 or t == 70:  # 'A' add order, 'F' add order with attribution
        ref[row] = rd_u64(buf, o + 11)
        side[row] = buf[o + 19]
        shares[row] = rd_u32(buf, o + 20)
        stock[row] = rd_u64(buf, o + 24)
        price[row] = rd_u32(buf, o + 32)
        if t == 70:
            mpid[row] = rd_u32(buf, o + 36)
    elif t == 68:  # 'D' delete
        ref[row] = rd_u64(buf, o + 11)
    elif t == 85:  # 'U' replace
        ref[row] = rd_u64(buf, o + 11)
        new_ref[row] = rd_u64(buf, o + 19)
        shares[row] = rd_u32(buf, o + 27)
        price[row] = rd_u32(buf, o + 31)
    elif t == 69:  # 'E' executed
        ref[row] = rd_u64(buf, o + 11)
        shares[row] = rd_u32(buf, o + 19)
        match[row] = rd_u64(buf, o + 23)
    elif t == 88:  # 'X' cancel
        ref[row] = rd_u64(buf, o + 11)
        shares[row] = rd_u32(buf, o + 19)
    elif t == 67:  # 'C' executed with price
        ref[row] = rd_u64(buf, o + 11)
        shares[row] = rd_u32(buf, o + 19)
        match[row] = rd_u64(buf, o + 23)
        alpha[row, 0] = buf[o + 31]
        price[row] = rd_u32(buf, o + 32)
    elif t == 80:  # 'P' trade (non-cross)
        ref[row] = rd_u64(buf, o + 11)
        side[row] = buf[o + 19]
        shares[row] = rd_u32(buf, o + 20)
        stock[row] = rd_u64(buf, o + 24)
        price[row] = rd_u32(buf, o + 32)
        match[row] = rd_u64(buf, o + 36)
    else:
        decode_rare(buf, o, t, row, shares, price, match, stock, mpid, aux, alpha)
    return OK


def decode_batch(frames, n, start_row, ev, stats):
    """Decode the first ``n`` message blocks of ``frames`` into rows ``start_row...`` of ``ev``,
    skipping and counting bad ones.

    Bundles (``kernels/state.py``): ``frames`` Frames (the bytes and one descriptor per message),
    ``ev`` Events (the event table's columns). Returns the row after the last one written.
    Counts ``stats[MESSAGES_IN]``, ``DECODED``, per-type counts at ``stats[TYPE_BASE + type]``
    and the reason of every skipped block.
    """
    buf, msg_off, msg_len, msg_seq, msg_sess, msg_rx = frames
    kind, side, locate, tracking, sess, mpid, ts, rx, seq, ref, new_ref, shares, price, match, stock, aux, alpha = ev
    row = start_row
    for i in range(n):
        r = decode_message(buf, msg_off[i], msg_len[i], msg_seq[i], msg_sess[i], msg_rx[i], row,
                           kind, side, locate, tracking, sess, mpid, ts, rx, seq, ref, new_ref,
                           shares, price, match, stock, aux, alpha)
        if r == OK:
            stats[S.TYPE_BASE + kind[row]] += 1
            row += 1
        else:
            stats[r] += 1
    stats[S.MESSAGES_IN] += n
    stats[S.DECODED] += row - start_row
    return row
