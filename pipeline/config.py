"""Structured configuration schemas (Hydra ConfigStore) and start-up validation.

Types are enforced by OmegaConf when Hydra composes the config (a wrong type names its key);
``validate`` checks values and ranges and raises ``ConfigError`` naming the key. Each
component receives only its own sub-tree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from replay.capture import MIN_BATCH_ROWS, MIN_CHUNK, parse_filters
from omegaconf import MISSING, ListConfig  # the risk schema below


class ConfigError(ValueError):
    """A configuration value is invalid; the message starts with the key."""


@dataclass
class BackendConf:
    name: str = "cpu"  # cpu | cuda


@dataclass
class SampleConf:
    """The generated sample feed used when ``feed.path`` is not given."""

    messages: int = 1_000_000
    symbols: int = 64
    seed: int = 7
    format: str = "pcap"  # pcap | itch
    dir: str = ".cache/samples"


@dataclass
class LiveConf:
    """Live receive (``feed.source=live``, pipeline/live.py, bridges/xdp/)."""

    method: str = "xdp"                 # xdp (XDP program + AF_XDP) | udp (plain sockets) | auto (xdp, else udp)
    interface: str = ""                 # receive interface (required for a live feed)
    queues: list[int] = field(default_factory=lambda: [0])  # RX queues, one AF_XDP socket each
    groups: list[str] = field(default_factory=list)  # "group:port" feeds (joined); empty = feed.filters
    xdp_mode: str = "skb"               # skb (generic) | native (driver) | auto
    zerocopy: bool = False              # AF_XDP zero-copy (drivers that support it; not veth)
    other: str = "pass"                 # verdict for frames not redirected: pass | drop
    steer: str = "queue"                # queue | session | locate (over `pipelines` sockets per feed)
    pipelines: int = 1
    frames: int = 8192                  # UMEM frames (page-locked)
    frame_size: int = 2048
    ring: int = 4096                    # fill / RX ring entries
    batch: int = 1024                   # frames per receive call
    rcvbuf: int = 33554432              # UDP socket receive buffer (udp method)
    rewind: Optional[str] = None        # "host:port" of the MoldUDP64 rewind server; null = no recovery
    rewind_bind: str = "0.0.0.0"        # local address of the request socket
    retry_ms: int = 50                  # re-request a gap after this long without its packets
    max_retries: int = 20               # then give the gap up (risk keeps the session stale)
    hold_bytes: int = 67108864          # packets held behind an open gap, bytes
    hold_packets: int = 65536
    idle_timeout_ms: int = 0            # stop after this long without a packet; 0 = never
    max_messages: int = 0               # stop after this many messages; 0 = no limit
    stop_on_end: bool = True            # stop when every session sent its end-of-session packet


@dataclass
class FeedConf:
    source: str = "sample"              # sample (generated unless path is given) | capture (path required)
    path: Optional[str] = None          # pcap, pcapng or BinaryFILE (gzip ok)
    filters: list[str] = field(default_factory=list)  # "group:port"; empty = all UDP
    chunk_bytes: int = 4 << 20          # file read size (bounded memory)
    batch_rows: int = 1 << 18           # messages per decoded batch (event-table rows)
    max_sessions: int = 64
    pace: bool = False                  # replay at the recorded pace (packet times) instead of flat out
    per_packet: bool = False            # latency mode: one MoldUDP64 packet at a time, every stage and the
                                        # FIX write in one compiled loop (pipeline/tick.py); needs the bridge
    speed: float = 1.0                  # with pace: 2.0 = twice the recorded pace
    sample: SampleConf = field(default_factory=SampleConf)
    live: LiveConf = field(default_factory=LiveConf)


@dataclass
class BookConf:
    """Preallocated book state for the whole market (running out is an error, never a drop)."""

    max_orders: int = 6_000_000   # live orders; a 2025 Nasdaq day peaked at 5.3M
    max_levels: int = 2_000_000   # live price levels across all books
    max_symbols: int = 16_384     # highest stock locate (a day has ~12,000 symbols)
    depth: int = 5                # levels per side printed in the run summary
    prefetch_live: int = 65_536   # live orders from which the CPU book prefetches events ahead; 0 = never


@dataclass
class FeaturesConf:
    symbols: list[str] = field(default_factory=lambda: ["AAPL", "MSFT", "NVDA"])  # "*" = every symbol
    top_n: int = 5                # levels in the depth imbalance
    tau_flow_ns: float = 1e9      # decay of OFI and signed trade flow
    tau_rv_ns: float = 60e9       # decay of realised volatility


@dataclass
class ReportConf:
    save: bool = True    # write report.json into the run directory
    html: bool = True    # and report.html with its PNG plots, timeline.npz, latency.hdr.json beside it
    top_types: int = 30  # message types listed in the summary


# --- risk (pipeline/risk.py, kernels/risk.py) -------------------------------------------------------
@dataclass
class RiskLimitsConf:
    """Pre-trade limits. Money in whole dollars. Every key is required: a missing or negative
    limit stops the run at start with an error naming the key."""

    max_order_qty: int = MISSING       # shares per order
    max_order_notional: int = MISSING  # dollars per order (price x quantity)
    max_position: int = MISSING        # shares per symbol, long or short, counting open orders
    max_gross: int = MISSING           # dollars: sum over symbols of worst-case |position| x mark
    max_net: int = MISSING             # dollars: |sum over symbols of worst-case position x mark|
    max_credit: int = MISSING          # dollars: (|position| + open buys + open sells) x mark, summed
    collar_bps: int = MISSING          # price collar around the reference price, basis points
    max_loss: int = MISSING            # dollars: kill switch when realised + unrealised PnL < -max_loss
    max_drawdown: int = MISSING        # dollars: kill switch when PnL falls this far below its peak


@dataclass
class SymbolLimitsConf:
    """Per-symbol overrides of the per-order and position limits (unset = the default)."""

    symbol: str = MISSING
    max_order_qty: Optional[int] = None
    max_order_notional: Optional[int] = None
    max_position: Optional[int] = None
    collar_bps: Optional[int] = None


@dataclass
class ThrottleConf:
    """Message-rate throttles per strategy (exact sliding windows) and the repeated-execution
    throttle, which disables a strategy until a person re-enables it."""

    interval_ns: int = MISSING         # window for submits, modifies, cancels
    max_submits: int = MISSING         # new orders per window
    max_modifies: int = MISSING        # replaces per window
    max_cancels: int = MISSING         # cancels per window
    exec_interval_ns: int = MISSING    # window for executions
    max_executions: int = MISSING      # fills per window; one more disables the strategy


@dataclass
class StaleConf:
    """When market data is unsound and trading on a symbol stops."""

    silence_ns: int = MISSING          # no message on the symbol's feed session for this long; 0 = off
    block_locked: bool = True          # a locked book (bid == ask) blocks like a crossed one
    gap_resync_ns: int = 0             # a sequence gap clears after this long; 0 = only on recovery


@dataclass
class KillConf:
    file: str = ""                     # kill file ("" = none); relative to the repository root; watched every poll_ms
    poll_ms: float = 5.0               # how often the kill file is looked for (a stat() call, off the hot thread)
    signal: bool = True                # SIGUSR1 engages the kill switch
    cancel_on_disconnect: bool = True  # cancel every working order when the FIX session drops


@dataclass
class HedgeConf:
    enabled: bool = False
    symbol: str = ""                   # hedge instrument ("" = hedge in the filled symbol itself)
    beta_bps: int = 10_000             # beta of the book against the hedge instrument, 1/10,000
    threshold: int = 0                 # dollars of |net exposure| above which to hedge
    target: int = 0                    # dollars of |net exposure| to hedge back down to
    strategy_id: int = 0               # strategy id the hedge orders run under


@dataclass
class RiskConf:
    max_open_orders: int = 65_536      # live orders tracked (a full table rejects new orders)
    max_strategies: int = 16
    batch_rows: int = 4096             # intents / execution events per kernel call
    reference: str = "mid"             # reference price: mid (book mid, else last trade) | last
    duplicate_window_ns: int = MISSING  # same order again within this window is a duplicate; 0 = off
    limits: RiskLimitsConf = field(default_factory=RiskLimitsConf)
    throttle: ThrottleConf = field(default_factory=ThrottleConf)
    stale: StaleConf = field(default_factory=StaleConf)
    kill: KillConf = field(default_factory=KillConf)
    hedge: HedgeConf = field(default_factory=HedgeConf)
    symbols: list[SymbolLimitsConf] = field(default_factory=list)
    restricted: list[str] = field(default_factory=list)


# --- model and strategy (pipeline/model.py, pipeline/strategy.py) ------------------------------
@dataclass
class ModelConf:
    """Inference: the ONNX file (+ JSON sidecar) and the backend that evaluates it."""

    enabled: bool = True
    backend: str = "numba"         # numba (fused kernel on backend.name) | onnxruntime | tensorrt
    path: str = "models/default.onnx"  # relative to the working directory, else to the repository
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])  # onnxruntime, preferred first
    threads: int = 1               # onnxruntime intra-op threads


@dataclass
class StrategyConf:
    """Signal + book -> order intents (kernels/strategy.py). Thresholds on the model's predicted
    mid move, in Price(4) units (100 = one cent); sizes in shares."""

    enabled: bool = True
    strategy_id: int = 0
    quote_threshold: float = 4.0   # |prediction| at which to join the best price on the favoured side
    cancel_threshold: float = 4.0  # cancel our resting quote when the prediction is this far against it
    take_edge: float = 25.0        # cross the spread when |prediction| exceeds half the spread by this
    quote_size: int = 100
    take_size: int = 100
    max_position: int = 1000       # shares per symbol, long or short, counting open orders and intents
    max_spread: int = 500          # Price(4): no intents on a wider book
    min_interval_ns: int = 1_000_000  # per symbol, between intents


@dataclass
class BridgeConf:
    """The FIX 4.4 initiator (bridges/fix): risk's accepted orders go out through it."""

    enabled: bool = True            # false: accepted orders stay working in risk's books (no FIX)
    host: str = "127.0.0.1"
    port: int = 0                   # 0: the port of the local venue simulator (venue.enabled)
    sender_comp_id: str = "HFTBOT"
    target_comp_id: str = "VENUE"
    heartbeat_s: int = 30
    reconnect_s: int = 1
    logon_timeout_s: int = 20
    state_dir: str = ""             # persistent store (sequence numbers, ClOrdID epoch); "" = <run dir>/fix/bridge
    clordid_prefix: str = "HB"      # ClOrdID = <prefix><epoch>-<n>
    username_env: str = "FIX_USERNAME"  # credentials come from these environment variables, never files
    password_env: str = "FIX_PASSWORD"
    max_orders: int = 1 << 20       # messages per run (order table rows)
    batch_rows: int = 4096          # orders encoded and written per system call, at most
    file_log: bool = False          # QuickFIX message log under the state dir
    session_date: str = ""          # YYYYMMDD of the feed (TransactTime); "" = the capture's first packet
    # end of replay: wait for the local venue to catch up and send its last reports for as long as
    # it makes progress (its clock or event count moves, or a report arrives); give up after this
    # many seconds WITHOUT progress (the run is then `incomplete`, exit status 4); no venue: the
    # longest wait for reports in flight
    drain_timeout_s: float = 30.0
    cancel_timeout_s: float = 5.0   # on SIGINT / SIGTERM: wait this long for the cancels' acks


