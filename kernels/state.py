"""Named bundles of the compiled paths' state: tuples of arrays (and a few scalars) with names.

The kernel bodies (``decode_batch``, ``apply_events``, ``predict_batch``, ``check_intents``, ...),
the fused kernels (``kernels/gpu.py: pipeline_kernel``, ``pipeline/tick.py: tick_batch``) and the
CUDA stage kernels take these instead of long positional lists, and pass them through to the
bodies they call. ``collections.namedtuple`` instances are typed by numba as (heterogeneous)
named tuples, which ``njit``, numba-cuda kernels (a tuple argument is passed field by field) and
the CUDA simulator all accept; compiled code may also build one (``BookEvents(...)`` in
``tick_batch``, a shard's ``BookArrays`` on the device). Inside a kernel, unpack a bundle into
locals at the top (``kind, side, ... = ev``) or read a field by name (``risk.g``), never in the
hot loop; never index a bundle by position. The inner helpers of a body keep their positional
arrays (numba and LLVM inline them). The stage objects build the bundles
(``BookState.arrays()``, ``RiskStage.arrays()``, ``BookStage.feature_conf()``, ...).

Pure data: no numba import, nothing of the project beyond ``kernels.events``.
"""

from __future__ import annotations

from collections import namedtuple

from kernels.events import COLUMN_NAMES

#: message bytes and one descriptor per message: ``buf`` uint8, ``off`` int64 (byte offset),
#: ``length`` int32, ``seq`` uint64 (MoldUDP64 sequence), ``sess`` uint16, ``rx`` int64 (ns)
Frames = namedtuple("Frames", "buf off length seq sess rx")

#: UDP payloads in ``buf`` (what ``index_pcap`` / ``index_pcapng`` index, ``split_mold`` reads):
#: ``buf`` uint8, ``off`` and ``length`` int64 (bytes), ``rx`` int64 (capture time, ns)
Payloads = namedtuple("Payloads", "buf off length rx")

#: the MoldUDP64 sessions seen so far (``split_mold``): ``sess_id`` uint8 [K, 10], ``sess_next``
#: uint64 [K] (next expected sequence number of each), ``n_sess`` int64 [1] (rows in use)
MoldSessions = namedtuple("MoldSessions", "sess_id sess_next n_sess")

#: the event table's columns (``kernels/events.py``: EVENT_COLUMNS, in that order)
Events = namedtuple("Events", COLUMN_NAMES)

#: ``ref``, ``new_ref`` and ``stock`` of the event table viewed as int64 (what the book reads)
EventViews = namedtuple("EventViews", "ref new_ref stock")

#: the event columns the book reads, in ``apply_events`` order (``ref``, ``new_ref``, ``stock``
#: viewed as int64)
BookEvents = namedtuple("BookEvents", "kind side locate ts seq ref new_ref shares price stock aux alpha")

#: ``pipeline.book.BookState``: orders, levels, their hashes and free stacks, books, symbols,
#: feature state, counters (``kernels/book.py``)
BookArrays = namedtuple("BookArrays", "oi oj ofree ok ov li lj lfree lk lv bk sym fs ctr")

#: the book stage's feature settings: ``params`` float64 [N_PARAMS], ``subs`` int64 (subscribed
#: packed stocks; -1 = all), ``stop_ts`` (ns since midnight: apply no event after it)
FeatureConf = namedtuple("FeatureConf", "params subs stop_ts")

#: the MLP of ``kernels/model.py`` (``predict_row`` argument order after ``f, r``)
ModelArrays = namedtuple("ModelArrays", "in_col in_rel in_scale in_shift n_layers dims w w_off b b_off act")

#: the model's scratch rows for ``predict_batch`` (float64 [2, width] and [2, 4, width])
ModelScratch = namedtuple("ModelScratch", "h hb")

#: the strategy's state and parameters (``kernels/strategy.py``; positions come from risk)
StrategyArrays = namedtuple("StrategyArrays", "ss sg pf pi")

#: risk's state and limits (``kernels/risk.py``), then the per-symbol override table
#: ``feed_health`` binds from; ``check_intents`` and ``apply_exec`` read it by name
RiskArrays = namedtuple("RiskArrays", "g lim ls ps hs ro oh ofree st rt rc ovk ovl")

#: risk's state and limits alone (``RiskArrays`` without the override table), and the book
#: tables risk reads (of ``BookArrays``): what the CUDA stage kernels stage for ``check_intents``
#: and ``apply_exec``, which read either bundle by name
RiskTables = namedtuple("RiskTables", "g lim ls ps hs ro oh ofree st rt rc")
BookRefs = namedtuple("BookRefs", "bk li sym")

#: one batch's outputs, stage after stage: feature rows (``fo`` float64 [n, N_FEATURES], ``fk``
#: int64 [n, N_KEYS]), predictions (float64 [n]), intents [n, NI], risk decisions [n, ND] and
#: risk's orders out [m, NI]
Work = namedtuple("Work", "fo fk pred intents res out")

#: the FIX encoder's tables (``bridges/fix/codec.py: encode_orders``'s ``fix``): symbol table, TransactTime date, CompIDs, ClOrdID prefix,
#: message ids, id -> message map, order table, output bytes and offsets, counters, bad rows
FixArrays = namedtuple("FixArrays", "sym date sender target prefix msg_ids msg_of ot out offs cnt bad")

#: the per-packet path's session scalars: socket (``-1``: do not write), next MsgSeqNum and
#: message number, message numbers available, and the clock (wall ns at ``tsc0``, ns per tick)
TickSession = namedtuple("TickSession", "fd seq0 msg0 max_msgs wall_ns tsc0 ns_per_tick")

#: the device pipeline's mapped control block and rings (``kernels/ring.py``): control block,
#: batch ring (first message, count), intents + decisions out, orders out, execution events in
Rings = namedtuple("Rings", "ctl bq iring oring ering")

#: the device pipeline's per-event scratch of the parallel phases: decode status, feature row of
#: each event (row + 1, 0 none), per-event feature rows written by the book shards, each
#: shard's counters and the shard layout ``[shards, So, Ho, Sl, Hl]``
Shards = namedtuple("Shards", "status frow fo_s fk_s sctr dims")

#: the device pipeline's feature journal (values, keys, predictions; empty = off)
Journal = namedtuple("Journal", "jf jk jp")

#: the device pipeline's fixed scalars: ``full`` (0: decode, books and features only) and
#: ``risk_rows`` (intents per risk check, as ``RiskStage.batch_rows``)
PipelineFlags = namedtuple("PipelineFlags", "full risk_rows")
