"""Bad input at every edge (issue 15): damaged gzip, files that are not captures, drops the
configuration causes, bad command-line arguments. Each is a clear one-line report, never a
traceback; input that cannot be read at all fails before anything starts."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from kernels import cpu
from kernels import stats as S
from pipeline.book import BookStage, BookState
from pipeline.stages import DecodeStage
from replay.capture import CaptureError, CaptureReader
from replay.report import book_summary, feed_summary, format_summary, truncation_line
from replay.run_report import run_meta, skeleton
from tests.conftest import REPO
from tests.packets import add_order, binaryfile, mold, pcap_bytes, udp_frame

N_MSGS = 3000
COMPRESSED_DAMAGE = "the compressed stream is corrupt at byte"  # the words of the issue


def hftbot(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # a new session: whatever a command signals, it cannot reach the test runner's process group
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, start_new_session=True)


def cli(*argv: str, capsys) -> subprocess.CompletedProcess:
    """``hftbot ARGV`` in this process (fast: no interpreter start); the same result type."""
    from pipeline.cli import main

    capsys.readouterr()
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse
        rc = exc.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, rc, out, err)


def one_line_error(res: subprocess.CompletedProcess, prog: str) -> str:
    """The single stderr line of a refused command."""
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), res.stderr
    return lines[0]


def messages() -> list[bytes]:
    return [add_order(i, locate=1 + i % 7) for i in range(1, N_MSGS + 1)]


def complete_records(data: bytes) -> int:
    """BinaryFILE records wholly inside ``data``."""
    pos = n = 0
    while pos + 2 <= len(data):
        blen = int.from_bytes(data[pos:pos + 2], "big")
        if blen == 0 or pos + 2 + blen > len(data):
            break
        pos += 2 + blen
        n += 1
    return n


def decode_all(path, **kw) -> tuple[int, CaptureReader]:
    reader = CaptureReader(path, **kw)
    stage = DecodeStage(cpu, capacity=reader.batch_rows, stats=reader.stats)
    n = sum(stage(b).n for b in reader)
    return n, reader


# -- damaged gzip ------------------------------------------------------------------------------------
def test_truncated_gzip_decodes_everything_before_the_cut(tmp_path):
    raw = binaryfile(messages())
    z = gzip.compress(raw)
    cut = z[: len(z) // 2]
    path = tmp_path / "cut.itch.gz"
    path.write_bytes(cut)
    readable = zlib.decompressobj(31).decompress(cut)  # what any gzip reader can still get out
    n, reader = decode_all(path)
    assert n == complete_records(readable) > 0
    assert reader.error.startswith(COMPRESSED_DAMAGE) and "truncated" in reader.error
    assert reader.damage_at == len(cut)
    assert truncation_line(n, reader.trailing_bytes, reader.error).startswith(
        f"{n} messages decoded, then the compressed stream is corrupt at byte {len(cut):,}")


def test_corrupt_gzip_member_is_located_to_the_byte(tmp_path):
    """A second member whose first deflate block has an impossible type: zlib refuses the byte
    right after its 10-byte header, and everything of the first member is decoded."""
    first = binaryfile(messages()[:1000], end_of_session=False)
    z1 = gzip.compress(first)
    bad_member = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"\xff" * 64  # BFINAL=1, BTYPE=11
    path = tmp_path / "bad.itch.gz"
    path.write_bytes(z1 + bad_member)
    n, reader = decode_all(path)
    assert n == 1000 and reader.trailing_bytes == 0
    assert reader.damage_at == len(z1) + 10
    assert reader.error == f"{COMPRESSED_DAMAGE} {len(z1) + 10:,} (zlib: Error -3 while decompressing data: " \
                           f"invalid block type)"


def test_garbage_after_a_gzip_member_and_multi_member_files(tmp_path):
    msgs = messages()
    a, b = binaryfile(msgs[:500], end_of_session=False), binaryfile(msgs[500:])
    two = tmp_path / "two.itch.gz"
    two.write_bytes(gzip.compress(a) + gzip.compress(b) + b"\0" * 16)  # members, then zero padding
    n, reader = decode_all(two)
    assert n == N_MSGS and reader.error is None
    junk = tmp_path / "junk.itch.gz"
    z = gzip.compress(a)
    junk.write_bytes(z + b"not gzip at all")
    n, reader = decode_all(junk)
    assert n == 500 and reader.damage_at == len(z) and "start no new member" in reader.error


def test_gzip_damaged_before_any_data_cannot_be_opened(tmp_path, capsys):
    path = tmp_path / "hdr.pcap.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff")
    with pytest.raises(CaptureError, match=r"nothing could be read: the compressed stream is corrupt at byte 10"):
        CaptureReader(path)
    res = cli("decode", str(path), capsys=capsys)
    assert res.returncode == 2 and "nothing could be read" in one_line_error(res, "hftbot decode")


@pytest.mark.parametrize("cmd", ["decode", "book"])
def test_decode_and_book_report_a_damaged_gzip_in_the_same_words(tmp_path, cmd, capsys):
    frames = [udp_frame(mold(b"GZ", 1 + 10 * i, messages()[10 * i:10 * i + 10])) for i in range(N_MSGS // 10)]
    z = gzip.compress(pcap_bytes(frames))
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(z[: len(z) * 2 // 3])
    n, reader = decode_all(path)
    want = truncation_line(n, reader.trailing_bytes, reader.error)
    args = [cmd, str(path)] + (["--symbols", "AAPL"] if cmd == "book" else [])
    res = cli(*args, capsys=capsys)
    assert res.returncode == 0, res.stderr
    assert f"hftbot {cmd}: truncated: {want}" in res.stderr.splitlines()
    assert f"{n} messages decoded, then the compressed stream is corrupt at byte {len(z) * 2 // 3:,}" in want


def test_book_prints_the_truncation_line_that_decode_prints(tmp_path, capsys):
    data = binaryfile(messages()[:50], end_of_session=False)
    path = tmp_path / "t.itch"
    path.write_bytes(data[:-7])
    d, b = cli("decode", str(path), capsys=capsys), cli("book", str(path), "--symbols", "AAPL", capsys=capsys)
    line = "truncated: 49 messages decoded, 31 trailing bytes (truncated last record: 31 trailing bytes)"
    assert f"hftbot decode: {line}" in d.stderr.splitlines()
    assert f"hftbot book: {line}" in b.stderr.splitlines()
    assert "skipped: trailing_bytes 31" in d.stderr and "skipped: trailing_bytes 31" in b.stderr


# -- not a capture -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["noise.pcap", "noise.itch"])
def test_random_bytes_are_not_a_capture(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes())
    with pytest.raises(CaptureError, match=r"not a capture: 0 of \d+ blocks were ITCH messages"):
        CaptureReader(path).check_content()
    res = hftbot("decode", str(path))
    assert res.returncode == 2 and res.stdout == ""
    assert "not a capture: 0 of" in one_line_error(res, "hftbot decode")


@pytest.mark.parametrize("make", [
    lambda: b"\0" * 100_000,                                                    # end-of-session, then zeros
    lambda: b"\xd4\xc3\xb2\xa1" + np.random.default_rng(1).bytes(50_000),         # pcap magic, then noise
    lambda: pcap_bytes([udp_frame(b"\xff" * 10 + np.random.default_rng(i).bytes(190))  # UDP, but
                        for i in range(200)]),                                  # not MoldUDP64
    lambda: pcap_bytes([])[:20],                                                # a cut pcap header
])
def test_files_that_frame_nothing_are_not_captures(tmp_path, make):
    path = tmp_path / "x.pcap"
    path.write_bytes(make())
    with pytest.raises(CaptureError, match="not a capture: 0 of 0 blocks were ITCH messages"):
        CaptureReader(path).check_content()


def test_real_captures_and_empty_feeds_pass_the_check(tmp_path):
    good = tmp_path / "good.pcap"
    good.write_bytes(pcap_bytes([udp_frame(mold(b"S", 1, messages()[:20]))]))
    heartbeats = tmp_path / "hb.pcap"
    heartbeats.write_bytes(pcap_bytes([udp_frame(mold(b"S", 1, [])) for _ in range(5)]))
    for path, packets, blocks in ((good, 1, 20), (heartbeats, 5, 0)):
        r = CaptureReader(path)
        check = r.check_content()
        assert (check.blocks, check.good) == (blocks, blocks)
        assert r.stats.sum() == 0 and r.bytes_read == 0  # the check leaves the reader at the start
        assert sum(b.n for b in r) == blocks and r.stats[S.PACKETS] == packets


def test_run_refuses_random_bytes_before_starting_anything(tmp_path):
    path = tmp_path / "noise.pcap"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes())
    res = hftbot("run", f"feed.path={path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert "not a capture: 0 of" in res.stderr
    assert "venue " not in res.stdout and "compile" not in res.stdout  # nothing started
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    assert rep["run"]["status"] == "failed" and rep["error"]["stage"] == "feed"


# -- drops the configuration causes ------------------------------------------------------------------
def book_run(tmp_path, max_symbols: int):
    """A capture whose stock locates reach 6514 (as a real Nasdaq day's do), through decode and
    the books (CPU), as the run does; returns the report sections and the console summary."""
    msgs = [add_order(i, locate=6514 if i % 3 else 12, stock=b"BIG" if i % 3 else b"SMALL") for i in range(1, 40)]
    path = tmp_path / "locates.pcap"
    path.write_bytes(pcap_bytes([udp_frame(mold(b"LOC", 1, msgs))]))
    reader = CaptureReader(path)
    state = BookState(1000, 1000, max_symbols)
    decode = DecodeStage(cpu, capacity=reader.batch_rows, stats=reader.stats)
    books = BookStage(cpu, state, reader.batch_rows)
    for batch in reader:
        books(decode(batch))
    rep = skeleton(run_meta("cpu", "0" * 16, None))
    rep["input"].update(path=str(path), format=reader.format, bytes=reader.bytes_read,
                        trailing_bytes=reader.trailing_bytes, error=reader.error)
    rep["feed"] = feed_summary(reader.stats)
    rep["book"] = book_summary(state, cpu, [], 0)
    return rep, format_summary(rep), path


def test_a_book_too_small_for_the_locates_shows_in_the_summary_and_names_the_key(tmp_path):
    rep, text, _ = book_run(tmp_path, max_symbols=4096)
    assert rep["book"]["stats"]["bad_locate"] == 26
    (drop,) = [d for d in rep["book"]["drops"] if d["reason"] == "bad_locate"]
    assert drop["count"] == 26 and drop["config_key"] == "book.max_symbols"
    assert "skipped    nothing" not in text
    assert "bad_locate 26" in text
    assert "config     26 of 39 book events dropped: stock locate above book.max_symbols = 4,096; " \
           "raise book.max_symbols" in text.splitlines()
    rep, text, _ = book_run(tmp_path, max_symbols=8192)  # raised: nothing dropped, nothing said
    assert rep["book"]["drops"] == [] and "skipped    nothing" in text and "\nconfig " not in text


def test_every_drop_reason_shows_feed_and_books():
    from replay.report import input_lines

    feed = {"problems": {"unknown_type": 2}, "decoded": 10}
    drops = [{"reason": "bad_side", "count": 1, "what": "add with a side other than B or S"},
             {"reason": "bad_locate", "count": 3, "what": "stock locate above book.max_symbols = 8",
              "config_key": "book.max_symbols"}]
    assert input_lines(feed, 0, None, drops) == [
        ("skipped", "unknown_type 2; books: bad_side 1, bad_locate 3 (stock locate above book.max_symbols = 8: "
                    "raise book.max_symbols)")]
    assert input_lines({"problems": {}, "decoded": 1}, 0, None, drops[:1]) == [("skipped", "books: bad_side 1")]
    assert input_lines({"problems": {}, "decoded": 1}, 0, None, []) == [("skipped", "nothing")]


def test_hftbot_book_names_its_option_for_a_locate_drop(tmp_path, capsys):
    _, _, path = book_run(tmp_path, max_symbols=4096)
    res = cli("book", str(path), "--symbols", "SMALL", "--max-symbols", "4096", capsys=capsys)
    assert res.returncode == 0, res.stderr
    assert "hftbot book: skipped: books: bad_locate 26 (stock locate above --max-symbols = 4,096: raise " \
           "--max-symbols)" in res.stderr.splitlines()


# -- command-line arguments --------------------------------------------------------------------------
@pytest.mark.parametrize("args, words", [
    (["decode", "{f}", "--limit", "-5"], "argument --limit: must not be negative, got -5"),
    (["decode", "{f}", "--types", "ZZ"], "argument --types: unknown ITCH 5.0 message type 'ZZ'"),
    (["decode", "{f}", "--types", ","], "argument --types: expected ITCH message types"),
    (["decode", "{f}", "--chunk-bytes", "5"], "argument --chunk-bytes: must be 1,048,576.."),
    (["decode", "{f}", "--filter", "1.2.3.999:5"], "argument --filter: bad feed filter"),
    (["decode", "{f}", "--bogus"], "unrecognized arguments: --bogus"),
    (["decode"], "the following arguments are required: file"),
    (["book", "{f}", "--symbols", "AAPL", "--depth", "-1"], "argument --depth: must be at least 1, got -1"),
    (["book", "{f}", "--symbols", "AAPL", "--max-orders", "-3"], "argument --max-orders: must be at least 1"),
    (["book", "{f}", "--symbols", "AAPL", "--max-levels", "0"], "argument --max-levels: must be at least 1"),
    (["book", "{f}", "--symbols", "AAPL", "--max-symbols", "70000"], "argument --max-symbols: must be at most 65535"),
    (["book", "{f}", "--symbols", "AAPL", "--at", "25:00:00"], "argument --at: '25:00:00'"),
    (["book", "{f}", "--symbols", "TOOLONGNAME"], "argument --symbols: not a stock symbol"),
    (["generate", "{d}/no/such/dir/x.pcap"], "no such directory"),
    (["generate", "{d}/x.pcap", "--messages", "0"], "argument --messages: must be at least 1"),
    (["generate", "{d}/x.itch", "--live-orders", "1000"], "--live-orders needs --preset deep"),
    (["generate", "{d}/x.itch", "--preset", "deep", "--live-orders", "0"], "argument --live-orders: must be at least 1"),
    (["kill", "--pid", "0"], "argument --pid: expected the process id of one pipeline"),
    (["kill", "--pid", "abc"], "argument --pid: expected a process id"),
    (["kill", "--config-name", "nope"], "--config-name nope: Cannot find primary config"),
])
def test_bad_arguments_are_one_line_errors_with_status_2(tmp_path, args, words, capsys):
    f = tmp_path / "ok.itch"
    f.write_bytes(binaryfile(messages()[:5]))
    argv = [a.format(f=f, d=tmp_path) for a in args]
    # `kill` runs in its own process group (a broken --pid check must signal nothing here)
    res = hftbot(*argv) if args[0] == "kill" and "--pid" in args else cli(*argv, capsys=capsys)
    assert res.returncode == 2, res.stderr
    assert words in one_line_error(res, f"hftbot {args[0]}")
    assert "usage:" not in res.stderr


def test_kill_pid_type_refuses_process_groups_and_init():
    """``kill --pid -1`` once sent SIGUSR1 to every process (kill(2) semantics): only the type
    function is called here, so nothing can be signalled even where it is broken."""
    import argparse

    from pipeline.risk import _pid

    for bad in ("-1", "0", "1", "-42"):
        with pytest.raises(argparse.ArgumentTypeError, match="process id of one pipeline"):
            _pid(bad)
    assert _pid("4242") == 4242


def test_kill_a_pid_that_does_not_exist_touches_nothing(tmp_path):
    kf = tmp_path / "KILL"
    pid = 2**22 + 12345  # above pid_max's default range
    res = hftbot("kill", "--pid", str(pid), "--file", str(kf))
    assert res.returncode == 3 and "no such process" in one_line_error(res, "hftbot kill")
    assert not kf.exists()


def test_generate_a_deep_day_with_its_live_orders(tmp_path, capsys):
    """``hftbot generate --preset deep --live-orders N``: the day's target is N, and it gets there."""
    import json

    res = cli("generate", str(tmp_path / "d.itch"), "--fmt", "itch", "--preset", "deep", "--messages", "60000",
              "--symbols", "4", "--live-orders", "3000", "--seed", "2", capsys=capsys)
    assert res.returncode == 0, res.stderr
    x = json.loads(res.stdout)["extra"]
    assert x["preset"] == "deep" and x["live_orders_target"] == 3000
    assert 0.8 * 3000 < x["live_orders_now"] <= 1.2 * 3000


def test_a_run_that_replayed_nothing_prints_no_rate(tmp_path):
    """A run stopped before its first batch (Ctrl-C during the compile) has read a chunk but
    replayed nothing: the summary says so instead of dividing the bytes by a ~0 s replay."""
    rep, text, _ = book_run(tmp_path, max_symbols=8192)
    assert rep["timing"]["messages"] == 0
    assert "throughput none: no message was replayed" in text and "MB/s" not in text
    rep["timing"].update(messages=39, replay_s=0.5, msgs_per_s=78.0, mb_per_s=0.001)
    assert "throughput 0.00 M msg/s, 0 MB/s over the replay (39 messages in 0.500 s" in format_summary(rep)