@dataclass
class VenueConf:
    """The local venue simulator (replay/venue): a QuickFIX acceptor matching against the replay."""

    enabled: bool = True            # start it (replay); false when trading against a real counterparty
    port: int = 0                   # 0: a free port
    state_dir: str = ""             # journal + FIX store; "" = <run dir>/fix/venue
    sender_comp_id: str = "VENUE"
    target_comp_id: str = "HFTBOT"
    entry_latency_ns: int = 20_000  # an order takes effect this long after its TransactTime
    response_latency_ns: int = 20_000  # a report is released this long after the venue event
    heartbeat_s: int = 30
    start_timeout_s: float = 120.0


@dataclass
class GpuConf:
    """The GPU-resident pipeline (``backend=cuda`` replay in batches, pipeline/gpu.py)."""

    ring_batches: int = 2              # batches the mapped rings hold (a launch takes what is published)
    frame_bytes: int = 16 << 20        # mapped message-byte ring (at least 4 x feed.chunk_bytes is used)
    shards: int = 1                    # book shards (one thread each in the book phase)
    shard_capacity: float = 1.0        # each shard's share of book.max_orders / max_levels (x shards)
    threads: int = 0                   # threads of the block; 0 = the pipeline's default
    exec_rows: int = 4096              # execution events the mapped exec ring holds


