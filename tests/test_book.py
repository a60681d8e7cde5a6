"""Order books: scenarios, invariants (property tests), features, capacity, both backends."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels import book as B
from kernels import features as FT
from kernels.events import EventTable, pack_ascii
from pipeline.book import BookCapacityError, BookStage, BookState
from tests.conftest import REPO, shared_data

T0 = 34_200_000_000_000  # 09:30:00


def table(rows: list[dict]) -> EventTable:
    """An event table from dicts: kind (letter), locate, ref, side (B/S), shares, price, new_ref, ts, ..."""
    t = EventTable(max(len(rows), 1))
    for i, r in enumerate(rows):
        c = t.cols
        c["kind"][i] = ord(r["kind"])
        c["locate"][i] = r.get("locate", 1)
        c["ts"][i] = r.get("ts", T0 + i)
        c["seq"][i] = i + 1
        c["ref"][i] = r.get("ref", 0)
        c["new_ref"][i] = r.get("new_ref", 0)
        c["side"][i] = ord(r.get("side", "\0"))
        c["shares"][i] = r.get("shares", 0)
        c["price"][i] = r.get("price", 0)
        c["stock"][i] = pack_ascii(r.get("stock", "AAPL"), 8)
        if "alpha0" in r:
            c["alpha"][i, 0] = ord(r["alpha0"])
        if "aux0" in r:
            c["aux"][i, 0] = r["aux0"]
    t.n = len(rows)
    return t


def A(ref, side, shares, price, locate=1, **kw):
    return dict(kind="A", ref=ref, side=side, shares=shares, price=price, locate=locate, **kw)


def new_books(k, symbols=("AAPL",), orders=1000, levels=500, nsym=16):
    state = BookState(orders, levels, nsym)
    return state, BookStage(k, state, capacity=4096, symbols=list(symbols))


def depth(k, state, loc=1, n=10):
    d = state.depth(k, loc, n)
    return [(x["price"], x["shares"], x["orders"]) for x in d["bids"]], [(x["price"], x["shares"], x["orders"]) for x in d["asks"]]


def ref_map_is_empty(state) -> bool:
    """The order-reference map holds nothing: every page back on the free list, no directory
    entry, nothing in the hash (kernels/book.py: the map's layout)."""
    ok, ov = state.ok, state.ov
    h = ok.shape[0]
    if h < B.PAGED_MIN_SLOTS:
        return bool((ov == -1).all())
    half = h // 2
    handed, free, hashed = B.ref_map_stats(ok, ov)
    return (handed == free and hashed == 0 and bool((ov[:half] == -1).all())
            and bool((ok[half:h - 4] == 0).all()))


def as_i64(ref: int) -> np.int64:
    """An order reference (uint64) as the book keys it (the bits as int64)."""
    return np.array([ref], np.uint64).view(np.int64)[0]


def slot_of(state, ref):
    return B.hash_find(state.ok, state.ov, state.ok.shape[0] - 1, as_i64(ref), False)


def queue_refs(state, loc, side, price):
    """Order references of one level, front of the queue first (walking the FIFO links)."""
    x = B.hash_find(state.lk, state.lv, state.lk.shape[0] - 1, B.level_key(loc * 2 + side, price), True)
    out, s = [], state.lj[x, B.K_HEAD]
    while s != -1:
        out.append(int(state.oi[s, B.O_REF]))
        s = state.oj[s, B.J_NEXT]
    return out


def l2_equals_l3(state) -> bool:
    """Walk every book: each level's shares and count equal the sum over its orders, sorted."""
    for book in range(state.bk.shape[0]):
        x, prev_px, n_levels = state.bk[book, B.B_BEST], None, 0
        while x != -1:
            s, shares, count = state.lj[x, B.K_HEAD], 0, 0
            while s != -1:
                assert state.oi[s, B.O_SHARES] > 0
                assert state.oj[s, B.J_LEVEL] == x and state.oj[s, B.J_BOOK] == book
                shares += state.oi[s, B.O_SHARES]
                count += 1
                s = state.oj[s, B.J_NEXT]
            if (shares, count) != (state.li[x, B.L_SHARES], state.lj[x, B.K_COUNT]) or count == 0:
                return False
            px = state.li[x, B.L_PRICE]
            if prev_px is not None and not B.better(book & 1, prev_px, px):
                return False
            prev_px, n_levels, x = px, n_levels + 1, state.lj[x, B.K_WORSE]
        if n_levels != state.bk[book, B.B_NLEVELS]:
            return False
    return True


def test_adds_build_sorted_levels_with_fifo_queues(backend):
    state, books = new_books(backend)
    books(table([A(1, "B", 100, 10_000), A(2, "B", 50, 10_100), A(3, "B", 70, 10_000), A(4, "S", 10, 10_300),
                 A(5, "S", 20, 10_200)]))
    bids, asks = depth(backend, state)
    assert bids == [(10_100, 50, 1), (10_000, 170, 2)]
    assert asks == [(10_200, 20, 1), (10_300, 10, 1)]
    assert queue_refs(state, 1, 0, 10_000) == [1, 3]
    assert B.queue_ahead(slot_of(state, 3), state.oi, state.oj) == (1, 100)
    assert state.counters()["live_orders"] == 5 and l2_equals_l3(state)


def test_replace_moves_order_to_back_of_queue_and_keeps_its_side(backend):
    state, books = new_books(backend)
    books(table([A(1, "B", 100, 10_000), A(2, "B", 50, 10_000),
                 dict(kind="U", ref=1, new_ref=9, shares=100, price=10_000)]))
    assert queue_refs(state, 1, 0, 10_000) == [2, 9]
    assert B.queue_ahead(slot_of(state, 9), state.oi, state.oj) == (1, 50)
    assert slot_of(state, 1) == -1
    books(table([dict(kind="U", ref=9, new_ref=10, shares=30, price=9_900)]))
    assert depth(backend, state)[0] == [(10_000, 50, 1), (9_900, 30, 1)]
    assert l2_equals_l3(state)


def test_executions_cancels_and_deletes_reduce_then_remove(backend):
    state, books = new_books(backend)
    books(table([A(1, "S", 100, 10_000), A(2, "S", 100, 10_000),
                 dict(kind="E", ref=1, shares=30), dict(kind="X", ref=1, shares=20),
                 dict(kind="C", ref=2, shares=100, price=10_000, alpha0="Y"), dict(kind="D", ref=1)]))
    assert depth(backend, state) == ([], [])
    c = state.counters()
    assert (c["executions"], c["cancels"], c["deletes"], c["live_orders"], c["live_levels"]) == (2, 1, 1, 0, 0)
    assert state.sym[1, B.S_LAST_PX] == 10_000 and state.sym[1, B.S_VOLUME] == 130


def test_unknown_references_duplicates_and_over_executions_are_counted_not_fatal(backend):
    state, books = new_books(backend)
    books(table([dict(kind="D", ref=77), dict(kind="E", ref=78, shares=5), dict(kind="U", ref=79, new_ref=80),
                 A(1, "B", 10, 100), A(1, "B", 10, 100), dict(kind="E", ref=1, shares=15),
                 A(2, "X", 10, 100), A(3, "B", 10, 100, locate=60_000)]))
    c = state.counters()
    assert c["missing_refs"] == 3 and c["duplicate_refs"] == 1 and c["over_executed"] == 1
    assert c["bad_side"] == 1 and c["bad_locate"] == 1 and c["live_orders"] == 0


def test_crossed_and_locked_books_are_counted(backend):
    state, books = new_books(backend)
    books(table([A(1, "B", 10, 10_000), A(2, "S", 10, 10_000), A(3, "S", 10, 9_900)]))
    c = state.counters()
    assert c["locked_updates"] == 1 and c["crossed_updates"] == 1 and c["crossed_or_locked_books_now"] == 1


@st.composite
def crossing_flows(draw):
    """Two symbols whose bids and asks overlap (books cross and lock), every kind of update, some
    naming the other symbol's locate (the book follows the order, the check the event's locate)
    and some orders of zero shares."""
    live: dict[int, tuple] = {}
    rows, ref = [], 1
    for _ in range(draw(st.integers(1, 60))):
        op = draw(st.sampled_from("AAAADXECU") if live else st.just("A"))
        if op == "A":
            loc, side = draw(st.integers(1, 2)), draw(st.sampled_from("BS"))
            sh = draw(st.sampled_from([0, 1, 5, 10, 100]))
            rows.append(A(ref, side, sh, 10_000 + 100 * draw(st.integers(-3, 3)), locate=loc))
            live[ref] = (loc, sh)
            ref += 1
            continue
        r = draw(st.sampled_from(sorted(live)))
        loc, sh = live[r]
        named = loc if draw(st.integers(0, 4)) else 3 - loc
        if op == "D":
            rows.append(dict(kind="D", ref=r, locate=named))
            del live[r]
        elif op in "XEC":
            q = draw(st.integers(1, max(sh, 1)))
            rows.append(dict(kind=op, ref=r, shares=q, price=10_000, locate=named, alpha0="Y"))
            if q >= sh:
                del live[r]
            else:
                live[r] = (loc, sh - q)
        else:
            rows.append(dict(kind="U", ref=r, new_ref=ref, shares=draw(st.sampled_from([0, 7])),
                             price=10_000 + 100 * draw(st.integers(-3, 3)), locate=named))
            del live[r]
            live[ref] = (loc, rows[-1]["shares"])
            ref += 1
    return rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crossing_flows())
