"""The synthetic ITCH 5.0 feed generator (replay/generator.py).

One 200k-message day per format is generated once per module; the tests read it back with dpkt
(pcap), a plain-Python BinaryFILE walker, the pipeline's decode kernels, and a pure-Python
reference order book that checks every event against the book it implies.
"""

from __future__ import annotations

import json
import struct
from collections import Counter, defaultdict
from pathlib import Path

import dpkt
import numpy as np
import pytest

from kernels import cpu
from tests.packets import read_binaryfile
from kernels import stats as S
from kernels.events import EventTable, unpack_ascii
from kernels.state import Events, Frames
from replay.generator import (
    DEFAULT_DATE_NS,
    MARKET_OPEN_NS,
    REAL_TICKERS,
    FeedGenerator,
    generate,
    main,
    trading_day_ns,
)

N = 200_000
K = 64
SEED = 7
HALT_RATE = 1e-4  # a few halts in N messages (the default is rarer)


def read_pcap_messages(path):
    """(packets, messages): packets as (ts_ns, frame, seq, count, blocks)."""
    pkts, msgs = [], []
    with open(path, "rb") as f:
        for ts, frame in dpkt.pcap.Reader(f):
            pay = bytes(dpkt.ethernet.Ethernet(frame).data.data.data)
            seq, count = struct.unpack_from(">QH", pay, 10)
            blocks, o = [], 20
            if count not in (0, 0xFFFF):
                for _ in range(count):
                    (ln,) = struct.unpack_from(">H", pay, o)
                    blocks.append(pay[o + 2 : o + 2 + ln])
                    o += 2 + ln
            assert o == len(pay)
            pkts.append((int(ts * 10**9), frame, seq, count, blocks))
            msgs += blocks
    return pkts, msgs


def _ts(m: bytes) -> int:
    return int.from_bytes(m[5:11], "big")


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    kw = dict(n_messages=N, n_symbols=K, seed=SEED, halt_rate=HALT_RATE)
    sp = generate(d / "day.pcap", fmt="pcap", **kw)
    si = generate(d / "day.itch", fmt="itch", **kw)
    msgs, tail = read_binaryfile(d / "day.itch")
    return dict(dir=d, pcap=d / "day.pcap", itch=d / "day.itch", sp=sp, si=si, msgs=msgs,
                tail=tail, kw=kw)


# ---------------------------------------------------------------------------------------------
# determinism and formats
# ---------------------------------------------------------------------------------------------

def test_same_arguments_give_identical_files(day):
    d = day["dir"]
    generate(d / "again.pcap", fmt="pcap", **day["kw"])
    generate(d / "again.itch", fmt="itch", **day["kw"])
    assert (d / "again.pcap").read_bytes() == day["pcap"].read_bytes()
    assert (d / "again.itch").read_bytes() == day["itch"].read_bytes()


def test_a_different_seed_gives_a_different_day(day):
    d = day["dir"]
    generate(d / "other.itch", fmt="itch", **{**day["kw"], "seed": SEED + 1})
    other, _ = read_binaryfile(d / "other.itch")
    assert len(other) == N
    assert other[: 2 * K + 5] != day["msgs"][: 2 * K + 5]  # prices differ from the directory on
    assert other[2 * K + 5 :] != day["msgs"][2 * K + 5 :]


def test_chunk_size_does_not_change_the_output(day):
    d = day["dir"]
    generate(d / "small_chunks.itch", fmt="itch", chunk_messages=777, **day["kw"])
    assert (d / "small_chunks.itch").read_bytes() == day["itch"].read_bytes()


def test_pcap_and_binaryfile_carry_the_same_messages(day):
    _, pmsgs = read_pcap_messages(day["pcap"])
    assert pmsgs == day["msgs"]
    assert day["tail"] == b"\x00\x00"
    assert day["sp"].counts == day["si"].counts


# ---------------------------------------------------------------------------------------------
# the capture itself
# ---------------------------------------------------------------------------------------------

