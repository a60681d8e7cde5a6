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
class ReportConf:
    save: bool = True    # write report.json into the run directory
    top_types: int = 30  # message types listed in the summary


@dataclass
class RunConf:
    backend: BackendConf = field(default_factory=BackendConf)
    feed: FeedConf = field(default_factory=FeedConf)
    report: ReportConf = field(default_factory=ReportConf)


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConf)
    cs.store(group="backend", name="schema", node=BackendConf)
    cs.store(group="feed", name="schema", node=FeedConf)


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
    _need(cfg.report.top_types >= 0, "report.top_types", "must be >= 0", cfg.report.top_types)


def config_hash(cfg: DictConfig) -> str:
    """Short, stable hash of the resolved config, logged with every run."""
    text = OmegaConf.to_yaml(cfg, resolve=True, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
