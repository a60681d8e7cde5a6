"""The shared simulation clock between the bot and the venue simulator.

A 4096-byte file that both processes ``mmap``; little-endian int64 slots (aligned 8-byte loads
and stores are atomic on every platform we run on, so no lock is needed):

====  ==================  ======================================================================
slot  name                meaning
====  ==================  ======================================================================
0     MARKET_CLOCK_NS     the bot has processed every market event with ``ts <= this`` and has
                          already sent every order for them (ns since midnight, feed clock)
1     SENT_MSG_NO         highest message number ``n`` (ClOrdID ``<prefix>-<n>``) the bot has sent
2     VENUE_CLOCK_NS      the venue has applied market events up to here
3     VENUE_MSG_NO        highest message number the venue has processed
4     END                 the bot sets 1 when the replay is over
5     VENUE_DONE          the venue sets 1 once it has advanced to MARKET_CLOCK_NS after END and
                          released every pending response
6     VENUE_PID           the venue process id (informative)
7     VENUE_EVENTS        market events the venue has applied so far (its progress: the venue
                          advances in bounded steps and updates slots 2 and 7 after each)
====  ==================  ======================================================================

Protocol. The bot writes slot 1 *before* slot 0 (:meth:`SimClock.publish`). The venue reads slot
0 (T) then slot 1 (N) (:meth:`SimClock.market_target`) and advances its market to T only once it
has processed message N, so every order sent for events ``<= T`` is applied at its own time and
a replay is deterministic whatever the two processes' relative speeds.

:class:`WallClock` is the free-running alternative (``python -m replay.venue --clock wall``): no
file and no bot; the market time follows wall time at a given speed.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

SIZE = 4096
MARKET_CLOCK_NS = 0
SENT_MSG_NO = 1
VENUE_CLOCK_NS = 2
VENUE_MSG_NO = 3
END = 4
VENUE_DONE = 5
VENUE_PID = 6
VENUE_EVENTS = 7
N_SLOTS = 8

#: initial value of the two clocks: nothing processed yet
NO_TIME = -1


class SimClock:
    """The clock file, mapped. ``create=True`` makes (or resets) the file: clocks at -1, counters 0.

    Usable from both sides: the bot calls :meth:`publish` and :meth:`finish`; the venue reads
    :meth:`market_target`, writes :attr:`venue_clock_ns` / :attr:`venue_msg_no` and calls
    :meth:`mark_done`.
    """

    def __init__(self, path: str | os.PathLike, create: bool = False):
        self.path = Path(path)
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            init = np.zeros(SIZE // 8, "<i8")
            init[MARKET_CLOCK_NS] = NO_TIME
            init[VENUE_CLOCK_NS] = NO_TIME
            tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
            tmp.write_bytes(init.tobytes())
            tmp.replace(self.path)  # atomic: a reader never maps a half-written file
        elif not self.path.is_file():
            raise FileNotFoundError(f"sim clock file not found: {self.path} (create it with create=True)")
        size = self.path.stat().st_size
        if size != SIZE:
            raise ValueError(f"{self.path}: a sim clock file is {SIZE} bytes, this one is {size}")
        self._f = open(self.path, "r+b")
        self._mm = mmap.mmap(self._f.fileno(), SIZE)
        self._a = np.frombuffer(self._mm, dtype="<i8", count=SIZE // 8)

    # -- slots ----------------------------------------------------------------------------------
    def _get(self, i: int) -> int:
        return int(self._a[i])

    def _set(self, i: int, v: int) -> None:
        self._a[i] = v

    market_clock_ns = property(lambda self: self._get(MARKET_CLOCK_NS), lambda self, v: self._set(MARKET_CLOCK_NS, v),
                               doc="slot 0: the bot has processed (and ordered for) every event with ts <= this")
    sent_msg_no = property(lambda self: self._get(SENT_MSG_NO), lambda self, v: self._set(SENT_MSG_NO, v),
                           doc="slot 1: highest message number the bot has sent")
    venue_clock_ns = property(lambda self: self._get(VENUE_CLOCK_NS), lambda self, v: self._set(VENUE_CLOCK_NS, v),
                              doc="slot 2: the venue has applied market events up to here")
    venue_msg_no = property(lambda self: self._get(VENUE_MSG_NO), lambda self, v: self._set(VENUE_MSG_NO, v),
                            doc="slot 3: highest message number the venue has processed")
    end = property(lambda self: bool(self._get(END)), lambda self, v: self._set(END, int(bool(v))),
                   doc="slot 4: the replay is over (set by the bot)")
    venue_done = property(lambda self: bool(self._get(VENUE_DONE)), lambda self, v: self._set(VENUE_DONE, int(bool(v))),
                          doc="slot 5: the venue has finished after END")
    venue_pid = property(lambda self: self._get(VENUE_PID), lambda self, v: self._set(VENUE_PID, v),
                         doc="slot 6: the venue's process id")
    venue_events = property(lambda self: self._get(VENUE_EVENTS), lambda self, v: self._set(VENUE_EVENTS, v),
                            doc="slot 7: market events the venue has applied so far")

    # -- bot side -------------------------------------------------------------------------------
    def publish(self, market_clock_ns: int, sent_msg_no: int) -> None:
        """Bot: every order for events ``<= market_clock_ns`` is sent, the last one numbered
        ``sent_msg_no``. Slot 1 is written before slot 0 (the venue reads them the other way)."""
        self._a[SENT_MSG_NO] = sent_msg_no
        self._a[MARKET_CLOCK_NS] = market_clock_ns

    def finish(self) -> None:
        """Bot: the replay is over (the venue advances to the last market clock and drains)."""
        self._a[END] = 1

    # -- venue side -----------------------------------------------------------------------------
    def market_target(self) -> tuple[int, int, bool]:
        """Venue: ``(T, N, end)``: the market may advance to T once message N is processed.

        END is read first: when it is set, T and N read after it are final."""
        end = bool(self._a[END])
        t = int(self._a[MARKET_CLOCK_NS])
        n = int(self._a[SENT_MSG_NO])
        return t, n, end

    def mark_done(self) -> None:
        self._a[VENUE_DONE] = 1

    def snapshot(self) -> dict[str, int]:
        """All slots by name (for logs and tests)."""
        names = ("market_clock_ns", "sent_msg_no", "venue_clock_ns", "venue_msg_no", "end", "venue_done",
                 "venue_pid", "venue_events")
        return {name: int(self._a[i]) for i, name in enumerate(names)}

    def close(self) -> None:
        if self._mm is not None:
            del self._a
            self._mm.close()
            self._f.close()
            self._mm = None

    def __enter__(self) -> "SimClock":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SimClock({str(self.path)!r}, {self.snapshot() if self._mm is not None else 'closed'})"


class WallClock:
    """A free-running market clock for the venue (``python -m replay.venue --clock wall``): the
    replayed market time advances with wall time, ``speed`` market ns per wall ns, from
    ``origin_ns`` (ns since midnight, feed clock) at the moment :meth:`start` is called.

    It has the venue side of :class:`SimClock`'s interface, so the venue's loop runs unchanged:
    :meth:`market_target` returns ``(now, 0, False)`` (no message to wait for, never the end);
    the venue's own slots are plain attributes (nobody else reads them)."""

    def __init__(self, speed: float = 1.0, monotonic_ns=None):
        import time

        if not speed > 0:
            raise ValueError(f"--speed must be > 0, got {speed!r}")
        self.speed = float(speed)
        self._mono = monotonic_ns or time.monotonic_ns
        self.origin_ns = NO_TIME
        self._wall0 = 0
        self.venue_clock_ns = NO_TIME
        self.venue_msg_no = 0
        self.venue_pid = 0
        self.venue_events = 0
        self.venue_done = False
        self.end = False

    def start(self, origin_ns: int) -> None:
        """The market is at ``origin_ns`` now; from here it follows wall time."""
        self.origin_ns = int(origin_ns)
        self._wall0 = self._mono()

    def now_ns(self) -> int:
        """The market time now (``NO_TIME`` before :meth:`start`)."""
        if self.origin_ns == NO_TIME:
            return NO_TIME
        return self.origin_ns + int((self._mono() - self._wall0) * self.speed)

    def market_target(self) -> tuple[int, int, bool]:
        return self.now_ns(), 0, False

    def mark_done(self) -> None:
        self.venue_done = True

    def snapshot(self) -> dict[str, int]:
        return {"market_clock_ns": self.now_ns(), "venue_clock_ns": self.venue_clock_ns, "speed": self.speed,
                "venue_pid": self.venue_pid}

    def close(self) -> None:
        return

    def __repr__(self) -> str:
        return f"WallClock(speed={self.speed:g}, origin_ns={self.origin_ns}, now_ns={self.now_ns()})"
