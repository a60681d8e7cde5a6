"""MoldUDP64 gap recovery: hold later packets, request the missing ones from the rewind
(retransmission) server, apply everything in sequence order.

``sequence`` (njit) runs over each batch of received payloads before framing. Per session it
keeps the next sequence number to deliver (``nxt``). A packet at or below it goes straight on
(``split_mold`` drops re-sent duplicates); a packet beyond it opens a gap
``[nxt, seq)`` and, while the gap is open, every later packet of the session is copied into the
hold arena. Requests (``Session(10) SequenceNumber(8) MessageCount(2)``, the MoldUDP64 request
packet) go to the rewind server; its replies are ordinary MoldUDP64 packets, held like the rest,
and ``release`` (njit) hands the held packets back in sequence order as soon as they are
contiguous. The framing downstream therefore never sees the gap: the event table, the books
and risk's ``feed_health`` see the feed as if nothing had been lost.

While a gap is open the session is *stale*: ``gap_open()`` lists such sessions and
``pipeline/live.py`` marks them in risk (``R_STALE_GAP``) until the gap closes. A gap that cannot
be recovered (no reply after ``max_retries`` requests ``retry_ms`` apart, or the hold arena is
full) is abandoned: the held packets are released in order across the hole, ``split_mold``
records the gap and risk keeps the session stale (its own gap detection) until recovery or
``risk.stale.gap_resync_ns``.
"""

from __future__ import annotations

import struct


import numpy as np
from numba import njit

from kernels.framing import SEQ_LIMIT, add_session, find_session
from kernels.wire import rd_u16, rd_u64

# gap[s, ...]
G_OPEN = 0        # 1 while held packets wait for the missing ones
G_LO = 1          # first missing sequence number (= nxt[s] when the gap was seen)
G_HI = 2          # sequence number of the first held packet beyond the hole
G_NEW = 3         # 1: a (new or moved) hole needs a request now
G_ENDED = 4       # 1: the end-of-session packet was delivered
G_FORCE = 5       # 1: abandon: release held packets across the hole
G_RECOVERED = 6   # gaps closed by retransmission
G_ABANDONED = 7   # gaps given up
G_REQ_HI = 8      # requests cover sequence numbers below this
G_TRIES = 9       # requests sent without progress
G_REQ_TS = 10     # time of the last request, ns
G_HELD = 11       # packets held now
NG = 12

# hold[r, ...]
H_OFF, H_LEN, H_SEQ, H_END, H_SESS, H_RX, H_LIVE, H_EOS = range(8)
NH = 8

OK = 0
FULL = 1  # the hold arena is full: abandon open gaps, then call again from the returned index


