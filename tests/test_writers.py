"""Capture writers (replay/writers.py): BinaryFILE framing and MoldUDP64-in-pcap packets.

dpkt is the reference for Ethernet/IPv4/UDP and the pcap container; the Mold header and the
message blocks are checked byte by byte. Inputs are small and hand-built.
"""

from __future__ import annotations

import struct
from pathlib import Path

import dpkt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import stats as S
from tests.packets import read_binaryfile
from replay.writers import (
    BinaryFileWriter,
    MoldPcapWriter,
    multicast_mac,
    pack_messages,
)

T0 = 1_793_630_000_000_000_000  # some epoch ns


def _msgs(n: int, seed: int = 0) -> list[bytes]:
    """``n`` distinct messages of 1..60 bytes (content is not ITCH: writers do not care)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ln = int(rng.integers(1, 61))
        body = rng.integers(0, 256, ln, dtype=np.uint8).tobytes()
        out.append(bytes([65 + i % 26]) + body[1:] if ln > 1 else bytes([65 + i % 26]))
    return out


def read_mold_pcap(path):
    """Every packet as a dict (via dpkt), with the Mold header and blocks split out."""
    with open(path, "rb") as f:
        head = f.read(24)
        f.seek(0)
        r = dpkt.pcap.Reader(f)
        pkts = []
        for ts, frame in r:
            eth = dpkt.ethernet.Ethernet(frame)
            ip = eth.data
            udp = ip.data
            pay = bytes(udp.data)
            sess, seq, count = pay[:10], *struct.unpack_from(">QH", pay, 10)
            blocks, o = [], 20
            if count not in (0, 0xFFFF):
                for _ in range(count):
                    (ln,) = struct.unpack_from(">H", pay, o)
                    blocks.append(pay[o + 2 : o + 2 + ln])
                    o += 2 + ln
            pkts.append(dict(ts=ts, frame=frame, eth=eth, ip=ip, udp=udp, payload=pay, session=sess,
                             seq=seq, count=count, blocks=blocks, tail=pay[o:]))
    return head, r, pkts


def _write_pcap(path, msgs, ts, **kw):
    buf, off, ln = pack_messages(msgs)
    with MoldPcapWriter(path, **kw) as w:
        w.write_messages(buf, off, ln, np.asarray(ts, dtype=np.int64))
    return w


# ---------------------------------------------------------------------------------------------
# BinaryFILE
# ---------------------------------------------------------------------------------------------

def test_binaryfile_frames_each_message_and_ends_with_zero_length_record(tmp_path):
    msgs = _msgs(500)
    path = tmp_path / "a.itch"
    with BinaryFileWriter(path) as w:
        w.write_messages(*pack_messages(msgs[:200]))
        for m in msgs[200:210]:
            w.write_message(m)
        w.write_messages(*pack_messages(msgs[210:]))
    got, tail = read_binaryfile(path)
    assert got == msgs
    assert tail == b"\x00\x00"
    assert w.bytes_written == sum(2 + len(m) for m in msgs) + 2
    assert w.n_messages == len(msgs)


def test_binaryfile_without_end_of_session_has_no_marker(tmp_path):
    path = tmp_path / "a.itch"
    w = BinaryFileWriter(path)
    w.write_messages(*pack_messages([b"S" + bytes(11)]))
    w.close(end_of_session=False)
    assert path.read_bytes() == b"\x00\x0cS" + bytes(11)


def test_binaryfile_small_buffer_flushes_give_the_same_bytes(tmp_path):
    msgs = _msgs(5000, seed=3)
    a, b = tmp_path / "a.itch", tmp_path / "b.itch"
    with BinaryFileWriter(a) as w:
        w.write_messages(*pack_messages(msgs))
    with BinaryFileWriter(b, chunk_bytes=65537) as w:
        w.write_messages(*pack_messages(msgs))
    assert a.read_bytes() == b.read_bytes()


def test_binaryfile_rejects_empty_messages(tmp_path):
    with BinaryFileWriter(tmp_path / "a.itch") as w:
        buf, off, ln = pack_messages([b"A", b"B"])
        ln[1] = 0
        with pytest.raises(ValueError):
            w.write_messages(buf, off, ln)


def test_binaryfile_uses_offsets_not_adjacency(tmp_path):
    """Messages may sit anywhere in the buffer, in any order."""
    buf = np.frombuffer(b"xxHELLOyyWORLDzz", dtype=np.uint8)
    path = tmp_path / "a.itch"
    with BinaryFileWriter(path) as w:
        w.write_messages(buf, np.array([9, 2]), np.array([5, 5], dtype=np.int32))
    assert read_binaryfile(path)[0] == [b"WORLD", b"HELLO"]


# ---------------------------------------------------------------------------------------------
# MoldUDP64 in pcap
# ---------------------------------------------------------------------------------------------

def test_mold_pcap_round_trips_through_dpkt(tmp_path):
    msgs = _msgs(300, seed=1)
    ts = T0 + np.arange(len(msgs), dtype=np.int64) * 1234
    path = tmp_path / "a.pcap"
    w = _write_pcap(path, msgs, ts, session="TEST01", max_payload=400)
    head, r, pkts = read_mold_pcap(path)
    assert head[:4] == bytes.fromhex("4d3cb2a1")  # a1b23c4d little-endian: ns
    assert r.datalink() == dpkt.pcap.DLT_EN10MB
    assert w.n_packets == len(pkts)
    seq = 1
    got = []
    for p in pkts:
        eth, ip, udp = p["eth"], p["ip"], p["udp"]
        assert eth.dst == multicast_mac("233.54.12.111") == bytes.fromhex("01005e360c6f")
        assert eth.type == dpkt.ethernet.ETH_TYPE_IP
        assert ip.v == 4 and ip.hl == 5 and ip.ttl == 64 and ip.p == 17
        assert ip.df == 1 and ip.mf == 0 and ip.offset == 0
        assert dpkt.in_cksum(bytes(p["frame"][14:34])) == 0  # header checksum verifies
        assert ip.len == len(p["frame"]) - 14
        assert ip.src == bytes([10, 0, 0, 1]) and ip.dst == bytes([233, 54, 12, 111])
        assert (udp.sport, udp.dport) == (40000, 26477)
        assert udp.ulen == 8 + len(p["payload"]) and len(p["payload"]) <= 400
        assert p["session"] == b"TEST01    "
        assert p["seq"] == seq and p["count"] == len(p["blocks"]) > 0
        assert p["tail"] == b""
        # a packet takes its first message's time
        assert int(p["ts"] * 10**9) == ts[seq - 1]
        seq += p["count"]
        got += p["blocks"]
    assert got == msgs
    assert w.next_seq == len(msgs) + 1 and w.n_messages == len(msgs)
    # packets are full: the next message would not have fit
    for a, b in zip(pkts, pkts[1:]):
        assert len(a["payload"]) + 2 + len(b["blocks"][0]) > 400
    # consecutive IPv4 identifications
    assert [p["ip"].id for p in pkts] == list(range(len(pkts)))


def test_mold_packing_does_not_depend_on_batches_or_buffer_size(tmp_path):
    msgs = _msgs(3000, seed=2)
    ts = T0 + np.arange(len(msgs), dtype=np.int64) * 700
    a = tmp_path / "a.pcap"
    _write_pcap(a, msgs, ts)
    b = tmp_path / "b.pcap"
    buf, off, ln = pack_messages(msgs)
    with MoldPcapWriter(b, chunk_bytes=4 * (16 + 62 + 1400)) as w:
        i = 0
        for k, step in enumerate([1, 7, 500, 3, 1000, 1, 1, 2000]):
            j = min(i + step, len(msgs))
            if step == 1 and k % 2:
                w.write_message(msgs[i], int(ts[i]))
            else:
                w.write_messages(buf, off[i:j], ln[i:j], ts[i:j])
            i = j
    assert a.read_bytes() == b.read_bytes()


def test_heartbeat_and_end_of_session_carry_the_next_sequence_number(tmp_path):
    msgs = _msgs(5)
    path = tmp_path / "a.pcap"
    with MoldPcapWriter(path) as w:
        w.write_messages(*pack_messages(msgs[:3]), np.array([T0, T0 + 1, T0 + 2]))
        w.heartbeat(T0 + 1_000_000_000)
        w.write_messages(*pack_messages(msgs[3:]), np.array([T0 + 2_000_000_000] * 2))
        w.end_session(T0 + 3_000_000_000)
    _, _, pkts = read_mold_pcap(path)
    assert [(p["seq"], p["count"]) for p in pkts] == [(1, 3), (4, 0), (4, 2), (6, 0xFFFF)]
    assert [len(p["payload"]) for p in pkts[1::2]] == [20, 20]
    assert [int(p["ts"] * 10**9) - T0 for p in pkts] == [0, 10**9, 2 * 10**9, 3 * 10**9]
    assert pkts[0]["blocks"] + pkts[2]["blocks"] == msgs


def test_vlan_tag_is_present_when_asked(tmp_path):
    path = tmp_path / "a.pcap"
    _write_pcap(path, _msgs(20), T0 + np.arange(20), vlan=42)
    _, _, pkts = read_mold_pcap(path)
    for p in pkts:
        assert p["frame"][12:14] == b"\x81\x00"
        assert struct.unpack_from(">H", p["frame"], 14)[0] & 0xFFF == 42
        assert p["frame"][16:18] == b"\x08\x00"
        assert [t.id for t in p["eth"].vlan_tags] == [42]
        assert dpkt.in_cksum(bytes(p["frame"][18:38])) == 0
    assert sum(p["count"] for p in pkts) == 20


def test_untagged_frames_by_default(tmp_path):
    path = tmp_path / "a.pcap"
    _write_pcap(path, _msgs(3), T0 + np.arange(3))
    _, _, pkts = read_mold_pcap(path)
    assert pkts[0]["frame"][12:14] == b"\x08\x00"


def test_microsecond_pcap(tmp_path):
    path = tmp_path / "a.pcap"
    _write_pcap(path, _msgs(3), [T0 + 1_234_567, T0 + 2_000_000, T0 + 3_000_000], nanosecond=False,
                max_payload=100)
    head, _, pkts = read_mold_pcap(path)
    assert head[:4] == bytes.fromhex("d4c3b2a1")
    assert round(float(pkts[0]["ts"]) * 1e6) == (T0 + 1_234_567) // 1000


def test_max_delay_starts_a_new_packet(tmp_path):
    path = tmp_path / "a.pcap"
    ts = T0 + np.array([0, 100, 200, 5000, 5100, 20000])
    _write_pcap(path, _msgs(6), ts, max_delay_ns=1000)
    _, _, pkts = read_mold_pcap(path)
    assert [p["count"] for p in pkts] == [3, 2, 1]


def test_unicast_destination_and_custom_addresses(tmp_path):
    path = tmp_path / "a.pcap"
    _write_pcap(path, _msgs(2), [T0, T0], src=("192.168.1.2", 1111), dst=("127.0.0.1", 2222),
                dst_mac="aa:bb:cc:dd:ee:ff", ttl=3)
    _, _, pkts = read_mold_pcap(path)
    p = pkts[0]
    assert p["eth"].dst == bytes.fromhex("aabbccddeeff")
    assert p["ip"].ttl == 3 and p["ip"].dst == bytes([127, 0, 0, 1])
    assert (p["udp"].sport, p["udp"].dport) == (1111, 2222)


def test_writer_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        MoldPcapWriter(tmp_path / "a.pcap", session=b"ELEVENBYTES")
    with pytest.raises(ValueError):
        MoldPcapWriter(tmp_path / "b.pcap", max_payload=1500, snaplen=1000)
    with MoldPcapWriter(tmp_path / "c.pcap", max_payload=60) as w:
        with pytest.raises(ValueError):  # 39 + 2 + 20 > 60
            w.write_message(b"R" + bytes(38), T0)


def test_the_pipeline_capture_reader_reads_the_pcap_back(tmp_path):
    """The pipeline's own reader (replay/capture.py over the framing kernels) agrees."""
    from replay.capture import CaptureReader

    msgs = _msgs(2000, seed=5)
    path = tmp_path / "a.pcap"
    with MoldPcapWriter(path) as w:
        w.write_messages(*pack_messages(msgs), T0 + np.arange(2000, dtype=np.int64) * 10)
        w.heartbeat(T0 + 10**9)
        w.end_session(T0 + 2 * 10**9)
    r = CaptureReader(path)
    got, seqs, rx = [], [], []
    for bt in r:
        got += [bytes(bt.buf[o : o + ln]) for o, ln in zip(bt.off[: bt.n], bt.length[: bt.n])]
        seqs += [int(x) for x in bt.seq[: bt.n]]
        rx += [int(x) for x in bt.rx[: bt.n]]
    assert got == msgs
    assert seqs == list(range(1, len(msgs) + 1))
    assert r.sessions() == ["0000000001"]
    assert r.stats[S.MOLD_GAPS] == 0 and r.stats[S.MOLD_HEARTBEATS] == 1
    assert r.stats[S.MOLD_END_OF_SESSION] == 1
    assert all(r.stats[v] == 0 for v in S.PROBLEMS.values())
    assert r.trailing_bytes == 0
    # rx is the packet time: its first message's time
    first = {}
    for p in read_mold_pcap(path)[2]:
        for k in range(p["count"] if p["count"] != 0xFFFF else 0):
            first[p["seq"] + k] = int(p["ts"] * 10**9)
    assert rx == [first[s] for s in seqs]


