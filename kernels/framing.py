"""Framing: capture records -> UDP payloads -> MoldUDP64 message blocks; BinaryFILE records.

Undecorated bodies compiled by ``kernels/cpu.py`` and ``kernels/gpu.py``. They work on a chunk
of a file held in ``buf[pos:end]`` and return how far they got, so the caller can stream a file
of any size through a bounded buffer: a record that does not fit in the chunk is left for the
next call. Every read is checked against ``end`` (or the enclosing record) first.

Hand-written rather than dpkt/scapy: on the hot path a Python object per packet costs ~5-20 µs,
against ~40 ns per packet here (measured by ``make bench``); dpkt is the reference the tests
compare these kernels with.
"""

from __future__ import annotations

import numpy as np
from numba.extending import register_jitable

from kernels import stats as S
from kernels.wire import rd_u16, rd_u16_e, rd_u32, rd_u32_e, rd_u64

# link types (tcpdump.org/linktypes)
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_LINUX_SLL2 = 276

SEQ_LIMIT = np.uint64(1 << 62)  # MoldUDP64 sequence numbers at or above are corrupt
MAX_RECORD = 262144 + 65536  # larger captured lengths mean a corrupt record header

# status returned with the position
MORE = 0     # stopped at the end of the data (or a full output): call again with more
CORRUPT = 1  # a record header is impossible; the rest of the file cannot be framed
EOS = 2      # BinaryFILE end-of-session record reached


@register_jitable
def parse_packet(buf, off, caplen, origlen, linktype, filt_ip, filt_port, n_filt):
    """Parse one captured frame down to its UDP payload.

    Returns ``(code, payload_off, payload_len)`` where ``code`` is 0 for an accepted payload or
    the stats slot saying why the frame was skipped. ``filt_ip``/``filt_port`` hold ``n_filt``
    accepted destinations (0 matches any address or port); ``n_filt == 0`` accepts all UDP.
    """
    end = off + caplen
    p = off
    etype = 0
    if linktype == LINKTYPE_ETHERNET:
        if caplen < 14:
            return S.BAD_IP, 0, 0
        etype = rd_u16(buf, p + 12)
        p += 14
        ntags = 0
        while (etype == 0x8100 or etype == 0x88A8 or etype == 0x9100) and ntags < 2:
            if p + 4 > end:
                return S.BAD_IP, 0, 0
            etype = rd_u16(buf, p + 2)
            p += 4
            ntags += 1
    elif linktype == LINKTYPE_LINUX_SLL:
        if caplen < 16:
            return S.BAD_IP, 0, 0
        etype = rd_u16(buf, p + 14)
        p += 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        if caplen < 20:
            return S.BAD_IP, 0, 0
        etype = rd_u16(buf, p)
        p += 20
    elif linktype == LINKTYPE_RAW or linktype == LINKTYPE_IPV4:
        etype = 0x0800
    else:
        return S.BAD_LINKTYPE, 0, 0
    if etype != 0x0800:
        return S.NON_IPV4, 0, 0
    # IPv4
    if p + 20 > end:
        return S.BAD_IP, 0, 0
    vihl = np.int64(buf[p])
    if (vihl >> 4) != 4:
        return S.NON_IPV4, 0, 0
    ihl = (vihl & 0xF) * 4
    total = rd_u16(buf, p + 2)
    if ihl < 20 or total < ihl:
        return S.BAD_IP, 0, 0
    if p + total > end:
        if origlen > caplen:
            return S.SNAP_TRUNCATED, 0, 0
        return S.BAD_IP, 0, 0
    frag = rd_u16(buf, p + 6)
    if (frag & 0x3FFF) != 0:  # MF set or non-zero fragment offset
        return S.IP_FRAGMENT, 0, 0
    if buf[p + 9] != 17:
        return S.FILTERED, 0, 0
    dst = rd_u32(buf, p + 16)
    u = p + ihl
    if u + 8 > p + total:
        return S.BAD_UDP, 0, 0
    dport = rd_u16(buf, u + 2)
    ulen = rd_u16(buf, u + 4)
    if ulen < 8 or u + ulen > p + total:
        return S.BAD_UDP, 0, 0
    if n_filt > 0:
        ok = False
        for k in range(n_filt):
            if (filt_ip[k] == 0 or filt_ip[k] == dst) and (filt_port[k] == 0 or filt_port[k] == dport):
                ok = True
        if not ok:
            return S.FILTERED, 0, 0
    return 0, u + 8, ulen - 8