def test_crossed_and_locked_counts_follow_every_update(flow):
    """After every update the event's symbol counts as crossed (best bid > best ask) or locked
    (equal), both sides non-empty with shares at their best: checked from the book after each
    event, against the kernel's counters (which recompute only when a best level changed)."""
    from kernels import cpu

    state = BookState(256, 256, 4)
    books = BookStage(cpu, state, capacity=4, symbols=[])
    crossed = locked = 0
    for row in flow:
        books(table([row]))
        loc = row["locate"]
        bid = B.best_of(loc * 2, state.bk, state.li)
        ask = B.best_of(loc * 2 + 1, state.bk, state.li)
        if bid[1] > 0 and ask[1] > 0:
            crossed += bid[0] > ask[0]
            locked += bid[0] == ask[0]
        c = state.counters()
        assert (c["crossed_updates"], c["locked_updates"]) == (crossed, locked), row


def test_directory_trading_action_regsho_and_luld_are_kept_per_symbol(backend):
    state, books = new_books(backend)
    books(table([dict(kind="R", locate=3, stock="MSFT", aux0=100), dict(kind="H", locate=3, stock="MSFT", alpha0="H"),
                 dict(kind="Y", locate=3, alpha0="1"), dict(kind="J", locate=3, price=10_000, aux0=11_000)]))
    assert state.locate_of("MSFT") == 3 and state.stock_of(3) == "MSFT"
    assert state.sym[3, B.S_ROUND_LOT] == 100 and chr(state.sym[3, B.S_TRADING_STATE]) == "H"
    assert chr(state.sym[3, B.S_REG_SHO]) == "1" and state.sym[3, B.S_LULD_UPPER] == 11_000


