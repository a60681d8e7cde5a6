"""``hftbot``: the command line.

  hftbot run [hydra overrides...]     the pipeline (Hydra app; ``--config-name NAME`` picks conf/NAME.yaml)
  hftbot decode FILE                  ITCH 5.0 messages of a pcap / pcapng / BinaryFILE as JSON lines
  hftbot book FILE --symbols A,B      order books of some symbols at the end (or --at a time) as JSON lines
  hftbot generate OUT                 write a synthetic ITCH feed (pcap or BinaryFILE)
  hftbot train [--out models/default] train the model (ONNX + sidecar) on the generated feed or a capture
  hftbot kill [--file F] [--pid P]    stop a running pipeline: no new orders, cancel every working order
"""

from __future__ import annotations

import argparse
import json
import sys

from kernels import cpu
from replay.capture import CaptureError, CaptureReader
from replay.render import event_json
from replay.report import feed_summary, truncation_line
from pipeline.stages import DecodeStage


def cmd_decode(args: argparse.Namespace) -> int:
    try:
        reader = CaptureReader(args.file, filters=args.filter or (), chunk_bytes=args.chunk_bytes)
    except (CaptureError, FileNotFoundError, ValueError) as exc:
        print(f"hftbot decode: error: {exc}", file=sys.stderr)
        return 2
    decode = DecodeStage(cpu, capacity=reader.batch_rows, stats=reader.stats)
    want = set(args.types.split(",")) if args.types else None
    out = sys.stdout
    printed = 0
    try:
        for batch in reader:
            table = decode(batch)
            sessions = reader.sessions() if reader.format != "itch" else None
            for rec in table.to_records():
                if want and chr(rec["kind"]) not in want:
                    continue
                out.write(json.dumps(event_json(rec, sessions)) + "\n")
                printed += 1
                if args.limit and printed >= args.limit:
                    raise StopIteration
    except StopIteration:
        pass
    except BrokenPipeError:  # `hftbot decode x | head`
        sys.stderr.close()
        return 0
    f = feed_summary(reader.stats)
    print(f"hftbot decode: {reader.format}, {f['decoded']} messages decoded of {f['messages_in']} "
          f"blocks; gaps {f['gaps']} ({f['gap_messages']} messages), duplicates {f['duplicate_messages']}",
          file=sys.stderr)
    for name, count in f["problems"].items():
        print(f"hftbot decode: skipped {name}: {count}", file=sys.stderr)
    if reader.trailing_bytes:
        print(f"hftbot decode: truncated: {truncation_line(f['decoded'], reader.trailing_bytes)}"
              + (f" ({reader.error})" if reader.error else ""), file=sys.stderr)
    return 0


