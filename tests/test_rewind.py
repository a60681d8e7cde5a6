"""Rewind (retransmission) server and gap recovery, on loopback (no root needed).

The server answers MoldUDP64 requests from a capture; the live source, fed by an in-process
receiver that loses packets on purpose, recovers every gap through it and decodes exactly what
the file replay decodes; risk sees the open gap as stale and the recovered one as sound.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bridges.xdp import gap as G
from bridges.xdp.source import LiveSource
from kernels import stats as S
from replay import rewind as RW
from tests.live_env import Pipeline, assert_same, generate_capture, reference

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return generate_capture(tmp_path_factory.mktemp("rewind") / "feed.pcap", messages=5000, symbols=8, seed=3)


@pytest.fixture(scope="module")
def store(capture):
    return RW.MessageStore.from_capture(capture)


@pytest.fixture(scope="module")
def ref(capture):
    return reference(capture)


def _messages(pkt: bytes) -> tuple[bytes, int, list[bytes]]:
    seq, count = struct.unpack_from("!QH", pkt, 10)
    out, o = [], 20
    for _ in range(count):
        (ln,) = struct.unpack_from("!H", pkt, o)
        out.append(pkt[o + 2: o + 2 + ln])
        o += 2 + ln
    assert o == len(pkt)
    return pkt[:10], seq, out


def test_store_packets_carry_the_requested_messages(store, ref):
    t = ref.table()
    pkts = store.packets(store.sessions[0], 100, 250, max_payload=400)
    assert len(pkts) > 1 and all(len(p) <= 400 for p in pkts)
    seqs, kinds = [], []
    for p in pkts:
        sess, seq, msgs = _messages(p)
        assert sess == store.sessions[0]
        seqs += list(range(seq, seq + len(msgs)))
        kinds += [m[0] for m in msgs]
    assert seqs == list(range(100, 350))
    assert kinds == list(t["kind"][99:349])
    assert store.packets(b"NOSUCHSESS", 1, 5) == []
    assert store.packets(store.sessions[0], 10**9, 5) == []


def _client():
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(30)  # a hang guard, not a timing assertion
    c.bind(("127.0.0.1", 0))
    return c


def test_server_answers_requests_and_counts_bad_ones(store):
    with RW.RewindServer.bind(store, ("127.0.0.1", 0), drop_replies=1).start() as srv, _client() as c:
        c.sendto(b"short", srv.address)
        c.sendto(G.request_packet(b"NOSUCHSESS", 1, 3), srv.address)
        c.sendto(G.request_packet(store.sessions[0], 7, 3), srv.address)  # first reply dropped on purpose
        c.sendto(G.request_packet(store.sessions[0], 7, 3), srv.address)
        data, _ = c.recvfrom(65535)
        sess, seq, msgs = _messages(data)
        assert (sess, seq, len(msgs)) == (store.sessions[0], 7, 3)
        assert srv.counters() == {"requests": 3, "bad_requests": 1, "unknown": 1, "packets_sent": 1,
                                  "messages_sent": 3, "dropped": 1}


def test_cli_serves_from_a_capture(capture, store):
    proc = subprocess.Popen([sys.executable, "-m", "replay.rewind", "serve", str(capture), "--bind", "127.0.0.1:0"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("rewind server on 127.0.0.1:"), line
        port = int(line.split(":")[1].split()[0].rstrip(":"))
        with _client() as c:
            c.sendto(G.request_packet(store.sessions[0], 1, 2), ("127.0.0.1", port))
            _, seq, msgs = _messages(c.recvfrom(65535)[0])
        assert seq == 1 and len(msgs) == 2
    finally:
        proc.terminate()
        proc.wait()
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()


class LossyReceiver:
    """Delivers a capture's UDP payloads in batches, minus ``drop`` (a stand-in for a socket)."""

    link = "payload"

    def __init__(self, payloads: list[bytes], drop: set[int], batch: int = 16):
        keep = [p for i, p in enumerate(payloads) if i not in drop]
        self.data = np.frombuffer(b"".join(keep), np.uint8).copy()
        lens = np.array([len(p) for p in keep], np.int64)
        self.all_off = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        self.all_len = lens
        self.batch, self.pos, self.packets, self.bytes = batch, 0, 0, 0
        self.buf = self.data

    def recv(self, timeout_ms: int = 0) -> int:
        n = min(self.batch, len(self.all_off) - self.pos)
        self.off = self.all_off[self.pos: self.pos + n]
        self.length = self.all_len[self.pos: self.pos + n]
        self.pos += n
        self.packets += n
        self.bytes += int(self.length.sum())
        return n

    def fileno(self) -> int:
        return self._r.fileno()

    def release(self) -> None:
        pass

    def statistics(self) -> dict:
        return {}

    def close(self) -> None:
        self._r.close()
        self._w.close()

    def __enter__(self):
        self._r, self._w = socket.socketpair()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.mark.parametrize("drop_replies", [0, 2])