def test_running_out_of_orders_or_levels_is_a_clear_error():
    from kernels import cpu

    state, books = new_books(cpu, orders=3)
    with pytest.raises(BookCapacityError, match=r"book\.max_orders \(3\) exceeded at event seq 4"):
        books(table([A(i, "B", 1, 100 + i) for i in range(1, 6)]))
    state, books = new_books(cpu, levels=2)
    with pytest.raises(BookCapacityError, match=r"book\.max_levels"):
        books(table([A(i, "B", 1, 100 + i) for i in range(1, 6)]))


def test_features_on_a_hand_computed_sequence(backend):
    state, books = new_books(backend)
    fb = books(table([A(1, "B", 100, 10_000), A(2, "S", 300, 10_200),
                      dict(kind="E", ref=2, shares=100, ts=T0 + 10)]))
    assert fb.n == 3
    row = fb.values[1]
    assert row[FT.F_SPREAD] == 200 and row[FT.F_MID] == 10_100
    assert row[FT.F_MICRO] == pytest.approx((10_000 * 300 + 10_200 * 100) / 400)
    assert row[FT.F_IMBALANCE] == pytest.approx((100 - 300) / 400)
    last = fb.values[2]
    assert last[FT.F_TRADE_FLOW] < 0 or last[FT.F_TRADE_FLOW] > 0  # executed against the ask: buyer-initiated
    assert last[FT.F_TRADE_FLOW] == pytest.approx(100 * np.exp(-0 / 1e9))
    assert last[FT.F_LAST_PX] == 10_200 and last[FT.F_LAST_QTY] == 100
    assert last[FT.F_ASK_QTY] == 200 and last[FT.F_DT] == 10 - 1
    assert fb.values[1][FT.F_OFI] == pytest.approx(100 - 300)  # bid arrival +100, then ask arrival -300
    assert list(fb.keys[:3, FT.K_KIND]) == [ord("A"), ord("A"), ord("E")]


