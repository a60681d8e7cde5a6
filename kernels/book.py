"""Order books: one L3 (order-by-order) book per symbol and side, L2 levels, FIFO queues.

Undecorated bodies compiled by ``kernels/cpu.py`` and ``kernels/gpu.py``. All state lives in
preallocated arrays (``BookState``); nothing allocates, nothing raises: running out of order
slots or price levels stops the batch with an error code that the caller turns into an
exception naming the config key to raise.

Structures (slots are row indices, -1 = none; one row per order / level keeps an order's
fields in one cache line):
- orders ``oi[slot] = (ref, price, shares, ts)`` (int64) and ``oj[slot] = (book, level, prev,
  next)`` (int32), where ``book = locate * 2 + side`` (side 0 bid, 1 ask); with
  ``BookState(packed=True)`` both rows of a slot share one 64-byte line. The order-reference
  map (``ok``/``ov``, below) maps an order reference to its slot: a two-level paged table
  (references rise through the day) with an open-addressing hash as its fallback (linear
  probing in Robin Hood order, backward-shift deletion, no tombstones); free slots sit on a
  stack (``ofree``).
- levels ``li[lv] = (price, shares)`` and ``lj[lv] = (orders, head, tail, better, worse, book)``
  (one line with ``packed=True``); the level map (``lk``/``lv``, below) holds a second hash
  ((book, price) -> level) and per-book price ladders. A book's levels form a doubly linked
  list from the best price outward; each level holds its orders as a FIFO list (oldest at
  ``head``). L2 shares and order counts live on the level and change with every L3 change,
  so L2 equals the sum of L3 by construction (a property test checks it).
- ``bk[book] = (best level, number of levels)``.
- ``sym[locate, S_*]``: stock, round lot, trading state, Reg SHO, LULD collar, last trade,
  subscription; ``fs[locate, F_*]`` the feature state (``kernels/features.py``).

Units: prices Price(4) integers, shares integers, timestamps ns since midnight.

Performance notes (decode + book, generated 500-symbol day, shared 2-core EPYC; README has the
run): ~100 ns per book update, against ~65 ns for itch-book's parse + book. Tried and measured:
a strong mixing hash for order references (random slots over a 16M-slot table: ~400 ns per
update; the locality-preserving home below is much better), Robin Hood ordering (keeps runs of
consecutive references O(1) to search and delete), a mixed home for price levels (an unmixed
one crowded a market's levels together: 2.5 µs adds), numba IR inlining of the helpers (-25%,
but 200+ s to compile: rejected) and LLVM's inline threshold raised instead (the same -25% at
no compile cost: in ``kernels/cpu.py``).

Deep books (issue 13; ``generate(preset="deep")``, 500 symbols; the 10M day holds ~1M live
orders at the close, the 30M day 1.25M mid-stream and 1.66M at the close, ~2.9k levels on the
busiest book). Same shared 2-core box, load average 8-10: wall times there mostly measure
waiting for a core, so these are process CPU times of the book alone (decode excluded, ~27 ns a
message), variants alternated, 2-3 rounds each:

=================================================  ===================  ===================
variant                                            10M day, CPU s       30M day, CPU s
=================================================  ===================  ===================
hash + walk from the best (before)                 5.08 5.68 4.86       13.00 11.21
paged reference map + walk jump (near_better)      4.69 5.35 5.09       -
paged + ladders + walk jump (the default now)      5.59 4.94 4.62       12.32 10.94
  the same, later round                            5.39 4.24 4.47       -
  with ``BookState(packed=True)``                  4.47 4.36 4.32       10.52 10.32
itch-book (parse + book, same file)                4.70 5.14            -
quiet machine (load ~1), final 10M file: before    3.78 3.33            -
  paged + ladders                                  3.57 3.42            -
  packed                                           3.53 3.43            -
  itch-book, parse + book (bench, best of 2)       3.43                 -
=================================================  ===================  ===================

So ~450 ns a message at this depth for ours and for itch-book alike (1.0x): both are bound by
memory latency (a D/X/E/C/U on an old order misses on its reference, its order row and its
level). The paged map and the ladders are within the noise (+-10%) here: walks from the best
were 4.2 steps an event (28 per new level) but over the hot inner levels, and the hash's
locality-preserving home already mapped rising references to neighbouring slots. Packed rows
(one miss instead of two per order and per level) gained 10% on the 30M day, but nothing in a
later 10M round (unpacked 3.66 3.74 3.29 s, packed 4.38 3.42 3.35 s), so ``packed`` stays an
option (default off). Prefetching only the next event's order row (``llvm.prefetch`` through a
numba intrinsic) measured 4.12 3.37 3.14 s against 3.66 3.74 3.29 s: no gain, and no wonder: its
address comes out of the reference map, whose own miss it waited for.

Prefetching in stages (``prefetch_ahead``, below; ``kernels/prefetch.py``). This VM's memory
latency, measured (``numba`` loops over 256 MB): a dependent chain of random reads 290 ns a read
with 4 KiB pages, 210 ns with 2 MiB pages; independent random reads 10-27 ns each (the core keeps
many in flight). A deep update is a chain of 3-4 such reads (reference page slot -> order row ->
level and queue neighbours), so the book loads each link of the chain for an event a few places
ahead while it applies the current one: every stage reads only lines the stage before fetched,
and the chains of ~10 events overlap. Book CPU time on the 10M deep day (apply_events alone,
alternated with a build without it, the other core busy): 2.70-2.96 s against 4.61-4.94 s
(1.6-1.7x); packed rows on top: no further gain (3.10 against 3.13 s). Distances 12/8/4/2 to
32/22/12/6 events ahead: all within the noise (2.52-2.82 s). Tried and not kept: prefetching a
replace's new level (3.07 against 2.88 s without: no gain), the neighbours of a new level found on
the ladder (+14% slower: the ladder scan twice more per add), 2 MiB pages for every book array
(-4%, noise). On the shallow day (32k live orders, in L3) the speculative reads cost ~10%
(paired ratio of 8 alternated rounds 1.11), so the book prefetches only from
``book.prefetch_live`` live orders on (65,536).
What is left at depth is mostly compute: the shallow day, every line in cache, costs ~60% of the
deep day's time per event. ``perf stat`` could not count cache misses on this VM (no PMU
exposed), so these are times, not miss counts. ``make perf-book`` now falls back to a cachegrind
simulation (D1 and LL sized as this CPU's; no hardware prefetchers, no software prefetch, no L2,
no memory-level parallelism): per message on the deep 10M day (messages 1.0M-1.5M, ~0.54M live
orders; the code of 2026-12-07 01:50) ours 1,050 instructions, 25.5 D1 and 5.75 LL misses,
itch-book 1,001 / 24.7 / 2.21; without prefetch ours 757 instructions and the same misses (the
simulation ignores prefetches). Most of our extra LL misses are the 2**18-row event table a batch
writes and reads back (34 MiB, over the LL): with 2**14-row batches 2.45 LL misses, but no
difference in time measurable here (paired rounds 0.79-1.11): sequential streams, which the
hardware prefetchers cover. So ours takes 2.6x the simulated LL misses and yet runs 1.8x faster
than itch-book at depth: its misses overlap.

Where the time goes, by line (``bench/profile_book.py``, ``make profile-book``: perf's timer
sampling over a debug-info build, mapped through its line table; 2026-12-07 02:47 UTC, deep 10M
day, ~1M live orders, prefetch on, after the changes below). Share of all samples of the process:
the prefetch stage 38.6% (its first read of each chain link, e.g. the page slot prefetched five
events before, is the top stalled instruction: 8.6%), ``order_remove`` 7.1%, ``order_add`` 6.0%,
a replace's add 5.2%, ``best_of`` x 2 (the crossed/locked check reads both best levels) 5.5%,
the book 68.9% in all; outside it, decode ~12% and the kernel zeroing first-touched pages
(book rows handed out for the first time; 9.8% in a run of the production build). On the
shallow day the level hash was the top line (its lookup at a mixed home: 19% of the samples).
This VM, random reads over 1 GiB (``numba`` loop, the other core busy):
independent 20 ns each on 2 MiB pages and 46 ns on 4 KiB pages (a nested page walk per miss);
two-link chains 30 and 85 ns; prefetching 16 ahead: 14 / 36 ns independent. numpy already asks
for transparent huge pages for these arrays (AnonHugePages 446 of 640 MB RSS on the deep day),
which is why forcing 2 MiB pages gained nothing above.

This session's changes, paired alternated rounds of ``apply_events`` (CPU s, load 3-6):
- levels on their ladder only (not also in the hash; ``level_find``): shallow 10M 0.90x,
  deep 10M 0.98x (0.88-1.06): the ladder entry of an add sits near the best, the hash's two
  lines at a random home; the prefetch stage reads the ladder only (with the hash probe it grew
  too big for LLVM to inline and the deep day ran +10% slower);
- ``level_get`` split (lookup inlined, ``level_new`` called for a new level only; as one 9 KB
  function neither was inlined and each add passed a dozen arrays through the stack): shallow
  0.83x (6 of 6 rounds faster), deep 1.01x (noise);
- packed rows again on top: deep 1.02x (noise), still an option; rows prefetched for reading
  (``prefetcht0``) instead of writing: 1.01x (noise);
- the crossed/locked check from a per-symbol state recomputed only when an update changed a best
  level (instead of reading both best levels after every change, 5.5% of the samples): deep
  0.976x, shallow 1.005x (noise), not kept; the test that counts crossed/locked updates against
  a recount after every event (``tests/test_book.py``) stays.
"""

