"""Execution: risk's orders out -> the FIX bridge -> the venue; execution reports -> risk.

In replay the venue is the local simulator (``replay/venue``), a separate process that replays
the same capture and matches our orders against it; the two processes share a simulation clock
(``replay/simclock.py``): after every batch the run loop publishes "every event up to T is
processed and every order for them is sent", and the venue advances its market to T only once
it has those orders, so results do not depend on the two processes' relative speed.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from omegaconf import DictConfig

from bridges.fix import codec as C
from bridges.fix.bridge import FixBridge, FixError
from kernels import intents as IN
from pipeline.latency import Latencies

log = logging.getLogger("hftbot.execution")

#: FIX OrdRejReason(103) names, for the report
ORD_REJ_REASONS = {0: "broker_option", 1: "unknown_symbol", 2: "exchange_closed", 3: "order_exceeds_limit",
                   4: "too_late_to_enter", 5: "unknown_order", 6: "duplicate_order", 11: "unsupported_order",
                   13: "incorrect_quantity", 99: "other", C.REJ_SESSION: "session_or_business_reject"}

#: FIX CxlRejReason(102) names (cancel and replace requests)
CXL_REJ_REASONS = {0: "too_late_to_cancel", 1: "unknown_order", 2: "broker_option", 3: "already_pending",
                   6: "duplicate_clordid", 99: "other", C.REJ_SESSION: "session_or_business_reject"}


def session_date(path: Path) -> str:
    """YYYYMMDD of the capture's trading day (``replay.venue.matching.capture_date``, as the venue
    derives it); today (UTC) for a file without capture times."""
    from replay.venue.matching import capture_date

    try:
        day = capture_date(path)
    except Exception as exc:  # noqa: BLE001 - the date is a convenience; the run reports the error
        log.warning("could not read the capture's first packet time: %s", exc)
        day = None
    return (day or dt.datetime.now(dt.timezone.utc).date()).strftime("%Y%m%d")


class Execution:
    """The venue (when local), the bridge and the sim clock for one run."""

    def __init__(self, cfg: DictConfig, run_dir: Path, capture: Path | None, sym: np.ndarray, risk,
                 log_fn: Callable[[str], None] = print, on_exec: Callable[[np.ndarray], np.ndarray] | None = None):
        self.cfg = cfg
        self.b, self.v = cfg.bridge, cfg.venue
        self.run_dir = Path(run_dir)
        self.capture = Path(capture) if capture is not None else None
        self.sym = sym
        self.risk = risk
        # where execution reports go (returns risk's orders to send): risk.on_exec, or the
        # GPU-resident pipeline's exec ring (pipeline/gpu.py GpuPipeline.on_exec)
        self.on_exec = on_exec if on_exec is not None else risk.on_exec
        self.log = log_fn
        self.lat = Latencies()
        self.venue = None
        self.clock = None
        self.bridge: FixBridge | None = None
        today = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
        self.date = str(self.b.session_date) or (session_date(self.capture) if self.capture else today)
        self.risk_orders_sent = 0
        self.exec_events = 0
        self.hedges = 0
        self._t_end_drain = 0.0
        self._market_clock = 0
        self.port: int | None = None   # chosen by launch_venue or prepare
        self._venue_t0 = 0.0
        # how the end-of-replay drain went (``finish``; "not_waited" when the run stopped before it)
        self.drain: dict[str, Any] = drain_summary("not_waited", float(self.b.drain_timeout_s), 0.0)
        # the market events the bot's feed decoded (the venue replays the same capture): set by
        # the run, for "how far did the venue get"
        self.feed_events: Callable[[], int] = lambda: 0

    # -- lifecycle ----------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Build the bridge (not connected): its codec compiled or loaded, its tables faulted in.
        The run calls this while it compiles, before anything connects."""
        if self.bridge is not None:
            return
        b = self.b
        self._choose_port()
        bdir = Path(b.state_dir) if b.state_dir else self.run_dir / "fix" / "bridge"
        self.bridge = FixBridge(host=str(b.host), port=self.port, sender=str(b.sender_comp_id),
                                target=str(b.target_comp_id), state_dir=bdir, sym=self.sym, date=self.date,
                                heartbeat_s=int(b.heartbeat_s), reconnect_s=int(b.reconnect_s),
                                logon_timeout_s=int(b.logon_timeout_s), prefix=str(b.clordid_prefix),
                                max_orders=int(b.max_orders), batch_rows=int(b.batch_rows),
                                file_log=bool(b.file_log), username_env=str(b.username_env),
                                password_env=str(b.password_env))
        self.bridge.warm_up()

    def _choose_port(self) -> int:
        """The counterparty's port, chosen once: the local venue's (``venue.port``, or a free
        one), else ``bridge.port``."""
        if self.port is None:
            if self.v.enabled:
                from replay.venue.process import free_port

                self.port = int(self.v.port) or free_port(self.b.host)
            else:
                self.port = int(self.b.port)
        return self.port

    def launch_venue(self) -> None:
        """Start the local venue process (``venue.enabled``) without waiting for it: it compiles
        its matching kernels on the other core while the run compiles its own. Nothing connects
        to it before ``start``."""
        v = self.v
        if not v.enabled or self.venue is not None:
            return
        from replay.simclock import SimClock
        from replay.venue.process import VenueProcess

        self._choose_port()
        vdir = Path(v.state_dir) if v.state_dir else self.run_dir / "fix" / "venue"
        clock_path = self.run_dir / "fix" / "simclock"
        self.clock = SimClock(clock_path, create=True)
        self.venue = VenueProcess(self.capture, self.port, vdir, clock_path,
                                  entry_latency_ns=int(v.entry_latency_ns),
                                  response_latency_ns=int(v.response_latency_ns),
                                  sender=str(v.sender_comp_id), target=str(v.target_comp_id),
                                  session_date=self.date, heartbeat=int(v.heartbeat_s),
                                  # the venue's own replayed book: sized like ours
                                  max_orders=int(self.cfg.book.max_orders), max_levels=int(self.cfg.book.max_levels),
                                  max_symbols=int(self.cfg.book.max_symbols),
                                  start_timeout_s=float(v.start_timeout_s))
        self._venue_t0 = time.perf_counter()
        self.venue.spawn()

    def start(self) -> None:
        """Start the venue (when local; ``launch_venue`` may have started it already), wait
        until it listens, log on, and keep the session alive from a thread while the run loop is
        busy (``FixBridge.start_keepalive``)."""
        self.launch_venue()
        self.prepare()
        if self.venue is not None:
            t = time.perf_counter()
            self.venue.wait_ready()
            self.log(f"venue      simulator on 127.0.0.1:{self.port} (pid {self.venue.pid}, ready "
                     f"{time.perf_counter() - self._venue_t0:.1f} s after launch, waited {time.perf_counter() - t:.1f} s)")
        try:
            self.bridge.start()
        except FixError:
            self.stop()
            raise
        self.bridge.start_keepalive()
        b = self.b
        self.log(f"fix        logged on {b.sender_comp_id} -> {b.target_comp_id} at {b.host}:{self.port} "
                 f"(ClOrdID prefix {self.bridge.prefix_str}, session date {self.date})")

    def stop(self) -> None:
        """Log out, stop the venue (when local) and the clock. Safe to call more than once."""
        try:
            if self.bridge is not None:
                self.bridge.stop()
        finally:
            if self.venue is not None:
                rc = self.venue.stop()
                if rc == -signal.SIGKILL:
                    from replay.venue.process import STOP_TIMEOUT_S

                    self.log(f"venue      did not exit within {STOP_TIMEOUT_S:.0f} s of SIGTERM: killed (SIGKILL); "
                             f"its last state is in {self.venue.state_dir}")
                elif rc:
                    self.log(f"venue      exited with status {rc}: " + self.venue.stderr_tail(800))
            if self.clock is not None:
                self.clock.close()
                self.clock = None

    def force_stop(self) -> None:
        """The second Ctrl-C (called inside the signal handler): no logout, no waiting; the
        venue is sent SIGKILL (``kill_now``: it takes no lock the interrupted frame may hold)."""
        if self.venue is not None:
            self.venue.kill_now()

    def wait_cancels(self, open_orders, timeout_s: float) -> bool:
        """After ``cancel_all``: take reports until ``open_orders()`` is 0 or ``timeout_s`` passed.
        The venue may only answer once its market clock moves, so the clock is released
        (``SimClock.finish``) first. True if every order is closed."""
        if self.bridge is None:
            return open_orders() == 0
        if self.clock is not None:
            # the cancels are the last messages: the venue processes them, then drains
            self.publish(self._market_clock)
            self.clock.finish()
        t_end = time.monotonic() + float(timeout_s)
        while open_orders() > 0 and time.monotonic() < t_end:
            self.pump(0.01)
            if self.venue is not None and not self.venue.alive():
                break
        return open_orders() == 0

    # -- per batch ----------------------------------------------------------------------------------
    def send(self, orders: np.ndarray, t_arrival_ns: int | None = None) -> int:
        """Send risk's orders out; ``t_arrival_ns`` (perf_counter_ns when the batch that caused
        them was in the buffer) records tick-to-trade for each."""
        if orders.shape[0] == 0 or self.bridge is None:
            return 0
        t0 = time.perf_counter_ns()
        k = self.bridge.send(orders)
        if k:
            t1 = self.bridge.last_write_ns
            self.lat.record("fix_send_batch_avg_per_order", (t1 - t0) // k, 1,
                            "encode + write() of one send: time / orders, one value per send")
            if t_arrival_ns is not None:
                self.lat.record("batch_to_trade", t1 - t_arrival_ns, 1,
                                "batch start -> its orders' FIX bytes written, one value per send")
        self.risk_orders_sent += k
        return k

    def pump(self, timeout_s: float = 0.0) -> int:
        """Execution reports -> risk (fills, acks, cancels); risk's hedges and cancels go out."""
        if self.bridge is None:
            return 0
        ev = self.bridge.poll(timeout_s)
        n = ev.shape[0]
        if n:
            self.exec_events += n
            more = self.on_exec(ev)
            if more.shape[0]:
                self.hedges += int((more[:, IN.I_ORIGIN] == IN.ORIGIN_HEDGE).sum())
                self.send(more)
        return n

    def publish(self, market_clock_ns: int) -> None:
        self._market_clock = int(market_clock_ns)
        if self.clock is not None and self.bridge is not None:
            self.clock.publish(int(market_clock_ns), self.bridge.n_msgs)

    def _venue_progress(self) -> tuple[int, int, int]:
        """What moves while the local venue works: its clock, its market events, its last
        message processed (sim clock slots 2, 7, 3)."""
        c = self.clock
        return c.venue_clock_ns, c.venue_events, c.venue_msg_no

    def finish(self, stop: Callable[[], bool] = lambda: False) -> None:
        """End of replay: the venue drains (advances to the last clock, releases every pending
        report); the bridge applies the last reports.

        The wait lasts as long as the venue makes progress (its clock or event count moves, or
        a report arrives): it gives up after ``bridge.drain_timeout_s`` seconds *without*
        progress, or when the venue process exits, or at once when ``stop()`` (a stop signal:
        the caller then cancels and stops as at any other time). ``self.drain`` says how it ended
        (``drain_summary``); a venue that did not drain makes the run ``incomplete``."""
        if self.bridge is None:
            return
        timeout = float(self.b.drain_timeout_s)
        t0 = time.monotonic()
        if self.clock is not None:
            self.clock.finish()
            last, t_last, t_said = self._venue_progress(), t0, t0
            outcome = "drained"
            while not self.clock.venue_done:
                got = self.pump(0.005)
                now = time.monotonic()
                p = self._venue_progress()
                if got or p != last:
                    last, t_last = p, now
                if self.clock.venue_done:
                    break
                if self.venue is not None and not self.venue.alive():
                    outcome = "venue_exited"
                    self.log("venue      the simulator exited before draining: " + self.venue.stderr_tail())
                    break
                if now - t_last >= timeout:
                    outcome = "stalled"
                    break
                if stop():
                    outcome = "interrupted"
                    break
                if now - t_said >= 10.0:
                    t_said = now
                    self.log(f"venue      draining: {how_far(self._drain_state())} ({now - t0:.0f} s)")
            self._set_drain(outcome, time.monotonic() - t0)
            if outcome in NOT_DRAINED:
                waited = f" (waited {self.drain['wait_s']:.1f} s in all)" if outcome == "stalled" else ""
                self.log(f"venue      NOT DRAINED: {not_drained_why(self.drain)}{waited}; {how_far(self.drain)}")
        else:
            self._set_drain("no_local_venue", 0.0)
        # reports already released travel on the socket: take them until quiet (0.3 s without
        # one), for bridge.drain_timeout_s at most
        t1 = time.monotonic()
        quiet = t1 + 0.3
        while time.monotonic() < min(quiet, t1 + timeout):
            if self.pump(0.01):
                quiet = time.monotonic() + 0.3

    def _drain_state(self) -> dict[str, Any]:
        c = self.clock
        return {"venue_clock_ns": int(c.venue_clock_ns), "market_clock_ns": int(c.market_clock_ns),
                "venue_events": int(c.venue_events), "feed_events": int(self.feed_events())}

    def _set_drain(self, outcome: str, wait_s: float) -> None:
        d = drain_summary(outcome, float(self.b.drain_timeout_s), wait_s)
        if self.clock is not None:
            d.update(self._drain_state())
        self.drain = d

    # -- report -------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        if self.bridge is None:
            return {}
        br = self.bridge
        out: dict[str, Any] = {"session_date": self.date, "clordid_prefix": br.prefix_str, **br.counters()}
        n = br.n_msgs
        rejected = br.ot[:n, C.O_STATE] == C.ST_REJECTED
        new = br.ot[:n, C.O_KIND] == IN.KIND_NEW
        for key, rows, names in (("venue_rejects_by_reason", rejected & new, ORD_REJ_REASONS),
                                 ("cancel_rejects_by_reason", rejected & ~new, CXL_REJ_REASONS)):
            codes = br.ot[:n, C.O_REJ][rows]
            out[key] = {names.get(int(r), f"code_{int(r)}"): int(c) for r, c in zip(*np.unique(codes, return_counts=True))}
        fills = br.fill_table()
        out["fills"] = int(fills.shape[0])
        out["filled_shares"] = int(fills[:, 1].sum()) if fills.shape[0] else 0
        out["hedges_sent"] = self.hedges
        out["drain"] = dict(self.drain)
        out["latency"] = self.lat.summary()
        if self.venue is not None:
            try:
                out["venue"] = self.venue.summary()
            except Exception as exc:  # noqa: BLE001 - a report never fails the run
                out["venue"] = {"error": repr(exc)}
        return out