@dataclass
class LoggingConf:
    """What the run prints (pipeline/logs.py, pipeline/progress.py)."""

    json: bool = False              # one JSON object per line (ts, level, event, msg, fields) instead of text
    progress: bool = True           # live progress bars on a terminal (never when stdout is not one); --quiet: off
    level: str = "info"             # debug | info | warning | error


@dataclass
class MetricsConf:
    """The Prometheus endpoint of a run (pipeline/metrics.py), read at scrape time."""

    enabled: bool = True
    host: str = "127.0.0.1"         # 0.0.0.0 only inside a container / behind a firewall
    port: int = 0                   # 0: a free port (printed at start); Prometheus needs a fixed one
    linger_s: float = 0.0           # keep serving this long after the report (a last scrape of a short run)


@dataclass
class RunConf:
    backend: BackendConf = field(default_factory=BackendConf)
    feed: FeedConf = field(default_factory=FeedConf)
    book: BookConf = field(default_factory=BookConf)
    features: FeaturesConf = field(default_factory=FeaturesConf)
    report: ReportConf = field(default_factory=ReportConf)
    risk: RiskConf = field(default_factory=RiskConf)
    model: ModelConf = field(default_factory=ModelConf)
    strategy: StrategyConf = field(default_factory=StrategyConf)
    bridge: BridgeConf = field(default_factory=BridgeConf)
    venue: VenueConf = field(default_factory=VenueConf)
    gpu: GpuConf = field(default_factory=GpuConf)
    logging: LoggingConf = field(default_factory=LoggingConf)
    metrics: MetricsConf = field(default_factory=MetricsConf)


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConf)
    cs.store(group="backend", name="schema", node=BackendConf)
    cs.store(group="feed", name="schema", node=FeedConf)
    cs.store(group="book", name="schema", node=BookConf)
    cs.store(group="risk", name="schema", node=RiskConf)
    cs.store(group="model", name="schema", node=ModelConf)
    cs.store(group="strategy", name="schema", node=StrategyConf)
    cs.store(group="bridge", name="schema", node=BridgeConf)
    cs.store(group="venue", name="schema", node=VenueConf)