from __future__ import annotations

import numpy as np
from numba.extending import register_jitable

from kernels import features as FT
from kernels.prefetch import prefetch, prefetch_w


# --- counters: ctr[...] -------------------------------------------------------------------
C_ERROR = 0            # error code (below); 0 = none
C_ERROR_EVENT = 1      # index in the batch of the event that hit the error
C_FREE_ORDERS = 2      # free order slots on the stack
C_FREE_LEVELS = 3
C_LIVE_ORDERS = 4
C_ADDS = 5
C_EXECUTIONS = 6
C_CANCELS = 7
C_DELETES = 8
C_REPLACES = 9
C_TRADES = 10          # P and Q prints
C_MISSING_REF = 11     # E/C/X/D/U for an order not in the book (capture started mid-session)
C_DUPLICATE_REF = 12   # add for a reference already live: ignored
C_CROSSED = 13         # updates after which the book's best bid > best ask
C_LOCKED = 14          # updates after which best bid == best ask
C_OVER_EXECUTED = 15   # E/C/X for more shares than remain: order removed, excess counted
C_BAD_LOCATE = 16      # locate beyond book.max_symbols: skipped
C_BAD_SIDE = 17        # add with a side other than B/S: skipped
C_BROKEN_TRADES = 18
C_EVENTS = 19          # events seen (applied or skipped and counted)
C_FEATURES = 20        # feature rows written
C_MAX_LEVELS_SEEN = 21
C_PREFETCH_LIVE = 22   # setting, not a count: prefetch ahead (below) while at least this many
                       # orders are live; 0 = never (the CUDA edge: speculative reads, no prefetch)
N_CTR = 32

ERR_ORDERS_FULL = 1
ERR_LEVELS_FULL = 2
ERR_FEATURES_FULL = 3

# per-symbol state columns in sym_i (int64) ------------------------------------------------
S_STOCK = 0        # 8 ASCII bytes as an int64 bit pattern
S_ROUND_LOT = 1
S_TRADING_STATE = 2  # 'T', 'H', 'P', 'Q' (0 = no H message yet)
S_REG_SHO = 3
S_LULD_REF = 4
S_LULD_UPPER = 5
S_LULD_LOWER = 6
S_LAST_PX = 7
S_LAST_QTY = 8
S_LAST_TS = 9      # last trade time
S_VOLUME = 10
S_SUBSCRIBED = 11  # 1 when features are written for this symbol
S_UPDATE_TS = 12   # time of the last book update
S_HALT_OP = 13     # 'h' operational halt action ('H' halted, 'T' resumed)
N_SYM_I = 16

@register_jitable
def _home(key, mask):
    """Home slot of a key in a power-of-two table (at most 2**31 slots).

    Locality-preserving on purpose: ITCH order references rise through the day and a book's
    prices sit close together, so nearby keys land in nearby slots and the working set of a
    busy book stays in cache (a strong mixing hash spreads them over the whole table: one cache
    miss per lookup). The high bits are folded in so keys 2**29 apart do not share a home.
    Runs of consecutive keys are what linear probing handles worst; Robin Hood ordering below
    keeps lookups and deletions in them O(1).
    """
    return (key ^ (key >> 29) ^ (key >> 47)) & mask


_C1 = np.int64(0x27D4EB2F)
_C2 = np.int64(0x85EBCA6B)
_C3 = np.int64(0xC2B2AE35)


@register_jitable
def _mixed_home(key, mask):
    """Home slot for keys without sequential structure (price levels): a murmur3-style
    finaliser on 31 bits, so every product stays below 2**63 and nothing wraps (the simulator
    runs this as numpy, which warns on overflow). Tables of at most 2**31 slots. Without it a
    market's levels (similar prices, small book numbers) crowd into a corner of the table:
    adds measured 2.5 µs each from probe runs."""
    x = (key & 0xFFFFFFFF) ^ (((key >> 32) & 0xFFFFFFFF) * _C1)
    x ^= x >> 31
    x &= 0x7FFFFFFF
    x = (x * _C2) & 0x7FFFFFFF
    x ^= x >> 16
    x = (x * _C3) & 0x7FFFFFFF
    x ^= x >> 13
    return x & mask


@register_jitable
def home_of(key, mask, mixed):
    if mixed:
        return _mixed_home(key, mask)
    return _home(key, mask)


