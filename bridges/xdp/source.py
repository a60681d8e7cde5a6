"""The live frame source: received frames -> MoldUDP64 message blocks, as ``MessageBatch``.

``LiveSource`` has the interface of ``replay.capture.CaptureReader`` (iterate for batches;
``stats``, ``sessions()``, ``batch_rows``, ``format``, ``bytes_read``, ``trailing_bytes``,
``error``), so ``DecodeStage`` and everything after it are the same objects in replay and live.

Per receive batch (one system call or one ring sweep): ``extract`` (njit) parses Ethernet /
802.1Q / IPv4 / UDP with ``kernels.framing.parse_packet`` (AF_XDP frames) or takes the UDP
payloads as they are (socket path), counting every skipped frame by reason in ``stats`` like the
capture readers; ``gap.sequence`` holds what follows a gap; ``kernels.framing.split_mold``
splits the packets into message blocks, in place in the receive buffer (the AF_XDP UMEM: no
copy). Python runs per batch, not per packet.

The stream ends when every session seen has delivered its end-of-session packet (and no gap is
open), after ``max_messages`` messages, after ``idle_timeout_ms`` without a packet, or on
``stop()``.
"""

from __future__ import annotations

import select
import threading
import time
from typing import Iterator, Sequence

import numpy as np
from numba import njit

from kernels import framing as F
from kernels import stats as S
from kernels.state import Frames, MoldSessions, Payloads
from replay.capture import MIN_BATCH_ROWS, MessageBatch, parse_filters

from bridges.xdp import gap as G


def extract(buf, off, length, n, link_eth, filt_ip, filt_port, n_filt, now, pay_off, pay_len, pay_rx, stats):
    """Frames ``buf[off[i]:off[i]+length[i]]`` -> UDP payloads (``link_eth``: Ethernet frames,
    else already UDP payloads). Returns the payloads written; skipped frames are counted."""
    m = 0
    for i in range(n):
        stats[S.PACKETS] += 1
        o = np.int64(off[i])
        ln = np.int64(length[i])
        if link_eth:
            code, po, pl = F.parse_packet(buf, o, ln, ln, F.LINKTYPE_ETHERNET, filt_ip, filt_port, n_filt)
            if code != 0:
                stats[code] += 1
                continue
        else:
            po = o
            pl = ln
        stats[S.UDP_ACCEPTED] += 1
        pay_off[m] = po
        pay_len[m] = pl
        pay_rx[m] = now
        m += 1
    return m


_extract = njit(cache=True, nogil=True)(extract)