#: the ``execution.drain.outcome`` values (``replay/run_report.py DRAIN_OUTCOMES``) where the local venue did not finish the replay (the run is ``incomplete``)
NOT_DRAINED = ("stalled", "venue_exited")


def drain_summary(outcome: str, timeout_s: float, wait_s: float) -> dict[str, Any]:
    """The report's ``execution.drain``: how the end-of-replay wait for the venue ended and how
    far the venue got (its clock and market events; ``feed_events``: what the bot decoded)."""
    from replay.run_report import DRAIN_OUTCOMES, EMPTY_DRAIN

    assert outcome in DRAIN_OUTCOMES, outcome
    return {**EMPTY_DRAIN, "outcome": outcome, "drained": outcome == "drained", "wait_s": round(float(wait_s), 3),
            "timeout_s": float(timeout_s)}


def not_drained_why(d: dict[str, Any]) -> str:
    """Why the venue did not drain, from ``execution.drain`` (outcome ``stalled`` or ``venue_exited``)."""
    if d["outcome"] == "stalled":
        return f"no progress for bridge.drain_timeout_s={d['timeout_s']:g} s"
    return "the simulator exited"


def how_far(d: dict[str, Any]) -> str:
    """How far the venue got, from ``execution.drain`` (or the same fields read live)."""
    pct = f" ({100.0 * d['venue_events'] / d['feed_events']:.1f}%)" if d.get("feed_events") else ""
    return (f"venue at {_tod(d['venue_clock_ns'])} of {_tod(d['market_clock_ns'])} market time, "
            f"{d['venue_events']:,} market events applied{pct}")