def _need(cond: bool, key: str, msg: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg} (got {value!r})")


def _unknown_keys(node: Any, schema: Any, key: str) -> None:
    """A key the schema does not know is an error naming it (Hydra's ``+key=value`` adds keys to a
    structured config; a typo such as ``+risk.limits.max_ordr_qty=5`` would otherwise be ignored)."""
    import dataclasses
    import difflib
    import typing

    if not (dataclasses.is_dataclass(schema) and isinstance(node, DictConfig)):
        return
    hints = typing.get_type_hints(schema)
    for k in node.keys():
        where = f"{key}.{k}" if key else str(k)
        if k not in hints:
            near = difflib.get_close_matches(str(k), list(hints), n=1)
            hint = f"; did you mean {(key + '.') if key else ''}{near[0]}?" if near else ""
            raise ConfigError(f"{where}: not a configuration key (known under {key or 'the root'}: "
                              f"{', '.join(sorted(hints))}){hint}")
        t = hints[k]
        if dataclasses.is_dataclass(t):
            _unknown_keys(node._get_node(k), t, where)
        elif typing.get_origin(t) is list and dataclasses.is_dataclass(typing.get_args(t)[0]):
            for i, item in enumerate(node[k]):
                _unknown_keys(item, typing.get_args(t)[0], f"{where}[{i}]")


def check_keys(cfg: DictConfig) -> None:
    """Every key of a composed run config is in the schema (``RunConf``)."""
    _unknown_keys(cfg, RunConf, "")