def test_pcap_is_valid(day):
    pkts, _ = read_pcap_messages(day["pcap"])
    assert len(pkts) == day["sp"].n_packets
    with open(day["pcap"], "rb") as f:
        assert f.read(4) == bytes.fromhex("4d3cb2a1")
    seq = 1
    prev_ts = 0
    msgs = day["msgs"]
    for ts, frame, pseq, count, blocks in pkts[:-1]:
        eth = dpkt.ethernet.Ethernet(frame)
        ip, udp = eth.data, eth.data.data
        assert eth.dst == bytes.fromhex("01005e360c6f") and eth.type == 0x0800
        assert dpkt.in_cksum(bytes(frame[14:34])) == 0
        assert ip.len == len(frame) - 14 and ip.df and ip.p == 17
        assert udp.dport == 26477 and udp.ulen == len(frame) - 34 <= 8 + 1400
        assert pseq == seq and count == len(blocks) > 0
        # capture time: trading-day midnight + the first message's ITCH timestamp
        assert ts == DEFAULT_DATE_NS + _ts(msgs[seq - 1])
        assert ts >= prev_ts
        prev_ts = ts
        seq += count
    assert seq == N + 1
    ts, _, pseq, count, blocks = pkts[-1]
    assert (pseq, count, blocks) == (N + 1, 0xFFFF, [])
    assert ts == DEFAULT_DATE_NS + _ts(msgs[-1])


def test_binaryfile_framing_is_valid(day):
    data = day["itch"].read_bytes()
    assert data.endswith(b"\x00\x00")
    assert len(day["msgs"]) == N
    assert len(data) == sum(2 + len(m) for m in day["msgs"]) + 2 == day["si"].bytes_written


def test_every_message_decodes_with_our_kernels(day):
    buf = np.fromfile(day["itch"], dtype=np.uint8)
    cap = N + 16
    mo, ml = np.zeros(cap, np.int64), np.zeros(cap, np.int32)
    ms, mss, mr = np.zeros(cap, np.uint64), np.zeros(cap, np.uint16), np.zeros(cap, np.int64)
    st = S.new_stats()
    n, pos, status = cpu.index_binaryfile(buf, 0, len(buf), np.uint64(1), mo, ml, ms, mss, mr, st)
    assert n == N and pos == len(buf) and st[S.END_OF_SESSION] == 1
    ev = EventTable(cap)
    rows = cpu.decode_batch(Frames(buf, mo, ml, ms, mss, mr), n, 0, Events(*ev.columns()), st)
    ev.n = rows
    assert rows == N and st[S.DECODED] == N
    assert st[S.UNKNOWN_TYPE] == 0 and st[S.BAD_LENGTH] == 0
    assert {chr(t): int(st[S.TYPE_BASE + t]) for t in range(256) if st[S.TYPE_BASE + t]} \
        == day["si"].counts
    # decoded fields agree with the generator's promises
    kind = ev["kind"]
    adds = (kind == ord("A")) | (kind == ord("F"))
    assert np.all(ev["price"][adds] % 100 == 0) and np.all(ev["price"][adds] > 0)
    assert np.all(ev["shares"][adds] > 0)
    refs = np.concatenate([ev["ref"][adds], ev["new_ref"][kind == ord("U")]])
    assert len(np.unique(refs)) == len(refs)
    assert np.all(np.diff(ev["ts"]) >= 0)
    assert unpack_ascii(int(ev["stock"][1]), 8) == "AAPL    "


# ---------------------------------------------------------------------------------------------
# content
# ---------------------------------------------------------------------------------------------

