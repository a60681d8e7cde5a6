"""``python -m replay.venue``: run the venue simulator (a QuickFIX acceptor) until SIGTERM."""

from __future__ import annotations

import argparse
import sys

from replay.venue.app import VenueConfig


def parse_args(argv: list[str] | None = None) -> VenueConfig:
    p = argparse.ArgumentParser(prog="python -m replay.venue", description=__doc__)
    p.add_argument("--capture", help="the capture the bot replays (pcap, pcapng, BinaryFILE, .gz)")
    p.add_argument("--port", type=int, required=True, help="TCP port of the acceptor")
    p.add_argument("--state-dir", required=True, help="FIX store, journal, settings and logs")
    p.add_argument("--clock", help="the shared sim clock file (replay/simclock.py)")
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
    p.add_argument("--poll-us", type=int, default=100)
    a = p.parse_args(argv)
    at = a.app == "acceptance"
    return VenueConfig(
        port=a.port, state_dir=a.state_dir, capture=a.capture, clock=a.clock, app=a.app,
        sender=a.sender or ("ISLD" if at else "VENUE"), target=a.target or ("TW44" if at else "HFTBOT"),
        entry_latency_ns=a.entry_latency_ns, response_latency_ns=a.response_latency_ns,
        session_date=a.session_date, heartbeat=a.heartbeat, data_dictionary=a.data_dictionary,
        store=a.store or ("memory" if at else "file"),
        reset_on_logon=at if a.reset_on_logon is None else a.reset_on_logon, fix_log=a.fix_log,
        max_orders=a.max_orders, max_levels=a.max_levels, max_symbols=a.max_symbols, poll_us=a.poll_us)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    from replay.venue import app

    if cfg.app == "acceptance":
        return app.run_acceptance(cfg)
    return app.run_venue(cfg)


if __name__ == "__main__":
    sys.exit(main())