def validate(cfg: DictConfig) -> None:
    """Check values the schema's types cannot: ranges, choices, formats."""
    check_keys(cfg)
    _need(cfg.backend.name in ("cpu", "cuda"), "backend.name", "must be 'cpu' or 'cuda'", cfg.backend.name)
    f = cfg.feed
    _need(f.source in ("sample", "capture", "live"), "feed.source", "must be 'sample', 'capture' or 'live'",
          f.source)
    _need(f.source != "capture" or bool(f.path), "feed.path", "a capture file is required when "
          "feed.source=capture (feed.path=/path/to/file.pcap)", f.path)
    _need(f.chunk_bytes >= MIN_CHUNK, "feed.chunk_bytes", f"must be >= {MIN_CHUNK}", f.chunk_bytes)
    _need(f.chunk_bytes <= 1 << 30, "feed.chunk_bytes", "must be <= 1 GiB", f.chunk_bytes)
    _need(MIN_BATCH_ROWS <= f.batch_rows <= 1 << 26, "feed.batch_rows", f"must be in {MIN_BATCH_ROWS}..{1 << 26}",
          f.batch_rows)
    _need(1 <= f.max_sessions <= 65535, "feed.max_sessions", "must be in 1..65535", f.max_sessions)
    try:
        parse_filters(list(f.filters))
    except ValueError as exc:
        raise ConfigError(f"feed.filters: {exc}") from None
    if "live" in f:
        validate_live(f)
    s = f.sample
    _need(s.messages >= 1000, "feed.sample.messages", "must be >= 1000", s.messages)
    _need(1 <= s.symbols <= 60000, "feed.sample.symbols", "must be in 1..60000", s.symbols)
    _need(s.seed >= 0, "feed.sample.seed", "must be >= 0", s.seed)
    _need(s.format in ("pcap", "itch"), "feed.sample.format", "must be 'pcap' or 'itch'", s.format)
    b = cfg.book
    _need(1 <= b.max_orders <= 1 << 30, "book.max_orders", "must be in 1..2**30", b.max_orders)
    _need(1 <= b.max_levels <= 1 << 30, "book.max_levels", "must be in 1..2**30", b.max_levels)
    _need(1 <= b.max_symbols <= 65535, "book.max_symbols", "must be in 1..65535 (stock locates are 16-bit)",
          b.max_symbols)
    _need(0 <= b.depth <= 1000, "book.depth", "must be in 0..1000", b.depth)
    _need(0 <= b.prefetch_live <= 1 << 30, "book.prefetch_live", "must be in 0..2**30 (0 = never prefetch)",
          b.prefetch_live)
    ft = cfg.features
    for sym in ft.symbols:
        _need(sym == "*" or (0 < len(str(sym)) <= 8 and str(sym).isascii()), "features.symbols",
              "each must be an ASCII symbol of 1-8 characters, or '*'", sym)
    _need(1 <= ft.top_n <= 100, "features.top_n", "must be in 1..100", ft.top_n)
    _need(ft.tau_flow_ns > 0, "features.tau_flow_ns", "must be > 0", ft.tau_flow_ns)
    _need(ft.tau_rv_ns > 0, "features.tau_rv_ns", "must be > 0", ft.tau_rv_ns)
    _need(cfg.report.top_types >= 0, "report.top_types", "must be >= 0", cfg.report.top_types)
    validate_risk(cfg.risk)
    if "gpu" in cfg:
        validate_gpu(cfg.gpu)
    if "model" in cfg:
        validate_model_strategy(cfg)
    if "bridge" in cfg:
        validate_execution(cfg)


def validate_gpu(gc: DictConfig) -> None:
    """The ``gpu`` sub-tree (used by ``backend=cuda``; checked whatever the backend)."""
    _need(1 <= gc.ring_batches <= 4096, "gpu.ring_batches", "must be in 1..4096", gc.ring_batches)
    _need(1 << 16 <= gc.frame_bytes <= 1 << 32, "gpu.frame_bytes", "must be in 64 KiB..4 GiB", gc.frame_bytes)
    _need(1 <= gc.shards <= 1024, "gpu.shards", "must be in 1..1024", gc.shards)
    _need(0 < gc.shard_capacity <= 64, "gpu.shard_capacity", "must be in (0, 64]", gc.shard_capacity)
    _need(gc.threads == 0 or 32 <= gc.threads <= 1024, "gpu.threads", "must be 0 (default) or in 32..1024",
          gc.threads)
    _need(16 <= gc.exec_rows <= 1 << 24, "gpu.exec_rows", "must be in 16..2**24", gc.exec_rows)


