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
class FeedConf:
    source: str = "sample"              # sample (generated unless path is given) | capture (path required)
    path: Optional[str] = None          # pcap, pcapng or BinaryFILE (gzip ok)
    filters: list[str] = field(default_factory=list)  # "group:port"; empty = all UDP
    chunk_bytes: int = 4 << 20          # file read size (bounded memory)
    batch_rows: int = 1 << 18           # messages per decoded batch (event-table rows)
    max_sessions: int = 64
    sample: SampleConf = field(default_factory=SampleConf)


@dataclass
class BookConf:
    """Preallocated book state for the whole market (running out is an error, never a drop)."""

    max_orders: int = 6_000_000   # live orders; a 2025 Nasdaq day peaked at 5.3M
    max_levels: int = 2_000_000   # live price levels across all books
    max_symbols: int = 16_384     # highest stock locate (a day has ~12,000 symbols)
    depth: int = 5                # levels per side printed in the run summary


@dataclass
class FeaturesConf:
    symbols: list[str] = field(default_factory=lambda: ["AAPL", "MSFT", "NVDA"])  # "*" = every symbol
    top_n: int = 5                # levels in the depth imbalance
    tau_flow_ns: float = 1e9      # decay of OFI and signed trade flow
    tau_rv_ns: float = 60e9       # decay of realised volatility


@dataclass
class ReportConf:
    save: bool = True    # write report.json into the run directory
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
    file: str = ""                     # kill file polled between batches ("" = none)
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
class RunConf:
    backend: BackendConf = field(default_factory=BackendConf)
    feed: FeedConf = field(default_factory=FeedConf)
    book: BookConf = field(default_factory=BookConf)
    features: FeaturesConf = field(default_factory=FeaturesConf)
    report: ReportConf = field(default_factory=ReportConf)
    risk: RiskConf = field(default_factory=RiskConf)
    model: ModelConf = field(default_factory=ModelConf)
    strategy: StrategyConf = field(default_factory=StrategyConf)


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConf)
    cs.store(group="backend", name="schema", node=BackendConf)
    cs.store(group="feed", name="schema", node=FeedConf)
    cs.store(group="book", name="schema", node=BookConf)
    cs.store(group="risk", name="schema", node=RiskConf)
    cs.store(group="model", name="schema", node=ModelConf)
    cs.store(group="strategy", name="schema", node=StrategyConf)


def _need(cond: bool, key: str, msg: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg} (got {value!r})")


def validate(cfg: DictConfig) -> None:
    """Check values the schema's types cannot: ranges, choices, formats."""
    _need(cfg.backend.name in ("cpu", "cuda"), "backend.name", "must be 'cpu' or 'cuda'", cfg.backend.name)
    f = cfg.feed
    _need(f.source in ("sample", "capture"), "feed.source", "must be 'sample' or 'capture'", f.source)
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
    ft = cfg.features
    for sym in ft.symbols:
        _need(sym == "*" or (0 < len(str(sym)) <= 8 and str(sym).isascii()), "features.symbols",
              "each must be an ASCII symbol of 1-8 characters, or '*'", sym)
    _need(1 <= ft.top_n <= 100, "features.top_n", "must be in 1..100", ft.top_n)
    _need(ft.tau_flow_ns > 0, "features.tau_flow_ns", "must be > 0", ft.tau_flow_ns)
    _need(ft.tau_rv_ns > 0, "features.tau_rv_ns", "must be > 0", ft.tau_rv_ns)
    _need(cfg.report.top_types >= 0, "report.top_types", "must be >= 0", cfg.report.top_types)
    validate_risk(cfg.risk)
    if "model" in cfg:
        validate_model_strategy(cfg)


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
