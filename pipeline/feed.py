"""Frame source for replay: the configured capture, or the generated sample feed."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from replay.capture import CaptureReader


def sample_path(sample: DictConfig) -> Path:
    ext = "pcap" if sample.format == "pcap" else "itch"
    name = f"sample-{sample.messages}m-{sample.symbols}s-seed{sample.seed}.{ext}"
    return Path(sample.dir) / name


def resolve_input(feed: DictConfig, log: Callable[[str], None] = print) -> Path:
    """The capture to replay: ``feed.path``, or the sample (generated on first use)."""
    if feed.path:
        path = Path(feed.path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"feed.path: no such file: {path}")
        return path
    path = sample_path(feed.sample)
    if not path.is_file():
        from replay.generator import generate

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        log(f"generating sample feed {path} ({feed.sample.messages:,} messages, "
            f"{feed.sample.symbols} symbols, seed {feed.sample.seed})")
        generate(tmp, fmt=feed.sample.format, n_messages=feed.sample.messages,
                 n_symbols=feed.sample.symbols, seed=feed.sample.seed)
        tmp.replace(path)
    return path


def open_reader(feed: DictConfig, path: Path) -> CaptureReader:
    """The reader of ``path``, its start read and checked (``CaptureReader.check_content``):
    a file that is not an ITCH capture, or one that cannot be read at all (a damaged gzip
    stream), raises ``CaptureError`` here, before anything starts."""
    reader = CaptureReader(path, filters=list(feed.filters), chunk_bytes=feed.chunk_bytes,
                           batch_rows=feed.batch_rows, max_sessions=feed.max_sessions)
    reader.check_content()
    return reader
