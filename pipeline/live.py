"""Live feed wiring (``feed.source=live``): build the frame source from ``feed.live``.

``open_live_source(feed)`` returns a ``bridges.xdp.source.LiveSource``, which has the interface
of ``replay.capture.CaptureReader``: the run loop iterates it for ``MessageBatch`` objects and
hands them to the same ``DecodeStage``. ``feed.live.method``:

- ``xdp``: the XDP steering program (``xdp_progs/hftbot_steer.bpf.c``) attached to
  ``feed.live.interface`` redirects the configured groups to one AF_XDP socket per RX queue in
  ``feed.live.queues``; everything else is passed (or dropped, ``feed.live.other``).
- ``udp``: plain sockets, one per group, read with ``recvmmsg``.
- ``auto``: ``xdp``, or ``udp`` when XDP is unavailable here (the reason is logged).

Multicast groups are joined on the interface in every method (with XDP the membership is what
makes the NIC and the switch deliver the group). With ``feed.live.rewind`` set, MoldUDP64 gaps
are recovered from that server before framing (``bridges/xdp/gap.py``); ``sync_risk`` marks
sessions with an open gap stale in risk (``R_STALE_GAP``) and clears them once recovered.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from bridges.xdp.gap import G_ABANDONED, GapRecovery
from bridges.xdp.loader import Feed, XdpUnavailable
from bridges.xdp.source import LiveSource
from bridges.xdp.udp import UdpBatchSocket, UdpReceiver
from kernels import risk as R


def live_feeds(feed: Any) -> list[Feed]:
    """``feed.live.groups``, else ``feed.filters``: each 'group:port'."""
    specs = list(feed.live.groups) or list(feed.filters)
    if not specs:
        raise ValueError("feed.live.groups: at least one 'group:port' is needed for a live feed")
    return [Feed.parse(s) for s in specs]


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = str(text).rpartition(":")
    return host, int(port)


def _xdp_receivers(lv: Any, feeds: list[Feed]) -> tuple[list, list]:
    from bridges.xdp.afxdp import XskSocket
    from bridges.xdp.loader import XdpProgram

    prog = XdpProgram(lv.interface, feeds, other=lv.other, steer=lv.steer, n_pipelines=lv.pipelines,
                      mode=lv.xdp_mode)
    socks: list = []
    try:
        for q in lv.queues:
            s = XskSocket(lv.interface, int(q), frames=lv.frames, frame_size=lv.frame_size, ring=lv.ring,
                          batch=lv.batch, zerocopy=lv.zerocopy)
            socks.append(s)
            prog.set_socket(int(q), s.fd)
        # membership only (never read): makes the NIC filter and the switch deliver the groups
        joins = [UdpBatchSocket(("0.0.0.0", 0), group=f.group, ifname=lv.interface, batch=1, rcvbuf=4096)
                 for f in feeds if int(f.group.split(".")[0]) in range(224, 240)]
    except BaseException:
        for s in socks:
            s.close()
        prog.close()
        raise
    return socks, [prog, *joins]


def open_live_source(feed: Any, log: Callable[[str], None] = print) -> LiveSource:
    """The live frame source for the ``feed`` config sub-tree (``feed.source == "live"``)."""
    lv = feed.live
    if not lv.interface:
        raise ValueError("feed.live.interface: the receive interface is required for a live feed")
    feeds = live_feeds(feed)
    method = lv.method
    receivers: list = []
    resources: list = []
    if method in ("xdp", "auto"):
        try:
            receivers, resources = _xdp_receivers(lv, feeds)
            method = "xdp"
        except (XdpUnavailable, OSError) as exc:
            if lv.method == "xdp":
                raise
            log(f"XDP unavailable ({exc}); receiving with plain UDP sockets")
            method = "udp"
    if method == "udp":
        receivers = [UdpReceiver([(f.group, f.port) for f in feeds], lv.interface, rcvbuf=lv.rcvbuf)]
    recovery = None
    if lv.rewind:
        recovery = GapRecovery(_hostport(lv.rewind), max_sessions=feed.max_sessions, hold_bytes=lv.hold_bytes,
                               hold_packets=lv.hold_packets, retry_ms=lv.retry_ms, max_retries=lv.max_retries,
                               bind=lv.rewind_bind)
    filters = [f"{f.group}:{f.port}" for f in feeds]
    src = LiveSource(receivers, recovery=recovery, filters=filters, batch_rows=feed.batch_rows,
                     max_sessions=feed.max_sessions, idle_timeout_ms=lv.idle_timeout_ms,
                     max_messages=lv.max_messages, stop_on_end=lv.stop_on_end, name=f"live-{method}")
    src.resources = resources  # type: ignore[attr-defined]
    _close = src.close

    def close() -> None:
        _close()
        for r in resources:
            r.close()

    src.close = close  # type: ignore[method-assign]
    log(f"live feed: {method} on {lv.interface} queues {list(lv.queues)} groups {filters}"
        + (f", rewind {lv.rewind}" if lv.rewind else ", no gap recovery"))
    return src


class RiskSync:
    """Keeps risk's per-session gap flags in step with gaps waiting for retransmission: call
    after ``risk.on_events`` each batch. A recovered gap clears the flag (``risk.recover``); an
    abandoned one is left to risk's own gap detection (the event table shows the hole)."""

    def __init__(self, source: LiveSource, risk: Any):
        self.source, self.risk = source, risk
        n = min(source.sess_id.shape[0], risk.state.hs.shape[0])
        self.n = n
        self.marked = np.zeros(n, bool)
        self.abandoned = np.zeros(n, np.int64)

    def __call__(self) -> None:
        gr = self.source.recovery
        if gr is None:
            return
        n = self.n
        open_ = gr.gap[:n, 0] != 0
        hs = self.risk.state.hs
        hs[np.nonzero(open_)[0], R.HS_GAP_OPEN] = 1
        closed = self.marked & ~open_
        ab = gr.gap[:n, G_ABANDONED]
        for s in np.nonzero(closed)[0]:
            if ab[s] == self.abandoned[s]:
                self.risk.recover(int(s))
        self.abandoned[:] = ab
        self.marked = open_.copy()


def sync_risk(source: LiveSource, risk: Any) -> RiskSync:
    """A ``RiskSync`` for ``source`` and ``risk`` (call it after each ``risk.on_events``)."""
    return RiskSync(source, risk)