def parse_clock(text: str) -> int:
    """``HH:MM:SS[.fraction]`` -> ns since midnight (the ITCH timestamp scale)."""
    try:
        hms, _, frac = text.partition(".")
        h, m, sec = (int(x) for x in hms.split(":"))
        if not (0 <= h < 24 and 0 <= m < 60 and 0 <= sec < 60) or (frac and not frac.isdigit()) or len(frac) > 9:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"--at {text!r}: expected HH:MM:SS[.nnnnnnnnn]") from None
    return ((h * 60 + m) * 60 + sec) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def cmd_book(args: argparse.Namespace) -> int:
    from pipeline.book import BookCapacityError, BookStage, BookState

    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    try:
        stop_ns = parse_clock(args.at) if args.at else None
    except argparse.ArgumentTypeError as exc:
        print(f"hftbot book: error: {exc}", file=sys.stderr)
        return 2
    try:
        reader = CaptureReader(args.file, filters=args.filter or (), chunk_bytes=args.chunk_bytes)
    except (CaptureError, FileNotFoundError, ValueError) as exc:
        print(f"hftbot book: error: {exc}", file=sys.stderr)
        return 2
    state = BookState(args.max_orders, args.max_levels, args.max_symbols)
    decode = DecodeStage(cpu, capacity=reader.batch_rows, stats=reader.stats)
    books = BookStage(cpu, state, reader.batch_rows, symbols=[], stop_ts=stop_ns if stop_ns is not None else 2**62)
    try:
        for batch in reader:
            books(decode(batch))
            if books.stopped:
                break
    except BookCapacityError as exc:
        print(f"hftbot book: error: {exc}", file=sys.stderr)
        return 3
    for name in symbols:
        loc = state.locate_of(name)
        if loc is None:
            print(json.dumps({"symbol": name, "bids": [], "asks": [], "error": "symbol not seen in the feed"}))
            continue
        print(json.dumps({"symbol": name, "locate": loc, **state.depth(cpu, loc, args.depth)}))
    c = state.counters()
    at = f" at {args.at}" if args.at else " at end of feed"
    print(f"hftbot book: {c['events']:,} events{at}; live orders {c['live_orders']:,}, levels {c['live_levels']:,}, "
          f"missing refs {c['missing_refs']:,}, crossed updates {c['crossed_updates']:,}, locked updates "
          f"{c['locked_updates']:,}, books crossed or locked now {c['crossed_or_locked_books_now']:,}",
          file=sys.stderr)
    f = feed_summary(reader.stats)
    for name, count in f["problems"].items():
        print(f"hftbot book: skipped {name}: {count}", file=sys.stderr)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from replay.generator import generate

    summary = generate(args.out, fmt=args.fmt, n_messages=args.messages, n_symbols=args.symbols,
                       seed=args.seed)
    print(json.dumps(summary.__dict__ if hasattr(summary, "__dict__") else summary, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hftbot", description="GPU-resident ITCH-to-FIX trading pipeline")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="run the pipeline (Hydra app: overrides follow, e.g. feed.path=x.pcap)",
                   add_help=False)
    d = sub.add_parser("decode", help="print the ITCH 5.0 messages of a capture as JSON lines")
    d.add_argument("file", help="pcap, pcapng or Nasdaq BinaryFILE (.itch), optionally gzip-compressed")
    d.add_argument("--filter", action="append", metavar="GROUP:PORT",
                   help="only UDP to this destination (repeatable; default: all UDP)")
    d.add_argument("--types", help="only these message types, e.g. A,F,U")
    d.add_argument("--limit", type=int, default=0, help="stop after N messages")
    d.add_argument("--chunk-bytes", type=int, default=4 << 20, help=argparse.SUPPRESS)
    d.set_defaults(func=cmd_decode)
    b = sub.add_parser("book", help="replay a capture and print the order book of some symbols as JSON lines")
    b.add_argument("file", help="pcap, pcapng or Nasdaq BinaryFILE (.itch), optionally gzip-compressed")
    b.add_argument("--symbols", required=True, help="comma-separated, e.g. AAPL,MSFT")
    b.add_argument("--depth", type=int, default=5, help="price levels per side (default 5)")
    b.add_argument("--at", metavar="HH:MM:SS.nnnnnnnnn",
                   help="stop before the first message after this time (ITCH time, ns since midnight)")
    b.add_argument("--filter", action="append", metavar="GROUP:PORT", help="only UDP to this destination")
    b.add_argument("--max-orders", type=int, default=6_000_000)
    b.add_argument("--max-levels", type=int, default=2_000_000)
    b.add_argument("--max-symbols", type=int, default=16_384)
    b.add_argument("--chunk-bytes", type=int, default=4 << 20, help=argparse.SUPPRESS)
    b.set_defaults(func=cmd_book)
    g = sub.add_parser("generate", help="write a deterministic synthetic ITCH 5.0 feed")
    g.add_argument("out")
    g.add_argument("--fmt", choices=("pcap", "itch"), default="pcap")
    g.add_argument("--messages", type=int, default=1_000_000)
    g.add_argument("--symbols", type=int, default=64)
    g.add_argument("--seed", type=int, default=1)
    g.set_defaults(func=cmd_generate)
    from pipeline.train import add_arguments as _train_arguments, cmd_train

    tr = sub.add_parser("train", help="train the model: replay a feed, fit a small MLP (PyTorch, CPU), "
                        "write ONNX + JSON sidecar, print out-of-sample metrics")
    _train_arguments(tr)
    tr.set_defaults(func=cmd_train)
    from pipeline.risk import add_kill_arguments, cmd_kill

    kl = sub.add_parser("kill", help="engage the kill switch of a running pipeline: touch its kill file "
                        "(risk.kill.file) and/or send SIGUSR1 to --pid")
    add_kill_arguments(kl)
    kl.set_defaults(func=cmd_kill)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        from pipeline.app import run_cli

        run_cli(argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