def test_only_subscribed_symbols_get_feature_rows():
    from kernels import cpu

    state, books = new_books(cpu, symbols=("MSFT",))
    fb = books(table([A(1, "B", 1, 100, locate=1, stock="AAPL"), A(2, "B", 1, 100, locate=2, stock="MSFT")]))
    assert fb.n == 1 and fb.keys[0, FT.K_LOCATE] == 2


# --- property tests --------------------------------------------------------------------------

@st.composite
def flows(draw):
    """A random valid event sequence over 3 symbols, tracked with a plain-Python model."""
    live: dict[int, tuple] = {}
    rows, ref = [], 1
    for _ in range(draw(st.integers(1, 120))):
        op = draw(st.sampled_from("AAAADXEU") if live else st.just("A"))
        if op == "A":
            loc, side = draw(st.integers(1, 3)), draw(st.sampled_from("BS"))
            px = draw(st.integers(95, 105)) * 100 + (0 if side == "B" else 1000)
            sh = draw(st.integers(1, 500))
            rows.append(A(ref, side, sh, px, locate=loc))
            live[ref] = (loc, side, sh)
            ref += 1
            continue
        r = draw(st.sampled_from(sorted(live)))
        loc, side, sh = live[r]
        if op == "D":
            rows.append(dict(kind="D", ref=r, locate=loc))
            del live[r]
        elif op in "XE":
            q = draw(st.integers(1, sh))
            rows.append(dict(kind=op, ref=r, shares=q, locate=loc))
            if q == sh:
                del live[r]
            else:
                live[r] = (loc, side, sh - q)
        else:
            nsh = draw(st.integers(1, 500))
            px = draw(st.integers(95, 105)) * 100 + (0 if side == "B" else 1000)
            rows.append(dict(kind="U", ref=r, new_ref=ref, shares=nsh, price=px, locate=loc))
            del live[r]
            live[ref] = (loc, side, nsh)
            ref += 1
    return rows, live


PROP = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROP
@given(flows())
def test_sizes_never_negative_and_l2_always_equals_l3(flow):
    from kernels import cpu

    rows, live = flow
    state, books = new_books(cpu, orders=400, levels=200)
    for i in range(0, len(rows), 7):  # small batches: check the invariants along the way
        books(table(rows[i:i + 7]))
        assert l2_equals_l3(state)
        assert (state.li[:, B.L_SHARES] >= 0).all()
    c = state.counters()
    assert c["live_orders"] == len(live) and c["missing_refs"] == 0 and c["crossed_updates"] == 0
    for r, (loc, side, sh) in live.items():
        s = slot_of(state, r)
        assert s >= 0 and state.oi[s, B.O_SHARES] == sh and state.oj[s, B.J_BOOK] == loc * 2 + (side == "S")


@PROP
@given(flows())
def test_deleting_every_order_empties_every_book(flow):
    from kernels import cpu

    rows, live = flow
    state, books = new_books(cpu, orders=400, levels=200)
    books(table(rows + [dict(kind="D", ref=r, locate=live[r][0]) for r in live]))
    assert state.counters()["live_orders"] == 0 and state.counters()["live_levels"] == 0
    assert (state.bk[:, B.B_BEST] == -1).all() and ref_map_is_empty(state) and (state.lv == -1).all()
    assert state.ctr[B.C_FREE_ORDERS] == 400 and state.ctr[B.C_FREE_LEVELS] == 200


@PROP
@given(flows(), st.data())
def test_replace_keeps_the_side_and_goes_to_the_back(flow, data):
    from kernels import cpu

    rows, live = flow
    if not live:
        return
    state, books = new_books(cpu, orders=400, levels=200)
    books(table(rows))
    r = data.draw(st.sampled_from(sorted(live)))
    loc, side, _ = live[r]
    px = int(state.oi[slot_of(state, r), B.O_PRICE])
    new = 10_000_000
    books(table([dict(kind="U", ref=r, new_ref=new, shares=7, price=px, locate=loc)]))
    s = slot_of(state, new)
    assert state.oj[s, B.J_BOOK] == loc * 2 + (side == "S")
    assert queue_refs(state, loc, side == "S", px)[-1] == new