@register_jitable
def probe_find(keys, vals, mask, key, mixed):
    """Slot stored for ``key`` or -1 (Robin Hood: stops at the first resident closer to home)."""
    i = home_of(key, mask, mixed)
    d = 0
    while vals[i] != -1:
        if keys[i] == key:
            return vals[i]
        if ((i - home_of(keys[i], mask, mixed)) & mask) < d:
            return -1
        i = (i + 1) & mask
        d += 1
    return -1


@register_jitable
def probe_insert(keys, vals, mask, key, val, mixed):
    """Insert an absent key (Robin Hood: take the slot of a resident nearer its home, carry it on).
    The table is sized at least twice the live entries, so it never fills."""
    i = home_of(key, mask, mixed)
    d = 0
    while vals[i] != -1:
        rd = (i - home_of(keys[i], mask, mixed)) & mask
        if rd < d:
            k2 = keys[i]
            v2 = vals[i]
            keys[i] = key
            vals[i] = val
            key = k2
            val = v2
            d = rd
        i = (i + 1) & mask
        d += 1
    keys[i] = key
    vals[i] = val


@register_jitable
def probe_delete(keys, vals, mask, key, mixed):
    """Remove ``key`` with backward-shift deletion; returns its value or -1.

    Robin Hood order makes the shift stop at the first entry sitting in its home slot, so
    deleting from a long run of consecutive references costs O(1), not O(run)."""
    i = home_of(key, mask, mixed)
    d = 0
    while True:
        if vals[i] == -1:
            return -1
        if keys[i] == key:
            break
        if ((i - home_of(keys[i], mask, mixed)) & mask) < d:
            return -1
        i = (i + 1) & mask
        d += 1
    found = vals[i]
    j = (i + 1) & mask
    while vals[j] != -1 and ((j - home_of(keys[j], mask, mixed)) & mask) > 0:
        keys[i] = keys[j]
        vals[i] = vals[j]
        i = j
        j = (j + 1) & mask
    vals[i] = -1
    return found


# --- the order-reference map: a two-level paged table, the hash as its fallback -------------
#
# One pair of arrays (``ok`` int64 [H], ``ov`` int32 [H], H a power of two, ``ref_slots``) holds
# it. Tables below PAGED_MIN_SLOTS are the plain hash (``probe_*`` over all H slots). From
# PAGED_MIN_SLOTS up, with ``half = H // 2``:
#   - ``ok[:half]``/``ov[:half]``: the hash, for references no page can take (non-dense feeds,
#     references beyond the directory, every page in use);
#   - ``ok[half + d]`` for ``d < half - 4``: directory entry of references ``d * PAGE ..
#     d * PAGE + PAGE - 1``: low 32 bits the page + 1 (0 = none), high 32 bits its live refs;
#   - ``ok[H - 1]`` pages handed out so far, ``ok[H - 2]`` the free-page list's head (page + 1,
#     0 = empty; a free page's slot 0 links to the next), ``ok[H - 3]`` entries in the hash;
#   - ``ov[half + page * PAGE + (ref % PAGE)]``: the order's slot, -1 = none.
# Nasdaq assigns references increasing through the day, so the live ones fill a few thousand
# pages densely: a lookup is one directory read (hot: 8 bytes per 512 references) and one read
# of the page slot, instead of the hash's key and value reads and probe. A page goes back on the
# free list when its last reference leaves; a page is refilled with -1 when handed out. All
# initial state is zeros in ``ok`` and -1 in ``ov`` (what ``BookState`` and the GPU's sharded
# book allocate), and each shard's slice of ``ok``/``ov`` is a table of its own.

PAGE_BITS = 9
PAGE = 1 << PAGE_BITS
PAGE_MASK = PAGE - 1
PAGED_MIN_SLOTS = 1 << 12
_LOW32 = np.int64(0xFFFFFFFF)


@register_jitable
def _page_alloc(ok, ov, half, h):
    """A page (page + 1) with every slot -1, from the free list or unused; 0 when none is left."""
    f = ok[h - 2]
    if f != 0:
        base = half + ((f - 1) << PAGE_BITS)
        ok[h - 2] = ov[base]
    else:
        b = ok[h - 1]
        if b >= (half >> PAGE_BITS):
            return np.int64(0)
        ok[h - 1] = b + 1
        f = b + 1
        base = half + (b << PAGE_BITS)
    for k in range(PAGE):
        ov[base + k] = -1
    return f


@register_jitable
def page_slot(ok, ref):
    """Index in ``ov`` of ``ref``'s slot in its page, or -1 when no page holds its range (a
    paged map: ``ok.shape[0] >= PAGED_MIN_SLOTS``)."""
    half = ok.shape[0] >> 1
    d = ref >> PAGE_BITS
    if ref >= 0 and d < half - 4:
        pg = ok[half + d] & _LOW32
        if pg != 0:
            return half + ((pg - 1) << PAGE_BITS) + (ref & PAGE_MASK)
    return -1


@register_jitable
def ref_find(ok, ov, ref):
    """The order slot of reference ``ref``, or -1."""
    h = ok.shape[0]
    if h < PAGED_MIN_SLOTS:
        return probe_find(ok, ov, h - 1, ref, False)
    i = page_slot(ok, ref)
    if i >= 0 and ov[i] != -1:
        return ov[i]
    if ok[h - 3] == 0:
        return -1
    return probe_find(ok, ov, (h >> 1) - 1, ref, False)


@register_jitable
def ref_insert(ok, ov, ref, val):
    """Map an absent reference to ``val``: in its page (handed out on first use) or the hash."""
    h = ok.shape[0]
    if h < PAGED_MIN_SLOTS:
        probe_insert(ok, ov, h - 1, ref, val, False)
        return
    half = h >> 1
    d = ref >> PAGE_BITS
    if ref >= 0 and d < half - 4:
        e = ok[half + d]
        pg = e & _LOW32
        if pg == 0:
            pg = _page_alloc(ok, ov, half, h)
        if pg != 0:
            ov[half + ((pg - 1) << PAGE_BITS) + (ref & PAGE_MASK)] = val
            ok[half + d] = (((e >> 32) + 1) << 32) | pg
            return
    probe_insert(ok, ov, half - 1, ref, val, False)
    ok[h - 3] += 1


@register_jitable
def ref_delete(ok, ov, ref):
    """Unmap ``ref``; returns its slot or -1. A page whose last reference leaves is freed."""
    h = ok.shape[0]
    if h < PAGED_MIN_SLOTS:
        return probe_delete(ok, ov, h - 1, ref, False)
    half = h >> 1
    d = ref >> PAGE_BITS
    if ref >= 0 and d < half - 4:
        e = ok[half + d]
        pg = e & _LOW32
        if pg != 0:
            i = half + ((pg - 1) << PAGE_BITS) + (ref & PAGE_MASK)
            v = ov[i]
            if v != -1:
                ov[i] = -1
                c = (e >> 32) - 1
                if c == 0:
                    ok[half + d] = 0
                    ov[half + ((pg - 1) << PAGE_BITS)] = ok[h - 2]
                    ok[h - 2] = pg
                else:
                    ok[half + d] = (c << 32) | pg
                return v
    if ok[h - 3] == 0:
        return -1
    v = probe_delete(ok, ov, half - 1, ref, False)
    if v != -1:
        ok[h - 3] -= 1
    return v


