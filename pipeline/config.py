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


@dataclass
class RunConf:
    backend: BackendConf = field(default_factory=BackendConf)
    feed: FeedConf = field(default_factory=FeedConf)
    book: BookConf = field(default_factory=BookConf)
    features: FeaturesConf = field(default_factory=FeaturesConf)
    report: ReportConf = field(default_factory=ReportConf)


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConf)
    cs.store(group="backend", name="schema", node=BackendConf)
    cs.store(group="feed", name="schema", node=FeedConf)
    cs.store(group="book", name="schema", node=BookConf)


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


def config_hash(cfg: DictConfig) -> str:
    """Short, stable hash of the resolved config, logged with every run."""
    text = OmegaConf.to_yaml(cfg, resolve=True, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