def sequence(buf, pay_off, pay_len, pay_rx, first, n, sess_id, sess_next, n_sess, nxt, gap, hold_buf, hold,
             hst, out_off, out_len, out_rx):
    """Sort payloads ``first..n-1`` into delivered now (``out_*``, offsets into ``buf``) and
    held (copied into ``hold_buf``, rows of ``hold``; ``hst[0]`` bytes and ``hst[1]`` rows used).
    Sessions first seen here are added to ``sess_id`` exactly as ``split_mold`` would add
    them. Returns ``(delivered, next index, OK | FULL)``."""
    m = 0
    max_sess = sess_id.shape[0]
    for i in range(first, n):
        p = pay_off[i]
        ln = pay_len[i]
        if ln < 20:
            out_off[m] = p
            out_len[m] = ln
            out_rx[m] = pay_rx[i]
            m += 1
            continue
        seq = rd_u64(buf, p + 10)
        cnt = rd_u16(buf, p + 18)
        s = find_session(buf, p, sess_id, n_sess)
        if seq == 0 or seq >= SEQ_LIMIT or (s < 0 and n_sess[0] >= max_sess):
            out_off[m] = p  # unsequenced, corrupt or too many sessions: split_mold counts it
            out_len[m] = ln
            out_rx[m] = pay_rx[i]
            m += 1
            continue
        if s < 0:
            s = add_session(buf, p, sess_id, n_sess)
            sess_next[s] = seq  # as split_mold: a feed may be joined mid-session
            nxt[s] = seq
        msgs = np.uint64(0) if (cnt == 0 or cnt == 0xFFFF) else np.uint64(cnt)
        end = seq + msgs
        x = nxt[s]
        if gap[s, G_OPEN] != 0 or seq > x:
            if gap[s, G_OPEN] == 0:
                gap[s, G_OPEN] = 1
                gap[s, G_LO] = x
                gap[s, G_HI] = seq
                gap[s, G_NEW] = 1
                gap[s, G_TRIES] = 0
                gap[s, G_REQ_HI] = x
            if seq <= x and end <= x and cnt != 0xFFFF:
                out_off[m] = p  # wholly old (a re-sent duplicate): harmless now, split_mold drops it
                out_len[m] = ln
                out_rx[m] = pay_rx[i]
                m += 1
                continue
            r = hst[1]
            if r >= hold.shape[0] or hst[0] + ln > hold_buf.shape[0]:
                return m, i, FULL
            o = hst[0]
            for j in range(ln):
                hold_buf[o + j] = buf[p + j]
            hold[r, H_OFF] = o
            hold[r, H_LEN] = ln
            hold[r, H_SEQ] = np.int64(seq)
            hold[r, H_END] = np.int64(end)
            hold[r, H_SESS] = s
            hold[r, H_RX] = pay_rx[i]
            hold[r, H_LIVE] = 1
            hold[r, H_EOS] = 1 if cnt == 0xFFFF else 0
            hst[0] = o + ln
            hst[1] = r + 1
            gap[s, G_HELD] += 1
            continue
        out_off[m] = p
        out_len[m] = ln
        out_rx[m] = pay_rx[i]
        m += 1
        if end > x:
            nxt[s] = end
        if cnt == 0xFFFF:
            gap[s, G_ENDED] = 1
    return m, n, OK


def release(hold, order, nxt, gap, out_off, out_len, out_rx):
    """Hand back held rows (``order``: live rows sorted by session then sequence number) while
    they are contiguous with ``nxt`` (or all of them for a session with ``G_FORCE``). Closes
    the gap of every session left with nothing held. Returns the rows written to ``out_*``
    (offsets into the hold arena)."""
    nsess = gap.shape[0]
    blocked = np.zeros(nsess, np.int64)
    m = 0
    for k in range(order.shape[0]):
        r = order[k]
        s = hold[r, H_SESS]
        if blocked[s] != 0:
            continue
        q = np.uint64(hold[r, H_SEQ])
        if q > nxt[s] and gap[s, G_FORCE] == 0:
            blocked[s] = 1
            if gap[s, G_LO] != np.int64(nxt[s]):  # progress: the hole moved up
                gap[s, G_TRIES] = 0
            gap[s, G_LO] = np.int64(nxt[s])
            gap[s, G_HI] = np.int64(q)
            if gap[s, G_REQ_HI] <= np.int64(nxt[s]):
                gap[s, G_NEW] = 1  # everything requested has come: ask for the rest
            continue
        out_off[m] = hold[r, H_OFF]
        out_len[m] = hold[r, H_LEN]
        out_rx[m] = hold[r, H_RX]
        m += 1
        hold[r, H_LIVE] = 0
        gap[s, G_HELD] -= 1
        e = np.uint64(hold[r, H_END])
        if e > nxt[s]:
            nxt[s] = e
        if hold[r, H_EOS] != 0:
            gap[s, G_ENDED] = 1
    for s in range(nsess):
        if gap[s, G_OPEN] != 0 and blocked[s] == 0 and gap[s, G_HELD] == 0:
            gap[s, G_OPEN] = 0
            gap[s, G_NEW] = 0
            if gap[s, G_FORCE] != 0:
                gap[s, G_ABANDONED] += 1
            else:
                gap[s, G_RECOVERED] += 1
            gap[s, G_FORCE] = 0
    return m