def index_pcap(buf, pos, end, little, ts_ns_per_unit, linktype, filt_ip, filt_port, n_filt,
               pay_off, pay_len, pay_rx, stats):
    """Walk classic pcap records in ``buf[pos:end]`` (global header already consumed).

    ``ts_ns_per_unit`` is 1000 for microsecond files and 1 for nanosecond files.
    Returns ``(n_payloads, new_pos, status)``.
    """
    n = 0
    cap = pay_off.shape[0]
    while n < cap:
        if pos + 16 > end:
            return n, pos, MORE
        incl = rd_u32_e(buf, pos + 8, little)
        orig = rd_u32_e(buf, pos + 12, little)
        if incl > MAX_RECORD:
            stats[S.BAD_RECORD] += 1
            return n, pos, CORRUPT
        if pos + 16 + incl > end:
            return n, pos, MORE
        ts = rd_u32_e(buf, pos, little) * 1000000000 + rd_u32_e(buf, pos + 4, little) * ts_ns_per_unit
        stats[S.PACKETS] += 1
        code, po, pl = parse_packet(buf, pos + 16, incl, orig, linktype, filt_ip, filt_port, n_filt)
        if code == 0:
            pay_off[n] = po
            pay_len[n] = pl
            pay_rx[n] = ts
            n += 1
            stats[S.UDP_ACCEPTED] += 1
        else:
            stats[code] += 1
        pos += 16 + incl
    return n, pos, MORE


@register_jitable
def _pcapng_ts(high, low, res_kind, res_val):
    """Timestamp ticks -> ns since epoch; 0 when a (corrupt) value is beyond year 2255."""
    ticks = (high << 32) | low  # high < 2**32: may wrap negative for corrupt input
    if ticks < 0:
        return 0
    if res_kind == 0:  # 10^-res_val seconds per tick
        unit = 1
        for _ in range(min(res_val, 18)):
            unit *= 10
        sec = ticks // unit
        frac = ticks - sec * unit
        if sec > 9_000_000_000:
            return 0
        if res_val <= 9:
            scale = 1
            for _ in range(9 - res_val):
                scale *= 10
            return sec * 1000000000 + frac * scale
        down = 1
        for _ in range(min(res_val, 18) - 9):
            down *= 10
        return sec * 1000000000 + frac // down
    # 2^-res_val seconds per tick
    shift = min(res_val, 62)
    sec = ticks >> shift
    frac = ticks & ((np.int64(1) << shift) - 1)
    if sec > 9_000_000_000:
        return 0
    if shift > 32:  # keep frac * 1e9 inside int64
        frac >>= shift - 32
        shift = 32
    return sec * 1000000000 + ((frac * 1000000000) >> shift)