def validate_live(f: DictConfig) -> None:
    """The ``feed.live`` sub-tree (checked whatever the source; required keys only for live)."""
    lv = f.live
    _need(lv.method in ("xdp", "udp", "auto"), "feed.live.method", "must be 'xdp', 'udp' or 'auto'", lv.method)
    _need(f.source != "live" or bool(lv.interface), "feed.live.interface", "the receive interface is required "
          "when feed.source=live (feed.live.interface=eth0)", lv.interface)
    _need(len(lv.queues) >= 1 and all(0 <= int(q) < 64 for q in lv.queues), "feed.live.queues",
          "must list 1+ RX queues in 0..63", list(lv.queues))
    try:
        specs = parse_filters(list(lv.groups))
    except ValueError as exc:
        raise ConfigError(f"feed.live.groups: {exc}") from None
    _need(all(specs[0]) and all(specs[1]), "feed.live.groups", "each must be 'a.b.c.d:port' (address and port)",
          list(lv.groups))
    _need(f.source != "live" or bool(list(lv.groups) or list(f.filters)), "feed.live.groups",
          "at least one 'group:port' (or feed.filters) is required when feed.source=live", list(lv.groups))
    _need(lv.xdp_mode in ("skb", "native", "auto"), "feed.live.xdp_mode", "must be 'skb', 'native' or 'auto'",
          lv.xdp_mode)
    _need(lv.other in ("pass", "drop"), "feed.live.other", "must be 'pass' or 'drop'", lv.other)
    _need(lv.steer in ("queue", "session", "locate"), "feed.live.steer", "must be 'queue', 'session' or 'locate'",
          lv.steer)
    _need(1 <= lv.pipelines <= 64, "feed.live.pipelines", "must be in 1..64", lv.pipelines)
    for name, lo, hi in (("frames", 64, 1 << 20), ("ring", 64, 1 << 16), ("frame_size", 2048, 4096)):
        v = lv[name]
        _need(lo <= v <= hi and v & (v - 1) == 0, f"feed.live.{name}", f"must be a power of two in {lo}..{hi}", v)
    _need(1 <= lv.batch <= lv.ring, "feed.live.batch", "must be in 1..feed.live.ring", lv.batch)
    _need(lv.rcvbuf >= 65536, "feed.live.rcvbuf", "must be >= 65536", lv.rcvbuf)
    if lv.rewind:
        host, _, port = str(lv.rewind).rpartition(":")
        ok = bool(host) and port.isdigit() and 0 < int(port) < 65536
        if ok:
            try:
                parse_filters([str(lv.rewind)])
            except ValueError:
                ok = False
        _need(ok, "feed.live.rewind", "must be 'a.b.c.d:port' (or null for no gap recovery)", lv.rewind)
    _need(lv.retry_ms >= 1, "feed.live.retry_ms", "must be >= 1", lv.retry_ms)
    _need(lv.max_retries >= 1, "feed.live.max_retries", "must be >= 1", lv.max_retries)
    _need(lv.hold_bytes >= 1 << 16, "feed.live.hold_bytes", "must be >= 65536", lv.hold_bytes)
    _need(lv.hold_packets >= 64, "feed.live.hold_packets", "must be >= 64", lv.hold_packets)
    _need(lv.idle_timeout_ms >= 0, "feed.live.idle_timeout_ms", "must be >= 0 (0 = never)", lv.idle_timeout_ms)
    _need(lv.max_messages >= 0, "feed.live.max_messages", "must be >= 0 (0 = no limit)", lv.max_messages)


def validate_execution(cfg: DictConfig) -> None:
    """The FIX bridge and the venue simulator."""
    b = cfg.bridge
    _need(0 <= b.port <= 65535, "bridge.port", "must be in 0..65535", b.port)
    _need(b.port > 0 or not b.enabled or cfg.venue.enabled, "bridge.port",
          "must be given when venue.enabled=false (the counterparty's port)", b.port)
    for key in ("sender_comp_id", "target_comp_id"):
        v = str(b[key])
        _need(0 < len(v) <= 32 and v.isascii() and v.isprintable() and "=" not in v and " " not in v,
              f"bridge.{key}", "must be 1-32 printable ASCII characters without spaces or '='", v)
    _need(1 <= b.heartbeat_s <= 3600, "bridge.heartbeat_s", "must be in 1..3600", b.heartbeat_s)
    _need(1 <= b.reconnect_s <= 3600, "bridge.reconnect_s", "must be in 1..3600", b.reconnect_s)
    _need(1 <= b.logon_timeout_s <= 3600, "bridge.logon_timeout_s", "must be in 1..3600", b.logon_timeout_s)
    _need(str(b.clordid_prefix).isalnum() and len(str(b.clordid_prefix)) <= 8, "bridge.clordid_prefix",
          "must be 1-8 letters or digits", b.clordid_prefix)
    _need(1 <= b.max_orders <= 1 << 30, "bridge.max_orders", "must be in 1..2**30", b.max_orders)
    _need(1 <= b.batch_rows <= 1 << 20, "bridge.batch_rows", "must be in 1..2**20", b.batch_rows)
    _need(b.session_date == "" or (len(str(b.session_date)) == 8 and str(b.session_date).isdigit()),
          "bridge.session_date", "must be YYYYMMDD or empty", b.session_date)
    _need(b.drain_timeout_s > 0, "bridge.drain_timeout_s", "must be > 0 (s without progress from the venue)",
          b.drain_timeout_s)
    _need(0 < b.cancel_timeout_s <= 600, "bridge.cancel_timeout_s", "must be in (0, 600]", b.cancel_timeout_s)
    v = cfg.venue
    _need(0 <= v.port <= 65535, "venue.port", "must be in 0..65535", v.port)
    _need(v.entry_latency_ns >= 0, "venue.entry_latency_ns", "must be >= 0", v.entry_latency_ns)
    _need(v.response_latency_ns >= 0, "venue.response_latency_ns", "must be >= 0", v.response_latency_ns)
    _need(1 <= v.heartbeat_s <= 3600, "venue.heartbeat_s", "must be in 1..3600", v.heartbeat_s)
    _need(v.start_timeout_s > 0, "venue.start_timeout_s", "must be > 0", v.start_timeout_s)
    _need(str(v.sender_comp_id) == str(b.target_comp_id) and str(v.target_comp_id) == str(b.sender_comp_id),
          "venue.sender_comp_id", "must mirror the bridge's CompIDs (venue sender = bridge target and back)",
          f"{v.sender_comp_id}/{v.target_comp_id}")
    _need(not (b.enabled and v.enabled and cfg.feed.source == "live"), "venue.enabled",
          "the venue simulator replays a capture: with feed.source=live set venue.enabled=false and "
          "bridge.host/bridge.port to the counterparty", v.enabled)
    _need(not cfg.feed.per_packet or (b.enabled and cfg.model.enabled and cfg.strategy.enabled
                                      and cfg.model.backend == "numba" and cfg.backend.name == "cpu"),
          "feed.per_packet", "needs bridge.enabled, model.enabled with model.backend=numba, strategy.enabled "
          "and backend=cpu", cfg.feed.per_packet)
    _need(cfg.feed.speed > 0, "feed.speed", "must be > 0 (1.0 = the recorded pace)", cfg.feed.speed)