@st.composite
def deep_flows(draw):
    """Many levels per book (prices over 300 ticks, some off the one-cent grid, some far
    outside a ladder's window) and references that are mostly dense but jump now and then (past
    the page directory, above 2**63): the paged reference map, its hash fallback, page reuse and
    the level ladders all get used. Returns rows and the live orders {ref: (loc, side, shares)}."""
    live: dict[int, tuple] = {}
    rows, ref = [], 1
    for _ in range(draw(st.integers(1, 400))):
        op = draw(st.sampled_from("AAAAADDXU") if live else st.just("A"))
        if op in "AU":
            jump = draw(st.sampled_from([0] * 12 + [1, 700, 5000, 2**31, 2**40, -1]))
            if jump < 0:  # a reference above 2**63 (negative as int64), outside any sequence
                nref = 2**63 + 17 * ref
            else:
                nref = ref + jump
            ref = max(ref, nref + 1) if jump >= 0 else ref + 1
        if op == "A":
            loc, side = draw(st.integers(1, 2)), draw(st.sampled_from("BS"))
            tick = draw(st.one_of(st.integers(0, 300), st.integers(0, 300), st.integers(-4000, 4000)))
            off = draw(st.sampled_from([0] * 9 + [37]))  # now and then a sub-penny price
            px = 500_000 + (tick if side == "S" else -tick) * 100 + off + (0 if side == "B" else 50_000)
            sh = draw(st.integers(1, 500))
            rows.append(A(nref, side, sh, px, locate=loc))
            live[nref] = (loc, side, sh)
            continue
        r = draw(st.sampled_from(sorted(live)))
        loc, side, sh = live[r]
        if op == "D":
            rows.append(dict(kind="D", ref=r, locate=loc))
            del live[r]
        elif op == "X":
            q = draw(st.integers(1, sh))
            rows.append(dict(kind="X", ref=r, shares=q, locate=loc))
            if q == sh:
                del live[r]
            else:
                live[r] = (loc, side, sh - q)
        else:
            tick = draw(st.integers(0, 300))
            px = 500_000 + (tick if side == "S" else -tick) * 100 + (0 if side == "B" else 50_000)
            rows.append(dict(kind="U", ref=r, new_ref=nref, shares=7, price=px, locate=loc))
            del live[r]
            live[nref] = (loc, side, 7)
    return rows, live


def ladders_agree(state) -> bool:
    """Every ladder entry names a live level of its book at its price; every level of a book with
    a ladder that is on the grid and in the window is on it, and only there: the level hash holds
    exactly the other levels (each found at its key)."""
    lk, lv = state.lk, state.lv
    if lk.shape[0] < B.LADDER_MIN_SLOTS:
        return True
    half = lk.shape[0] // 2
    off_ladder = 0
    for book in range(state.bk.shape[0]):
        start, base = B.ladder_of(book, lk)
        want = {}
        x = state.bk[book, B.B_BEST]
        while x != -1:
            px = int(state.li[x, B.L_PRICE])
            if start >= 0 and px % 100 == 0 and 0 <= px // 100 - base < B.LADDER:
                want[px // 100 - base] = x
            else:
                off_ladder += 1
                if B.probe_find(lk, lv, half - 1, B.level_key(book, px), True) != x:
                    return False
            x = state.lj[x, B.K_WORSE]
        if start < 0:
            continue
        got = {t: int(lv[start + t]) for t in range(B.LADDER) if lv[start + t] != -1}
        if got != want:
            return False
    return int((lv[:half] != -1).sum()) == off_ladder


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deep_flows())
def test_paged_references_and_ladders_keep_the_book_exact(deep_flow):
    """Big enough tables for the paged reference map (4 pages) and the level ladders (8): the
    books stay sorted with L2 = L3, every live order is found with its fields, and deleting
    everything empties both maps."""
    from kernels import cpu

    rows, live = deep_flow
    state = BookState(1024, 8192, 4)
    assert state.ok.shape[0] >= B.PAGED_MIN_SLOTS and state.lk.shape[0] >= B.LADDER_MIN_SLOTS
    books = BookStage(cpu, state, capacity=4096, symbols=[])
    for i in range(0, len(rows), 50):
        books(table(rows[i:i + 50]))
        assert l2_equals_l3(state) and ladders_agree(state)
    c = state.counters()
    assert c["live_orders"] == len(live) and c["missing_refs"] == 0 and c["duplicate_refs"] == 0
    for r, (loc, side, sh) in live.items():
        s = slot_of(state, r)
        assert s >= 0 and state.oi[s, B.O_SHARES] == sh and state.oi[s, B.O_REF] == as_i64(r)
        assert state.oj[s, B.J_BOOK] == loc * 2 + (side == "S")
    books(table([dict(kind="D", ref=r, locate=live[r][0]) for r in live]))
    assert state.counters()["live_orders"] == 0 and state.counters()["live_levels"] == 0
    assert ref_map_is_empty(state) and ladders_agree(state)
    half = state.lk.shape[0] // 2
    assert (state.lk[half:half + state.bk.shape[0]] == 0).all()  # every ladder given back