def index_pcapng(buf, pos, end, state, if_link, if_res_kind, if_res_val, filt_ip, filt_port,
                 n_filt, pay_off, pay_len, pay_rx, stats):
    """Walk pcapng blocks in ``buf[pos:end]``.

    ``state[0]``: 1 when the current section is little-endian; ``state[1]``: interfaces seen in
    the section. ``if_*`` hold each interface's link type and timestamp resolution (kind 0:
    10^-val s, kind 1: 2^-val s). Returns ``(n_payloads, new_pos, status)``.
    """
    n = 0
    cap = pay_off.shape[0]
    max_if = if_link.shape[0]
    while n < cap:
        if pos + 12 > end:
            return n, pos, MORE
        btype = rd_u32_e(buf, pos, state[0])
        if btype == 0x0A0D0D0A:  # section header: byte order may change here
            if pos + 12 > end:
                return n, pos, MORE
            if buf[pos + 8] == 0x4D and buf[pos + 9] == 0x3C:
                state[0] = 1
            elif buf[pos + 8] == 0x1A and buf[pos + 9] == 0x2B:
                state[0] = 0
            else:
                stats[S.BAD_RECORD] += 1
                return n, pos, CORRUPT
            state[1] = 0
        little = state[0]
        blen = rd_u32_e(buf, pos + 4, little)
        if blen < 12 or (blen & 3) != 0 or blen > MAX_RECORD + 64:
            stats[S.BAD_RECORD] += 1
            return n, pos, CORRUPT
        if pos + blen > end:
            return n, pos, MORE
        body = pos + 8
        body_end = pos + blen - 4
        if btype == 1:  # interface description
            if body + 8 > body_end:
                stats[S.BAD_RECORD] += 1
                return n, pos, CORRUPT
            k = state[1]
            state[1] = k + 1
            if k < max_if:
                if_link[k] = rd_u16_e(buf, body, little)
                if_res_kind[k] = 0
                if_res_val[k] = 6
                o = body + 8
                while o + 4 <= body_end:
                    code = rd_u16_e(buf, o, little)
                    olen = rd_u16_e(buf, o + 2, little)
                    if code == 0 or o + 4 + olen > body_end:
                        break
                    if code == 9 and olen >= 1:
                        r = np.int64(buf[o + 4])
                        if_res_kind[k] = r >> 7
                        if_res_val[k] = r & 0x7F
                    o += 4 + ((olen + 3) & ~3)
        elif btype == 6 or btype == 3:  # enhanced / simple packet
            if btype == 6:
                if body + 20 > body_end:
                    stats[S.BAD_RECORD] += 1
                    return n, pos, CORRUPT
                iface = rd_u32_e(buf, body, little)
                high = rd_u32_e(buf, body + 4, little)
                low = rd_u32_e(buf, body + 8, little)
                caplen = rd_u32_e(buf, body + 12, little)
                origlen = rd_u32_e(buf, body + 16, little)
                data = body + 20
            else:
                if body + 4 > body_end:
                    stats[S.BAD_RECORD] += 1
                    return n, pos, CORRUPT
                iface = 0
                high = 0
                low = 0
                origlen = rd_u32_e(buf, body, little)
                data = body + 4
                caplen = min(origlen, body_end - data)
            stats[S.PACKETS] += 1
            if data + caplen > body_end:
                stats[S.BAD_RECORD] += 1
            elif iface >= state[1] or iface >= max_if:
                stats[S.BAD_LINKTYPE] += 1
            else:
                code, po, pl = parse_packet(buf, data, caplen, origlen, if_link[iface], filt_ip,
                                            filt_port, n_filt)
                if code == 0:
                    pay_off[n] = po
                    pay_len[n] = pl
                    pay_rx[n] = _pcapng_ts(high, low, if_res_kind[iface], if_res_val[iface])
                    n += 1
                    stats[S.UDP_ACCEPTED] += 1
                else:
                    stats[code] += 1
        elif btype != 0x0A0D0D0A:
            stats[S.PCAPNG_BLOCKS_SKIPPED] += 1
        pos += blen
    return n, pos, MORE


@register_jitable
def find_session(buf, p, sess_id, n_sess):
    """Row of the 10-byte MoldUDP64 session ``buf[p:p+10]`` among the ``n_sess[0]`` rows of
    ``sess_id``, or -1 (a handful of sessions per feed: linear search)."""
    for k in range(n_sess[0]):
        same = True
        for j in range(10):
            if sess_id[k, j] != buf[p + j]:
                same = False
                break
        if same:
            return k
    return -1


@register_jitable
def add_session(buf, p, sess_id, n_sess):
    """Append the session ``buf[p:p+10]`` to ``sess_id``; returns its row (caller checks room)."""
    s = n_sess[0]
    n_sess[0] = s + 1
    for j in range(10):
        sess_id[s, j] = buf[p + j]
    return s