_jit = njit(cache=True, nogil=True)
_sequence = _jit(sequence)
_release = _jit(release)


def request_packet(session: bytes, seq: int, count: int) -> bytes:
    """MoldUDP64 retransmission request: Session(10) SequenceNumber(8) MessageCount(2)."""
    return bytes(session[:10]).ljust(10, b" ") + struct.pack("!QH", seq, count)


class GapRecovery:
    """Hold-and-request state for up to ``max_sessions`` sessions and the request socket.

    ``server``: (address, port) of the rewind server, or None (gaps are then abandoned at once:
    held packets are released across the hole). ``bind``: local address for the request socket.
    """

    def __init__(self, server: tuple[str, int] | None, *, max_sessions: int = 64, hold_bytes: int = 64 << 20,
                 hold_packets: int = 1 << 16, retry_ms: int = 50, max_retries: int = 20,
                 max_request: int = 0xFFFE, bind: str = "0.0.0.0", out_rows: int = 4096):
        self.server = server
        self.retry_ns = int(retry_ms) * 1_000_000
        self.max_retries = int(max_retries)
        self.max_request = int(max_request)
        self.nxt = np.zeros(max_sessions, np.uint64)
        self.gap = np.zeros((max_sessions, NG), np.int64)
        self.hold_buf = np.zeros(int(hold_bytes), np.uint8)
        self.hold = np.zeros((int(hold_packets), NH), np.int64)
        self.hst = np.zeros(2, np.int64)
        self.out_off = np.zeros(out_rows, np.int64)
        self.out_len = np.zeros(out_rows, np.int64)
        self.out_rx = np.zeros(out_rows, np.int64)
        self.requests = 0
        self.probes = 0
        self.sock = None
        if server is not None:
            from bridges.xdp.udp import UdpBatchSocket

            self.sock = UdpBatchSocket((bind, 0), batch=256)

    # -- per batch ---------------------------------------------------------------------------
    def _out(self, n: int) -> None:
        if self.out_off.shape[0] < n:
            self.out_off = np.zeros(n, np.int64)
            self.out_len = np.zeros(n, np.int64)
            self.out_rx = np.zeros(n, np.int64)

    def sequence(self, buf, pay_off, pay_len, pay_rx, first, n, sess_id, sess_next, n_sess):
        self._out(n)
        return _sequence(buf, pay_off, pay_len, pay_rx, first, n, sess_id, sess_next, n_sess, self.nxt, self.gap,
                         self.hold_buf, self.hold, self.hst, self.out_off, self.out_len, self.out_rx)

    def pending(self) -> bool:
        return bool(self.gap[:, G_OPEN].any())

    def gap_open(self) -> np.ndarray:
        """Per session: 1 while a gap waits for recovery (the session's books are stale)."""
        return self.gap[:, G_OPEN]

    def release(self) -> int:
        """Rows ready in ``out_*`` (offsets into ``hold_buf``), in sequence order per session."""
        r = int(self.hst[1])
        if r == 0:
            return 0
        h = self.hold[:r]
        live = np.nonzero(h[:, H_LIVE])[0]
        if len(live) == 0:
            return 0
        order = live[np.lexsort((h[live, H_SEQ], h[live, H_SESS]))]
        self._out(len(order))
        return int(_release(self.hold, order, self.nxt, self.gap, self.out_off, self.out_len, self.out_rx))

    def compact(self, force: bool = False) -> int:
        """Drop released rows from the arena (call after the released batch was consumed).
        Unless ``force``, only once at least half the rows are released ones: a large gap is
        recovered a reply batch at a time, and copying every held packet after each batch would
        make its recovery quadratic. Returns the rows dropped."""
        r = int(self.hst[1])
        if r == 0:
            return 0
        h = self.hold[:r]
        live = np.nonzero(h[:, H_LIVE])[0]
        if len(live) == r or (not force and 2 * len(live) > r):
            return 0
        if len(live) == 0:
            self.hst[:] = 0
            return r
        rows = h[live].copy()
        pos = 0
        newbuf = np.empty(int(rows[:, H_LEN].sum()), np.uint8)
        for k in range(len(rows)):  # rare: only while a gap is open across batches
            o, ln = int(rows[k, H_OFF]), int(rows[k, H_LEN])
            newbuf[pos: pos + ln] = self.hold_buf[o: o + ln]
            rows[k, H_OFF] = pos
            pos += ln
        self.hold_buf[:pos] = newbuf
        self.hold[: len(rows)] = rows
        self.hst[0], self.hst[1] = pos, len(rows)
        return r - len(rows)

    def abandon(self, session: int | None = None) -> None:
        """Give up the open gap of ``session`` (all when None): the next ``release`` hands back
        its held packets across the hole."""
        if session is None:
            self.gap[:, G_FORCE] |= self.gap[:, G_OPEN]
        else:
            self.gap[session, G_FORCE] = self.gap[session, G_OPEN]

    # -- requests ----------------------------------------------------------------------------
    def send_requests(self, now_ns: int, sess_id: np.ndarray) -> int:
        """Request what open gaps miss: at once for a new hole, else after ``retry_ms``; give up
        after ``max_retries`` tries without progress. Returns requests sent."""
        sent = 0
        for s in np.nonzero(self.gap[:, G_OPEN])[0]:
            g = self.gap[s]
            if g[G_FORCE]:
                continue
            if self.sock is None or self.server is None:
                g[G_FORCE] = 1
                continue
            # a retry without progress waits longer each time (up to 4x): a slow server is not
            # buried under repeats of a request it is still answering
            wait = self.retry_ns << min(max(int(g[G_TRIES]) - 1, 0), 2)
            if not g[G_NEW] and now_ns - g[G_REQ_TS] < wait:
                continue
            if g[G_TRIES] >= self.max_retries:
                g[G_FORCE] = 1
                continue
            lo = int(self.nxt[s])
            count = max(1, min(int(g[G_HI]) - lo, self.max_request))
            self.sock.sendto(request_packet(bytes(sess_id[s]), lo, count), self.server)
            g[G_REQ_HI] = lo + count
            g[G_REQ_TS] = now_ns
            g[G_TRIES] += 1
            g[G_NEW] = 0
            sent += 1
        self.requests += sent
        return sent

    def touch(self, now_ns: int) -> None:
        """Replies are arriving: restart the retry clock of every open gap, so that a gap is asked
        for again only after ``retry_ms`` of silence from the server (a large reply takes the
        server longer than ``retry_ms`` to send; re-requesting it meanwhile only multiplies it)."""
        o = self.gap[:, G_OPEN] != 0
        self.gap[o, G_REQ_TS] = now_ns

    def probe(self, sess_id: np.ndarray, n_sess: int) -> int:
        """Tail-loss probe: ask the server for what follows ``nxt`` of every session seen that has
        neither ended nor an open gap. A packet lost with nothing after it (the tail of a burst
        dropped by a full receive ring, the end-of-session packet) opens no gap; the replies -
        the missing messages, then the server's end-of-session packet - go through ``sequence``
        like any packet (in order: delivered at once; beyond a hole: a gap, recovered as usual).
        Returns requests sent."""
        if self.sock is None or self.server is None:
            return 0
        sent = 0
        for s in range(int(n_sess)):
            g = self.gap[s]
            if g[G_OPEN] or g[G_ENDED]:
                continue
            self.sock.sendto(request_packet(bytes(sess_id[s]), int(self.nxt[s]), self.max_request), self.server)
            sent += 1
        self.probes += sent
        self.requests += sent
        return sent

    def counters(self) -> dict[str, int]:
        return {"gaps_recovered": int(self.gap[:, G_RECOVERED].sum()),
                "gaps_abandoned": int(self.gap[:, G_ABANDONED].sum()),
                "gaps_open": int(self.gap[:, G_OPEN].sum()),
                "requests": self.requests,
                "probes": self.probes,
                "held_packets": int(self.gap[:, G_HELD].sum()),
                "replies": self.sock.packets if self.sock is not None else 0}

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


