"""Live feed integration: two network namespaces joined by a veth pair, the XDP program attached
on the receive side, a generated capture replayed onto the veth from the other namespace with
its addresses rewritten to the test's own, packets lost on purpose and recovered through the
rewind server (replay/rewind.py, inside the sender namespace).

The live pipeline's decoded events and final books equal the file replay of the same capture,
through AF_XDP and through the plain UDP socket fallback; the XDP counters equal what was sent,
reason by reason. Nothing is sent outside the namespaces the test creates. Skipped, with the
reason, without root, BPF or clang.
"""

from __future__ import annotations

import threading

import pytest
from omegaconf import OmegaConf

from bridges.xdp import loader as L
from bridges.xdp.netns import TestNet, enter, netns_problem
from kernels import stats as S
from pipeline.config import FeedConf
from pipeline.live import open_live_source
from replay import rewind as RW
from tests import live_frames as LF
from tests.live_env import Pipeline, assert_same, generate_capture, reference

_WHY = netns_problem() or L.unavailable_reason()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=f"live feed test needs root and BPF: {_WHY}")

GROUP = ("239.7.7.7", 30001)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return generate_capture(tmp_path_factory.mktemp("live") / "feed.pcap", messages=20_000, symbols=16, seed=5)


@pytest.fixture(scope="module")
def ref(capture):
    return reference(capture)


@pytest.fixture
def net():
    n = TestNet("lf")
    try:
        yield n
    finally:
        n.close()


def _feed_conf(net: TestNet, method: str, rewind: tuple[str, int]):
    conf = OmegaConf.structured(FeedConf)
    conf.source = "live"
    conf.batch_rows = 1 << 16
    lv = conf.live
    lv.method = method
    lv.interface = net.rx.ifname
    lv.groups = [f"{GROUP[0]}:{GROUP[1]}"]
    lv.rewind = f"{rewind[0]}:{rewind[1]}"
    lv.retry_ms = 20
    lv.frames = 4096
    lv.ring = 2048
    return conf


def _run(net: TestNet, capture, method: str, extra: list[bytes]):
    payloads = RW.capture_payloads(capture)
    n = len(payloads)
    drop = {2, 3, 4, 50, n // 2, n - 2}  # loss: a run, singles, and the last data packet
    frames = RW.rewrite(payloads, (net.tx.ip, 40000), GROUP, net.tx.mac, None, drop)
    store = RW.MessageStore.from_capture(capture)
    with enter(net.tx.ns):  # the exchange side: rewind server and sender live in the tx namespace
        srv = RW.RewindServer.bind(store, (net.tx.ip, 0))
        raw = RW.raw_socket(net.tx.ifname)
    try:
        srv.start()
        with enter(net.rx.ns):
            src = open_live_source(_feed_conf(net, method, srv.address), log=lambda s: None)
        try:
            def send() -> None:
                RW.publish(raw, extra[:3])
                RW.publish(raw, frames)
                RW.publish(raw, extra[3:])

            th = threading.Thread(target=send)
            th.start()
            try:
                live = Pipeline(src).run()
            finally:
                th.join()
            prog = next((r for r in src.resources if isinstance(r, L.XdpProgram)), None)
            counters = prog.counters() if prog is not None else None
            return live, src, src.counters(), srv.counters(), counters, len(frames)
        finally:
            src.close()
    finally:
        srv.stop()
        raw.close()


def test_afxdp_live_feed_equals_file_replay_with_loss_recovered(net, capture, ref):
    bad = LF.malformed()
    extra = [f for frames in bad.values() for f in frames]
    live, src, g, srv, c, sent = _run(net, capture, "xdp", extra)
    assert src.format == "live-xdp" and src.ended and src.error is None
    assert_same(live, ref)
    assert g["gaps_recovered"] >= 1 and g["gaps_abandoned"] == 0 and g["gaps_open"] == 0
    assert srv["requests"] >= 1 and srv["packets_sent"] == g["replies"]
    assert src.stats[S.MOLD_GAPS] == 0
    # the XDP counters equal what was sent, reason by reason
    assert c["redirected"] == c["matched"] == sent == g["packets"]
    for reason, frames in bad.items():
        expect = len(frames) + (srv["packets_sent"] if reason == "no_match" else 0)  # replies are unicast
        assert c[reason] == expect, reason
    assert c["rx"] == sent + len(extra) + srv["packets_sent"]
    assert c["passed"] == len(extra) + srv["packets_sent"] and c["dropped"] == 0 and c["no_socket"] == 0


def test_udp_socket_fallback_equals_file_replay_with_loss_recovered(net, capture, ref):
    live, src, g, srv, c, sent = _run(net, capture, "udp", [])
    assert src.format == "live-udp" and src.ended and src.error is None and c is None
    assert_same(live, ref)
    assert g["packets"] == sent and g["gaps_recovered"] >= 1 and g["gaps_abandoned"] == 0
    assert src.stats[S.MOLD_GAPS] == 0


def test_overrun_small_ring_does_not_stall_and_accounts_for_every_message(net, capture, ref):
    """A burst sent before the receiver reads overruns a deliberately small AF_XDP ring (the
    tail, end-of-session packet included, is dropped by the kernel: no later packet reveals the
    gap). The receiver counts the drops, probes the rewind server for what follows, and ends
    with every message delivered or counted lost - it does not wait for the idle timeout."""
    payloads = RW.capture_payloads(capture)
    frames = RW.rewrite(payloads, (net.tx.ip, 40000), GROUP, net.tx.mac)
    store = RW.MessageStore.from_capture(capture)
    with enter(net.tx.ns):
        srv = RW.RewindServer.bind(store, (net.tx.ip, 0))
        raw = RW.raw_socket(net.tx.ifname)
    try:
        srv.start()
        conf = _feed_conf(net, "xdp", srv.address)
        conf.live.frames, conf.live.ring, conf.live.batch = 256, 128, 64
        conf.live.idle_timeout_ms = 10_000  # a stall guard: the run must end long before
        with enter(net.rx.ns):
            src = open_live_source(conf, log=lambda s: None)
        try:
            RW.publish(raw, frames)  # the whole burst before the first read: the ring overruns
            live = Pipeline(src).run()
            g = src.counters()
        finally:
            src.close()
    finally:
        srv.stop()
        raw.close()
    assert src.ended and src.error is None, src.error
    assert g["rx_dropped"] > 0 and g["packets"] + g["rx_dropped"] == len(frames)
    assert g["packets"] < len(frames)
    assert g["messages"] + g["lost_messages"] == len(store.seq)
    assert g["gaps_open"] == 0 and g["held_packets"] == 0
    if g["lost_messages"] == 0:  # recovered through the rewind server: identical to the file replay
        assert_same(live, ref)