def split_mold(pay, first, n_pay, sessions, msgs, stats):
    """Split MoldUDP64 packets into message blocks, tracking sequence numbers per session.

    Bundles (``kernels/state.py``): ``pay`` Payloads (the packets' UDP payloads in ``pay.buf``),
    ``sessions`` MoldSessions, ``msgs`` Frames (the message index written: ``off``, ``length``,
    ``seq``, ``sess``, ``rx``; its ``buf`` is ``pay.buf`` and is not read).

    ``sess_id`` (uint8[K, 10]) / ``sess_next`` (uint64[K]) hold the sessions seen so far and the
    next expected sequence number of each; ``n_sess[0]`` how many are in use. A message whose
    sequence number is below the expected one is a duplicate and is dropped; one above it
    records a gap. Sequence number 0 marks a scrubbed capture: delivered without checks.
    Packets ``first .. n_pay-1`` are split; it stops before a packet whose declared message
    count would not fit in ``msg_*`` (at least 65535 rows, so one packet always fits).
    Returns ``(messages written, index of the next packet to split)``; ``(-1, i)`` if the
    outputs were too small for a single packet.
    """
    buf, pay_off, pay_len, pay_rx = pay
    sess_id, sess_next, n_sess = sessions
    msg_off = msgs.off
    msg_len = msgs.length
    msg_seq = msgs.seq
    msg_sess = msgs.sess
    msg_rx = msgs.rx
    m = 0
    cap = msg_off.shape[0]
    max_sess = sess_id.shape[0]
    for i in range(first, n_pay):
        p = pay_off[i]
        plen = pay_len[i]
        end = p + plen
        if plen >= 20 and m > 0:
            declared = rd_u16(buf, p + 18)
            if declared != 0xFFFF and m + declared > cap:
                return m, i
        stats[S.MOLD_PACKETS] += 1
        if plen < 20:
            stats[S.MOLD_SHORT] += 1
            continue
        s = find_session(buf, p, sess_id, n_sess)
        seq = rd_u64(buf, p + 10)
        count = rd_u16(buf, p + 18)
        if seq >= SEQ_LIMIT:  # no real feed gets near: a corrupt header, not a 2**63 gap
            stats[S.MOLD_BAD_SEQUENCE] += 1
            continue
        if s < 0:
            if n_sess[0] >= max_sess:
                stats[S.MOLD_TOO_MANY_SESSIONS] += 1
                continue
            s = add_session(buf, p, sess_id, n_sess)
            sess_next[s] = seq  # a capture may start mid-session: no gap before the first packet
        sequenced = seq != np.uint64(0)
        if not sequenced:
            stats[S.MOLD_UNSEQUENCED] += 1
        if count == 0 or count == 0xFFFF:
            if count == 0:
                stats[S.MOLD_HEARTBEATS] += 1
            else:
                stats[S.MOLD_END_OF_SESSION] += 1
            if sequenced and seq > sess_next[s]:  # heartbeat carries the next expected number
                stats[S.MOLD_GAPS] += 1
                stats[S.MOLD_GAP_MESSAGES] += np.int64(seq - sess_next[s])
                sess_next[s] = seq
            if plen > 20:
                stats[S.MOLD_TRAILING] += 1
            continue
        o = p + 20
        complete = True
        for k in range(count):
            if o + 2 > end:
                complete = False
                break
            blen = rd_u16(buf, o)
            if o + 2 + blen > end:
                complete = False
                break
            mseq = seq + np.uint64(k)
            o2 = o + 2
            o = o2 + blen
            if sequenced:
                nxt = sess_next[s]
                if mseq < nxt:
                    stats[S.MOLD_DUP_MESSAGES] += 1
                    continue
                if mseq > nxt:
                    stats[S.MOLD_GAPS] += 1
                    stats[S.MOLD_GAP_MESSAGES] += np.int64(mseq - nxt)
                sess_next[s] = mseq + np.uint64(1)
            if blen == 0:
                stats[S.MOLD_EMPTY_MESSAGE] += 1
                continue
            if m >= cap:
                return -1, i
            msg_off[m] = o2
            msg_len[m] = blen
            msg_seq[m] = mseq
            msg_sess[m] = s
            msg_rx[m] = pay_rx[i]
            m += 1
        if not complete:
            stats[S.MOLD_TRUNCATED] += 1
        elif o < end:
            stats[S.MOLD_TRAILING] += 1
    return m, n_pay


def index_binaryfile(buf, pos, end, next_seq, msg_off, msg_len, msg_seq, msg_sess, msg_rx, stats):
    """Walk Nasdaq BinaryFILE records (2-byte big-endian length, then the message).

    A zero length marks the end of the session. Messages are numbered from ``next_seq``.
    Returns ``(n_messages, new_pos, status)``; ``status`` is ``EOS`` after the end-of-session
    record (the caller counts what follows as garbage).
    """
    n = 0
    cap = msg_off.shape[0]
    while n < cap:
        if pos + 2 > end:
            return n, pos, MORE
        blen = rd_u16(buf, pos)
        if blen == 0:
            stats[S.END_OF_SESSION] += 1
            return n, pos + 2, EOS
        if pos + 2 + blen > end:
            return n, pos, MORE
        msg_off[n] = pos + 2
        msg_len[n] = blen
        msg_seq[n] = next_seq + np.uint64(n)
        msg_sess[n] = 0
        msg_rx[n] = 0
        n += 1
        pos += 2 + blen
    return n, pos, MORE
