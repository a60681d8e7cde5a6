"""Real captures in ../shared/data: golden decode values, sample counts, truncation, pcapng."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from kernels import cpu
from kernels import stats as S
from pipeline.stages import DecodeStage
from replay.capture import CaptureReader
from replay.render import event_fields
from replay.report import truncation_line
from tests.conftest import REPO, shared_data

# meatpy's field names (the golden file's) -> ours (the specification's)
MEATPY_NAMES = {
    "order_ref": "order_reference_number", "bsindicator": "buy_sell_indicator",
    "canceled_shares": "cancelled_shares", "match": "match_number", "original_ref": "original_order_reference_number",
    "new_ref": "new_order_reference_number", "code": "event_code", "action": "reg_sho_action",
    "interest": "interest_flag", "auction_collar_ref_price": "auction_collar_reference_price",
    "current_ref_price": "current_reference_price",
}
PER_TYPE = {("E", "shares"): "executed_shares", ("C", "shares"): "executed_shares",
            ("H", "state"): "trading_state", ("L", "state"): "market_participant_state"}


def decode_file(path, k=cpu, **kw):
    reader = CaptureReader(path, backend=cpu, **kw)
    stage = DecodeStage(k, capacity=reader.batch_rows, stats=reader.stats)
    recs = [stage(b).to_records() for b in reader]
    return (np.concatenate(recs) if recs else np.zeros(0)), reader


def expected_rows():
    path = shared_data("omi-pcaps", "EXPECTED_itch50_decoded.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    by_file: dict[str, list] = {}
    for r in rows:
        by_file.setdefault(r["pcap"], []).append(r)
    return rows, by_file


def test_every_nasdaq_itch50_capture_decodes_to_the_golden_values():
    rows, by_file = expected_rows()
    assert len(rows) == 227
    checked = 0
    for rel, want in by_file.items():
        recs, reader = decode_file(shared_data("omi-pcaps", rel))
        assert len(recs) == len(want), rel
        assert reader.trailing_bytes == 0 and not reader.error
        for rec, exp in zip(recs, want):
            got = event_fields(rec)
            t = exp["type"]
            assert got["message_type"] == t
            for name, value in exp["meatpy"].items():
                ours = PER_TYPE.get((t, name)) or MEATPY_NAMES.get(name, name)
                assert got[ours] == value, (rel, exp["frame"], name)
            assert int(rec["seq"]) == exp["seq_of_msg"]
            assert reader.sessions()[int(rec["sess"])] == exp["mold_session"]
            checked += 1
    assert checked == 227


def test_golden_type_counts_match_source_md():
    rows, _ = expected_rows()
    counts = Counter(r["type"] for r in rows)
    assert counts == {"A": 53, "C": 15, "D": 18, "E": 16, "F": 17, "H": 16, "I": 6, "J": 5, "L": 6,
                      "N": 5, "P": 15, "Q": 5, "S": 3, "U": 17, "X": 15, "Y": 15}


def test_multiple_packets_capture_has_38_meta_adds_in_one_packet():
    recs, reader = decode_file(shared_data("omi-pcaps", "Nasdaq", "Nasdaq.Equities.TotalView.Itch.v5.0",
                                           "Multiple.Packets.pcap"))
    assert len(recs) == 39
    assert reader.sessions() == ["000010059B"]
    second = recs[recs["seq"] >= 19009117]
    assert len(second) == 38
    assert {event_fields(r)["stock"] for r in second if chr(r["kind"]) == "A"} == {"META    "}
    assert reader.stats[S.MOLD_PACKETS] == 2


def test_first1000_binaryfile_counts():
    recs, reader = decode_file(shared_data("itch50-nasdaq-first1000", "sample.itch"))
    assert Counter(chr(k) for k in recs["kind"]) == {"S": 1, "R": 993, "H": 3, "Y": 3}
    assert reader.trailing_bytes == 0 and reader.stats[S.DECODED] == 1000
    # stock directory: locates 1..993, A first, BPFH last
    r = recs[recs["kind"] == ord("R")]
    assert r["locate"].tolist() == list(range(1, 994))
    assert event_fields(r[0])["stock"] == "A       " and event_fields(r[-1])["stock"] == "BPFH    "


def test_truncated_binaryfile_reports_101_messages_and_15_trailing_bytes():
    recs, reader = decode_file(shared_data("itch50-nasdaq-01302019-head4096", "sample.itch"))
    assert Counter(chr(k) for k in recs["kind"]) == {"S": 1, "R": 98, "H": 1, "Y": 1}
    assert reader.trailing_bytes == 15 and reader.stats[S.TRAILING_BYTES] == 15
    assert truncation_line(len(recs), reader.trailing_bytes) == "101 messages decoded, 15 trailing bytes"


def test_hftbot_decode_prints_json_lines_and_reports_truncation_on_stderr():
    path = shared_data("itch50-nasdaq-01302019-head4096", "sample.itch")
    res = subprocess.run([sys.executable, "-m", "pipeline", "decode", str(path)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(lines) == 101
    assert lines[0]["message_type"] == "S" and lines[0]["event_code"] == "O"
    assert lines[1]["stock"] == "A       " and lines[1]["sequence_number"] == 2
    assert "101 messages decoded, 15 trailing bytes" in res.stderr


def test_hftbot_decode_pcap_carries_session_and_sequence():
    path = shared_data("omi-pcaps", "Nasdaq", "Nasdaq.Equities.TotalView.Itch.v5.0", "OrderExecutedMessage.pcap")
    res = subprocess.run([sys.executable, "-m", "pipeline", "decode", str(path)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (line,) = [json.loads(x) for x in res.stdout.splitlines()]
    assert line["message_type"] == "E" and line["session"] == "000010059B"
    assert isinstance(line["sequence_number"], int) and line["capture_time_ns"] > 1.6e18


def test_real_pcapng_frames_every_packet_like_dpkt():
    dpkt = pytest.importorskip("dpkt")
    path = shared_data("omi-pcaps", "Cme-from-Data-repo", "Cme", "Mdp3.Sbe.v1.6", "Cme.Mdp3.Sbe.v6.1.pcap")
    udp = 0
    with open(path, "rb") as f:
        for _ts, frame in dpkt.pcapng.Reader(f):
            eth = dpkt.ethernet.Ethernet(frame)
            if isinstance(eth.data, dpkt.ip.IP) and isinstance(eth.data.data, dpkt.udp.UDP):
                udp += 1
    reader = CaptureReader(path)
    assert reader.format == "pcapng"
    for _ in reader:  # CME MDP3 is not MoldUDP64: framing must survive it without crashing
        pass
    assert reader.stats[S.PACKETS] == 10000
    assert reader.stats[S.UDP_ACCEPTED] == udp
    assert reader.trailing_bytes == 0