@settings(max_examples=30, deadline=None)
@given(
    lens=st.lists(st.integers(1, 120), min_size=1, max_size=200),
    max_payload=st.integers(20 + 2 + 120, 1500),
    cuts=st.lists(st.integers(0, 200), max_size=6),
    vlan=st.one_of(st.none(), st.integers(0, 4095)),
)
def test_fuzz_any_split_round_trips(tmp_path_factory, lens, max_payload, cuts, vlan):
    msgs = [bytes([i % 256]) * ln for i, ln in enumerate(lens)]
    ts = T0 + np.cumsum(np.array(lens, dtype=np.int64))
    path = tmp_path_factory.mktemp("fuzz") / "f.pcap"
    buf, off, ln = pack_messages(msgs)
    bounds = sorted({0, len(msgs), *[c % (len(msgs) + 1) for c in cuts]})
    with MoldPcapWriter(path, max_payload=max_payload, vlan=vlan) as w:
        for a, b in zip(bounds, bounds[1:]):
            w.write_messages(buf, off[a:b], ln[a:b], ts[a:b])
        w.end_session(int(ts[-1]))
    _, _, pkts = read_mold_pcap(path)
    got, seq = [], 1
    for p in pkts[:-1]:
        assert p["seq"] == seq and len(p["payload"]) <= max_payload
        assert dpkt.in_cksum(bytes(p["ip"])[:20]) == 0
        seq += p["count"]
        got += p["blocks"]
    assert got == msgs
    assert (pkts[-1]["seq"], pkts[-1]["count"]) == (len(msgs) + 1, 0xFFFF)