def test_lost_packets_are_recovered_and_decode_equals_file_replay(capture, store, ref, drop_replies):
    payloads = RW.capture_payloads(capture)
    drop = {3, 4, 5, 40, 41, len(payloads) - 2}  # a run, a pair, and the last data packet
    with RW.RewindServer.bind(store, ("127.0.0.1", 0), drop_replies=drop_replies).start() as srv, \
            LossyReceiver(payloads, drop) as rcv:
        gr = G.GapRecovery(srv.address, retry_ms=5, bind="127.0.0.1")
        src = LiveSource([rcv], recovery=gr, batch_rows=1 << 16, poll_ms=1)
        live = Pipeline(src).run()
        src.close()
    assert src.ended and src.error is None
    assert_same(live, ref)
    c = gr.counters()
    assert c["gaps_open"] == 0 and c["gaps_abandoned"] == 0 and c["gaps_recovered"] >= 1
    assert c["held_packets"] == 0 and srv.requests >= 1
    assert live.source.stats[S.MOLD_GAPS] == 0  # the framing never saw the gaps


def test_unrecoverable_gap_is_abandoned_and_left_to_risk(capture, ref):
    payloads = RW.capture_payloads(capture)
    with LossyReceiver(payloads, {10}) as rcv:
        gr = G.GapRecovery(None)  # no rewind server: give the gap up at once
        src = LiveSource([rcv], recovery=gr, batch_rows=1 << 16, poll_ms=1)
        live = Pipeline(src).run()
        src.close()
    assert gr.counters()["gaps_abandoned"] == 1
    assert live.source.stats[S.MOLD_GAPS] == 1  # the event table shows the hole: feed_health flags it
    assert len(live.table()["kind"]) < len(ref.table()["kind"])


class FakeRisk:
    def __init__(self, sessions: int = 4):
        from kernels import risk as R

        self.R = R
        self.state = type("S", (), {"hs": np.zeros((sessions, R.NHS), np.int64)})()
        self.recovered: list[int] = []

    def recover(self, s: int) -> None:
        self.recovered.append(s)
        self.state.hs[s, self.R.HS_GAP_OPEN] = 0


def test_risk_sees_open_gaps_as_stale_until_recovered():
    from pipeline.live import sync_risk

    src = LiveSource([LossyReceiver([], set())], recovery=G.GapRecovery(None, max_sessions=4), batch_rows=1 << 16)
    risk = FakeRisk()
    sync = sync_risk(src, risk)
    g = src.recovery.gap
    g[1, G.G_OPEN] = 1
    sync()
    assert risk.state.hs[1, risk.R.HS_GAP_OPEN] == 1 and risk.state.hs[0, risk.R.HS_GAP_OPEN] == 0
    g[1, G.G_OPEN] = 0
    g[1, G.G_RECOVERED] += 1
    sync()
    assert risk.recovered == [1] and risk.state.hs[1, risk.R.HS_GAP_OPEN] == 0
    g[2, G.G_OPEN] = 1
    sync()
    g[2, G.G_OPEN] = 0
    g[2, G.G_ABANDONED] += 1  # given up: risk's own gap detection keeps the session stale
    risk.state.hs[2, risk.R.HS_GAP_OPEN] = 1
    sync()
    assert risk.recovered == [1] and risk.state.hs[2, risk.R.HS_GAP_OPEN] == 1