def test_session_structure(day):
    msgs = day["msgs"]
    assert msgs[0][0:1] == b"S" and msgs[0][11:12] == b"O"
    for k in range(K):
        r = msgs[1 + k]
        assert r[0:1] == b"R" and int.from_bytes(r[1:3], "big") == k + 1
        assert len(r) == 39 and r[19:20] == b"Q" and int.from_bytes(r[21:25], "big") == 100
        name = REAL_TICKERS[k] if k < len(REAL_TICKERS) else f"SYM{k:04d}"
        assert r[11:19] == name.encode().ljust(8)
        h = msgs[1 + K + k]
        assert h[0:1] == b"H" and int.from_bytes(h[1:3], "big") == k + 1 and h[19:20] == b"T"
        assert h[11:19] == r[11:19]
    assert [m[11:12] for m in msgs[1 + 2 * K : 3 + 2 * K]] == [b"S", b"Q"]
    assert _ts(msgs[2 + 2 * K]) == MARKET_OPEN_NS
    assert [m[0:1] + m[11:12] for m in msgs[-3:]] == [b"SM", b"SE", b"SC"]
    ts = [_ts(m) for m in msgs]
    assert all(a <= b for a, b in zip(ts, ts[1:]))
    flow = ts[3 + 2 * K : -3]
    assert all(a < b for a, b in zip(flow, flow[1:]))  # strictly increasing
    gaps = np.diff(flow)
    assert 300 < gaps.mean() < 3000 and gaps.max() < 50_000
    assert MARKET_OPEN_NS < flow[0] < MARKET_OPEN_NS + 10**6


def test_message_proportions_look_like_a_nasdaq_day(day):
    c = day["si"].counts
    flow = day["si"].order_flow_messages
    share = {t: c.get(t, 0) / flow for t in "AFDUECXP"}
    expected = {"A": (0.40, 0.03), "F": (0.04, 0.01), "D": (0.43, 0.03), "U": (0.09, 0.015),
                "E": (0.018, 0.005), "C": (0.002, 0.0015), "X": (0.01, 0.004),
                "P": (0.005, 0.0025)}
    for t, (want, tol) in expected.items():
        assert abs(share[t] - want) < tol, (t, share[t])
    assert share["A"] + share["F"] == pytest.approx(0.44, abs=0.03)
    assert c["R"] == K and c["S"] == 6
    assert day["si"].n_halts >= 2 and c["H"] == K + 2 * day["si"].n_halts
    assert sum(c.values()) == N