class LiveSource:
    """Iterate over message blocks received live by ``receivers`` (``XskSocket`` or
    ``UdpReceiver`` objects, read in turn), with MoldUDP64 gap recovery when ``recovery``
    is given."""

    def __init__(self, receivers: Sequence, *, recovery: G.GapRecovery | None = None, filters: Sequence[str] = (),
                 batch_rows: int = 1 << 18, max_sessions: int = 64, idle_timeout_ms: int = 0,
                 max_messages: int = 0, stop_on_end: bool = True, poll_ms: int = 20, name: str = "live"):
        if batch_rows < MIN_BATCH_ROWS:
            raise ValueError(f"feed.batch_rows must be at least {MIN_BATCH_ROWS}, got {batch_rows}")
        if not receivers:
            raise ValueError("no receivers")
        from kernels import cpu

        self.k = cpu
        self.receivers = list(receivers)
        self.recovery = recovery
        self.batch_rows = int(batch_rows)
        self.filt_ip, self.filt_port = parse_filters(filters)
        self.stats = S.new_stats()
        self.trailing_bytes = 0
        self.error: str | None = None
        self.format = name
        self.sess_id = np.zeros((max_sessions, 10), dtype=np.uint8)
        self.sess_next = np.zeros(max_sessions, dtype=np.uint64)
        self.n_sess = np.zeros(1, dtype=np.int64)
        self.idle_ns = int(idle_timeout_ms) * 1_000_000
        self.max_messages = int(max_messages)
        self.stop_on_end = stop_on_end
        self.poll_ms = int(poll_ms)
        self.messages = 0
        self.ended = False
        self._stop = threading.Event()
        rows = max(r.batch if hasattr(r, "batch") else 1024 for r in self.receivers)
        rows = max(rows, 4096)
        self.pay_off = np.zeros(rows, np.int64)
        self.pay_len = np.zeros(rows, np.int64)
        self.pay_rx = np.zeros(rows, np.int64)
        self.off = np.zeros(self.batch_rows, np.int64)
        self.length = np.zeros(self.batch_rows, np.int32)
        self.seq = np.zeros(self.batch_rows, np.uint64)
        self.sess = np.zeros(self.batch_rows, np.uint16)
        self.rx = np.zeros(self.batch_rows, np.int64)
        #: (receive time ns, max sequence number) per delivered batch, when ``trace`` is set
        self.trace: list[tuple[int, int]] | None = None

    # -- CaptureReader interface ----------------------------------------------------------------
    def sessions(self) -> list[str]:
        return [bytes(self.sess_id[i]).decode("latin-1") for i in range(int(self.n_sess[0]))]

    @property
    def bytes_read(self) -> int:
        return sum(int(r.bytes) for r in self.receivers)

    def stop(self) -> None:
        """End the iteration at the next batch (thread-safe)."""
        self._stop.set()

    def gap_open(self) -> np.ndarray:
        """Per session index: nonzero while a gap waits for retransmission (stale books)."""
        if self.recovery is None:
            return np.zeros(self.sess_id.shape[0], np.int64)
        return self.recovery.gap_open()

    def rx_dropped(self) -> int:
        """Packets the kernel dropped before this source could take them (AF_XDP: RX ring full
        or fill ring empty; ``rx_dropped`` + ``rx_ring_full`` of ``XskSocket.statistics()``)."""
        n = 0
        for r in self.receivers:
            st = r.statistics()
            n += int(st.get("rx_dropped", 0)) + int(st.get("rx_ring_full", 0))
        return n

    def counters(self) -> dict[str, int]:
        """``packets`` received, ``messages`` delivered, ``rx_dropped`` (packets the kernel
        dropped: the receive ring overran), ``lost_messages`` (messages of abandoned gaps, never
        delivered), the gap recovery's counters and each receiver's kernel statistics."""
        out = {"packets": sum(int(r.packets) for r in self.receivers), "messages": self.messages,
               "rx_dropped": self.rx_dropped(), "lost_messages": int(self.stats[S.MOLD_GAP_MESSAGES])}
        if self.recovery is not None:
            out.update(self.recovery.counters())
        for i, r in enumerate(self.receivers):
            for k, v in r.statistics().items():
                out[f"rx{i}_{k}"] = int(v)
        return out

    # -- iteration ------------------------------------------------------------------------------
    def _split(self, buf, po, pl, prx, m) -> Iterator[MessageBatch]:
        pay = Payloads(buf, po, pl, prx)
        sessions = MoldSessions(self.sess_id, self.sess_next, self.n_sess)
        msgs = Frames(buf, self.off, self.length, self.seq, self.sess, self.rx)
        j = 0
        while j < m:
            c, j = self.k.split_mold(pay, j, m, sessions, msgs, self.stats)
            if c < 0:
                raise RuntimeError("message index overflow: batch_rows below one packet's messages")
            if c:
                self.messages += c
                if self.trace is not None:
                    self.trace.append((time.time_ns(), int(self.seq[c - 1])))
                yield MessageBatch(buf, self.off, self.length, self.seq, self.sess, self.rx, c)

    def _deliver(self, buf, po, pl, prx, m) -> Iterator[MessageBatch]:
        gr = self.recovery
        if gr is None:
            yield from self._split(buf, po, pl, prx, m)
            return
        i = 0
        while i < m:
            d, i, status = gr.sequence(buf, po, pl, prx, i, m, self.sess_id, self.sess_next, self.n_sess)
            yield from self._split(buf, gr.out_off, gr.out_len, gr.out_rx, d)
            if status == G.FULL:
                if not gr.compact(force=True):  # really full (not just released rows): give up
                    gr.abandon()
                yield from self._released()

    def _released(self) -> Iterator[MessageBatch]:
        gr = self.recovery
        assert gr is not None
        d = gr.release()
        if d:
            yield from self._split(gr.hold_buf, gr.out_off, gr.out_len, gr.out_rx, d)
        gr.compact()

    def _finished(self) -> bool:
        ns = int(self.n_sess[0])
        if self.max_messages and self.messages >= self.max_messages:
            return True
        if not self.stop_on_end or ns == 0:
            return False
        if self.recovery is not None:
            g = self.recovery.gap
            return bool(g[:ns, G.G_ENDED].all()) and not g[:ns, G.G_OPEN].any()
        return int(self.stats[S.MOLD_END_OF_SESSION]) >= ns

    def __iter__(self) -> Iterator[MessageBatch]:
        gr = self.recovery
        poller = select.poll()
        for r in self.receivers:
            for s in getattr(r, "socks", [r]):
                poller.register(s.fileno(), select.POLLIN)
        if gr is not None and gr.sock is not None:
            poller.register(gr.sock.fileno(), select.POLLIN)
        last_rx = time.time_ns()
        nr = len(self.receivers)
        turn = 0
        # tail-loss probes (see ``GapRecovery.probe``): after kernel drops, or now and then while
        # the line is quiet and a session has not ended, at most ``max_retries`` in a row
        probing = gr is not None and gr.sock is not None and gr.server is not None
        drops_seen = 0
        last_probe = 0
        probes = 0
        probe_ns = 4 * gr.retry_ns if gr is not None else 0
        while not self._stop.is_set():
            got = 0
            for _ in range(nr):
                r = self.receivers[turn]
                turn = (turn + 1) % nr
                n = r.recv(0)
                if n:
                    got += n
                    now = time.time_ns()
                    m = _extract(r.buf, r.off, r.length, n, r.link == "eth", self.filt_ip, self.filt_port,
                                 len(self.filt_ip), now, self.pay_off, self.pay_len, self.pay_rx, self.stats)
                    yield from self._deliver(r.buf, self.pay_off, self.pay_len, self.pay_rx, m)
            now = time.time_ns()
            if got:
                last_rx = now
            if gr is not None:
                if gr.pending():
                    gr.send_requests(now, self.sess_id)
                if gr.sock is not None:
                    k = gr.sock.recv(0)
                    if k:
                        got += k
                        last_rx = now
                        gr.touch(now)
                        self.pay_rx[:k] = now
                        yield from self._deliver(gr.sock.buf, gr.sock.off, gr.sock.length, self.pay_rx, k)
                if gr.pending():
                    yield from self._released()
            if self._finished():
                self.ended = True
                break
            if got:
                probes = 0
            elif probing and not gr.pending() and now - last_rx >= gr.retry_ns:
                drops = self.rx_dropped()
                if drops > drops_seen or (probes < gr.max_retries and now - last_probe >= probe_ns):
                    if gr.probe(self.sess_id, int(self.n_sess[0])):
                        probes = 0 if drops > drops_seen else probes + 1
                        last_probe = now
                    drops_seen = drops
            if not got:
                if self.idle_ns and now - last_rx > self.idle_ns:
                    self.error = f"no packet for {self.idle_ns // 1_000_000} ms: stopped"
                    break
                wait = self.poll_ms
                if gr is not None and gr.pending():
                    wait = max(1, min(wait, gr.retry_ns // 1_000_000))
                for r in self.receivers:
                    r.release()  # frames of the last batch back to the kernel before sleeping
                poller.poll(wait)
        for r in self.receivers:
            r.release()

    def close(self) -> None:
        for r in self.receivers:
            r.close()
        if self.recovery is not None:
            self.recovery.close()

    def __enter__(self) -> "LiveSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