@pytest.mark.parametrize("preset, levels", [(None, 1000), ("deep", 8192)])
def test_backends_agree_on_a_generated_stream(tmp_path, preset, levels):
    """The CUDA kernel (simulator) leaves exactly the same state and features as the CPU one;
    both sizes use the paged reference map, the deep one the level ladders too. Prefetching on
    from the first live order (the simulator runs ``prefetch_ahead``'s speculative reads as
    Python, its prefetches as no-ops)."""
    from kernels import cpu, gpu
    from pipeline.stages import DecodeStage
    from replay.capture import CaptureReader
    from replay.generator import generate

    path = tmp_path / "g.itch"
    generate(path, fmt="itch", n_messages=1500, n_symbols=3, seed=5, preset=preset,
             **({"live_orders": 1200} if preset else {}))
    out = []
    for k in (cpu, gpu):
        reader = CaptureReader(path)
        state = BookState(3000, levels, 8, prefetch_live=1)
        dec = DecodeStage(cpu, reader.batch_rows, reader.stats)
        books = BookStage(k, state, reader.batch_rows, symbols=["*"])
        feats = [(fb.values[:fb.n].copy(), fb.keys[:fb.n].copy()) for fb in (books(dec(b)) for b in reader)]
        out.append((state, feats))
    (s1, f1), (s2, f2) = out
    for a, b in zip(s1.arrays(), s2.arrays()):
        assert np.array_equal(a, b)
    assert all(np.array_equal(x, y) for (x, _), (y, _) in zip(f1, f2))
    assert s1.counters()["adds"] > 100 and sum(len(x) for x, _ in f1) > 100
    assert B.ref_map_stats(s1.ok, s1.ov)[0] > 0  # pages handed out
    if preset:
        assert s1.lk[-1] > 0  # ladders handed out


def test_hftbot_book_prints_meta_bbo_of_the_real_capture():
    path = shared_data("omi-pcaps", "Nasdaq", "Nasdaq.Equities.TotalView.Itch.v5.0", "Multiple.Packets.pcap")
    res = subprocess.run([sys.executable, "-m", "pipeline", "book", str(path), "--symbols", "META", "--depth", "3"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    (line,) = [json.loads(x) for x in res.stdout.splitlines()]
    assert line["symbol"] == "META"
    assert line["bids"][0] == {"price": 805200, "shares": 1, "orders": 1}
    assert line["asks"][0] == {"price": 3573300, "shares": 100, "orders": 1}
    assert "live orders 38" in res.stderr and "missing refs 1" in res.stderr and "crossed updates 0" in res.stderr


def test_hftbot_book_at_a_time_stops_before_later_messages(tmp_path):
    from replay.generator import generate

    path = tmp_path / "g.pcap"
    generate(path, fmt="pcap", n_messages=5000, n_symbols=2, seed=2)
    cmd = [sys.executable, "-m", "pipeline", "book", str(path), "--symbols", "AAPL"]
    early = subprocess.run(cmd + ["--at", "09:30:00.000001"], cwd=REPO, capture_output=True, text=True, timeout=600)
    late = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert early.returncode == 0 and late.returncode == 0
    n_early = int(early.stderr.split(" events")[0].split()[-1].replace(",", ""))
    n_late = int(late.stderr.split(" events")[0].split()[-1].replace(",", ""))
    assert 0 < n_early < n_late