def _tod(ns: int) -> str:
    """ns since midnight -> HH:MM:SS.fff (``-`` before the first event)."""
    if ns < 0:
        return "-"
    s, f = divmod(int(ns), 1_000_000_000)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{f // 1_000_000:03d}"


def format_execution(ex: dict[str, Any]) -> list[str]:
    if not ex:
        return []
    lines = [f"fix        {ex['messages_sent']:,} messages sent ({ex['new_sent']:,} new, {ex['cancel_sent']:,} cancel, "
             f"{ex['replace_sent']:,} replace); {ex['reports']:,} reports, {ex['fills']:,} fills "
             f"({ex['filled_shares']:,} shares)",
             f"orders     filled {ex['orders_filled']:,}  partially filled {ex['orders_partially_filled']:,}  "
             f"cancelled {ex['orders_cancelled']:,}  rejected by the venue {ex['orders_rejected']:,}  "
             f"working {ex['orders_working']:,}"]
    if ex["venue_rejects_by_reason"]:
        lines.append("venue rejections: " + ", ".join(f"{k} {v:,}" for k, v in ex["venue_rejects_by_reason"].items()))
    if ex["cancel_rejects_by_reason"]:
        lines.append("cancel/replace rejected by the venue: "
                     + ", ".join(f"{k} {v:,}" for k, v in ex["cancel_rejects_by_reason"].items()))
    if ex.get("venue") and "positions" in ex["venue"]:
        pos = {k: v for k, v in ex["venue"]["positions"].items() if v}
        lines.append("venue      fills " + f"{ex['venue'].get('fills', 0):,}, positions "
                     + (", ".join(f"{k} {v:+,}" for k, v in sorted(pos.items())) or "flat"))
    d = ex.get("drain") or {}
    if d.get("outcome") in NOT_DRAINED:
        lines.append(f"venue      NOT DRAINED ({not_drained_why(d)}): {how_far(d)}; reports after that point are "
                     "missing")
    odd = {k: ex[k] for k in ("duplicate_reports", "bad_reports", "unknown_clordid", "illegal_transitions",
                              "session_rejects", "business_rejects", "callback_errors", "resent_possresend", "backlog_rows") if ex[k]}
    if odd:
        lines.append("fix issues: " + ", ".join(f"{k} {v:,}" for k, v in odd.items()))
    return lines
