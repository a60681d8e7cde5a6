"""The compiled per-packet path (pipeline/tick.py) is exactly the stage objects run one packet at a
time: same books, risk and strategy state, and the same FIX bytes on the socket."""

from __future__ import annotations

import re
import socket

import numpy as np
import pytest

from kernels import cpu

pytest.importorskip("quickfix")


class _Session:
    """QuickFIX's session as the bridge's hot path sees it (sequence numbers only)."""

    def getExpectedSenderNum(self):  # noqa: N802 - QuickFIX's name
        return 1


def _stages(path, cfg, sock):
    from bridges.fix.bridge import FixBridge
    from pipeline.book import BookStage, BookState
    from pipeline.feed import open_reader
    from pipeline.risk import RiskStage
    from pipeline.stages import DecodeStage
    from pipeline.strategy import model_and_strategy

    reader = open_reader(cfg.feed, path)
    decode = DecodeStage(cpu, capacity=reader.batch_rows, stats=reader.stats)
    state = BookState(200_000, 100_000, 64)
    books = BookStage(cpu, state, capacity=reader.batch_rows, symbols=list(cfg.features.symbols),
                      tau_flow_ns=cfg.features.tau_flow_ns, tau_rv_ns=cfg.features.tau_rv_ns,
                      top_n=cfg.features.top_n)
    risk = RiskStage.from_config(cpu, cfg, state)
    model, strategy = model_and_strategy(cfg, cpu, state, reader.batch_rows, positions=risk.state.ps,
                                         log=lambda s: None)
    bridge = FixBridge(host="127.0.0.1", port=1, sender="HFTBOT", target="VENUE", state_dir=path.parent / str(id(sock)),
                       sym=state.sym, date="20190130", max_orders=4096)
    bridge.session = _Session()
    bridge.logged_on = True
    bridge.fd = sock.fileno()
    return reader, decode, books, risk, model, strategy, bridge


def _drain(sock) -> bytes:
    sock.setblocking(False)
    out = bytearray()
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _mask(raw: bytes) -> list[bytes]:
    """Messages with SendingTime and CheckSum blanked (wall-clock dependent)."""
    raw = re.sub(rb"\x0110=\d{3}\x01", b"\x0110=C\x01", re.sub(rb"\x0152=[^\x01]*", b"\x0152=T", raw))
    return [m for m in raw.split(b"\x0110=C\x01") if m]


def test_compiled_per_packet_path_equals_the_stage_objects(tmp_path):
    from hydra import compose, initialize_config_dir

    from pipeline.app import CONF_DIR
    from pipeline.config import register
    from pipeline.tick import TickPath, packet_bounds
    from replay.capture import MessageBatch
    from replay.generator import generate

    path = tmp_path / "day.pcap"
    generate(path, fmt="pcap", n_messages=30_000, n_symbols=4, seed=3, max_delay_ns=1000)
    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("smoke", overrides=["strategy.min_interval_ns=0", "features.symbols=['*']"])
    pairs = [socket.socketpair() for _ in range(2)]
    for a, b in pairs:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    try:
        ref = _stages(path, cfg, pairs[0][0])
        reader, decode, books, risk, model, strategy, bridge = ref
        packets = 0
        for batch in reader:
            lo, hi = packet_bounds(batch.rx, batch.n)
            for a, z in zip(lo, hi):
                pb = MessageBatch(batch.buf, batch.off[a:z], batch.length[a:z], batch.seq[a:z], batch.sess[a:z],
                                  batch.rx[a:z], int(z - a))
                ev = decode(pb)
                fb = books(ev)
                risk.on_events(ev)
                intents = strategy(model(fb))
                if intents.n:
                    dec = risk.check(intents.rows, intents.n)
                    strategy.on_decisions(intents, dec.decisions)
                    bridge.send(dec.orders)
                packets += 1
        want = _drain(pairs[0][1])

        fused = _stages(path, cfg, pairs[1][0])
        reader2, *_, bridge2 = fused
        tp = TickPath(*fused[1:], max_packets=256)
        got_packets = 0
        for batch in reader2:
            got_packets += tp(batch).shape[0]
        got = _drain(pairs[1][1])
    finally:
        for a, b in pairs:
            a.close()
            b.close()
    assert got_packets == packets > 1000
    assert bridge.n_msgs > 5 and bridge2.n_msgs == bridge.n_msgs
    assert _mask(got) == _mask(want)
    for x, y in zip(ref[2].state.arrays(), fused[2].state.arrays()):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(ref[3].arrays(), fused[3].arrays()):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(ref[5].ss, fused[5].ss)
    np.testing.assert_array_equal(bridge.ot[: bridge.n_msgs, :10], bridge2.ot[: bridge.n_msgs, :10])