def check_book(msgs):
    """Replay ``msgs`` through a pure-Python book; assert every promise of the generator.

    Returns counters of what was checked.
    """
    orders = {}  # ref -> [locate, side, price, shares]
    levels = defaultdict(Counter)  # (locate, side) -> price -> live orders
    at_price = defaultdict(set)  # (locate, side, price) -> refs
    stocks, halted = {}, set()
    last_ref = last_match = 0
    seen = Counter()

    def add(ref, loc, side, price, shares):
        nonlocal last_ref
        assert ref > last_ref, "order references increase"
        last_ref = ref
        assert loc not in halted, "no new orders while halted"
        assert shares > 0 and price > 0 and price % 100 == 0
        other = levels[(loc, b"S" if side == b"B" else b"B")]
        if other:
            if side == b"B":
                assert price < min(other), "bid at or through the best ask"
            else:
                assert price > max(other), "ask at or through the best bid"
        orders[ref] = [loc, side, price, shares]
        levels[(loc, side)][price] += 1
        at_price[(loc, side, price)].add(ref)

    def remove(ref):
        loc, side, price, _ = orders.pop(ref)
        lv = levels[(loc, side)]
        lv[price] -= 1
        if lv[price] == 0:
            del lv[price]
        at_price[(loc, side, price)].discard(ref)

    for m in msgs:
        t = m[0:1]
        loc = int.from_bytes(m[1:3], "big")
        seen[t] += 1
        if t == b"R":
            stocks[loc] = m[11:19]
        elif t == b"H":
            assert m[11:19] == stocks[loc]
            if m[19:20] == b"H":
                assert loc not in halted
                halted.add(loc)
            else:
                halted.discard(loc)
        elif t in (b"A", b"F"):
            ref, side, shares = struct.unpack_from(">QcI", m, 11)
            assert m[24:32] == stocks[loc]
            add(ref, loc, side, int.from_bytes(m[32:36], "big"), shares)
        elif t == b"D":
            (ref,) = struct.unpack_from(">Q", m, 11)
            assert ref in orders and orders[ref][0] == loc
            remove(ref)
        elif t == b"X":
            ref, cx = struct.unpack_from(">QI", m, 11)
            o = orders[ref]
            assert o[0] == loc and 0 < cx < o[3], "partial cancel of a live order"
            o[3] -= cx
        elif t in (b"E", b"C"):
            ref, ex, match = struct.unpack_from(">QIQ", m, 11)
            assert loc not in halted
            assert match > last_match
            last_match = match
            loc_, side, price, rem = orders[ref]
            assert loc_ == loc and 0 < ex <= rem
            lv = levels[(loc, side)]
            assert price == (max(lv) if side == b"B" else min(lv)), "executes at the best price"
            assert ref == min(at_price[(loc, side, price)]), "oldest order first"
            if t == b"C":
                assert m[31:32] == b"Y" and int.from_bytes(m[32:36], "big") == price
            if ex == rem:
                remove(ref)
                seen["full"] += 1
            else:
                orders[ref][3] -= ex
        elif t == b"U":
            old, new, shares = struct.unpack_from(">QQI", m, 11)
            price = int.from_bytes(m[31:35], "big")
            loc_, side, _, _ = orders[old]
            assert loc_ == loc
            remove(old)
            add(new, loc, side, price, shares)
        elif t == b"P":
            ref, side, shares = struct.unpack_from(">QcI", m, 11)
            match = int.from_bytes(m[36:44], "big")
            assert ref == 0 and side == b"B" and shares > 0 and loc not in halted
            assert match > last_match
            last_match = match
            price = int.from_bytes(m[32:36], "big")
            bids, asks = levels[(loc, b"B")], levels[(loc, b"S")]
            if bids and asks:
                assert max(bids) <= price <= min(asks)
        else:
            assert t == b"S"
    return seen, orders, halted


def test_reference_book_accepts_every_event(day):
    seen, orders, halted = check_book(day["msgs"])
    assert seen[b"E"] > 100 and seen["full"] > 50 and seen[b"X"] > 100 and seen[b"U"] > 1000
    assert not halted  # every halt resumed before the end of the day
    assert len(orders) == day["si"].n_orders_live_at_end


def test_many_symbols_and_other_seeds_stay_valid(tmp_path):
    s = generate(tmp_path / "k.itch", fmt="itch", n_messages=60_000, n_symbols=700, seed=99,
                 halt_rate=3e-4)
    msgs, tail = read_binaryfile(tmp_path / "k.itch")
    assert len(msgs) == 60_000 and tail == b"\x00\x00"
    assert sum(1 for m in msgs if m[0:1] == b"R") == 700
    assert msgs[1 + 699][11:19] == b"SYM0699 "
    seen, orders, _ = check_book(msgs)
    assert len(orders) == s.n_orders_live_at_end


def test_tiny_day_with_only_setup_messages(tmp_path):
    s = generate(tmp_path / "t.itch", fmt="itch", n_messages=2 * 3 + 6, n_symbols=3)
    msgs, _ = read_binaryfile(tmp_path / "t.itch")
    assert [m[0:1] for m in msgs] == [b"S", b"R", b"R", b"R", b"H", b"H", b"H"] + [b"S"] * 5
    assert s.order_flow_messages == 0
    with pytest.raises(ValueError):
        generate(tmp_path / "u.itch", fmt="itch", n_messages=10, n_symbols=3)
    with pytest.raises(ValueError):
        generate(tmp_path / "v.itch", fmt="csv", n_messages=100)


