"""``hftbot``: the command line.

  hftbot run [hydra overrides...]     the pipeline (Hydra app; ``--config-name NAME`` picks conf/NAME.yaml)
  hftbot decode FILE                  ITCH 5.0 messages of a pcap / pcapng / BinaryFILE as JSON lines
  hftbot book FILE --symbols A,B      order books of some symbols at the end (or --at a time) as JSON lines
  hftbot generate OUT                 write a synthetic ITCH feed (pcap or BinaryFILE)
  hftbot train [--out models/default] train the model (ONNX + sidecar) on the generated feed or a capture
  hftbot kill [--file F] [--pid P]    stop a running pipeline: no new orders, cancel every working order
  hftbot compare RUN_A RUN_B ...      runs side by side (config differences, PnL, fills, rejects, latency)
  hftbot report RUN_DIR               (re)write report.html and its PNG plots for a run
  hftbot sweep K=A,B [--captures F..] a sweep of runs (configs x captures), local or on Ray (--launcher ray)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kernels import cpu
from kernels.itch_spec import LENGTHS
from replay.capture import MIN_CHUNK, CaptureError, CaptureReader, parse_filters
from replay.render import event_json
from replay.report import feed_summary, input_lines
from pipeline.stages import DecodeStage

MAX_CHUNK = 1 << 30  # --chunk-bytes above this is a typo, not a buffer size


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``hftbot decode: error: ...``, exit status 2), the style of
    the config errors, instead of a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


# -- argument types: each raises ArgumentTypeError with the reason -------------------------------
def _whole(text: str, least: int) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < least:
        raise argparse.ArgumentTypeError(f"must not be negative, got {n}" if least == 0 else
                                         f"must be at least {least}, got {n}")
    return n


def count(text: str) -> int:
    """An integer >= 0."""
    return _whole(text, 0)


def positive(text: str) -> int:
    """An integer >= 1."""
    return _whole(text, 1)


def locates(text: str) -> int:
    """A number of stock locates: 1..65535 (ITCH locate codes are 16-bit)."""
    n = positive(text)
    if n > 65535:
        raise argparse.ArgumentTypeError(f"must be at most 65535 (ITCH locate codes are 16-bit), got {n:,}")
    return n


def threads(text: str) -> int:
    """Book threads: 1..os.cpu_count() (more shards than cores only add memory and switches)."""
    n = positive(text)
    cores = os.cpu_count() or 1
    if n > cores:
        raise argparse.ArgumentTypeError(f"must be at most {cores} (this machine's CPUs), got {n}")
    return n


def chunk_bytes(text: str) -> int:
    n = count(text)
    if not MIN_CHUNK <= n <= MAX_CHUNK:
        raise argparse.ArgumentTypeError(f"must be {MIN_CHUNK:,}..{MAX_CHUNK:,} bytes (a chunk holds the "
                                         f"largest capture record), got {n:,}")
    return n


def message_types(text: str) -> set[str]:
    """``A,F,U`` -> the set of ITCH 5.0 type letters; an unknown type is an error."""
    want = {t.strip() for t in text.split(",") if t.strip()}
    if not want:
        raise argparse.ArgumentTypeError("expected ITCH message types, e.g. A,F,U")
    unknown = sorted(want - set(LENGTHS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown ITCH 5.0 message type{'s' * (len(unknown) > 1)} "
                                         f"{', '.join(map(repr, unknown))} (known: {','.join(sorted(LENGTHS))})")
    return want


def symbol_list(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected symbols, e.g. AAPL,MSFT")
    bad = [n for n in names if len(n) > 8 or not (n.isascii() and n.isprintable()) or " " in n]
    if bad:
        raise argparse.ArgumentTypeError(f"not a stock symbol (1-8 printable ASCII characters): "
                                         f"{', '.join(map(repr, bad))}")
    return names


def feed_filter(text: str) -> str:
    try:
        parse_filters([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def parse_clock(text: str) -> int:
    """``HH:MM:SS[.fraction]`` -> ns since midnight (the ITCH timestamp scale)."""
    try:
        hms, _, frac = text.partition(".")
        h, m, sec = (int(x) for x in hms.split(":"))
        if not (0 <= h < 24 and 0 <= m < 60 and 0 <= sec < 60) or (frac and not frac.isdigit()) or len(frac) > 9:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HH:MM:SS[.nnnnnnnnn]") from None
    return ((h * 60 + m) * 60 + sec) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def clock_text(text: str) -> str:
    parse_clock(text)
    return text


# -- commands -------------------------------------------------------------------------------------
def open_capture(prog: str, args: argparse.Namespace) -> CaptureReader | None:
    """The reader of ``args.file``, checked to be an ITCH capture; None (after a one-line error)
    when it cannot be read or is not a capture."""
    try:
        reader = CaptureReader(args.file, filters=args.filter or (), chunk_bytes=args.chunk_bytes)
        reader.check_content()
    except (CaptureError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return None
    return reader


def report_input(prog: str, reader: CaptureReader, drops: list | None = None) -> None:
    """What was skipped or cut off (feed and books), in the words of every command's summary."""
    f = feed_summary(reader.stats)
    for label, text in input_lines(f, reader.trailing_bytes, reader.error, drops):
        if text != "nothing":
            print(f"{prog}: {label}: {text}", file=sys.stderr)