def ref_map_stats(ok, ov):
    """(pages handed out, pages on the free list, references in the hash) of an order-reference
    map; ``(0, 0, -1)`` for a hash-only one (small tables). Python side, not the hot path."""
    h = ok.shape[0]
    if h < PAGED_MIN_SLOTS:
        return 0, 0, -1
    half = h >> 1
    free, f = 0, int(ok[h - 2])
    while f != 0:
        free += 1
        f = int(ov[half + ((f - 1) << PAGE_BITS)])
    return int(ok[h - 1]), free, int(ok[h - 3])


@register_jitable
def hash_find(keys, vals, mask, key, mixed):
    """Slot stored for ``key`` or -1: the order-reference map for ``mixed=False`` (``keys``/``vals``
    = ``ok``/``ov``; ``mask`` unused), else the level hash (``probe_find``)."""
    if mixed:
        return level_find(key >> 33, key & _PRICE_MASK, keys, vals, level_mask(keys))
    return ref_find(keys, vals, key)


_PRICE_MASK = np.int64((1 << 33) - 1)


@register_jitable
def level_key(book, price):
    """(book, price) -> one unique int64 key (prices are below 2**33)."""
    return (np.int64(book) << 33) | np.int64(price)


@register_jitable
def better(side, a, b):
    """Is price ``a`` better than ``b`` on this side (bids: higher; asks: lower)?"""
    if side == 0:
        return a > b
    return a < b


# order / level row columns
O_REF, O_PRICE, O_SHARES, O_TS = 0, 1, 2, 3
J_BOOK, J_LEVEL, J_PREV, J_NEXT = 0, 1, 2, 3
L_PRICE, L_SHARES = 0, 1
K_COUNT, K_HEAD, K_TAIL, K_BETTER, K_WORSE, K_BOOK = 0, 1, 2, 3, 4, 5
B_BEST, B_NLEVELS = 0, 1


# --- the level map: the level hash and per-book price ladders in one pair of arrays ---------
#
# ``lk`` int64 [H] / ``lv`` int32 [H] (H a power of two, ``hash_slots``). Below
# LADDER_MIN_SLOTS: the plain level hash over all H slots. From LADDER_MIN_SLOTS up, with
# ``half = H // 2``:
#   - ``lk[:half]``/``lv[:half]``: the level hash ((book, price) -> level) of every level that
#     is not on its book's ladder (a level is in one place only: ``level_find``);
#   - ``lk[half + book]`` (books below ``half - 2``): the book's ladder + 1 (low 32 bits, 0 =
#     none) and the ladder's first tick (high 32 bits: price // 100);
#   - ``lk[H - 1]`` ladders handed out, ``lk[H - 2]`` the free-ladder list's head (ladder + 1; a
#     free ladder's entry 0 links to the next);
#   - ``lv[half + ladder * LADDER + t]``: the book's level at price ``(first tick + t) * 100``,
#     -1 = none.
# A book gets a ladder at its LADDER_AT-th level (while any is left), placed so that its best
# price sits a quarter of the window from the window's inner edge; a new best outside the window
# re-centres it (rebuilt from the book's levels, which move between the hash and the ladder), an
# empty book gives it back. A level on the ladder is found, created and released there without
# touching the hash: one read of a line near the best (hot) instead of the hash's key and value
# lines at a mixed, i.e. random, home (measured in the module docstring). A new level then
# finds its place from the nearest better level on the ladder (a scan of at most LADDER_SCAN
# entries, sequential memory) instead of walking the book's linked list from the best, which
# costs two cache misses a level and, on a deep book, hundreds of levels. Prices off the
# one-cent grid, outside the window or in books without a ladder take the walk; the walk from
# the ladder's level is what places the new level, so it is exact whatever the prices.

LADDER_BITS = 11
LADDER = 1 << LADDER_BITS    # ticks per ladder (one cent each: $20.48)
LADDER_AT = 16
LADDER_SCAN = 512
LADDER_MIN_SLOTS = 1 << 15
LEVEL_WALK = 16   # levels walked from the best before looking a neighbour up by price
NEAR_PROBES = 8   # prices looked up on the better side of a new level (one tick apart)


@register_jitable
def level_mask(lk):
    """The level hash's mask: all of ``lk`` below LADDER_MIN_SLOTS slots, else its lower half."""
    h = lk.shape[0]
    if h < LADDER_MIN_SLOTS:
        return h - 1
    return (h >> 1) - 1


@register_jitable
def ladder_of(book, lk):
    """(start of the book's ladder in ``lv``, its first tick), or (-1, 0) when it has none."""
    h = lk.shape[0]
    half = h >> 1
    if h < LADDER_MIN_SLOTS or book >= half - 2:
        return -1, np.int64(0)
    e = lk[half + book]
    lad = e & _LOW32
    if lad == 0:
        return -1, np.int64(0)
    return half + ((lad - 1) << LADDER_BITS), e >> 32


@register_jitable
def ladder_index(book, price, lk):
    """Index in ``lv`` of ``price``'s entry on the book's ladder, or -1 when the book has no
    ladder or the price is off its grid or outside its window."""
    start, base = ladder_of(book, lk)
    if start < 0 or price % 100 != 0:
        return -1
    t = price // 100 - base
    if 0 <= t < LADDER:
        return start + t
    return -1


@register_jitable
def level_lookup(book, price, lk, lv, lmask):
    """(``price``'s ladder entry in ``lv`` or -1, the level of ``price`` in ``book`` or -1): the
    ladder entry when the book's ladder covers the price (such a level is on the ladder only),
    else the level hash."""
    k = ladder_index(book, price, lk)
    if k >= 0:
        return k, np.int64(lv[k])
    return k, probe_find(lk, lv, lmask, level_key(book, price), True)


@register_jitable
def level_find(book, price, lk, lv, lmask):
    """The level of ``price`` in ``book``, or -1 (``level_lookup``)."""
    return level_lookup(book, price, lk, lv, lmask)[1]


@register_jitable
def ladder_better(book, side, price, lk, lv):
    """The nearest level better than ``price`` on the book's ladder (within LADDER_SCAN
    entries), or -1."""
    start, base = ladder_of(book, lk)
    if start < 0 or price % 100 != 0:
        return -1
    t = price // 100 - base
    if t < 0 or t >= LADDER:
        return -1
    step = 1 if side == 0 else -1
    for k in range(LADDER_SCAN):
        t += step
        if t < 0 or t >= LADDER:
            return -1
        v = lv[start + t]
        if v != -1:
            return v
    return -1


