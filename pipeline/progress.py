"""Progress on the terminal while a run works: set-up, compilation, replay, drain (rich).

Only on a terminal: ``open_progress`` gives a live display when stdout is a terminal (and
``TERM`` is not ``dumb``) and ``logging.progress`` is on (``hftbot run --quiet`` turns it off);
anywhere else it gives ``NullProgress``, whose methods do nothing, so a pipe, a file, CI or
``logging.json=true`` never see a control sequence.

The replay line shows the share of the input read (bytes read / file size, which also gives
the ETA), messages, messages/s over the last seconds, and the ITCH time reached::

    ⠹ replay   sample-1000000m-64s-seed7.pcap ━━━━━━━━╸━━━━━━  61% 612,352 msgs  1.9M msg/s  ITCH 10:41:07.113  0:00:03 eta 0:00:02

The display is transient: the bars go when the run ends, the log lines stay. Log lines printed
meanwhile appear above the bars (rich redirects stdout while it draws).
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, TextIO


def is_terminal(stream: TextIO | None) -> bool:
    """True when ``stream`` is an interactive terminal that can draw a live display."""
    if stream is None or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def itch_clock(ns: int) -> str:
    """ITCH timestamp (ns since midnight) -> ``HH:MM:SS.mmm``."""
    if ns <= 0:
        return "--:--:--"
    s, ms = divmod(int(ns) // 1_000_000, 1000)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def _rate(r: float) -> str:
    if r >= 1e6:
        return f"{r / 1e6:.2f}M msg/s"
    if r >= 1e3:
        return f"{r / 1e3:.1f}k msg/s"
    return f"{r:.0f} msg/s"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def written(paths: Sequence[Path]) -> int:
    """Bytes in the first of ``paths`` that exists (a file being written, or its final name)."""
    for p in paths:
        try:
            return p.stat().st_size
        except OSError:
            continue
    return 0


class NullProgress:
    """No display (not a terminal, ``--quiet``): every call is a no-op."""

    enabled = False

    def stage(self, name: str, text: str = "", watch: Sequence[Path] = ()) -> None:
        pass

    def note(self, event: str, text: str) -> None:
        pass

    def start_replay(self, what: str, total_bytes: int | None) -> None:
        pass

    def replay(self, bytes_read: int, messages: int, feed_ts_ns: int) -> None:
        pass

    def end_replay(self) -> None:
        pass

    def track(self, items: Iterable[Any], what: str, total: int | None = None) -> Iterator[Any]:
        yield from items

    def close(self) -> None:
        pass

    def __enter__(self) -> "NullProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RichProgress(NullProgress):
    """One line for the current stage (spinner, what it is doing, elapsed time) and one for the
    replay (bar over the input's bytes, messages, msg/s, ITCH time, ETA)."""

    enabled = True
    #: seconds of history for the messages/s figure
    RATE_WINDOW_S = 3.0

    def __init__(self, stream: TextIO):
        from rich.console import Console
        from rich.progress import (BarColumn, Progress, ProgressColumn, SpinnerColumn, TaskProgressColumn,
                                   TextColumn, TimeElapsedColumn, TimeRemainingColumn)
        from rich.table import Column
        from rich.text import Text

        class Info(ProgressColumn):
            """The task's figures; for a stage that writes a file, the bytes written so far (read
            when the display refreshes, from rich's thread)."""

            def render(self, task: Any) -> Text:
                watch = task.fields.get("watch")
                info = task.fields.get("info", "")
                if watch:
                    info = f"{_size(written(watch))} written  {info}".rstrip()
                return Text(info)

        self.console = Console(file=stream)
        self.p = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[stage]:<8}"),
                          TextColumn("{task.description}", table_column=Column(max_width=30, no_wrap=True,
                                                                               overflow="ellipsis")),
                          BarColumn(bar_width=16), TaskProgressColumn(),
                          Info(table_column=Column(no_wrap=True, overflow="ellipsis")), TimeElapsedColumn(), TextColumn("eta"),
                          TimeRemainingColumn(), console=self.console, transient=True, refresh_per_second=4,
                          redirect_stdout=True, redirect_stderr=True)
        self.p.start()
        self.task: Any = None
        self.stage_name = ""
        self.replay_task: Any = None
        self.samples: deque[tuple[float, int]] = deque()

    def stage(self, name: str, text: str = "", watch: Sequence[Path] = ()) -> None:
        """The current stage (``setup``, ``generate``, ``compile``, ``connect``, ``drain``...): a
        spinner; ``watch``: files the stage writes (the first that exists), shown as bytes written."""
        if self.p is None:
            return
        if self.task is not None:
            self.p.remove_task(self.task)
        self.task = self.p.add_task(text, total=None, stage=name, info="", watch=list(watch))
        self.stage_name = name

    def note(self, event: str, text: str) -> None:
        """A log line: the stage line shows what is being done (``compile    risk ...``)."""
        if self.p is not None and self.task is not None and event != "summary":
            self.p.update(self.task, description=text if event == self.stage_name else f"{event} {text}")

    def start_replay(self, what: str, total_bytes: int | None) -> None:
        """The replay line: a bar over ``total_bytes`` (None: live, no bar and no ETA)."""
        if self.p is None:
            return
        if self.task is not None:
            self.p.remove_task(self.task)
            self.task = None
        self.samples.clear()
        self.replay_task = self.p.add_task(what, total=total_bytes or None, stage="replay", info="")

    def replay(self, bytes_read: int, messages: int, feed_ts_ns: int) -> None:
        """After each batch: bytes read, messages so far, the newest ITCH timestamp."""
        if self.p is None or self.replay_task is None:
            return
        now = time.monotonic()
        s = self.samples
        s.append((now, int(messages)))
        while len(s) > 2 and now - s[1][0] > self.RATE_WINDOW_S:
            s.popleft()
        rate = (s[-1][1] - s[0][1]) / (s[-1][0] - s[0][0]) if len(s) > 1 and s[-1][0] > s[0][0] else 0.0
        info = f"{messages:,} msgs  {_rate(rate)}  ITCH {itch_clock(feed_ts_ns)}"
        self.p.update(self.replay_task, completed=int(bytes_read), info=info)

    def end_replay(self) -> None:
        if self.p is not None and self.replay_task is not None:
            self.p.remove_task(self.replay_task)
            self.replay_task = None

    def track(self, items: Iterable[Any], what: str, total: int | None = None) -> Iterator[Any]:
        """Any long loop (benchmarks, training epochs): a bar over ``items``."""
        if self.p is None:
            yield from items
            return
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        t = self.p.add_task(what, total=total, stage="", info="")
        try:
            for x in items:
                yield x
                self.p.advance(t)
        finally:
            if self.p is not None:
                self.p.remove_task(t)

    def close(self) -> None:
        """Stop drawing (the bars go); every call after this is a no-op."""
        p, self.p = self.p, None
        self.task = self.replay_task = None
        if p is not None:
            p.stop()


def open_progress(enabled: bool = True, stream: TextIO | None = None) -> NullProgress:
    """A live display on ``stream`` (stdout by default) if it is a terminal and ``enabled``;
    otherwise ``NullProgress``."""
    stream = sys.stdout if stream is None else stream
    if not enabled or not is_terminal(stream):
        return NullProgress()
    return RichProgress(stream)