def cmd_decode(args: argparse.Namespace) -> int:
    reader = open_capture("hftbot decode", args)
    if reader is None:
        return 2
    decode = DecodeStage(cpu, capacity=reader.batch_rows, stats=reader.stats)
    want = args.types
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
    report_input("hftbot decode", reader)
    return 0


def cmd_book(args: argparse.Namespace) -> int:
    from pipeline.book import BookCapacityError, BookShards, BookStage, BookState, ShardedBookStage

    symbols = args.symbols
    stop_ns = parse_clock(args.at) if args.at else None
    stop_ts = stop_ns if stop_ns is not None else 2**62

    def new_state():
        if args.threads > 1:  # the books split by symbol, one thread a shard (pipeline/book.py)
            return BookShards(args.threads, args.max_orders, args.max_levels, args.max_symbols)
        return BookState(args.max_orders, args.max_levels, args.max_symbols)

    # the book's arrays are filled (numpy, without the GIL) while this thread opens the capture and
    # loads the compiled kernels (numba's start-up, Python): measured on the 30M-message deep day
    # with --threads 2, 0.49 s and 0.54 s of a 6.3 s process one after the other
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(new_state)
        reader = open_capture("hftbot book", args)
        state = pending.result()
    if reader is None:
        return 2
    decode = DecodeStage(cpu, capacity=reader.batch_rows, stats=reader.stats)
    if isinstance(state, BookShards):
        books = ShardedBookStage(cpu, state, reader.batch_rows, stop_ts=stop_ts)
    else:
        books = BookStage(cpu, state, reader.batch_rows, symbols=[], stop_ts=stop_ts)
    try:
        if isinstance(books, ShardedBookStage):  # the next batches decoded while the shards apply this one
            books.replay(reader, [decode] + [DecodeStage(cpu, capacity=reader.batch_rows, stats=reader.stats)
                                             for _ in range(2)])
        else:
            for batch in reader:
                books(decode(batch))
                if books.stopped:
                    break
    except BookCapacityError as exc:
        text = str(exc).replace("book.max_orders", "--max-orders").replace("book.max_levels", "--max-levels")
        print(f"hftbot book: error: {text.replace('in the config', 'on the command line')}", file=sys.stderr)
        return 3
    finally:
        if isinstance(books, ShardedBookStage):
            books.close()
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
    report_input("hftbot book", reader, state.drops({"book.max_symbols": "--max-symbols"}))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from replay.generator import generate

    out = Path(args.out)
    if not out.parent.is_dir():
        print(f"hftbot generate: error: {out.parent}: no such directory", file=sys.stderr)
        return 2
    if args.live_orders is not None and args.preset != "deep":
        print("hftbot generate: error: --live-orders needs --preset deep (the shallow day keeps ~64 orders "
              "a symbol)", file=sys.stderr)
        return 2
    try:
        summary = generate(args.out, fmt=args.fmt, n_messages=args.messages, n_symbols=args.symbols,
                           preset=None if args.preset == "shallow" else args.preset,
                           seed=args.seed, live_orders=args.live_orders)
    except ValueError as exc:  # too few messages for the symbols' set-up
        print(f"hftbot generate: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary.__dict__ if hasattr(summary, "__dict__") else summary, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="hftbot", description="GPU-resident ITCH-to-FIX trading pipeline")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="run the pipeline (Hydra app: overrides follow, e.g. feed.path=x.pcap)",
                   add_help=False)
    d = sub.add_parser("decode", help="print the ITCH 5.0 messages of a capture as JSON lines")
    d.add_argument("file", help="pcap, pcapng or Nasdaq BinaryFILE (.itch), optionally gzip-compressed")
    d.add_argument("--filter", action="append", metavar="GROUP:PORT", type=feed_filter,
                   help="only UDP to this destination (repeatable; default: all UDP)")
    d.add_argument("--types", type=message_types, help="only these message types, e.g. A,F,U")
    d.add_argument("--limit", type=count, default=0, help="stop after N messages (default 0: all)")
    d.add_argument("--chunk-bytes", type=chunk_bytes, default=4 << 20, help=argparse.SUPPRESS)
    d.set_defaults(func=cmd_decode)
    b = sub.add_parser("book", help="replay a capture and print the order book of some symbols as JSON lines")
    b.add_argument("file", help="pcap, pcapng or Nasdaq BinaryFILE (.itch), optionally gzip-compressed")
    b.add_argument("--symbols", required=True, type=symbol_list, help="comma-separated, e.g. AAPL,MSFT")
    b.add_argument("--depth", type=positive, default=5, help="price levels per side (default 5)")
    b.add_argument("--at", metavar="HH:MM:SS.nnnnnnnnn", type=clock_text,
                   help="stop before the first message after this time (ITCH time, ns since midnight)")
    b.add_argument("--filter", action="append", metavar="GROUP:PORT", type=feed_filter,
                   help="only UDP to this destination")
    b.add_argument("--max-orders", type=positive, default=6_000_000)
    b.add_argument("--max-levels", type=positive, default=2_000_000)
    b.add_argument("--max-symbols", type=locates, default=16_384)
    b.add_argument("--threads", type=threads, default=1,
                   help="split the books by symbol across this many threads (default 1; each thread's "
                        "books are sized by --max-orders/--max-levels)")
    b.add_argument("--chunk-bytes", type=chunk_bytes, default=4 << 20, help=argparse.SUPPRESS)
    b.set_defaults(func=cmd_book)
    g = sub.add_parser("generate", help="write a deterministic synthetic ITCH 5.0 feed")
    g.add_argument("out")
    g.add_argument("--fmt", choices=("pcap", "itch"), default="pcap")
    g.add_argument("--messages", type=positive, default=1_000_000)
    g.add_argument("--symbols", type=locates, default=None, help="symbols (default: 64 shallow, 500 deep)")
    g.add_argument("--preset", choices=("shallow", "deep"), default="shallow",
                   help="deep: Nasdaq-like depth (1M+ live orders mid-stream, thousands of levels on busy symbols)")
    g.add_argument("--live-orders", type=positive, default=None,
                   help="deep: live orders at the close (default messages/18 within 1M..6M)")
    g.add_argument("--seed", type=int, default=1)
    g.set_defaults(func=cmd_generate)
    from pipeline.compare import add_arguments as compare_arguments, cmd_compare
    from pipeline.risk import add_kill_arguments, cmd_kill
    from pipeline.sweep import add_arguments as sweep_arguments, cmd_sweep
    from pipeline.train import add_arguments as train_arguments, cmd_train
    from replay.report_html import add_arguments as report_arguments, cmd_report

    # the commands whose modules define their own arguments: (name, help, add_arguments, command)
    for name, text, add_arguments, func in (
            ("train", "train the model: replay a feed, fit a small MLP (PyTorch, CPU), write ONNX + JSON sidecar, "
                      "print out-of-sample metrics", train_arguments, cmd_train),
            ("kill", "engage the kill switch of a running pipeline: touch its kill file (risk.kill.file) and/or "
                     "send SIGUSR1 to --pid", add_kill_arguments, cmd_kill),
            ("compare", "put runs side by side: config differences, PnL, fills, rejects, latency percentiles; a "
                        "table, and one HTML page with --html OUT", compare_arguments, cmd_compare),
            ("report", "(re)write report.html and its PNG plots in a run directory", report_arguments, cmd_report),
            ("sweep", "parameter and data sweeps (Hydra multirun syntax x captures), local or on Ray: one table "
                      "(Parquet, CSV) and one comparison page", sweep_arguments, cmd_sweep)):
        sp = sub.add_parser(name, help=text)
        add_arguments(sp)
        sp.set_defaults(func=func)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        try:
            from pipeline.app import run_cli

            run_cli(argv[1:])
        except KeyboardInterrupt:   # Ctrl-C while Python loads the app, before a run exists
            print("hftbot: interrupted before the run started", file=sys.stderr)
            return 130
        return 0
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the subcommand's parser: "hftbot decode: error: unrecognized arguments: ..."
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.cmd].error(f"unrecognized arguments: {' '.join(extra)}")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