@register_jitable
def ladder_free(book, lk, lv):
    """Give the book's ladder back (its book is empty: every entry is -1 already)."""
    start, base = ladder_of(book, lk)
    if start < 0:
        return
    h = lk.shape[0]
    half = h >> 1
    lv[start] = lk[h - 2]
    lk[h - 2] = lk[half + book] & _LOW32
    lk[half + book] = 0


@register_jitable
def ladder_build(book, side, li, lj, lk, lv, bk):
    """Give the book a ladder (or re-centre its own) around its best price and move its levels:
    those in the new window onto the ladder (out of the level hash), those that were on the old
    window and are not in the new one into the hash. Nothing when the table has no ladders or
    none is left."""
    h = lk.shape[0]
    half = h >> 1
    if h < LADDER_MIN_SLOTS or book >= half - 2:
        return
    lmask = level_mask(lk)
    lad = lk[half + book] & _LOW32
    old = np.int64(-1)  # the old window's first tick; -1: no ladder before
    if lad != 0:
        old = lk[half + book] >> 32
    if lad == 0:
        lad = lk[h - 2]
        if lad != 0:
            lk[h - 2] = lv[half + ((lad - 1) << LADDER_BITS)]
        else:
            b = lk[h - 1]
            if b >= (half >> LADDER_BITS):
                return
            lk[h - 1] = b + 1
            lad = b + 1
    start = half + ((lad - 1) << LADDER_BITS)
    for k in range(LADDER):
        lv[start + k] = -1
    x = bk[book, B_BEST]
    bt = li[x, L_PRICE] // 100
    if side == 0:
        base = bt - (LADDER - LADDER // 4)
    else:
        base = bt - LADDER // 4
    if base < 0:
        base = 0
    lk[half + book] = (np.int64(base) << 32) | lad
    while x != -1:
        p = li[x, L_PRICE]
        was = False
        now = False
        if p % 100 == 0:
            t = p // 100 - base
            now = 0 <= t < LADDER
            if old >= 0:
                t0 = p // 100 - old
                was = 0 <= t0 < LADDER
            if now:
                lv[start + t] = x
        if now and not was:
            probe_delete(lk, lv, lmask, level_key(book, p), True)
        elif was and not now:
            probe_insert(lk, lv, lmask, level_key(book, p), x, True)
        x = lj[x, K_WORSE]


@register_jitable
def near_better(book, side, price, lk, lv, lmask):
    """A level of ``book`` better than ``price`` by at most NEAR_PROBES ticks (one cent from
    $1 up, else 0.0001), the nearest such; -1 if none. Only a starting point for the walk, which
    stays exact whatever the prices (a level off the tick grid in between is walked over)."""
    step = 100 if price % 100 == 0 else 1
    if side != 0:
        step = -step
    for k in range(1, NEAR_PROBES + 1):
        p = price + k * step
        if p <= 0:
            return -1
        x = level_find(book, p, lk, lv, lmask)
        if x >= 0:
            return x
    return -1


@register_jitable
def level_get(book, side, price, li, lj, lfree, lk, lv, lmask, bk, ctr):
    """The level of ``price`` in ``book``, created in sorted position if absent; -1 if full.
    A level the book's ladder covers is kept on the ladder only, any other in the level hash.

    Small on purpose: the lookup is inlined into the caller, the creation (``level_new``, ~9 KB
    of code) is a call made only for a new level; as one function LLVM inlined neither, and every
    add paid a call passing a dozen arrays (measured in the module docstring)."""
    k, x = level_lookup(book, price, lk, lv, lmask)
    if x >= 0:
        return x
    return level_new(book, side, price, k, li, lj, lfree, lk, lv, lmask, bk, ctr)


@register_jitable
def level_new(book, side, price, k, li, lj, lfree, lk, lv, lmask, bk, ctr):
    """Create the absent level of ``price`` in ``book`` in sorted position (``k``: its ladder
    entry, -1 when off the ladder); -1 when no level is free."""
    new_best = False
    nf = ctr[C_FREE_LEVELS]
    if nf == 0:
        return -1
    x = lfree[nf - 1]
    ctr[C_FREE_LEVELS] = nf - 1
    if k < 0:
        probe_insert(lk, lv, lmask, level_key(book, price), x, True)
    li[x, L_PRICE] = price
    li[x, L_SHARES] = 0
    lj[x, K_COUNT] = 0
    lj[x, K_HEAD] = -1
    lj[x, K_TAIL] = -1
    lj[x, K_BOOK] = book
    b = bk[book, B_BEST]
    if b == -1:
        lj[x, K_BETTER] = -1
        lj[x, K_WORSE] = -1
        bk[book, B_BEST] = x
    elif better(side, price, li[b, L_PRICE]):
        lj[x, K_BETTER] = -1
        lj[x, K_WORSE] = b
        lj[b, K_BETTER] = x
        bk[book, B_BEST] = x
        new_best = True
    else:
        # after ``cur``, the nearest level better than ``price``: from the ladder when the book
        # has one, else walk from the best, and after LEVEL_WALK steps jump ahead to a level
        # found by price (near_better) when it is further
        cur = ladder_better(book, side, price, lk, lv)
        if cur == -1:
            cur = b
        steps = 0
        w = lj[cur, K_WORSE]
        while w != -1 and not better(side, price, li[w, L_PRICE]):
            cur = w
            steps += 1
            if steps == LEVEL_WALK:
                q = near_better(book, side, price, lk, lv, lmask)
                if q != -1 and better(side, li[cur, L_PRICE], li[q, L_PRICE]):
                    cur = q
            w = lj[cur, K_WORSE]
        lj[x, K_BETTER] = cur
        lj[x, K_WORSE] = w
        if w != -1:
            lj[w, K_BETTER] = x
        lj[cur, K_WORSE] = x
    nl = bk[book, B_NLEVELS] + 1
    bk[book, B_NLEVELS] = nl
    if nl > ctr[C_MAX_LEVELS_SEEN]:
        ctr[C_MAX_LEVELS_SEEN] = nl
    if k >= 0:
        lv[k] = x
    elif lk.shape[0] >= LADDER_MIN_SLOTS:
        start, base = ladder_of(book, lk)
        if start < 0:
            if nl >= LADDER_AT:
                ladder_build(book, side, li, lj, lk, lv, bk)
        elif new_best:  # the best left the window: centre it again
            ladder_build(book, side, li, lj, lk, lv, bk)
    return x


@register_jitable
def level_release(x, li, lj, lfree, lk, lv, lmask, bk, ctr):
    """Unlink an empty level from its book and free it."""
    book = lj[x, K_BOOK]
    b = lj[x, K_BETTER]
    w = lj[x, K_WORSE]
    if b != -1:
        lj[b, K_WORSE] = w
    else:
        bk[book, B_BEST] = w
    if w != -1:
        lj[w, K_BETTER] = b
    price = li[x, L_PRICE]
    k = ladder_index(book, price, lk)
    if k >= 0:
        lv[k] = -1
    else:
        probe_delete(lk, lv, lmask, level_key(book, price), True)
    nf = ctr[C_FREE_LEVELS]
    lfree[nf] = x
    ctr[C_FREE_LEVELS] = nf + 1
    nl = bk[book, B_NLEVELS] - 1
    bk[book, B_NLEVELS] = nl
    if nl == 0 and lk.shape[0] >= LADDER_MIN_SLOTS:
        ladder_free(book, lk, lv)


@register_jitable
def order_add(ref, book, side, price, shares, ts, oi, oj, ofree, ok, ov, omask, li, lj, lfree, lk, lv, lmask,
              bk, ctr):
    """Append a new order at the back of its price level's queue. Returns 0, or an error code."""
    if ref_find(ok, ov, ref) != -1:
        ctr[C_DUPLICATE_REF] += 1
        return 0
    nf = ctr[C_FREE_ORDERS]
    if nf == 0:
        return ERR_ORDERS_FULL
    x = level_get(book, side, price, li, lj, lfree, lk, lv, lmask, bk, ctr)
    if x == -1:
        return ERR_LEVELS_FULL
    s = ofree[nf - 1]
    ctr[C_FREE_ORDERS] = nf - 1
    ref_insert(ok, ov, ref, s)
    oi[s, O_REF] = ref
    oi[s, O_PRICE] = price
    oi[s, O_SHARES] = shares
    oi[s, O_TS] = ts
    oj[s, J_BOOK] = book
    oj[s, J_LEVEL] = x
    t = lj[x, K_TAIL]
    oj[s, J_PREV] = t
    oj[s, J_NEXT] = -1
    if t != -1:
        oj[t, J_NEXT] = s
    else:
        lj[x, K_HEAD] = s
    lj[x, K_TAIL] = s
    lj[x, K_COUNT] += 1
    li[x, L_SHARES] += shares
    ctr[C_LIVE_ORDERS] += 1
    return 0


@register_jitable
def order_remove(s, oi, oj, ofree, ok, ov, omask, li, lj, lfree, lk, lv, lmask, bk, ctr):
    """Take the order in slot ``s`` out of its queue, level and the hash; free the slot."""
    x = oj[s, J_LEVEL]
    p = oj[s, J_PREV]
    n = oj[s, J_NEXT]
    if p != -1:
        oj[p, J_NEXT] = n
    else:
        lj[x, K_HEAD] = n
    if n != -1:
        oj[n, J_PREV] = p
    else:
        lj[x, K_TAIL] = p
    lj[x, K_COUNT] -= 1
    li[x, L_SHARES] -= oi[s, O_SHARES]
    if lj[x, K_COUNT] == 0:
        level_release(x, li, lj, lfree, lk, lv, lmask, bk, ctr)
    ref_delete(ok, ov, oi[s, O_REF])
    nf = ctr[C_FREE_ORDERS]
    ofree[nf] = s
    ctr[C_FREE_ORDERS] = nf + 1
    ctr[C_LIVE_ORDERS] -= 1


@register_jitable
def order_reduce(s, qty, oi, oj, ofree, ok, ov, omask, li, lj, lfree, lk, lv, lmask, bk, ctr):
    """Remove ``qty`` shares from an order (execution or partial cancel); removes it at zero."""
    left = oi[s, O_SHARES]
    if qty >= left:
        if qty > left:
            ctr[C_OVER_EXECUTED] += 1
        order_remove(s, oi, oj, ofree, ok, ov, omask, li, lj, lfree, lk, lv, lmask, bk, ctr)
    else:
        oi[s, O_SHARES] = left - qty
        li[oj[s, J_LEVEL], L_SHARES] -= qty


@register_jitable
def queue_ahead(s, oi, oj):
    """(orders, shares) ahead of the order in slot ``s`` in its level's FIFO queue."""
    n = 0
    sh = 0
    p = oj[s, J_PREV]
    while p != -1:
        n += 1
        sh += oi[p, O_SHARES]
        p = oj[p, J_PREV]
    return n, sh


@register_jitable
def best_of(book, bk, li):
    """(price, shares) at the best level of ``book``, (0, 0) when the side is empty."""
    b = bk[book, B_BEST]
    if b == -1:
        return 0, 0
    return li[b, L_PRICE], li[b, L_SHARES]


def top_levels(book, depth, bk, li, lj, out):
    """Fill ``out[k] = (price, shares, orders)`` for the best ``depth`` levels; returns how many."""
    x = bk[book, B_BEST]
    k = 0
    while x != -1 and k < depth:
        out[k, 0] = li[x, L_PRICE]
        out[k, 1] = li[x, L_SHARES]
        out[k, 2] = lj[x, K_COUNT]
        x = lj[x, K_WORSE]
        k += 1
    return k


@register_jitable
def depth_shares(book, n, bk, lj, li):
    x = bk[book, B_BEST]
    k = 0
    tot = 0
    while x != -1 and k < n:
        tot += li[x, L_SHARES]
        x = lj[x, K_WORSE]
        k += 1
    return tot


# --- prefetch: the lines of events a few places ahead -----------------------------------------
#
# At this depth an update's time is its cache misses, one after another: the reference's page
# slot, then the order row it names, then the order's level and its queue neighbours (each
# address comes out of the line before). While the book applies event i, these load the lines
# of later events in the same chain, one link per stage, so that each stage reads lines the
# stage before fetched: event i + PF_REF's page slot, event i + PF_ORDER's order row (from its
# now-cached page slot) and where an add's level is looked up (its ladder entry, else its hash
# home), event i + PF_LEVEL's level rows and queue neighbours (from its now-cached order row) and
# an add's level (when on the ladder), event i + PF_TAIL an add's queue tail. The reads are
# speculative (a later event may be applied to a state the events in between change): only
# addresses come out of them, every index is checked before use, and the update itself reads the
# state again. Measured in this module's docstring.

PF_REF = 16
PF_ORDER = 11
PF_LEVEL = 6
PF_TAIL = 3


def shard_rows(n, locate, p, owner, rows):
    """The rows of events ``0:n`` whose locate shard ``p`` holds (``owner[locate] == p``;
    ``owner`` int32, 65,536 entries: ITCH locates are 16-bit), in order, at the front of
    ``rows`` (int64, at least ``n + 1`` long); returns how many. ``apply_events(..., sel=rows)``
    applies them.

    A shard holds the books of its locates. Every event the books read names its locate (the
    stock directory, trading actions, trades and every order event, including an execution or
    delete of an order added earlier: ITCH repeats the add's locate), and ``apply_events``
    changes nothing across locates beyond its counters, so applying each shard's events to its
    own book state, in order, leaves every book as one state would (``pipeline/book.py``:
    ``BookShards``; ``tests/test_book_shards.py`` checks it).

    Every row is written at ``m`` and ``m`` moves on only for the shard's own (row ``n`` is the
    spare the last write may land on). Measured on the deep 10M day (12 batches of 2**18 rows,
    out of cache), two shards, per event scanned: copying each shard's events into a table of
    its own (the first version) 18-20 ns (13 ns with only the aux/alpha slots the books read),
    this selection ~1-2 ns; the book then reads its events in place, rows ``rows[q]``."""
    m = 0
    for i in range(n):
        rows[m] = i
        m += np.int64(owner[locate[i]] == p)
    return m


@register_jitable
def _row(sel, q):
    """Row of the ``q``-th event applied: ``sel[q]``, or ``q`` when ``sel`` is None (numba
    compiles that case to ``q`` alone)."""
    if sel is None:
        return q
    return np.int64(sel[q])


@register_jitable
def _ref_slot_index(ok, ref):
    """Index in ``ov`` of ``ref``'s page slot (paged map), its hash home (hash only), or -1."""
    h = ok.shape[0]
    if h < PAGED_MIN_SLOTS:
        return _home(ref, h - 1)
    return page_slot(ok, ref)


@register_jitable
def _is_update(t):
    return t == 68 or t == 88 or t == 69 or t == 67 or t == 85  # D, X, E, C, U


@register_jitable
def _add_book(j, kind, side, locate, nsym):
    """Book of an add (A/F) event, or -1 (not an add, bad side or locate)."""
    t = kind[j]
    if t != 65 and t != 70:
        return -1
    loc = np.int64(locate[j])
    if loc >= nsym:
        return -1
    if side[j] == 66:
        return loc * 2
    if side[j] == 83:
        return loc * 2 + 1
    return -1


@register_jitable
def _prefetch_ladder(book, price, lk, lv):
    """The line of ``price``'s entry on the book's ladder, if it has one covering it."""
    k = ladder_index(book, price, lk)
    if k >= 0:
        prefetch_w(lv, k)


@register_jitable
def _prefetch_level_map(book, price, lk, lv, lmask):
    """The line where ``level_find`` looks ``price`` up: its ladder entry, else its hash home."""
    k = ladder_index(book, price, lk)
    if k >= 0:
        prefetch_w(lv, k)
    else:
        hm = _mixed_home(level_key(book, price), lmask)
        prefetch_w(lk, hm)
        prefetch_w(lv, hm)


@register_jitable
def _pf_row(arr, x, rows):
    """Prefetch row ``x`` of ``arr`` for writing when ``0 <= x < rows``."""
    if 0 <= x < rows:
        prefetch_w(arr, x)


@register_jitable
def _add_level(j, kind, side, locate, price, nsym, lk, lv):
    """(book, level) of event ``j`` if it is an add: level -1 while its price has none or is not
    on the book's ladder (the hash is not probed here: off-ladder levels are rare at depth, and
    the probe loop twice more made this stage too big for LLVM to inline: +10% on the deep day);
    book -1 when it is not an add (or has a bad side or locate)."""
    b = _add_book(j, kind, side, locate, nsym)
    if b < 0:
        return b, -1
    k = ladder_index(b, price[j], lk)
    if k < 0:
        return b, -1
    return b, np.int64(lv[k])


@register_jitable
def prefetch_ahead(q, n, sel, kind, side, locate, ref, price, oi, oj, ov, ok, li, lj, lk, lv, lmask, nsym):
    """Issue the prefetches of the stages above for the events after the ``q``-th of ``n``
    (rows ``_row(sel, ...)`` of the event table)."""
    no = oi.shape[0]
    nl = li.shape[0]
    j = _row(sel, q + PF_REF) if q + PF_REF < n else -1
    if j >= 0 and _is_update(kind[j]):
        r = _ref_slot_index(ok, ref[j])
        if r >= 0:
            prefetch(ov, r)
            if ok.shape[0] < PAGED_MIN_SLOTS:
                prefetch(ok, r)
    if q + PF_ORDER < n:
        j = _row(sel, q + PF_ORDER)
        if _is_update(kind[j]):
            s = ref_find(ok, ov, ref[j])
            _pf_row(oi, s, no)
            _pf_row(oj, s, no)
        else:
            b = _add_book(j, kind, side, locate, nsym)
            if b >= 0:
                _prefetch_level_map(b, price[j], lk, lv, lmask)
    if q + PF_LEVEL < n:
        j = _row(sel, q + PF_LEVEL)
        if _is_update(kind[j]):
            s = ref_find(ok, ov, ref[j])
            if 0 <= s < no:
                x = oj[s, J_LEVEL]
                _pf_row(li, x, nl)
                _pf_row(lj, x, nl)
                _pf_row(oj, oj[s, J_PREV], no)
                _pf_row(oj, oj[s, J_NEXT], no)
        else:
            b, x = _add_level(j, kind, side, locate, price, nsym, lk, lv)
            _pf_row(li, x, nl)
            _pf_row(lj, x, nl)
    if q + PF_TAIL < n:
        j = _row(sel, q + PF_TAIL)
        if _is_update(kind[j]):
            # an order alone on its level takes the level with it: its neighbours and its entry
            # in the level map (ladder entry, else hash home)
            s = ref_find(ok, ov, ref[j])
            if 0 <= s < no:
                x = oj[s, J_LEVEL]
                if 0 <= x < nl and lj[x, K_COUNT] == 1:
                    _pf_row(lj, lj[x, K_BETTER], nl)
                    _pf_row(lj, lj[x, K_WORSE], nl)
                    _prefetch_level_map(lj[x, K_BOOK], li[x, L_PRICE], lk, lv, lmask)
        else:
            b, x = _add_level(j, kind, side, locate, price, nsym, lk, lv)
            if 0 <= x < nl:
                _pf_row(oj, lj[x, K_TAIL], no)
            elif b >= 0:  # a new level: where the ladder places it
                _prefetch_ladder(b, price[j], lk, lv)


@register_jitable
def set_stock(loc, stk, sym, subs):
    """Record a symbol's stock (first sight: R, or the stock field of A/F/P/H) and subscribe it
    when ``subs`` (packed stock names; ``[-1]`` = every symbol) names it."""
    sym[loc, S_STOCK] = stk
    for k in range(subs.shape[0]):
        if subs[k] == stk or subs[k] == -1:
            sym[loc, S_SUBSCRIBED] = 1


def apply_events(n, ev, book, feat, fo, fk, sel=None):
    """Apply ``n`` events of the event table to the books, in order.

    Bundles (``kernels/state.py``): ``ev`` BookEvents (``ref``/``new_ref``/``stock`` are the
    event columns viewed as int64), ``book`` BookArrays (the book state), ``feat`` FeatureConf
    (``params``, ``subs``, ``stop_ts``). Stops before the first event with ``ts > stop_ts`` and
    at the first capacity error (``ctr[C_ERROR]``, with the event index in
    ``ctr[C_ERROR_EVENT]``). Writes a feature row (``fo``/``fk``) for every book change or trade
    on a subscribed symbol. Returns ``(events applied, feature rows)``.

    ``sel``: the rows of ``ev`` to apply, in order (``sel[0:n]``; a book shard's thread passes
    its symbols' rows, ``shard_rows``); omitted, rows ``0:n``, and the compiled code is the
    same as without the argument (numba drops the ``sel is None`` branches). Either way
    ``ctr[C_ERROR_EVENT]`` is a row of ``ev``.
    """
    kind, side, locate, ts, seq, ref, new_ref, shares, price, stock, aux, alpha = ev
    oi, oj, ofree, ok, ov, li, lj, lfree, lk, lv, bk, sym, fs, ctr = book
    p, subs, stop_ts = feat
    omask = ok.shape[0] - 1
    lmask = level_mask(lk)
    nsym = sym.shape[0]
    frows = fo.shape[0]
    top_n = np.int64(p[FT.P_TOP_N])
    pf_live = ctr[C_PREFETCH_LIVE]
    nf = 0
    q = 0
    while q < n:
        i = _row(sel, q)
        t = kind[i]
        now = ts[i]
        if now > stop_ts:
            break
        if pf_live > 0 and ctr[C_LIVE_ORDERS] >= pf_live:
            prefetch_ahead(q, n, sel, kind, side, locate, ref, price, oi, oj, ov, ok, li, lj, lk, lv, lmask, nsym)
        ctr[C_EVENTS] += 1
        loc = np.int64(locate[i])
        if loc >= nsym:
            ctr[C_BAD_LOCATE] += 1
            q += 1
            continue
        changed = False
        trade_sign = 0.0
        trade_qty = 0
        if t == 65 or t == 70:  # A, F
            sd = 0 if side[i] == 66 else (1 if side[i] == 83 else -1)
            if sd < 0:
                ctr[C_BAD_SIDE] += 1
                q += 1
                continue
            if sym[loc, S_STOCK] == 0:
                set_stock(loc, stock[i], sym, subs)
            err = order_add(ref[i], loc * 2 + sd, sd, price[i], shares[i], now, oi, oj, ofree, ok, ov, omask,
                            li, lj, lfree, lk, lv, lmask, bk, ctr)
            if err != 0:
                ctr[C_ERROR] = err
                ctr[C_ERROR_EVENT] = i
                break
            ctr[C_ADDS] += 1
            changed = True
        elif t == 68 or t == 88 or t == 69 or t == 67 or t == 85:  # D, X, E, C, U
            s = ref_find(ok, ov, ref[i])
            if s == -1:
                ctr[C_MISSING_REF] += 1
                q += 1
                continue
            if t == 68:
                order_remove(s, oi, oj, ofree, ok, ov, omask, li, lj, lfree, lk, lv, lmask, bk, ctr)
                ctr[C_DELETES] += 1
            elif t == 85:
                book = oj[s, J_BOOK]
                sd = book & 1
                order_remove(s, oi, oj, ofree, ok, ov, omask, li, lj, lfree, lk, lv, lmask, bk, ctr)
                err = order_add(new_ref[i], book, sd, price[i], shares[i], now, oi, oj, ofree, ok, ov, omask,
                                li, lj, lfree, lk, lv, lmask, bk, ctr)
                if err != 0:
                    ctr[C_ERROR] = err
                    ctr[C_ERROR_EVENT] = i
                    break
                ctr[C_REPLACES] += 1
            else:
                qty = shares[i]
                if t != 88:  # execution: a trade against the resting order
                    px = oi[s, O_PRICE] if t == 69 else price[i]
                    trade_qty = qty
                    trade_sign = -1.0 if (oj[s, J_BOOK] & 1) == 0 else 1.0
                    if t == 69 or alpha[i, 0] == 89:  # C prints only when printable 'Y'
                        sym[loc, S_LAST_PX] = px
                        sym[loc, S_LAST_QTY] = qty
                        sym[loc, S_LAST_TS] = now
                        sym[loc, S_VOLUME] += qty
                    ctr[C_EXECUTIONS] += 1
                else:
                    ctr[C_CANCELS] += 1
                order_reduce(s, qty, oi, oj, ofree, ok, ov, omask, li, lj, lfree, lk, lv, lmask, bk, ctr)
            changed = True
        elif t == 80 or t == 81:  # P, Q: trades that do not touch the displayed book
            if shares[i] > 0:
                sym[loc, S_LAST_PX] = price[i]
                sym[loc, S_LAST_QTY] = shares[i]
                sym[loc, S_LAST_TS] = now
                sym[loc, S_VOLUME] += shares[i]
            if sym[loc, S_STOCK] == 0:
                set_stock(loc, stock[i], sym, subs)
            trade_qty = shares[i]
            if t == 80:
                bb = bk[loc * 2, B_BEST]
                ba = bk[loc * 2 + 1, B_BEST]
                if bb != -1 and ba != -1:
                    m2 = li[bb, L_PRICE] + li[ba, L_PRICE]
                    if 2 * price[i] > m2:
                        trade_sign = 1.0
                    elif 2 * price[i] < m2:
                        trade_sign = -1.0
            ctr[C_TRADES] += 1
            changed = True
        elif t == 82:  # R stock directory
            set_stock(loc, stock[i], sym, subs)
            sym[loc, S_ROUND_LOT] = aux[i, 0]
        elif t == 72:  # H trading action
            sym[loc, S_TRADING_STATE] = alpha[i, 0]
            if sym[loc, S_STOCK] == 0:
                set_stock(loc, stock[i], sym, subs)
        elif t == 104:  # h operational halt
            sym[loc, S_HALT_OP] = alpha[i, 1]
        elif t == 89:  # Y Reg SHO
            sym[loc, S_REG_SHO] = alpha[i, 0]
        elif t == 74:  # J LULD auction collar
            sym[loc, S_LULD_REF] = price[i]
            sym[loc, S_LULD_UPPER] = aux[i, 0]
            sym[loc, S_LULD_LOWER] = aux[i, 1]
        elif t == 66:  # B broken trade
            ctr[C_BROKEN_TRADES] += 1
        if changed:
            bid_px, bid_qty = best_of(loc * 2, bk, li)
            ask_px, ask_qty = best_of(loc * 2 + 1, bk, li)
            if bid_qty > 0 and ask_qty > 0:
                if bid_px > ask_px:
                    ctr[C_CROSSED] += 1
                elif bid_px == ask_px:
                    ctr[C_LOCKED] += 1
            if sym[loc, S_SUBSCRIBED] != 0:
                if nf >= frows:
                    ctr[C_ERROR] = ERR_FEATURES_FULL
                    ctr[C_ERROR_EVENT] = i
                    break
                bn = depth_shares(loc * 2, top_n, bk, lj, li)
                an = depth_shares(loc * 2 + 1, top_n, bk, lj, li)
                imb = (bn - an) / (bn + an) if bn + an > 0 else 0.0
                FT.write_features(nf, loc, now, seq[i], t, bid_px, bid_qty, ask_px, ask_qty, imb, trade_sign,
                                  trade_qty, sym[loc, S_LAST_PX], sym[loc, S_LAST_QTY], sym[loc, S_UPDATE_TS],
                                  fs, p, fo, fk)
                nf += 1
            sym[loc, S_UPDATE_TS] = now
        q += 1
    ctr[C_FEATURES] += nf
    return q, nf
