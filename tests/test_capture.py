"""Capture readers: pcap variants, pcapng, link layers, filters, streaming, truncation."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from kernels import stats as S
from replay.capture import MIN_CHUNK, CaptureError, CaptureReader, detect_format, parse_filters
from tests.packets import add_order, binaryfile, mold, pcap_bytes, pcapng_bytes, udp_frame
from tests.test_real_data import decode_file


def frames_for(n_packets: int, per_packet: int = 3, **kw) -> list[bytes]:
    frames, ref = [], 1
    for p in range(n_packets):
        msgs = [add_order(ref + i) for i in range(per_packet)]
        frames.append(udp_frame(mold(b"SESSION01", ref, msgs), **kw))
        ref += per_packet
    return frames


@pytest.mark.parametrize("ns", [False, True])
@pytest.mark.parametrize("big", [False, True])
def test_classic_pcap_in_both_byte_orders_and_resolutions(tmp_path, ns, big):
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap_bytes(frames_for(4), ns=ns, big=big))
    recs, reader = decode_file(path)
    assert reader.format == "pcap"
    assert recs["ref"].tolist() == list(range(1, 13))
    assert recs["seq"].tolist() == list(range(1, 13))
    frac = 123 if ns else 123_000
    assert recs["rx"][0] == 1_700_000_000 * 10**9 + frac
    assert reader.stats[S.PACKETS] == 4 and reader.stats[S.MOLD_PACKETS] == 4


@pytest.mark.parametrize("tsresol", [None, 9])
def test_pcapng_with_interface_resolution_and_skipped_blocks(tmp_path, tsresol):
    path = tmp_path / "x.pcapng"
    path.write_bytes(pcapng_bytes(frames_for(3), tsresol=tsresol))
    recs, reader = decode_file(path)
    assert reader.format == "pcapng"
    assert recs["ref"].tolist() == list(range(1, 10))
    assert recs["rx"][3] == 1_700_000_000_000_000_000 + 1000  # second packet, µs or ns resolution
    assert reader.stats[S.PCAPNG_BLOCKS_SKIPPED] == 1


def test_pcapng_written_by_dpkt_reads_the_same(tmp_path):
    dpkt = pytest.importorskip("dpkt")
    path = tmp_path / "dpkt.pcapng"
    with open(path, "wb") as f:
        w = dpkt.pcapng.Writer(f)
        for i, fr in enumerate(frames_for(5)):
            w.writepkt(fr, ts=1_700_000_000 + i)
    recs, _ = decode_file(path)
    assert recs["ref"].tolist() == list(range(1, 16))


def test_vlan_tags_are_skipped_and_qinq_too(tmp_path):
    path = tmp_path / "v.pcap"
    path.write_bytes(pcap_bytes(frames_for(1, vlans=(141,)) + frames_for(1, vlans=(10, 141))))
    recs, reader = decode_file(path)
    assert reader.stats[S.UDP_ACCEPTED] == 2
    # both packets carry sequence numbers 1..3 of one session: the second is a duplicate
    assert len(recs) == 3 and reader.stats[S.MOLD_DUP_MESSAGES] == 3


def test_filters_keep_only_the_configured_destinations(tmp_path):
    frames = (frames_for(1, dst="233.54.12.111", dport=26477) + frames_for(1, dst="233.54.12.112", dport=26477)
              + frames_for(1, dst="233.54.12.111", dport=1) + frames_for(1, proto=6))
    path = tmp_path / "f.pcap"
    path.write_bytes(pcap_bytes(frames))
    _, r_all = decode_file(path)
    assert r_all.stats[S.UDP_ACCEPTED] == 3 and r_all.stats[S.FILTERED] == 1
    recs, r = decode_file(path, filters=["233.54.12.111:26477"])
    assert len(recs) == 3 and r.stats[S.UDP_ACCEPTED] == 1 and r.stats[S.FILTERED] == 3
    _, r_port = decode_file(path, filters=[":26477"])
    assert r_port.stats[S.UDP_ACCEPTED] == 2


def test_bad_filter_is_a_clear_error():
    with pytest.raises(ValueError, match="bad feed filter"):
        parse_filters(["233.54.12.999:1"])
    with pytest.raises(ValueError, match="port out of range"):
        parse_filters(["1.2.3.4:70000"])


def test_fragments_non_ipv4_and_snaplen_truncation_are_counted(tmp_path):
    good = frames_for(1)[0]
    arp = good[:12] + b"\x08\x06" + good[14:]
    frag = frames_for(1, frag=0x2000)[0]
    path = tmp_path / "m.pcap"
    path.write_bytes(pcap_bytes([good, arp, frag]) + pcap_bytes([good], snaplen=60)[24:])
    recs, r = decode_file(path)
    assert len(recs) == 3
    assert r.stats[S.NON_IPV4] == 1 and r.stats[S.IP_FRAGMENT] == 1 and r.stats[S.SNAP_TRUNCATED] == 1
    assert r.stats[S.PACKETS] == 4


def test_truncated_pcap_reports_trailing_bytes_and_keeps_complete_packets(tmp_path):
    data = pcap_bytes(frames_for(3))
    path = tmp_path / "t.pcap"
    path.write_bytes(data[:-7])
    recs, r = decode_file(path)
    assert len(recs) == 6
    last_record = 16 + len(frames_for(1)[0])
    assert r.trailing_bytes == last_record - 7 and "trailing bytes" in r.error


def test_gzip_compressed_capture(tmp_path):
    path = tmp_path / "x.itch.gz"
    path.write_bytes(gzip.compress(binaryfile([add_order(i) for i in range(1, 6)])))
    recs, r = decode_file(path)
    assert r.format == "itch" and recs["ref"].tolist() == [1, 2, 3, 4, 5]


def test_binaryfile_end_of_session_and_garbage_after_it(tmp_path):
    path = tmp_path / "x.itch"
    path.write_bytes(binaryfile([add_order(1), add_order(2)]) + b"\x00\x24GARBAGE")
    recs, r = decode_file(path)
    assert len(recs) == 2 and r.stats[S.END_OF_SESSION] == 1
    assert r.stats[S.AFTER_END_OF_SESSION] == 9 and r.trailing_bytes == 9


def test_streaming_across_chunk_boundaries_matches_one_big_chunk(tmp_path):
    """A file several chunks long: records straddling chunk edges are neither lost nor doubled."""
    n = 60_000
    frames = frames_for(n // 4, per_packet=4)
    path = tmp_path / "big.pcap"
    path.write_bytes(pcap_bytes(frames))
    assert path.stat().st_size > 3 * MIN_CHUNK, "the file must span several chunks"
    small, r1 = decode_file(path, chunk_bytes=MIN_CHUNK)
    big, r2 = decode_file(path, chunk_bytes=64 * MIN_CHUNK)
    assert len(small) == n and np.array_equal(small, big)
    assert np.array_equal(r1.stats, r2.stats)
    assert r1.stats[S.MOLD_GAPS] == 0 and r1.stats[S.MOLD_DUP_MESSAGES] == 0


def test_binaryfile_streaming_across_chunks(tmp_path):
    msgs = [add_order(i) for i in range(1, 80_001)]
    path = tmp_path / "big.itch"
    path.write_bytes(binaryfile(msgs))
    recs, r = decode_file(path, chunk_bytes=MIN_CHUNK)
    assert recs["ref"].tolist() == list(range(1, 80_001))
    assert recs["seq"][-1] == 80_000 and r.trailing_bytes == 0


def test_format_detection_and_errors(tmp_path):
    assert detect_format(pcap_bytes([])) == "pcap"
    assert detect_format(pcapng_bytes([])) == "pcapng"
    assert detect_format(b"\x00\x0cS") == "itch"
    with pytest.raises(CaptureError):
        detect_format(b"\x00")
    with pytest.raises(FileNotFoundError):
        CaptureReader(tmp_path / "missing.pcap")
    with pytest.raises(ValueError, match="chunk_bytes"):
        (tmp_path / "x.itch").write_bytes(b"\x00\x00\x00")
        CaptureReader(tmp_path / "x.itch", chunk_bytes=1000)


def test_truncated_pcap_global_header(tmp_path):
    path = tmp_path / "h.pcap"
    path.write_bytes(pcap_bytes([])[:20])
    recs, r = decode_file(path)
    assert len(recs) == 0 and r.trailing_bytes == 20 and "global header" in r.error


def test_corrupt_record_length_stops_framing_and_counts_the_rest(tmp_path):
    data = bytearray(pcap_bytes(frames_for(3)))
    second = 24 + 16 + len(frames_for(1)[0])
    data[second + 8:second + 12] = (10**9).to_bytes(4, "little")  # impossible captured length
    path = tmp_path / "c.pcap"
    path.write_bytes(bytes(data))
    recs, r = decode_file(path)
    assert len(recs) == 3 and r.stats[S.BAD_RECORD] == 1
    assert r.trailing_bytes == len(data) - second and "corrupt" in r.error
