"""``python -m replay.venue``: run the venue simulator (a QuickFIX acceptor) until SIGTERM.

Two clocks: ``--clock FILE`` runs in lock-step with the bot's replay (the shared sim clock,
``replay/simclock.py``); ``--clock wall`` runs free: the replayed market advances with wall
time (``--speed`` market seconds per second, from ``--start`` or the capture's first event), so
any FIX 4.4 client's orders are acknowledged, matched with queue position and reported."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from replay.venue.app import VenueConfig


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr, status 2 (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None = None) -> VenueConfig:
    p = _Parser(prog="python -m replay.venue", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--capture", help="the capture the bot replays (pcap, pcapng, BinaryFILE, .gz)")
    p.add_argument("--port", type=int, required=True, help="TCP port of the acceptor")
    p.add_argument("--state-dir", required=True, help="FIX store, journal, settings and logs")
    p.add_argument("--clock", help="the shared sim clock file (replay/simclock.py), or 'wall': free-running")
    p.add_argument("--speed", type=float, default=1.0,
                   help="--clock wall: market seconds per wall second (default 1)")
    p.add_argument("--start", help="--clock wall: market time of day to start at, HH:MM[:SS[.f]] "
                                   "(default: the capture's first event)")
    p.add_argument("--app", choices=("venue", "acceptance"), default="venue",
                   help="venue: the exchange; acceptance: the QuickFIX acceptance-test profile")
    p.add_argument("--sender", default=None, help="SenderCompID (default VENUE; ISLD for --app acceptance)")
    p.add_argument("--target", default=None, help="TargetCompID (default HFTBOT; TW44 for --app acceptance)")
    p.add_argument("--entry-latency-ns", type=int, default=0)
    p.add_argument("--response-latency-ns", type=int, default=0)
    p.add_argument("--session-date", help="YYYYMMDD for TransactTime (default: from the capture)")
    p.add_argument("--heartbeat", type=int, default=30)
    p.add_argument("--data-dictionary", help="FIX44.xml (default: the quickfix wheel's)")
    p.add_argument("--store", choices=("file", "memory"), default=None,
                   help="message store (default file; memory for --app acceptance)")
    p.add_argument("--reset-on-logon", action="store_true", default=None)
    p.add_argument("--fix-log", action="store_true", help="log every FIX message under STATE_DIR/log")
    p.add_argument("--max-orders", type=int, default=500_000)
    p.add_argument("--max-levels", type=int, default=200_000)
    p.add_argument("--max-symbols", type=int, default=4096)
    p.add_argument("--poll-us", type=int, default=None,
                   help="idle sleep between clock polls, µs (default 100; 1000 with --clock wall)")
    p.add_argument("--step-events", type=int, default=1 << 16,
                   help="market events per step at most (default 65536): the venue publishes its clock "
                        "after each step, so a bot waiting for it to catch up sees it move")
    p.add_argument("--step-delay-ms", type=float, default=0.0,
                   help="tests: wait this long after each market step (a slow venue)")
    p.add_argument("--crash-at", default=None, metavar="POINT:N",
                   help="fault injection for recovery tests: SIGKILL at POINT (before-fill, after-fill, "
                        "stored-fill) of the N-th fill")
    a = p.parse_args(argv)
    at = a.app == "acceptance"
    wall = a.clock == "wall"
    if not at and not a.capture:
        p.error("--capture is required (the market the venue replays)")
    if not at and not a.clock:
        p.error("--clock is required: a sim clock file (lock-step with the bot) or 'wall' (free-running)")
    if not a.speed > 0:
        p.error(f"--speed must be > 0, got {a.speed:g}")
    if (a.speed != 1.0 or a.start) and not wall:
        p.error("--speed and --start need --clock wall")
    if a.start:
        from replay.venue.app import parse_time_of_day

        try:
            parse_time_of_day(a.start)
        except ValueError as exc:
            p.error(f"--start: {exc}")
    if a.crash_at:
        from replay.venue.app import parse_crash_at

        try:
            parse_crash_at(a.crash_at)
        except ValueError as exc:
            p.error(str(exc))
    if a.step_events < 1:
        p.error(f"--step-events must be >= 1, got {a.step_events}")
    if not a.step_delay_ms >= 0:
        p.error(f"--step-delay-ms must be >= 0, got {a.step_delay_ms:g}")
    if a.poll_us is not None and a.poll_us < 0:
        p.error(f"--poll-us must be >= 0, got {a.poll_us}")
    if a.capture and not Path(a.capture).is_file():
        p.error(f"--capture {a.capture}: no such file")
    return VenueConfig(
        port=a.port, state_dir=a.state_dir, capture=a.capture, clock=a.clock, app=a.app,
        sender=a.sender or ("ISLD" if at else "VENUE"), target=a.target or ("TW44" if at else "HFTBOT"),
        entry_latency_ns=a.entry_latency_ns, response_latency_ns=a.response_latency_ns,
        session_date=a.session_date, heartbeat=a.heartbeat, data_dictionary=a.data_dictionary,
        store=a.store or ("memory" if at else "file"),
        reset_on_logon=at if a.reset_on_logon is None else a.reset_on_logon, fix_log=a.fix_log,
        max_orders=a.max_orders, max_levels=a.max_levels, max_symbols=a.max_symbols,
        poll_us=a.poll_us if a.poll_us is not None else (1000 if wall else 100),
        speed=a.speed, start=a.start, crash_at=a.crash_at, step_events=a.step_events,
        step_delay_ms=a.step_delay_ms)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    from replay.venue import app

    if cfg.app == "acceptance":
        return app.run_acceptance(cfg)
    return app.run_venue(cfg)


if __name__ == "__main__":
    sys.exit(main())