def _missing_keys(node: Any, key: str) -> None:
    """A ``???`` (MISSING) value anywhere under ``node`` is an error naming its key."""
    if isinstance(node, DictConfig):
        for k in node.keys():
            if OmegaConf.is_missing(node, k):
                raise ConfigError(f"{key}.{k}: missing (required: set it in conf/risk/*.yaml or on the "
                                  f"command line, e.g. {key}.{k}=...)")
            _missing_keys(node._get_node(k), f"{key}.{k}")
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            if OmegaConf.is_missing(node, i):
                raise ConfigError(f"{key}[{i}]: missing")
            _missing_keys(node._get_node(i), f"{key}[{i}]")


def _symbol_ok(name: Any) -> bool:
    return 0 < len(str(name)) <= 8 and str(name).isascii() and " " not in str(name)


def _absent_keys(node: Any, schema: type, key: str) -> None:
    """A key of the schema absent from a hand-built tree is an error naming it."""
    import dataclasses

    for f in dataclasses.fields(schema):
        if f.name not in node:
            raise ConfigError(f"{key}.{f.name}: missing (required)")
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(sub):
            _absent_keys(node[f.name], sub, f"{key}.{f.name}")


def validate_risk(r: DictConfig, key: str = "risk") -> None:
    """The ``risk`` sub-tree: every limit present and in range (negative is an error)."""
    _absent_keys(r, RiskConf, key)
    _missing_keys(r, key)
    _need(1 <= r.max_open_orders <= 1 << 24, f"{key}.max_open_orders", "must be in 1..2**24",
          r.max_open_orders)
    _need(1 <= r.max_strategies <= 4096, f"{key}.max_strategies", "must be in 1..4096", r.max_strategies)
    _need(1 <= r.batch_rows <= 1 << 20, f"{key}.batch_rows", "must be in 1..2**20", r.batch_rows)
    _need(r.reference in ("mid", "last"), f"{key}.reference", "must be 'mid' or 'last'", r.reference)
    _need(0.1 <= r.kill.poll_ms <= 1000, f"{key}.kill.poll_ms", "must be in 0.1..1000 ms", r.kill.poll_ms)
    _need(r.duplicate_window_ns >= 0, f"{key}.duplicate_window_ns", "must be >= 0 (0 = off)",
          r.duplicate_window_ns)
    lm = r.limits
    dollars = 10**12  # x 10,000 Price(4) units stays far inside int64
    for name, top in (("max_order_qty", 1 << 26), ("max_order_notional", dollars), ("max_position", 1 << 40),
                      ("max_gross", dollars), ("max_net", dollars), ("max_credit", dollars),
                      ("collar_bps", 1_000_000), ("max_loss", dollars), ("max_drawdown", dollars)):
        v = lm[name]
        _need(v >= 0, f"{key}.limits.{name}", "must be >= 0 (a limit cannot be negative)", v)
        _need(v <= top, f"{key}.limits.{name}", f"must be <= {top:,}", v)
    th = r.throttle
    _need(th.interval_ns > 0, f"{key}.throttle.interval_ns", "must be > 0", th.interval_ns)
    _need(th.exec_interval_ns > 0, f"{key}.throttle.exec_interval_ns", "must be > 0", th.exec_interval_ns)
    for name in ("max_submits", "max_modifies", "max_cancels"):
        _need(0 <= th[name] <= 65536, f"{key}.throttle.{name}", "must be in 0..65536 (>= 0)", th[name])
    _need(1 <= th.max_executions <= 65536, f"{key}.throttle.max_executions", "must be in 1..65536",
          th.max_executions)
    s = r.stale
    _need(s.silence_ns >= 0, f"{key}.stale.silence_ns", "must be >= 0 (0 = off)", s.silence_ns)
    _need(s.gap_resync_ns >= 0, f"{key}.stale.gap_resync_ns", "must be >= 0 (0 = recovery only)",
          s.gap_resync_ns)
    h = r.hedge
    _need(h.symbol == "" or _symbol_ok(h.symbol), f"{key}.hedge.symbol", "must be an ASCII symbol of 1-8 "
          "characters, or empty (hedge in the filled symbol)", h.symbol)
    _need(0 <= h.beta_bps <= 1_000_000, f"{key}.hedge.beta_bps", "must be in 0..1,000,000", h.beta_bps)
    _need(0 <= h.threshold <= dollars, f"{key}.hedge.threshold", "must be in 0..10**12 dollars", h.threshold)
    _need(0 <= h.target <= h.threshold, f"{key}.hedge.target", "must be in 0..hedge.threshold", h.target)
    _need(0 <= h.strategy_id < r.max_strategies, f"{key}.hedge.strategy_id", "must be in 0..max_strategies-1",
          h.strategy_id)
    for i, o in enumerate(r.symbols):
        _need(_symbol_ok(o.symbol), f"{key}.symbols[{i}].symbol", "must be an ASCII symbol of 1-8 characters",
              o.symbol)
        for name in ("max_order_qty", "max_order_notional", "max_position", "collar_bps"):
            v = o.get(name)
            _need(v is None or v >= 0, f"{key}.symbols[{i}].{name}", "must be >= 0", v)
        _need(o.get("max_order_qty") is None or o.max_order_qty <= 1 << 26,
              f"{key}.symbols[{i}].max_order_qty", "must be <= 2**26", o.get("max_order_qty"))
        _need(o.get("max_order_notional") is None or o.max_order_notional <= dollars,
              f"{key}.symbols[{i}].max_order_notional", "must be <= 10**12", o.get("max_order_notional"))
    for i, name in enumerate(r.restricted):
        _need(_symbol_ok(name), f"{key}.restricted[{i}]", "must be an ASCII symbol of 1-8 characters", name)