def test_one_symbol_with_halts_terminates_and_stays_valid(tmp_path):
    generate(tmp_path / "one.itch", fmt="itch", n_messages=30_000, n_symbols=1, halt_rate=1e-3)
    msgs, _ = read_binaryfile(tmp_path / "one.itch")
    seen, _, halted = check_book(msgs)
    assert seen[b"H"] > 3 and not halted


def test_state_memory_is_bounded_for_a_full_symbol_universe():
    g = FeedGenerator(n_messages=10**9, n_symbols=12_000, chunk_messages=1 << 20)
    state = (g.sy, g.lvl, g.pool, g.stock, g.hl, g.sym_tbl, g.obuf, g.ooff, g.olen, g.ots)
    assert sum(a.nbytes for a in state) < 256 << 20


def test_capture_time_uses_the_trading_day(tmp_path):
    day_ns = trading_day_ns("2026-03-09")  # EDT: midnight is 04:00 UTC
    assert day_ns % (86400 * 10**9) == 4 * 3600 * 10**9
    generate(tmp_path / "d.pcap", fmt="pcap", n_messages=1000, n_symbols=4, date_ns=day_ns,
             vlan=12, session="SESS42")
    pkts, msgs = read_pcap_messages(tmp_path / "d.pcap")
    assert pkts[0][0] == day_ns + _ts(msgs[0])
    assert pkts[0][1][12:14] == b"\x81\x00"
    assert bytes(dpkt.ethernet.Ethernet(pkts[0][1]).data.data.data)[:10] == b"SESS42    "


def test_cli_prints_the_summary_as_json(tmp_path, capsys):
    out = tmp_path / "cli.pcap"
    assert main([str(out), "--fmt", "pcap", "--messages", "5000", "--symbols", "8",
                 "--seed", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_messages"] == 5000 and summary["fmt"] == "pcap"
    assert sum(summary["counts"].values()) == 5000
    assert out.stat().st_size == summary["bytes_written"]


def test_deep_preset_is_valid_deep_and_references_rise_with_gaps(tmp_path):
    """The deep preset: every event valid against the reference book (executions at the best
    price, oldest order first: the per-level FIFO lists), live orders ramping to half the target
    and rising toward it, far more levels per busy symbol than the default, references
    increasing with gaps; deterministic; a bad preset is a clear error."""
    n, live = 150_000, 30_000
    s = generate(tmp_path / "deep.itch", fmt="itch", n_messages=n, n_symbols=12, seed=4, preset="deep",
                 live_orders=live)
    msgs, _ = read_binaryfile(tmp_path / "deep.itch")
    seen, orders, _ = check_book(msgs)
    assert len(orders) == s.n_orders_live_at_end == s.extra["live_orders_now"]
    assert seen[b"E"] > 1000 and seen[b"D"] > 10_000 and seen[b"U"] > 5000
    x = s.extra
    assert live // 2 * 0.8 < x["live_orders_mid"] < x["live_orders_peak"] <= live * 1.05
    assert x["max_levels_one_symbol_now"] > 800
    refs = [struct.unpack_from(">Q", m, 11)[0] for m in msgs if m[0:1] in (b"A", b"F")]
    assert all(a < b for a, b in zip(refs, refs[1:]))
    steps = Counter(b - a for a, b in zip(refs, refs[1:]))
    assert steps[1] > 0.5 * len(refs) and sum(c for d, c in steps.items() if d > 1) > 0.1 * len(refs)
    again = generate(tmp_path / "deep2.itch", fmt="itch", n_messages=n, n_symbols=12, seed=4, preset="deep",
                     live_orders=live)
    assert (tmp_path / "deep.itch").read_bytes() == (tmp_path / "deep2.itch").read_bytes() and again.extra == x
    shallow = generate(tmp_path / "s.itch", fmt="itch", n_messages=n, n_symbols=12, seed=4)
    assert shallow.extra["preset"] == "shallow" and shallow.extra["max_levels_one_symbol_now"] < 200
    with pytest.raises(ValueError, match="preset"):
        generate(tmp_path / "x.itch", fmt="itch", n_messages=n, preset="deeper")