def validate_model_strategy(cfg: DictConfig) -> None:
    """The ``model`` and ``strategy`` sub-trees."""
    m = cfg.model
    _need(m.backend in ("numba", "onnxruntime", "tensorrt"), "model.backend",
          "must be 'numba', 'onnxruntime' or 'tensorrt'", m.backend)
    _need(bool(m.path) and str(m.path).endswith(".onnx"), "model.path", "must name an .onnx file", m.path)
    _need(1 <= m.threads <= 256, "model.threads", "must be in 1..256", m.threads)
    st = cfg.strategy
    _need(0 <= st.strategy_id < 4096, "strategy.strategy_id", "must be in 0..4095", st.strategy_id)
    for name in ("quote_threshold", "cancel_threshold", "take_edge"):
        _need(st[name] >= 0, f"strategy.{name}", "must be >= 0", st[name])
    for name in ("quote_size", "take_size"):
        _need(1 <= st[name] <= 1 << 26, f"strategy.{name}", "must be in 1..2**26", st[name])
    _need(0 <= st.max_position <= 1 << 40, "strategy.max_position", "must be in 0..2**40", st.max_position)
    _need(st.max_spread > 0, "strategy.max_spread", "must be > 0", st.max_spread)
    _need(st.min_interval_ns >= 0, "strategy.min_interval_ns", "must be >= 0", st.min_interval_ns)


def config_hash(cfg: DictConfig) -> str:
    """Short, stable hash of the resolved config, logged with every run."""
    text = OmegaConf.to_yaml(cfg, resolve=True, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
